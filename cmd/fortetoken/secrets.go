package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/forteauth/forteauth/fortetest"
)

// acceptSecretsFile makes srv accept, with its client ID, the secrets the
// file at path lists, one a line (two during a rotation's overlap), and
// revokes the tokens of those it no longer lists, as Forte does when a
// secret is retired. It returns the first secret listed.
func acceptSecretsFile(srv *fortetest.Server, path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	var creds []fortetest.Credentials
	for line := range strings.Lines(string(b)) {
		if s := strings.TrimSpace(line); s != "" {
			creds = append(creds, fortetest.Credentials{ClientID: srv.ClientID, ClientSecret: s})
		}
	}
	if len(creds) == 0 {
		return "", fmt.Errorf("%s lists no secret", path)
	}
	srv.AcceptCredentials(creds...)
	srv.RevokeUnaccepted()
	return creds[0].ClientSecret, nil
}

// reloadOnHangup calls acceptSecretsFile at each signal on hup until ctx
// ends. A file that cannot be used leaves the secrets as they were.
func reloadOnHangup(ctx context.Context, hup <-chan os.Signal, srv *fortetest.Server, path string, stderr io.Writer) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			if _, err := acceptSecretsFile(srv, path); err != nil {
				fmt.Fprintf(stderr, "fortetoken fake: %v; the secrets accepted are unchanged\n", err)
			}
		}
	}
}
