package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/forteauth/forteauth/fortetest"
)

// fakeOptions are the flags of the fake command.
type fakeOptions struct {
	addr, secretsFile string
	lifetime, latency time.Duration
	failureRate       float64
}

func fakeFlags() (*flag.FlagSet, *fakeOptions) {
	o := &fakeOptions{}
	fs := flag.NewFlagSet("fortetoken fake", flag.ContinueOnError)
	fs.StringVar(&o.addr, "addr", "127.0.0.1:0", "")
	fs.DurationVar(&o.lifetime, "lifetime", time.Hour, "")
	fs.DurationVar(&o.latency, "latency", 0, "")
	fs.Float64Var(&o.failureRate, "failure-rate", 0, "")
	fs.StringVar(&o.secretsFile, "secrets-file", "", "")
	return fs, o
}

// runFake serves a fortetest.Server until SIGINT or SIGTERM. It prints the
// server's details to stdout and then closes stdout if it can, so that a
// shell reading them with $(...) does not wait for the server to end.
func runFake(args []string, stdout io.Writer) error {
	fs, o := fakeFlags()
	if help, err := parse(fs, args); help || err != nil {
		if help {
			_, err = io.WriteString(stdout, fakeUsage)
		}
		return err
	}
	if err := checkFake(fs, o); err != nil {
		return err
	}

	// Catch the signals before anyone can learn the address and send one.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	srv, secret, err := startServer(o)
	if err != nil {
		return err
	}
	defer srv.Close() // answers the requests in progress first
	if o.secretsFile != "" {
		done := make(chan struct{})
		go func() { defer close(done); reloadOnHangup(ctx, hup, srv, o.secretsFile, os.Stderr) }()
		defer func() { <-done }()
	}

	if err := printExports(stdout, srv, secret); err != nil {
		return fmt.Errorf("writing the server's details to stdout: %w", err)
	}
	if c, ok := stdout.(io.Closer); ok {
		c.Close()
	}
	<-ctx.Done()
	return nil
}

// checkFake rejects arguments and flag values the fake cannot serve with.
func checkFake(fs *flag.FlagSet, o *fakeOptions) error {
	switch {
	case fs.NArg() > 0:
		return usagef("fortetoken fake takes flags only")
	case !isLoopback(o.addr):
		// The fake's credentials are public and it speaks plain http.
		return usagef("-addr must be a loopback address such as 127.0.0.1:8080 or localhost:8080")
	case o.lifetime < time.Second:
		return usagef("-lifetime must be at least 1s")
	case o.latency < 0:
		return usagef("-latency must not be negative")
	case !(o.failureRate >= 0 && o.failureRate <= 1):
		return usagef("-failure-rate must be a fraction from 0 to 1")
	}
	return nil
}

// startServer starts a fortetest.Server on o.addr, set up as o says, and
// returns it and the secret to print.
func startServer(o *fakeOptions) (*fortetest.Server, string, error) {
	srv := fortetest.NewUnstartedServer()
	secret := srv.ClientSecret
	if o.secretsFile != "" {
		var err error
		if secret, err = acceptSecretsFile(srv, o.secretsFile); err != nil {
			return nil, "", err
		}
	}
	l, err := net.Listen("tcp", o.addr)
	if err != nil {
		return nil, "", err
	}
	srv.Listener = l
	srv.SetLifetime(o.lifetime)
	srv.SetLatency(o.latency)
	srv.SetFailureRate(o.failureRate, fortetest.Failure{Status: http.StatusServiceUnavailable})
	srv.Start()
	return srv, secret, nil
}

// printExports writes the server's details as shell export lines, for
// eval "$(fortetoken fake &)".
func printExports(w io.Writer, srv *fortetest.Server, secret string) error {
	pid := os.Getpid()
	_, err := fmt.Fprintf(w, `# fortetoken fake: a fake Forte token endpoint and API. Stop it with Ctrl-C or: kill %d
export FORTE_BASE_URL=%s
export FORTE_TOKEN_URL=%s
export FORTE_CLIENT_ID=%s
export FORTE_CLIENT_SECRET=%s
export FORTE_FAKE_PID=%d
`, pid, shellQuote(srv.URL), shellQuote(srv.TokenURL), shellQuote(srv.ClientID), shellQuote(secret), pid)
	return err
}

// isLoopback reports whether addr is host:port with a loopback host.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
