package redisstore_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/forteauth/forteauth"
	"github.com/forteauth/forteauth/fortetest"
	"github.com/forteauth/forteauth/redisstore"
	"github.com/redis/go-redis/v9"
)

// The fleet tests use 2-second tokens, so that ten token lifetimes take
// 20 seconds.
//
// A fleet sharing a store makes one token request per refresh, so over a
// run of T it makes about T / (refresh age) + 1 requests. At most L + 1
// (L = T / lifetime, rounded up) over ten lifetimes therefore needs each
// token refreshed after about 10/11 of its life, 1.82 s of 2 s. The
// refresh starts at age lifetime − RefreshWindow + random[0,
// (RefreshWindow − ExpiryMargin)/2), here 1.85–1.875 s, and the token goes
// stale at lifetime − ExpiryMargin = 1.9 s. A 100 ms margin still leaves
// every token handed out at least 100 ms of life, ample for an API call on
// loopback. With the defaults (window and margin clamped to 1 s and
// 500 ms) or with 500 ms and 200 ms, tokens would be refreshed at about
// 1–1.5 s, and the fleet would make 13 or more requests in 20 s, however
// well it shared them.
const (
	shortLifetime = 2 * time.Second
	shortWindow   = 150 * time.Millisecond
	shortMargin   = 100 * time.Millisecond
)

// shortConfig is configFor with the fleet tests' window and margin.
func shortConfig(srv *fortetest.Server, store forteauth.Store, logger *slog.Logger) *forteauth.Config {
	cfg := configFor(srv, store, logger)
	cfg.RefreshWindow, cfg.ExpiryMargin = shortWindow, shortMargin
	return cfg
}

// lifetimesIn is elapsed in token lifetimes, rounded up: the L of the
// "at most L + 1 token requests" target.
func lifetimesIn(elapsed, lifetime time.Duration) int {
	return int(math.Ceil(float64(elapsed) / float64(lifetime)))
}

// What the parent passes to a child process.
const (
	envTokenURL = "FORTEAUTH_CHILD_TOKEN_URL"
	envAPIURL   = "FORTEAUTH_CHILD_API_URL"
	envClientID = "FORTEAUTH_CHILD_CLIENT_ID"
	envSecret   = "FORTEAUTH_CHILD_CLIENT_SECRET"
	envRedis    = "FORTEAUTH_CHILD_REDIS_ADDR" // empty: no store
	envDuration = "FORTEAUTH_CHILD_DURATION"
	envWorkers  = "FORTEAUTH_CHILD_WORKERS"
)

// callerPace is the pause between one caller's Token calls, and childPace
// between one worker's API calls in a child process: short next to the
// 50 ms between a token's refresh and its stale point, long enough that
// the tests under the race detector leave Redis and the fake server room
// on the two cores of CI.
const (
	callerPace = 5 * time.Millisecond
	childPace  = 20 * time.Millisecond
)

// childReport is what a fleet child prints on its stdout.
type childReport struct {
	Calls    int    `json:"calls"`
	OK       int    `json:"ok"`        // 200 answers
	Non200   int    `json:"non_200"`   // any other status
	Errors   int    `json:"errors"`    // requests that failed, token errors included
	FirstErr string `json:"first_err"` // the first failure, for the parent's message
	Stall    int64  `json:"stall_ns"`  // the longest the process went without CPU; see stallWatch
}

// childMain runs the child mode that the parent asked for in envChild and
// returns the exit code.
func childMain(mode string) int {
	switch mode {
	case "fleet":
		return childFleet()
	case "lockholder":
		return childLockHolder()
	case "herd":
		return childHerd()
	}
	fmt.Fprintf(os.Stderr, "unknown %s %q\n", envChild, mode)
	return 2
}

