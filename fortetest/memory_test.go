package fortetest

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	// Not a cycle: forteauth's own tests import fortetest, but the
	// package itself does not.
	"github.com/forteauth/forteauth"
)

func TestMemoryServerSpeaksTheContract(t *testing.T) {
	s := NewMemoryServer()
	defer s.Close()
	if s.URL != "https://fortetest.invalid" || s.TokenURL != s.URL+TokenPath || s.Listener != nil {
		t.Fatalf("URL %q, TokenURL %q, Listener %v", s.URL, s.TokenURL, s.Listener)
	}
	resp, body := post(t, s.Client(), s.TokenURL, "application/json", credentials(s))
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("Content-Type") != "application/json" ||
		!strings.Contains(body, `"token_type":"Bearer"`) || !strings.Contains(body, `"expires_in":3600`) {
		t.Fatalf("status %d, Content-Type %q, body %s; want 201 with a Bearer token for 3600s",
			resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	if resp.Request == nil || resp.Request.URL.String() != s.TokenURL || resp.TLS == nil {
		t.Fatalf("response Request %v, TLS %v; want the request sent, over https", resp.Request, resp.TLS)
	}
	if h := s.LastTokenRequestHeader(); h.Get("Content-Type") != "application/json" {
		t.Fatalf("LastTokenRequestHeader = %v", h)
	}
	tok := issue(t, s)
	if code := call(t, s, tok); code != http.StatusOK {
		t.Fatalf("issued token: %d", code)
	}
	if code := call(t, s, "made-up"); code != http.StatusUnauthorized {
		t.Fatalf("unknown token: %d", code)
	}
	s.Revoke(tok)
	if code := call(t, s, tok); code != http.StatusUnauthorized {
		t.Fatalf("revoked token: %d", code)
	}
	want := Stats{TokenRequests: 2, TokensIssued: 2, APIRequests: 3, APIRejected: 2}
	if st := s.Stats(); st != want {
		t.Fatalf("stats %+v, want %+v", st, want)
	}
}

func TestMemoryServerHandlerSeesAServerRequest(t *testing.T) {
	type key struct{}
	ctx := context.WithValue(context.Background(), key{}, "caller's")
	req, _ := http.NewRequestWithContext(ctx, "GET", "https://fortetest.invalid/v3/payments?page=2", nil)
	r := serverRequest(req)
	if r.RequestURI != "/v3/payments?page=2" || r.Host != "fortetest.invalid" || r.RemoteAddr == "" {
		t.Errorf("RequestURI %q, Host %q, RemoteAddr %q", r.RequestURI, r.Host, r.RemoteAddr)
	}
	if r.URL.Scheme != "" || r.URL.Host != "" || r.URL.Path != "/v3/payments" || r.URL.RawQuery != "page=2" {
		t.Errorf("URL %#v, want only the path and query, as a server parses them", r.URL)
	}
	if r.TLS == nil || r.Body == nil || r.Proto != "HTTP/1.1" {
		t.Errorf("TLS %v, Body %v, Proto %q", r.TLS, r.Body, r.Proto)
	}
	if r.Context().Value(key{}) != "caller's" {
		t.Error("the handler does not see the caller's context")
	}
}

func TestMemoryServerRunsOnTheBubblesClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := NewMemoryServer()
		defer s.Close()
		// Longer than forteauth allows one attempt (10 s) would fail.
		const latency = 5 * time.Second
		s.SetLatency(latency)
		cfg := forteauth.Config{ClientID: s.ClientID, ClientSecret: s.ClientSecret, TokenURL: s.TokenURL, HTTPClient: s.Client()}
		start := time.Now()
		tok, err := cfg.Token(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d != latency {
			t.Fatalf("the fetch took %v of the bubble's time, want the latency %v", d, latency)
		}

		s.SetLatency(10 * time.Minute)
		start = time.Now()
		timedToken(t, s)
		if d := time.Since(start); d != 10*time.Minute {
			t.Fatalf("a request took %v of the bubble's time, want the 10m latency", d)
		}

		// The token expires on the bubble's clock too: the server counts its
		// lifetime from the answer, which came latency after the request.
		time.Sleep(time.Until(tok.Expiry) + latency - time.Nanosecond)
		if code := call(t, s, tok.AccessToken); code != http.StatusOK {
			t.Fatalf("token a nanosecond before its expiry: %d", code)
		}
		time.Sleep(time.Nanosecond)
		if code := call(t, s, tok.AccessToken); code != http.StatusUnauthorized || s.Stats().APIExpired != 1 {
			t.Fatalf("token at its expiry: %d, stats %+v; want 401 counted as expired", code, s.Stats())
		}
	})
}

func TestMemoryServerHoldsUntilReleasedOnTheBubblesClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := NewMemoryServer()
		defer s.Close()
		release := s.Hold()
		go func() {
			time.Sleep(time.Hour)
			release()
		}()
		start := time.Now()
		if d := timedToken(t, s); d != time.Hour {
			t.Fatalf("a held request took %v, want the hour until release", d)
		}
		if time.Since(start) != time.Hour {
			t.Fatalf("answered after %v, want the hour until release", time.Since(start))
		}
	})
}

