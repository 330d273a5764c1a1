// Command oauth2client shows forteauth under golang.org/x/oauth2, offline
// against the fake Forte server: a *forteauth.TokenSource is an
// oauth2.TokenSource, so oauth2.NewClient takes it as it is.
//
//	go run ./examples/oauth2client
//
// Prefer cfg.Client (see examples/quickstart) where you can:
// oauth2.Transport sends the token to every host, redirects included, and
// does nothing about a 401. Use this when code you do not control wants an
// oauth2.TokenSource or builds its client with oauth2.NewClient.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"time"

	"github.com/forteauth/forteauth"
	"github.com/forteauth/forteauth/fortetest"
	"golang.org/x/oauth2"
)

func main() {
	if err := run(); err != nil {
		log.Fatal("oauth2client: ", err)
	}
}

func run() error {
	srv := fortetest.NewServer()
	defer srv.Close()

	cfg := &forteauth.Config{
		ClientID:     srv.ClientID,
		ClientSecret: srv.ClientSecret,
		TokenURL:     srv.TokenURL,
	}

	// oauth2.NewClient builds on the *http.Client stored in the context
	// under oauth2.HTTPClient, and on http.DefaultClient, which has no
	// timeout, if there is none. cfg.TokenSource uses the same client for
	// token requests, since cfg.HTTPClient is not set.
	base := &http.Client{Timeout: 30 * time.Second}
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, base)

	ts := cfg.TokenSource(ctx) // make one and share it
	client := oauth2.NewClient(ctx, ts)

	for i := range 3 {
		resp, err := client.Get(fmt.Sprintf("%s/v3/payments/%d", srv.URL, i))
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("API answered %s", resp.Status)
		}
		fmt.Printf("GET /v3/payments/%d: %s\n", i, resp.Status)
	}

	// The same source hands out the cached token to code that wants one.
	tok, err := ts.Token()
	if err != nil {
		return err
	}
	fmt.Printf("ts.Token(): type %s, valid %v\n", tok.Type(), tok.Valid())

	st := srv.Stats()
	fmt.Printf("token requests: %d\n", st.TokenRequests)
	if st.TokenRequests != 1 {
		return errors.New("want one token request shared by every call")
	}
	return nil
}
