package forteauth

// Faults and bad input seen from a TokenSource: for each fault, what a
// caller gets, how many requests the endpoint sees, and that nothing is
// cached that should not be. What the fetch-level tests in
// exchange_test.go already cover is not repeated here.

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/forteauth/forteauth/fortetest"
	"golang.org/x/oauth2"
)

// hangingAttempt is the per-attempt timeout for rows whose endpoint
// never answers: 200 ms instead of 10 s, so that they are quick to test.
// Rows whose endpoint does answer keep the default, so that a loaded
// machine cannot turn their answer into a timeout.
const hangingAttempt = 200 * time.Millisecond

// mustFail calls ts.Token, which must fail with match(err) true, and
// checks the error's form and that nothing was cached.
func mustFail(t *testing.T, ts *TokenSource, match func(error) bool, secrets ...string) error {
	t.Helper()
	tok, err := ts.Token()
	if err == nil {
		t.Fatalf("Token succeeded (token of %d bytes), want an error", len(tok.AccessToken))
	}
	msg := err.Error()
	assertAbsent(t, "error", msg, append(secrets, testSecret)...)
	if !match(err) {
		t.Errorf("error is not of the kind this fault should produce: %s", hide(msg, secrets...))
	}
	if !strings.HasPrefix(msg, "forteauth: ") {
		t.Errorf("error %q does not start with \"forteauth: \"", hide(msg, secrets...))
	}
	if e := ts.cache.Load(); e != nil {
		t.Errorf("a token (%s) was cached after a failed fetch", redact(e.tok.AccessToken))
	}
	return err
}

// assertCoolsDown checks that a second call, during the cool-down that a
// failed fetch starts, gets the same failure without another request.
func assertCoolsDown(t *testing.T, ts *TokenSource, first error, requests func() int) {
	t.Helper()
	before := requests()
	_, err := ts.Token()
	if err == nil || !errors.Is(err, errors.Unwrap(first)) {
		t.Errorf("during the cool-down got %v, want the first failure again", err)
	}
	if n := requests() - before; n != 0 {
		t.Errorf("a call during the cool-down sent %d requests, want 0", n)
	}
	if ts.cache.Load() != nil {
		t.Error("a token was cached during the cool-down")
	}
}

func isErr(target error) func(error) bool {
	return func(err error) bool { return errors.Is(err, target) }
}

func asErr[T error]() func(error) bool {
	return func(err error) bool { var e T; return errors.As(err, &e) }
}

func isStatus(code int) func(error) bool {
	return func(err error) bool {
		var re *oauth2.RetrieveError
		return errors.As(err, &re) && re.Response.StatusCode == code
	}
}

