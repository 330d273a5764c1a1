// Command wrap-existing-client shows how to add Forte tokens to an
// *http.Client you already have, keeping its transport (and so its proxy
// and TLS settings), its timeout, its redirect policy and its cookie jar.
// It runs offline against the fake Forte server.
//
//	go run ./examples/wrap-existing-client
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"sync"
	"time"

	"github.com/forteauth/forteauth"
	"github.com/forteauth/forteauth/fortetest"
)

func main() {
	if err := run(); err != nil {
		log.Fatal("wrap-existing-client: ", err)
	}
}

func run() error {
	srv := fortetest.NewServer()
	defer srv.Close()

	// The client your program already uses. Its transport logs each
	// request here, to show which requests go through it.
	logged := &loggingTransport{base: &http.Transport{
		Proxy:               http.ProxyFromEnvironment, // loopback is never proxied
		TLSHandshakeTimeout: 10 * time.Second,
	}}
	existing := &http.Client{Transport: logged, Timeout: 15 * time.Second}

	if err := viaHTTPClient(srv, existing); err != nil {
		return err
	}
	if err := wrapTransport(srv, existing); err != nil {
		return err
	}

	if st := srv.Stats(); st.TokenRequests != 2 || st.APIRejected != 0 {
		return fmt.Errorf("server saw %+v; want one token request per way and no rejected API request", st)
	}
	if n := logged.count(); n != 3 {
		return fmt.Errorf("existing's transport saw %d requests, want 3", n)
	}
	return nil
}

// viaHTTPClient is way 1: set Config.HTTPClient. Token requests and API
// requests both go through existing's transport; cfg.Client keeps its
// Timeout, CheckRedirect and Jar. Token requests never follow redirects.
func viaHTTPClient(srv *fortetest.Server, existing *http.Client) error {
	cfg := &forteauth.Config{
		ClientID:     srv.ClientID,
		ClientSecret: srv.ClientSecret,
		TokenURL:     srv.TokenURL,
		HTTPClient:   existing,
	}
	client := cfg.Client(context.Background())
	fmt.Println("way 1: Config.HTTPClient + cfg.Client")
	if err := get(client, srv.URL+"/v3/payments"); err != nil {
		return err
	}
	fmt.Printf("  timeout kept: %v\n", client.Timeout == existing.Timeout)
	return nil
}

// wrapTransport is way 2: wrap existing's transport yourself. API
// requests go through it; token requests use cfg.HTTPClient, here unset,
// so a client of their own with a 30 s timeout.
func wrapTransport(srv *fortetest.Server, existing *http.Client) error {
	cfg := &forteauth.Config{ClientID: srv.ClientID, ClientSecret: srv.ClientSecret, TokenURL: srv.TokenURL}
	client := &http.Client{
		Transport:     &forteauth.Transport{Source: cfg.TokenSource(context.Background()), Base: existing.Transport},
		Timeout:       existing.Timeout,
		CheckRedirect: existing.CheckRedirect,
		Jar:           existing.Jar,
	}
	fmt.Println("way 2: forteauth.Transport{Base: existing.Transport}")
	return get(client, srv.URL+"/v3/customers")
}

func get(c *http.Client, url string) error {
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errors.New("API answered " + resp.Status)
	}
	return nil
}

// loggingTransport stands in for whatever your client's transport does:
// it prints each request, without the token, and passes it on.
type loggingTransport struct {
	base http.RoundTripper
	mu   sync.Mutex
	n    int
}

func (t *loggingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	t.mu.Lock()
	t.n++
	t.mu.Unlock()
	auth := "no token"
	if req.Header.Get("Authorization") != "" {
		auth = "with the token"
	}
	fmt.Printf("  existing transport: %s %s (%s)\n", req.Method, req.URL.Path, auth)
	return t.base.RoundTrip(req)
}

func (t *loggingTransport) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.n
}
