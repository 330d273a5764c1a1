package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/forteauth/forteauth"
	"golang.org/x/oauth2"
)

// The environment variables that hold the credentials.
const (
	clientIDEnv = "FORTE_CLIENT_ID"
	secretEnv   = "FORTE_CLIENT_SECRET"
)

// environmentURL returns the token URL of a -env value, or "".
func environmentURL(env string) string {
	switch env {
	case "sandbox":
		return forteauth.SandboxTokenURL
	case "production":
		return forteauth.ProductionTokenURL
	}
	return ""
}

// tokenOptions are the flags of the token command.
type tokenOptions struct {
	format, env, tokenURL, clientID, secretFile string
	timeout                                     time.Duration
}

func tokenFlags() (*flag.FlagSet, *tokenOptions) {
	o := &tokenOptions{}
	fs := flag.NewFlagSet("fortetoken", flag.ContinueOnError)
	fs.StringVar(&o.format, "format", "raw", "")
	fs.StringVar(&o.env, "env", "sandbox", "")
	fs.StringVar(&o.tokenURL, "token-url", "", "")
	fs.StringVar(&o.clientID, "client-id", "", "")
	fs.StringVar(&o.secretFile, "client-secret-file", "", "")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "")
	return fs, o
}

// runToken fetches one token as args say and prints it to stdout.
func runToken(args []string, getenv func(string) string, stdout io.Writer) error {
	cfg, o, err := tokenConfig(args, getenv, stdout)
	if cfg == nil || err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	tok, err := cfg.Token(ctx)
	if err != nil {
		return &fetchError{err, cfg.ClientSecret}
	}
	if err := printToken(stdout, tok, o.format); err != nil {
		return fmt.Errorf("writing the token to stdout: %w", err)
	}
	return nil
}

// tokenConfig parses args into a Config. A nil Config with a nil error
// means that -h was answered.
func tokenConfig(args []string, getenv func(string) string, stdout io.Writer) (*forteauth.Config, *tokenOptions, error) {
	if err := refuseSecretFlag(args); err != nil {
		return nil, nil, err
	}
	fs, o := tokenFlags()
	if help, err := parse(fs, args); help || err != nil {
		if help {
			_, err = io.WriteString(stdout, tokenUsage)
		}
		return nil, nil, err
	}
	switch {
	case fs.NArg() > 0 && fs.Arg(0) == "fake":
		return nil, nil, usagef("fake must come first: fortetoken fake [flags]")
	case fs.NArg() > 0:
		// Not quoted: a misplaced argument may be a secret.
		return nil, nil, usagef("unexpected argument after the flags; fortetoken takes flags only")
	case o.format != "raw" && o.format != "header" && o.format != "json":
		return nil, nil, usagef("-format must be raw, header or json")
	case o.timeout <= 0:
		return nil, nil, usagef("-timeout must be positive")
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	cfg := &forteauth.Config{ClientID: o.clientID, TokenURL: o.tokenURL}
	switch {
	case set["env"] && set["token-url"]:
		return nil, nil, usagef("give -env or -token-url, not both")
	case !set["token-url"]:
		if cfg.TokenURL = environmentURL(o.env); cfg.TokenURL == "" {
			return nil, nil, usagef("-env must be sandbox or production")
		}
	case o.tokenURL == "":
		return nil, nil, usagef("-token-url is empty")
	}
	if cfg.ClientID == "" {
		cfg.ClientID = getenv(clientIDEnv)
	}
	if cfg.ClientID == "" {
		return nil, nil, usagef("no client ID: set %s or pass -client-id", clientIDEnv)
	}
	secret, err := readSecret(o.secretFile, getenv)
	if err != nil {
		return nil, nil, err
	}
	cfg.ClientSecret = secret
	return cfg, o, nil
}

// refuseSecretFlag rejects a secret given on the command line, before
// the flag package can quote it in an error.
func refuseSecretFlag(args []string) error {
	for _, a := range args {
		if a == "--" {
			return nil
		}
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if strings.HasPrefix(a, "-") && (name == "client-secret" || name == "client_secret" || name == "secret") {
			return usagef("there is no -%s flag, since other users can see command lines; set %s or use -client-secret-file PATH", name, secretEnv)
		}
	}
	return nil
}

// readSecret returns the secret from the file named by -client-secret-file,
// if given, else from the environment.
func readSecret(path string, getenv func(string) string) (string, error) {
	if path == "" {
		if s := getenv(secretEnv); s != "" {
			return s, nil
		}
		return "", usagef("no client secret: set %s or use -client-secret-file PATH", secretEnv)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", usagef("-client-secret-file: %v", err)
	}
	// Editors and echo end a file with a newline that is not part of the secret.
	s := strings.TrimSuffix(string(b), "\n")
	s = strings.TrimSuffix(s, "\r")
	if s == "" {
		return "", usagef("-client-secret-file %s holds no secret", path)
	}
	return s, nil
}

// printToken writes tok to w in format.
func printToken(w io.Writer, tok *oauth2.Token, format string) error {
	var err error
	switch format {
	case "raw":
		_, err = fmt.Fprintln(w, tok.AccessToken)
	case "header":
		_, err = fmt.Fprintln(w, tok.Type()+" "+tok.AccessToken)
	case "json":
		// The field names are oauth2.Token's, so the output decodes into one.
		err = json.NewEncoder(w).Encode(struct {
			AccessToken string `json:"access_token"`
			TokenType   string `json:"token_type"`
			ExpiresIn   int64  `json:"expires_in"`
			Expiry      string `json:"expiry"`
		}{tok.AccessToken, tok.Type(), tok.ExpiresIn, tok.Expiry.UTC().Format(time.RFC3339)})
	}
	return err
}