// TestNetworkFaultsReachCallerUncached covers the transport rows: each
// fault on every attempt, so that the fetch gives up.
func TestNetworkFaultsReachCallerUncached(t *testing.T) {
	const attempts = 4 // defaultRetry.attempts
	t.Run("connection refused", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		sent := &countingTransport{}
		src := newTestSource(t, withTokenURL("http://"+addr+fortetest.TokenPath), withHTTPClient(&http.Client{Transport: sent}))
		ts, rec := src.ts, src.sleeps
		err = mustFail(t, ts, isErr(syscall.ECONNREFUSED))
		if n := sent.n.Load(); n != attempts || len(rec.recorded()) != attempts-1 {
			t.Errorf("sent %d requests with waits %v, want %d attempts", n, rec.recorded(), attempts)
		}
		assertCoolsDown(t, ts, err, func() int { return int(sent.n.Load()) })
	})
	t.Run("reset mid-body", func(t *testing.T) {
		srv := newForteServer(t)
		srv.SetFailureRate(1, fortetest.Failure{Hangup: true, Body: tokenBody(testAccessToken, "Bearer", 3600)})
		ts := newTestSource(t, withTokenURL(srv.TokenURL)).ts
		err := mustFail(t, ts, isErr(io.ErrUnexpectedEOF), testAccessToken)
		if n := srv.Stats().TokenRequests; n != attempts {
			t.Errorf("endpoint saw %d requests, want %d", n, attempts)
		}
		assertCoolsDown(t, ts, err, func() int { return srv.Stats().TokenRequests })
	})
	t.Run("slow headers past the per-attempt timeout", func(t *testing.T) {
		stub := newSlowStub(t, 1<<30, time.Hour)
		ts := newTestSource(t, withTokenURL(stub.URL+fortetest.TokenPath)).ts
		ts.endpoint.retry.perAttempt = hangingAttempt
		err := mustFail(t, ts, isErr(context.DeadlineExceeded))
		if n := stub.requests.Load(); n != attempts {
			t.Errorf("endpoint saw %d requests, want %d", n, attempts)
		}
		assertCoolsDown(t, ts, err, func() int { return int(stub.requests.Load()) })
	})
	t.Run("slow body past the per-attempt timeout", func(t *testing.T) {
		stub := newStub(t, func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			body := tokenBody(testAccessToken, "Bearer", 3600)
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Length", "500")
			w.WriteHeader(http.StatusCreated)
			io.WriteString(w, body[:len(body)/2])
			w.(http.Flusher).Flush()
			<-r.Context().Done() // the rest never comes
		})
		ts := newTestSource(t, withTokenURL(stub.URL+fortetest.TokenPath)).ts
		ts.endpoint.retry.perAttempt = hangingAttempt
		err := mustFail(t, ts, isErr(context.DeadlineExceeded), testAccessToken)
		if n := stub.requests.Load(); n != attempts {
			t.Errorf("endpoint saw %d requests, want %d", n, attempts)
		}
		assertCoolsDown(t, ts, err, func() int { return int(stub.requests.Load()) })
	})
	t.Run("untrusted certificate", func(t *testing.T) {
		srv := fortetest.NewTLSServer()
		t.Cleanup(srv.Close)
		sent := &countingTransport{base: &http.Transport{}} // trusts the system roots only
		src := newTestSource(t, withTokenURL(srv.TokenURL), withHTTPClient(&http.Client{Transport: sent}))
		ts, rec := src.ts, src.sleeps
		err := mustFail(t, ts, asErr[*tls.CertificateVerificationError]())
		if n, handled := sent.n.Load(), srv.Stats().TokenRequests; n != 1 || handled != 0 || len(rec.recorded()) != 0 {
			t.Errorf("sent %d, endpoint handled %d, waits %v; want 1 attempt, none handled, no retry", n, handled, rec.recorded())
		}
		assertCoolsDown(t, ts, err, func() int { return int(sent.n.Load()) })
	})
	// DNS answers are made deterministic by a dialer that fails as a
	// resolver would.
	dnsFailing := func(dnsErr *net.DNSError, dials *atomic.Int32) *http.Client {
		return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials.Add(1)
			return nil, &net.OpError{Op: "dial", Net: network, Err: dnsErr}
		}}}
	}
	t.Run("DNS name not found", func(t *testing.T) {
		var dials atomic.Int32
		hc := dnsFailing(&net.DNSError{Err: "no such host", Name: "api.prod.lemmax.com", IsNotFound: true}, &dials)
		src := newTestSource(t, withTokenURL(ProductionTokenURL), withHTTPClient(hc))
		ts, rec := src.ts, src.sleeps
		err := mustFail(t, ts, asErr[*net.DNSError]())
		if n := dials.Load(); n != 1 || len(rec.recorded()) != 0 {
			t.Errorf("dialled %d times with waits %v; want 1 and no retry: the name will not appear in a second", n, rec.recorded())
		}
		assertCoolsDown(t, ts, err, func() int { return int(dials.Load()) })
	})
	t.Run("DNS server timeout", func(t *testing.T) {
		var dials atomic.Int32
		hc := dnsFailing(&net.DNSError{Err: "i/o timeout", Name: "api.prod.lemmax.com", IsTimeout: true, IsTemporary: true}, &dials)
		ts := newTestSource(t, withTokenURL(ProductionTokenURL), withHTTPClient(hc)).ts
		err := mustFail(t, ts, asErr[*net.DNSError]())
		if n := dials.Load(); n != attempts {
			t.Errorf("dialled %d times, want %d: a resolver timeout may pass", n, attempts)
		}
		assertCoolsDown(t, ts, err, func() int { return int(dials.Load()) })
	})
}

