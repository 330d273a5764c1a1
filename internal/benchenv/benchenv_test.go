package benchenv

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/forteauth/forteauth"
	"github.com/forteauth/forteauth/fortetest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestAnchorFetchesOnceThenReuses(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	a := Anchor(Config(srv.URL, srv.ClientID, srv.ClientSecret), 0)
	first, err := a.Token()
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		tok, err := a.Token()
		if err != nil || tok != first {
			t.Fatalf("call after the first: %v, same pointer %v; want the cached token", err, tok == first)
		}
	}
	if n := srv.Stats().TokenRequests; n != 1 {
		t.Fatalf("token requests = %d, want 1", n)
	}
}

func TestAnchorWithShortTokensAndScaledExpiryReuses(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	srv.SetLifetime(time.Second)
	cfg := Config(srv.URL, srv.ClientID, srv.ClientSecret)
	// With the default 10 s early expiry a 1 s token is expired on arrival.
	unscaled := Anchor(cfg, 0)
	unscaled.Token()
	unscaled.Token()
	if n := srv.Stats().TokenRequests; n != 2 {
		t.Fatalf("default early expiry: token requests = %d, want 2 (a fetch per call)", n)
	}
	scaled := Anchor(cfg, ScaledEarlyExpiry(time.Second))
	scaled.Token()
	scaled.Token()
	if n := srv.Stats().TokenRequests; n != 3 {
		t.Fatalf("scaled early expiry: token requests = %d, want 3 (one more fetch, then reuse)", n)
	}
}

func TestScaledEarlyExpiry(t *testing.T) {
	for _, c := range []struct{ life, want time.Duration }{
		{time.Hour, 10 * time.Second},
		{time.Second, 10 * time.Second / 3600},
		{0, time.Nanosecond},
	} {
		if got := ScaledEarlyExpiry(c.life); got != c.want {
			t.Errorf("ScaledEarlyExpiry(%v) = %v, want %v", c.life, got, c.want)
		}
	}
}

func TestRerouteKeepsThePathAndLeavesTheRequestAlone(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	cfg := Config(srv.URL, srv.ClientID, srv.ClientSecret)
	if cfg.TokenURL != forteauth.ProductionTokenURL {
		t.Fatalf("TokenURL = %q, want the production URL", cfg.TokenURL)
	}
	if _, err := cfg.Token(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := srv.Stats().TokensIssued; n != 1 {
		t.Fatalf("tokens issued = %d, want 1", n)
	}
	req, _ := http.NewRequest(http.MethodGet, APIURL, nil)
	resp, err := Reroute(srv.URL, http.DefaultTransport).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || req.URL.Host != "api.prod.lemmax.com" {
		t.Fatalf("status %d, request host %q; want the fake API's 401 and the caller's URL untouched", resp.StatusCode, req.URL.Host)
	}
}

func TestNoopAnswersWithItsPreallocatedResponse(t *testing.T) {
	n := NewNoop()
	req, _ := http.NewRequest(http.MethodGet, APIURL, nil)
	a, err1 := n.RoundTrip(req)
	b, err2 := n.RoundTrip(req)
	if err1 != nil || err2 != nil || a != b || a.StatusCode != http.StatusOK {
		t.Fatalf("got %v %v, %v %v; want the same 200 twice", a, err1, b, err2)
	}
}

func TestAnyClientServerIssuesToAnyClient(t *testing.T) {
	srv := NewAnyClientServer()
	defer srv.Close()
	seen := map[string]bool{}
	for _, id := range []string{"a", "b"} {
		tok, err := Config(srv.URL, id, "secret-"+id).Token(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if seen[tok.AccessToken] || tok.ExpiresIn != 3600 {
			t.Fatalf("client %s: repeated token or expires_in %d", id, tok.ExpiresIn)
		}
		seen[tok.AccessToken] = true
	}
}
