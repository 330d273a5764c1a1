// Command sdk uses the tiny SDK in package forteapi in the three ways its
// users can authenticate it, offline against the fake Forte server.
//
//	go run ./examples/sdk
//
// Read forteapi's source for the SDK author's side, and the forteauth
// package documentation's "In an SDK".
package main

import (
	"context"
	"fmt"
	"log"
	"net/http"

	"github.com/forteauth/forteauth"
	"github.com/forteauth/forteauth/examples/sdk/forteapi"
	"github.com/forteauth/forteauth/fortetest"
)

func main() {
	if err := run(); err != nil {
		log.Fatal("sdk: ", err)
	}
}

// resource is what the fake API answers: the path it was asked for.
type resource struct {
	Path string `json:"path"`
}

func run() error {
	srv := fortetest.NewServer()
	defer srv.Close()
	ctx := context.Background()
	cfg := &forteauth.Config{ClientID: srv.ClientID, ClientSecret: srv.ClientSecret, TokenURL: srv.TokenURL}
	if err := sharedClient(ctx, srv, cfg); err != nil {
		return err
	}
	if err := sharedTokenSource(ctx, srv, cfg); err != nil {
		return err
	}
	return fromConfig(ctx, srv, cfg)
}

// sharedClient is way 1: a user with an authenticating client of their
// own shares it, and its token, between the SDK and their direct calls.
func sharedClient(ctx context.Context, srv *fortetest.Server, cfg *forteauth.Config) error {
	hc := cfg.Client(ctx)
	api, err := forteapi.New(srv.URL, hc)
	if err != nil {
		return err
	}
	if err := show(ctx, "1. New(url, cfg.Client(ctx))", api, "/v3/payments/1"); err != nil {
		return err
	}
	resp, err := hc.Get(srv.URL + "/v3/direct-call")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("direct call: %s", resp.Status)
	}
	fmt.Printf("   direct call through the same client: %s\n", resp.Status)
	return want(srv, 1)
}

// sharedTokenSource is way 2: a user shares one TokenSource between two
// SDK clients (say, for two API versions), and one token serves both.
func sharedTokenSource(ctx context.Context, srv *fortetest.Server, cfg *forteauth.Config) error {
	ts := cfg.TokenSource(ctx)
	v1, err := forteapi.NewFromTokenSource(srv.URL, ts)
	if err != nil {
		return err
	}
	v2, err := forteapi.NewFromTokenSource(srv.URL, ts)
	if err != nil {
		return err
	}
	if err := show(ctx, "2. NewFromTokenSource(url, ts), client A", v1, "/v3/payments/2"); err != nil {
		return err
	}
	if err := show(ctx, "2. NewFromTokenSource(url, ts), client B", v2, "/v3/payments/3"); err != nil {
		return err
	}
	return want(srv, 2)
}

// fromConfig is way 3: a user with nothing but credentials hands the SDK
// a Config.
func fromConfig(ctx context.Context, srv *fortetest.Server, cfg *forteauth.Config) error {
	api, err := forteapi.NewFromConfig(ctx, srv.URL, cfg)
	if err != nil {
		return err
	}
	if err := show(ctx, "3. NewFromConfig(ctx, url, cfg)", api, "/v3/payments/4"); err != nil {
		return err
	}
	return want(srv, 3)
}

func show(ctx context.Context, what string, api *forteapi.Client, path string) error {
	var r resource
	if err := api.Get(ctx, path, &r); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	fmt.Printf("%s: GET %s\n", what, r.Path)
	return nil
}

// want checks that the server has issued tokens tokens so far, one per
// way of authenticating, and rejected no API request.
func want(srv *fortetest.Server, tokens int) error {
	st := srv.Stats()
	fmt.Printf("   token requests so far: %d\n", st.TokenRequests)
	if st.TokenRequests != tokens || st.APIRejected != 0 {
		return fmt.Errorf("server saw %+v; want %d token requests and nothing rejected", st, tokens)
	}
	return nil
}