// TestTransientFaultsThenATokenIsCached covers the rows where the fetch
// retries through the fault and the caller gets a good token.
func TestTransientFaultsThenATokenIsCached(t *testing.T) {
	clock := newFakeClock() // the sources' clock starts at the same time
	tests := []struct {
		name     string
		fails    []fortetest.Failure
		minWait  time.Duration // the least total wait before the token
		requests int
	}{
		{"reset mid-body once", []fortetest.Failure{{Hangup: true, Body: tokenBody(testAccessToken, "Bearer", 3600)}}, 0, 2},
		{"429 with Retry-After in seconds", []fortetest.Failure{{Status: http.StatusTooManyRequests, RetryAfter: "3"}}, 3 * time.Second, 2},
		{"429 with Retry-After as an HTTP date", []fortetest.Failure{{Status: http.StatusTooManyRequests,
			RetryAfter: clock.Now().Add(4 * time.Second).Format(http.TimeFormat)}}, 3500 * time.Millisecond, 2},
		{"burst of three 5xx", []fortetest.Failure{{Status: 500}, {Status: 502}, {Status: 503}}, 0, 4},
		{"HTML 502 page from a proxy", []fortetest.Failure{{Status: http.StatusBadGateway, ContentType: "text/html",
			Body: "<html><body><h1>502 Bad Gateway</h1></body></html>"}}, 0, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newForteServer(t)
			srv.FailNext(tt.fails...)
			src := newTestSource(t, withTokenURL(srv.TokenURL))
			ts, rec := src.ts, src.sleeps
			tok, err := ts.Token()
			if err != nil {
				t.Fatalf("Token: %s", hide(err.Error()))
			}
			if tok.AccessToken == testAccessToken {
				t.Error("got the token from the truncated answer")
			}
			if e := ts.cache.Load(); e == nil || e.tok.AccessToken != tok.AccessToken {
				t.Error("the token was not cached")
			}
			var waited time.Duration
			for _, w := range rec.recorded() {
				waited += w
			}
			if n := srv.Stats().TokenRequests; n != tt.requests || waited < tt.minWait {
				t.Errorf("endpoint saw %d requests after waits %v; want %d, waiting at least %v", n, rec.recorded(), tt.requests, tt.minWait)
			}
		})
	}
}

// TestPersistentServerFaultsCoolDown covers the rows where the endpoint
// keeps failing, or asks for a wait beyond the fetch's budget.
func TestPersistentServerFaultsCoolDown(t *testing.T) {
	t.Run("burst of 5xx longer than the retries", func(t *testing.T) {
		srv := newForteServer(t)
		srv.FailNext(fortetest.Failure{Status: 503}, fortetest.Failure{Status: 500}, fortetest.Failure{Status: 504},
			fortetest.Failure{Status: 502}, fortetest.Failure{Status: 503})
		src := newTestSource(t, withTokenURL(srv.TokenURL))
		ts, clock := src.ts, src.clock
		err := mustFail(t, ts, isStatus(http.StatusBadGateway))
		if n := srv.Stats().TokenRequests; n != 4 {
			t.Errorf("endpoint saw %d requests, want 4", n)
		}
		assertCoolsDown(t, ts, err, func() int { return srv.Stats().TokenRequests })
		// After the cool-down, the next fetch rides out the burst's last 503.
		clock.Advance(ts.failure.Load().until.Sub(clock.Now()))
		if _, err := ts.Token(); err != nil {
			t.Fatalf("after the burst: %s", hide(err.Error()))
		}
		if n := srv.Stats().TokenRequests; n != 6 {
			t.Errorf("endpoint saw %d requests in all, want 6", n)
		}
	})
	t.Run("429 with Retry-After far beyond the budget", func(t *testing.T) {
		srv := newForteServer(t)
		srv.FailNext(fortetest.Failure{Status: http.StatusTooManyRequests, RetryAfter: "86400"})
		src := newTestSource(t, withTokenURL(srv.TokenURL))
		ts, clock, rec := src.ts, src.clock, src.sleeps
		err := mustFail(t, ts, isStatus(http.StatusTooManyRequests))
		if n := srv.Stats().TokenRequests; n != 1 || len(rec.recorded()) != 0 {
			t.Errorf("endpoint saw %d requests after waits %v; want 1, no wait", n, rec.recorded())
		}
		// The cool-down honours the wait, up to its 5-minute cap.
		if d := ts.failure.Load().until.Sub(clock.Now()); d != retryAfterMax {
			t.Errorf("cool-down %v, want Retry-After capped at %v", d, retryAfterMax)
		}
		assertCoolsDown(t, ts, err, func() int { return srv.Stats().TokenRequests })
	})
}

