package forteauth_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/forteauth/forteauth"
	"github.com/forteauth/forteauth/fortetest"
)

// Config.Client is all most programs need: one client, shared, that adds
// the token to requests for Forte's API host and refreshes it as needed.
func ExampleConfig_Client() {
	srv := fortetest.NewServer() // a fake Forte; against Forte, use forteauth.SandboxTokenURL
	defer srv.Close()

	cfg := &forteauth.Config{
		ClientID:     srv.ClientID,
		ClientSecret: srv.ClientSecret,
		TokenURL:     srv.TokenURL,
	}
	client := cfg.Client(context.Background()) // make one and share it

	for _, path := range []string{"/v3/payments", "/v3/customers"} {
		resp, err := client.Get(srv.URL + path)
		if err != nil {
			fmt.Println(err)
			return
		}
		resp.Body.Close()
		fmt.Println(path, resp.Status)
	}
	fmt.Println("token requests:", srv.Stats().TokenRequests)
	// Output:
	// /v3/payments 200 OK
	// /v3/customers 200 OK
	// token requests: 1
}

// A TokenSource hands out the cached token to code that wants the token
// itself; it is also an oauth2.TokenSource.
func ExampleConfig_TokenSource() {
	srv := fortetest.NewServer()
	defer srv.Close()
	cfg := &forteauth.Config{ClientID: srv.ClientID, ClientSecret: srv.ClientSecret, TokenURL: srv.TokenURL}

	// The context supplies values only: the source outlives it.
	ts := cfg.TokenSource(context.Background())

	tok, err := ts.Token()
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(tok.Type(), tok.Valid())

	// TokenContext waits for a fetch, if one is needed, no longer than ctx allows.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	again, err := ts.TokenContext(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("same token:", again.AccessToken == tok.AccessToken)
	fmt.Println("token requests:", srv.Stats().TokenRequests)
	// Output:
	// Bearer true
	// same token: true
	// token requests: 1
}

// Transport adds tokens to requests for the API's host only, so a client
// built on it can also call other hosts without leaking the token.
func ExampleTransport() {
	srv := fortetest.NewServer()
	defer srv.Close()
	seen := make(chan string, 1)
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Get("Authorization")
	}))
	defer other.Close()

	cfg := &forteauth.Config{ClientID: srv.ClientID, ClientSecret: srv.ClientSecret, TokenURL: srv.TokenURL}
	client := &http.Client{
		Transport: &forteauth.Transport{
			Source: cfg.TokenSource(context.Background()),
			Base:   http.DefaultTransport, // or your own transport
			// Hosts: []string{"api.example.com"}, if the API is not on TokenURL's host
		},
		Timeout: 30 * time.Second,
	}

	resp, err := client.Get(srv.URL + "/v3/payments")
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	fmt.Println("API:", resp.Status)

	resp, err = client.Get(other.URL)
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	fmt.Printf("other host got Authorization: %q\n", <-seen)
	// Output:
	// API: 200 OK
	// other host got Authorization: ""
}