func TestMemoryServerHoldEndsWhenTheCallerGivesUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := NewMemoryServer()
		defer s.Close()
		release := s.Hold()
		defer release()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "POST", s.TokenURL, strings.NewReader(credentials(s)))
		req.Header.Set("Content-Type", "application/json")
		start := time.Now()
		if _, err := s.Client().Do(req); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want the caller's deadline", err)
		}
		if d := time.Since(start); d != time.Minute {
			t.Fatalf("gave up after %v, want the 1m deadline", d)
		}
		if st := s.Stats(); st.TokenRequests != 1 || st.TokensIssued != 0 {
			t.Fatalf("stats %+v, want one request and no token", st)
		}
	})
}

func TestMemoryServerFailures(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := NewMemoryServer()
		defer s.Close()
		s.FailNext(
			Failure{Status: http.StatusServiceUnavailable, RetryAfter: "7", Delay: time.Minute},
			Failure{Status: 200, Body: "<html>bad gateway</html>", ContentType: "text/html"},
		)
		start := time.Now()
		resp, body := post(t, s.Client(), s.TokenURL, "application/json", credentials(s))
		if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "7" || !strings.Contains(body, `"status":503`) {
			t.Fatalf("first: %d %q %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
		}
		if d := time.Since(start); d != time.Minute {
			t.Fatalf("first answered after %v, want its 1m Delay", d)
		}
		resp, body = post(t, s.Client(), s.TokenURL, "application/json", credentials(s))
		if resp.StatusCode != 200 || body != "<html>bad gateway</html>" || resp.Header.Get("Content-Type") != "text/html" {
			t.Fatalf("second: %d %q %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
		s.SetFailureRate(1, Failure{Status: 500})
		if resp, _ := post(t, s.Client(), s.TokenURL, "application/json", credentials(s)); resp.StatusCode != 500 {
			t.Fatalf("failure rate 1: %d", resp.StatusCode)
		}
	})
}

func TestMemoryServerHangup(t *testing.T) {
	s := NewMemoryServer()
	defer s.Close()
	const body = `{"data":{"access_token":"abcdefgh"}}`
	s.FailNext(Failure{Hangup: true}, Failure{Hangup: true, Body: body})
	if _, err := s.Client().Post(s.TokenURL, "application/json", strings.NewReader(credentials(s))); err == nil {
		t.Fatal("hangup before the answer: want an error from Post")
	}
	resp, err := s.Client().Post(s.TokenURL, "application/json", strings.NewReader(credentials(s)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if !errors.Is(err, io.ErrUnexpectedEOF) || string(b) != body[:len(body)/2] {
		t.Fatalf("hangup mid-body: read %q, error %v; want half the body, then unexpected EOF", b, err)
	}
	if st := s.Stats(); st.TokenRequests != 2 || st.TokensIssued != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestMemoryServerResponseBodiesActAsTheNetworks(t *testing.T) {
	s := NewMemoryServer()
	defer s.Close()
	resp, err := s.Client().Head(s.URL + "/v3/anything")
	if err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(resp.Body); err != nil || len(b) != 0 || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("HEAD: status %d, body %q, error %v; want 401 with no body", resp.StatusCode, b, err)
	}
	resp.Body.Close()
	if _, err := resp.Body.Read(make([]byte, 1)); err == nil {
		t.Fatal("read after Close succeeded")
	}
}

func TestMemoryServerRefusesOtherURLsAndRequestsAfterClose(t *testing.T) {
	s := NewMemoryServer()
	for _, u := range []string{"https://example.com" + TokenPath, "http://fortetest.invalid" + TokenPath} {
		_, err := s.Client().Post(u, "application/json", strings.NewReader(credentials(s)))
		if err == nil || !strings.Contains(err.Error(), "fortetest: ") || !strings.Contains(err.Error(), s.URL) {
			t.Errorf("request for %s: err = %v, want one naming %s", u, err, s.URL)
		}
	}
	if _, err := s.Client().Get("https://FORTETEST.invalid:443/v3/anything"); err != nil {
		t.Errorf("request for the server's URL spelt otherwise: %v", err)
	}
	s.Close()
	s.Close() // a second Close is harmless
	_, err := s.Client().Post(s.TokenURL, "application/json", strings.NewReader(credentials(s)))
	if err == nil || !strings.Contains(err.Error(), "closed") || !strings.Contains(err.Error(), s.URL) {
		t.Fatalf("request after Close: err = %v, want one saying %s is closed", err, s.URL)
	}
	if st := s.Stats(); st.TokenRequests != 0 {
		t.Fatalf("stats %+v: refused requests reached the handler", st)
	}
}

func TestMemoryServerCannotBeStartedAgain(t *testing.T) {
	s := NewMemoryServer()
	defer s.Close()
	defer func() {
		if recover() == nil {
			t.Fatal("Start on a memory server did not panic")
		}
	}()
	s.Start()
}