func childConfig() (*forteauth.Config, func()) {
	cfg := &forteauth.Config{
		ClientID:      os.Getenv(envClientID),
		ClientSecret:  os.Getenv(envSecret),
		TokenURL:      os.Getenv(envTokenURL),
		RefreshWindow: shortWindow,
		ExpiryMargin:  shortMargin,
		Logger:        slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	closeStore := func() {}
	if addr := os.Getenv(envRedis); addr != "" {
		rdb := redis.NewClient(&redis.Options{Addr: addr})
		cfg.Store = redisstore.New(rdb)
		closeStore = func() { rdb.Close() }
	}
	return cfg, closeStore
}

// childFleet is one process of a fleet: its workers call the API through
// cfg.Client until the duration has passed, then it reports on stdout.
func childFleet() int {
	cfg, closeStore := childConfig()
	defer closeStore()
	d, err := time.ParseDuration(os.Getenv(envDuration))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	workers, _ := strconv.Atoi(os.Getenv(envWorkers))
	api := os.Getenv(envAPIURL) + "/v3/payments"
	client := cfg.Client(context.Background())

	var mu sync.Mutex
	var rep childReport
	record := func(status int, err error) {
		mu.Lock()
		defer mu.Unlock()
		rep.Calls++
		switch {
		case err != nil:
			rep.Errors++
		case status == 200:
			rep.OK++
		default:
			rep.Non200++
			err = fmt.Errorf("API answered %d", status)
		}
		if err != nil && rep.FirstErr == "" {
			rep.FirstErr = err.Error()
		}
	}
	stalls := watchStalls()
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for range max(workers, 1) {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				resp, err := client.Get(api)
				if err != nil {
					record(0, err)
				} else {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					record(resp.StatusCode, nil)
				}
				time.Sleep(childPace)
			}
		})
	}
	wg.Wait()
	rep.Stall = int64(stalls.end())
	json.NewEncoder(os.Stdout).Encode(rep)
	return 0
}

// childLockHolder asks for a token, which takes the fleet's refresh lock
// in Redis; the parent holds the token request and kills this process.
func childLockHolder() int {
	cfg, closeStore := childConfig()
	defer closeStore()
	cfg.RefreshWindow, cfg.ExpiryMargin = 0, 0 // the defaults; tokens last an hour here
	if _, err := cfg.TokenSource(context.Background()).Token(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Fprintln(os.Stderr, "the token request was not held")
	return 1
}

// childCommand returns a command running this test binary in child mode.
func childCommand(mode string, srv *fortetest.Server, redisAddr string, extra ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(),
		envChild+"="+mode,
		envTokenURL+"="+srv.TokenURL,
		envAPIURL+"="+srv.URL,
		envClientID+"="+srv.ClientID,
		envSecret+"="+srv.ClientSecret,
		envRedis+"="+redisAddr,
	)
	cmd.Env = append(cmd.Env, extra...)
	return cmd
}

// processFleet is the outcome of runProcessFleet.
type processFleet struct {
	elapsed  time.Duration
	stall    time.Duration // the longest stall of the parent or a child; see stallWatch
	requests int           // token requests the fake server saw
	reports  []childReport
	stats    fortetest.Stats
}

// runProcessFleet runs n child processes against srv for d, sharing the
// Redis at redisAddr (none if empty), and waits for them all.
func runProcessFleet(t testing.TB, srv *fortetest.Server, redisAddr string, n, workers int, d time.Duration) processFleet {
	t.Helper()
	before := srv.Stats().TokenRequests
	type child struct {
		cmd            *exec.Cmd
		stdout, stderr bytes.Buffer
	}
	children := make([]*child, n)
	stalls := watchStalls()
	start := time.Now()
	for i := range children {
		c := &child{cmd: childCommand("fleet", srv, redisAddr, envDuration+"="+d.String(), envWorkers+"="+strconv.Itoa(workers))}
		c.cmd.Stdout, c.cmd.Stderr = &c.stdout, &c.stderr
		if err := c.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		children[i] = c
	}
	var out processFleet
	var failed []string
	for i, c := range children {
		err := c.cmd.Wait()
		var rep childReport
		if err == nil {
			err = json.Unmarshal(c.stdout.Bytes(), &rep)
		}
		if err != nil {
			failed = append(failed, fmt.Sprintf("child %d: %v\nstdout: %s\nstderr: %s", i, err, c.stdout.String(), c.stderr.String()))
			continue
		}
		if c.stderr.Len() > 0 {
			t.Logf("child %d logged:\n%s", i, c.stderr.String())
		}
		out.reports = append(out.reports, rep)
		out.stall = max(out.stall, time.Duration(rep.Stall))
	}
	out.elapsed = time.Since(start)
	out.stall = max(out.stall, stalls.end())
	if len(failed) > 0 {
		t.Fatalf("%d of %d children failed:\n%s", len(failed), n, failed)
	}
	out.stats = srv.Stats()
	out.requests = out.stats.TokenRequests - before
	return out
}