// TestMalformedAnswerIsNotCachedAndCoolsDown covers every malformed 2xx
// body (malformedAnswers): the caller gets ErrInvalidResponse after one
// request, nothing is cached, callers during the cool-down get the error
// without a request, and the first fetch after it gets a good token.
func TestMalformedAnswerIsNotCachedAndCoolsDown(t *testing.T) {
	for _, tt := range malformedAnswers {
		t.Run(tt.name, func(t *testing.T) {
			srv := newForteServer(t)
			srv.FailNext(fortetest.Failure{Status: tt.status, Body: tt.body, ContentType: tt.contentType})
			src := newTestSource(t, withTokenURL(srv.TokenURL))
			ts, clock := src.ts, src.clock
			err := mustFail(t, ts, isErr(ErrInvalidResponse), tt.token)
			if n := srv.Stats().TokenRequests; n != 1 {
				t.Errorf("endpoint saw %d requests, want 1: a malformed answer is not retried", n)
			}
			assertCoolsDown(t, ts, err, func() int { return srv.Stats().TokenRequests })
			clock.Advance(ts.failure.Load().until.Sub(clock.Now()))
			tok, err := ts.Token()
			if err != nil || (tt.token != "" && strings.Contains(tok.AccessToken, tt.token)) {
				t.Fatalf("after the cool-down: err %v; want a good token", err)
			}
		})
	}
}

// sameTokenServer is a token endpoint that answers every request with
// the same token, as an endpoint that caches its tokens would, and an API
// that rejects it. It counts both kinds of request.
func sameTokenServer(t *testing.T) (srv *stubServer, api *atomic.Int32) {
	api = new(atomic.Int32)
	srv = newStub(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != fortetest.TokenPath {
			api.Add(1)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		respond(http.StatusCreated, "application/json", tokenBody(testAccessToken, "Bearer", 3600))(w, r)
	})
	return srv, api
}

func TestEndpointAnsweringTheSameTokenTwice(t *testing.T) {
	t.Run("to a background refresh", func(t *testing.T) {
		srv, _ := sameTokenServer(t)
		src := newTestSource(t, withTokenURL(srv.URL+fortetest.TokenPath))
		ts, clock := src.ts, src.clock
		mustToken(t, ts)
		first := ts.cache.Load()
		clock.Advance(time.Hour - 30*time.Second - time.Minute) // in the refresh window
		if tok := mustToken(t, ts); tok.AccessToken != testAccessToken {
			t.Fatal("the cached token changed")
		}
		eventually(t, "the refresh to store its answer", func() bool { return ts.cache.Load() != first && !ts.refreshing.Load() })
		// The same token, now with a new lease: fresh again, so no
		// further refresh until its own window opens.
		if e := ts.cache.Load(); e.tok.AccessToken != testAccessToken || !e.sent.Equal(clock.Now()) || e.state(clock.Now()) != fresh {
			t.Fatalf("after the refresh the entry holds %s sent %v ago in state %v; want the same token, fresh",
				redact(e.tok.AccessToken), clock.Now().Sub(e.sent), e.state(clock.Now()))
		}
		for range 10 {
			mustToken(t, ts)
		}
		if n := srv.requests.Load(); n != 2 {
			t.Errorf("endpoint saw %d requests, want 2", n)
		}
	})
	t.Run("after the API rejected it", func(t *testing.T) {
		srv, api := sameTokenServer(t)
		src := newTestSource(t, withTokenURL(srv.URL+fortetest.TokenPath))
		ts, clock := src.ts, src.clock
		c := &http.Client{Transport: &Transport{Source: ts}}
		mustToken(t, ts)
		// The 401 invalidates the token, 0 s old; the new fetch brings
		// the same one, so the request is not replayed: the caller gets
		// the 401.
		if code := get(t, c, srv.URL+"/v3/payments"); code != http.StatusUnauthorized {
			t.Fatalf("status %d, want the API's 401", code)
		}
		if a, tr := api.Load(), srv.requests.Load()-api.Load(); a != 1 || tr != 2 {
			t.Fatalf("API saw %d requests and the token endpoint %d; want 1 and 2", a, tr)
		}
		// The re-issued token is on trial and rejected before the API
		// accepted it, so the next 401 starts a cool-down, not another
		// fetch: at most one fetch per cool-down, not per 401.
		get(t, c, srv.URL+"/v3/payments")
		if tr := srv.requests.Load() - api.Load(); tr != 2 {
			t.Fatalf("token endpoint saw %d requests after a second 401, want still 2", tr)
		}
		clock.Advance(failureBackoff.base) // a first cool-down is at most this
		get(t, c, srv.URL+"/v3/payments")
		if tr := srv.requests.Load() - api.Load(); tr != 3 {
			t.Fatalf("token endpoint saw %d requests after a 401 past the cool-down, want 3", tr)
		}
	})
}
