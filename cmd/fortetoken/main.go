// Command fortetoken prints a Forte access token, for curl and scripts, and
// runs a fake Forte token endpoint and API for local testing.
//
//	go install github.com/forteauth/forteauth/cmd/fortetoken@latest
//
//	export FORTE_CLIENT_ID=... FORTE_CLIENT_SECRET=...
//	curl -H "Authorization: $(fortetoken -format header)" https://sandbox-api.sandbox.lemmax.com/...
//
//	eval "$(fortetoken fake &)"   # a fake server on loopback, and its URL and credentials
//	fortetoken -token-url "$FORTE_TOKEN_URL"
//	kill "$FORTE_FAKE_PID"
//
// The client secret is read only from FORTE_CLIENT_SECRET or from the file
// named by -client-secret-file, never from a flag: other users of a machine
// can see command lines. Run fortetoken -h for the flags and exit codes.
package main

import (
	"fmt"
	"io"
	"os"
	"strings"
)

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// run runs the command line args and returns the exit code. Errors go to
// stderr as one line; stdout carries only what the user asked for.
func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	var err error
	switch {
	case len(args) > 0 && args[0] == "fake":
		err = runFake(args[1:], stdout)
	case len(args) > 0 && args[0] == "help":
		_, err = io.WriteString(stdout, tokenUsage)
	default:
		err = runToken(args, getenv, stdout)
	}
	if err != nil {
		// The library never puts the secret in an error, and neither does
		// this command; redacting the environment's secret here as well
		// keeps it so if either ever slips.
		fmt.Fprintf(stderr, "fortetoken: %s\n", oneLine(redact(err.Error(), getenv(secretEnv))))
	}
	return exitCode(err)
}

// oneLine makes msg fit on one line of stderr, and drops the library's
// prefix, which "fortetoken: " replaces.
func oneLine(msg string) string {
	msg = strings.TrimPrefix(msg, "forteauth: ")
	return strings.Join(strings.Fields(msg), " ")
}

// redact replaces every occurrence of secret in msg.
func redact(msg, secret string) string {
	if secret == "" {
		return msg
	}
	return strings.ReplaceAll(msg, secret, "[REDACTED]")
}
