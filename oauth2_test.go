package forteauth_test

import (
	"context"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/forteauth/forteauth"
	"github.com/forteauth/forteauth/fortetest"
	"golang.org/x/oauth2"
)

func newConfig(srv *fortetest.Server) *forteauth.Config {
	return &forteauth.Config{ClientID: srv.ClientID, ClientSecret: srv.ClientSecret, TokenURL: srv.TokenURL}
}

func mustGet(t *testing.T, c *http.Client, url string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
}

func TestTokenSourceUnderOAuth2Wrappers(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	ctx := context.Background()
	ts := newConfig(srv).TokenSource(ctx)
	var _ oauth2.TokenSource = ts

	mustGet(t, oauth2.NewClient(ctx, ts), srv.URL+"/v3/new-client")
	mustGet(t, &http.Client{Transport: &oauth2.Transport{Source: ts}}, srv.URL+"/v3/oauth2-transport")
	tok, err := oauth2.ReuseTokenSource(nil, ts).Token()
	if err != nil || !tok.Valid() {
		t.Fatalf("ReuseTokenSource: %v, valid %v", err, tok.Valid())
	}
	if n := srv.Stats().TokenRequests; n != 1 {
		t.Fatalf("token requests = %d, want 1 shared by all wrappers", n)
	}
}

func TestTransportWithAStaticTokenSource(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	tok, err := newConfig(srv).Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Transport: &forteauth.Transport{Source: oauth2.StaticTokenSource(tok)}}
	mustGet(t, c, srv.URL+"/v3/static")
}

// TestTwoOAuth2ClientsOverOneSourceAreRaceFree runs two oauth2.NewClient
// wrappers, each of which writes into the tokens it receives, over one
// source while 2 s tokens expire. The race detector checks the writes;
// the fake API checks that no request carried an expired token.
func TestTwoOAuth2ClientsOverOneSourceAreRaceFree(t *testing.T) {
	t.Parallel()
	srv := fortetest.NewServer()
	defer srv.Close()
	srv.SetLifetime(2 * time.Second)
	ctx := context.Background()
	ts := newConfig(srv).TokenSource(ctx)
	clients := []*http.Client{oauth2.NewClient(ctx, ts), oauth2.NewClient(ctx, ts)}

	stop := time.Now().Add(3 * time.Second)
	var wg sync.WaitGroup
	for i := range 8 {
		c := clients[i%2]
		wg.Go(func() {
			for time.Now().Before(stop) {
				resp, err := c.Get(srv.URL + "/v3/x")
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	st := srv.Stats()
	if st.APIRejected != 0 || st.APIExpired != 0 {
		t.Fatalf("%d of %d API requests rejected (%d with an expired token)", st.APIRejected, st.APIRequests, st.APIExpired)
	}
	if st.TokenRequests < 2 {
		t.Fatalf("token requests = %d over 1.5 lifetimes: tokens were not refreshed", st.TokenRequests)
	}
}

func TestContextHTTPClientIsUsedForTokenRequests(t *testing.T) {
	srv := fortetest.NewTLSServer() // only srv.Client() trusts its certificate
	defer srv.Close()
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, srv.Client())
	if _, err := newConfig(srv).TokenSource(ctx).Token(); err != nil {
		t.Fatalf("token request did not use the context's client: %v", err)
	}
	if _, err := newConfig(srv).TokenSource(context.Background()).Token(); err == nil {
		t.Fatal("without the context's client the untrusted certificate should fail")
	}
}
