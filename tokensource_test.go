package forteauth

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/forteauth/forteauth/fortetest"
	"github.com/forteauth/forteauth/internal/leaktest"
	"golang.org/x/oauth2"
)

// within runs f and fails the test if it does not return in 10 s: how a
// test shows that a call does not wait on something held.
func within(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not return within 10s", what)
	}
}

func mustToken(t *testing.T, ts *TokenSource) *oauth2.Token {
	t.Helper()
	tok, err := ts.Token()
	if err != nil {
		t.Fatalf("Token: %v", err)
	}
	return tok
}

func tokenRequests(srv *fortetest.Server) int { return srv.Stats().TokenRequests }

func TestFreshTokenIsServedFromCache(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	src := newTestSource(t, withServer(srv))
	ts, clock := src.ts, src.clock

	first := mustToken(t, ts)
	for range 100 {
		clock.Advance(10 * time.Second) // 1000 s in all: well before the window
		tok := mustToken(t, ts)
		if tok.AccessToken != first.AccessToken {
			t.Fatalf("token changed while fresh")
		}
		if tok == first {
			t.Fatalf("Token returned the same pointer twice; callers must get copies")
		}
	}
	if n := tokenRequests(srv); n != 1 {
		t.Fatalf("token requests = %d, want 1", n)
	}
}

func TestReturnedTokensAreCopies(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	ts := newTestSource(t, withServer(srv)).ts

	a := mustToken(t, ts)
	want := a.AccessToken
	a.AccessToken, a.Expiry, a.TokenType = "mutated", time.Time{}, "MAC"
	b := mustToken(t, ts)
	if b.AccessToken != want || b.TokenType != "Bearer" || b.Expiry.IsZero() {
		t.Fatalf("a caller's change to its token reached the next caller: %q %q %v", b.AccessToken, b.TokenType, b.Expiry)
	}
	if e := ts.cache.Load(); e.tok.AccessToken != want || e.header != "Bearer "+want {
		t.Fatalf("cached entry was modified")
	}
}

func TestConcurrentCallersShareOneFetch(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	ts := newTestSource(t, withServer(srv)).ts

	release := srv.Hold()
	const callers = 1000
	var started atomic.Int64
	results := make(chan string, callers)
	for range callers {
		go func() {
			started.Add(1)
			tok, err := ts.Token()
			if err != nil {
				results <- "error: " + err.Error()
				return
			}
			results <- tok.AccessToken
		}()
	}
	eventually(t, "all callers to start", func() bool { return started.Load() == callers })
	eventually(t, "the fetch to reach the server", func() bool { return tokenRequests(srv) >= 1 })
	release()

	var first string
	for range callers {
		got := <-results
		if first == "" {
			first = got
		}
		if got != first || strings.HasPrefix(got, "error") {
			t.Fatalf("callers got different results: %q and %q", first, got)
		}
	}
	if n := tokenRequests(srv); n != 1 {
		t.Fatalf("%d concurrent callers made %d token requests, want 1", callers, n)
	}
}

func TestCallerWhoseContextEndsStopsWaitingOthersGetTheToken(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	ts := newTestSource(t, withServer(srv)).ts

	release := srv.Hold()
	defer release()
	ctx, cancel := context.WithCancel(context.Background())
	gaveUp := make(chan error, 1)
	go func() {
		_, err := ts.TokenContext(ctx)
		gaveUp <- err
	}()
	patient := make(chan *oauth2.Token, 1)
	go func() {
		tok, err := ts.Token()
		if err != nil {
			t.Errorf("patient caller: %v", err)
		}
		patient <- tok
	}()
	eventually(t, "the fetch to reach the server", func() bool { return tokenRequests(srv) == 1 })

	cancel()
	select {
	case err := <-gaveUp:
		if !errors.Is(err, context.Canceled) || !strings.HasPrefix(err.Error(), "forteauth: ") {
			t.Fatalf("cancelled caller got %v, want a forteauth error wrapping context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a caller whose context ended kept waiting for the fetch")
	}
	select {
	case <-patient:
		t.Fatal("the patient caller returned before the fetch completed")
	default:
	}

	release()
	select {
	case tok := <-patient:
		if tok == nil || tok.AccessToken == "" {
			t.Fatal("patient caller got no token")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the shared fetch did not complete after one waiter gave up")
	}
	mustToken(t, ts)
	if n := tokenRequests(srv); n != 1 {
		t.Fatalf("token requests = %d, want 1: the fetch must go on and fill the cache", n)
	}
}

func TestCallerWithEndedContextStartsNoFetch(t *testing.T) {
	leaktest.Quiesce(t)
	srv := fortetest.NewServer()
	defer srv.Close()
	release := srv.Hold() // a fetch, if started, stays in flight where it can be seen
	defer release()
	ts := newTestSource(t, withServer(srv)).ts
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := ts.TokenContext(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if n := leaktest.Count(leaktest.SharedFetch); n != 0 {
		t.Fatalf("a caller whose context had ended started a fetch (%d running)", n)
	}
}

// A caller that found the cache empty may start the shared fetch only
// after another fetch has filled it; the fetch must then not run again.
func TestFetchStartedAfterAnotherFilledTheCacheDoesNotRun(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	src := newTestSource(t, withServer(srv))
	ts, clock := src.ts, src.clock
	first := mustToken(t, ts)

	e, _, err := ts.wait(context.Background(), nil) // saw nil before the first fetch stored its token
	if err != nil || e.tok.AccessToken != first.AccessToken || tokenRequests(srv) != 1 {
		t.Fatalf("late waiter: err %v, token requests %d; want the cached token and no new request", err, tokenRequests(srv))
	}

	// The same for a failure: a waiter arriving just after a fetch failed gets
	// its error instead of starting another request.
	ts.Invalidate(nil)
	ts.coolDown(clock.Now(), errors.New("endpoint down"))
	if _, err := ts.refresh(nil); err == nil || !strings.Contains(err.Error(), "endpoint down") || tokenRequests(srv) != 1 {
		t.Fatalf("late waiter after a failure: err %v, token requests %d", err, tokenRequests(srv))
	}
}

func TestSourceContextSuppliesValuesOnly(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	var viaCtxClient atomic.Int64
	hc := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		viaCtxClient.Add(1)
		return http.DefaultTransport.RoundTrip(r)
	})}
	ctx, cancel := context.WithCancel(context.WithValue(context.Background(), oauth2.HTTPClient, hc))
	cfg := &Config{ClientID: srv.ClientID, ClientSecret: srv.ClientSecret, TokenURL: srv.TokenURL}
	ts := cfg.TokenSource(ctx)
	cancel() // a request-scoped context ending must not break later refreshes

	mustToken(t, ts)
	if viaCtxClient.Load() != 1 {
		t.Fatalf("the oauth2.HTTPClient of the source's context sent %d token requests, want 1", viaCtxClient.Load())
	}
}

func TestRefreshWindowServesCachedTokenAndRefreshesOnceInBackground(t *testing.T) {
	leaktest.Quiesce(t)
	srv := fortetest.NewServer()
	defer srv.Close()
	src := newTestSource(t, withServer(srv)) // 1 h tokens, 5 min window, 30 s margin
	ts, clock := src.ts, src.clock
	first := mustToken(t, ts)

	clock.Advance(time.Hour - 5*time.Minute - time.Second)
	mustToken(t, ts)
	if n := tokenRequests(srv); n != 1 || ts.refreshing.Load() {
		t.Fatalf("a refresh started before the window opened (requests %d)", n)
	}

	release := srv.Hold()
	defer release()
	clock.Advance(time.Second + (5*time.Minute-30*time.Second)/2) // past the latest jittered start
	for range 50 {
		within(t, "Token while a background refresh is held", func() {
			if tok := mustToken(t, ts); tok.AccessToken != first.AccessToken {
				t.Errorf("got a new token while the refresh is held")
			}
		})
	}
	eventually(t, "the background refresh to reach the server", func() bool { return tokenRequests(srv) == 2 })
	for range 50 {
		mustToken(t, ts)
	}
	if n, g := tokenRequests(srv), leaktest.Count(leaktest.BackgroundRefresh); n != 2 || g != 1 {
		t.Fatalf("token requests = %d, refresh goroutines = %d; want exactly one background refresh", n, g)
	}

	release()
	eventually(t, "the new token to be cached", func() bool { return ts.cache.Load().tok.AccessToken != first.AccessToken })
	if tok := mustToken(t, ts); tok.AccessToken == first.AccessToken {
		t.Fatal("still the old token after the refresh")
	}
	eventually(t, "the refresh goroutine to exit", func() bool { return leaktest.Count(leaktest.BackgroundRefresh) == 0 && !ts.refreshing.Load() })
	if n := tokenRequests(srv); n != 2 {
		t.Fatalf("token requests = %d, want 2", n)
	}
}

func TestRefreshStartIsSpreadOverTheEarlyWindow(t *testing.T) {
	tok := &oauth2.Token{AccessToken: "t", ExpiresIn: 3600}
	sent := time.Now()
	const window, margin = 5 * time.Minute, 30 * time.Second
	earliest := time.Hour - window
	latest := earliest + (window-margin)/2
	seen := map[time.Duration]bool{}
	for range 200 {
		e := newEntry(tok, sent, window, margin)
		if e.refreshAfter < earliest || e.refreshAfter >= latest {
			t.Fatalf("refresh starts at %v, want within [%v, %v)", e.refreshAfter, earliest, latest)
		}
		if e.staleAfter != time.Hour-margin {
			t.Fatalf("staleAfter = %v, want %v", e.staleAfter, time.Hour-margin)
		}
		seen[e.refreshAfter] = true
	}
	if len(seen) < 100 {
		t.Fatalf("only %d distinct refresh starts in 200 entries: not jittered", len(seen))
	}
}

func TestShortLivedTokensAreNotRefreshedOnEveryCall(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	srv.SetLifetime(4 * time.Second) // far shorter than the default 5 min window
	src := newTestSource(t, withServer(srv))
	ts, clock := src.ts, src.clock
	mustToken(t, ts)

	e := ts.cache.Load()
	if e.refreshAfter < 2*time.Second || e.staleAfter != 3*time.Second {
		t.Fatalf("refreshAfter %v, staleAfter %v: window and margin not clamped to half and a quarter of 4s", e.refreshAfter, e.staleAfter)
	}
	for range 19 {
		clock.Advance(100 * time.Millisecond) // up to 1.9 s
		mustToken(t, ts)
	}
	if n := tokenRequests(srv); n != 1 || ts.refreshing.Load() {
		t.Fatalf("token requests = %d in the first half of a 4s token's life, want 1", n)
	}
}

func TestStaleTokenMakesCallersWaitForANewOne(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	src := newTestSource(t, withServer(srv))
	ts, clock := src.ts, src.clock
	first := mustToken(t, ts)

	release := srv.Hold()
	defer release()
	clock.Advance(time.Hour - 30*time.Second) // exactly ExpiryMargin left
	got := make(chan *oauth2.Token, 1)
	go func() {
		tok, _ := ts.Token()
		got <- tok
	}()
	eventually(t, "the fetch to reach the server", func() bool { return tokenRequests(srv) == 2 })
	select {
	case <-got:
		t.Fatal("a token within ExpiryMargin of expiry was handed out")
	default:
	}
	release()
	select {
	case tok := <-got:
		if tok == nil || tok.AccessToken == first.AccessToken {
			t.Fatal("did not get a new token")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("waiting caller never got the new token")
	}
}

func TestFailedBackgroundRefreshKeepsTokenAndBacksOff(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	logger, logs := newTestLogger()
	src := newTestSource(t, withServer(srv), withConfig(func(c *Config) { c.Logger = logger }))
	ts, clock := src.ts, src.clock
	first := mustToken(t, ts)

	srv.FailNext(fortetest.Failure{Status: http.StatusForbidden}) // not retried: one request per refresh
	clock.Advance(time.Hour - 30*time.Second - time.Minute)       // in the window, a minute before stale
	if tok := mustToken(t, ts); tok.AccessToken != first.AccessToken {
		t.Fatal("token changed")
	}
	eventually(t, "the failed refresh to finish", func() bool { return tokenRequests(srv) == 2 && !ts.refreshing.Load() })

	for range 20 {
		if tok := mustToken(t, ts); tok.AccessToken != first.AccessToken {
			t.Fatal("a failed background refresh replaced the still-valid token")
		}
	}
	if n := tokenRequests(srv); n != 2 || ts.refreshing.Load() {
		t.Fatalf("token requests = %d right after a failed refresh, want 2: the next attempt must back off", n)
	}
	if e := ts.cache.Load(); e.failures != 1 {
		t.Fatalf("failures = %d, want 1", e.failures)
	}
	out := logs.String()
	if !strings.Contains(out, "background token refresh failed") || !strings.Contains(out, "403") {
		t.Fatalf("failure not logged: %q", out)
	}
	if strings.Contains(out, srv.ClientSecret) || strings.Contains(out, first.AccessToken) {
		t.Fatalf("log shows the secret or the token: %q", out)
	}

	clock.Advance(failureBackoff.max)
	mustToken(t, ts)
	eventually(t, "the retried refresh to store a new token", func() bool { return ts.cache.Load().tok.AccessToken != first.AccessToken })
	if n := tokenRequests(srv); n != 3 {
		t.Fatalf("token requests = %d, want 3", n)
	}
	if e := ts.cache.Load(); e.failures != 0 {
		t.Fatalf("a new token kept the failure count %d", e.failures)
	}
}

func TestFailedFetchCoolsDownInsteadOfFlooding(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	logger, logs := newTestLogger()
	src := newTestSource(t, withServer(srv), withConfig(func(c *Config) { c.ClientSecret = "wrong-secret-0123"; c.Logger = logger }))
	ts, clock := src.ts, src.clock

	_, err := ts.Token()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.Response.StatusCode != http.StatusUnauthorized {
		t.Fatalf("err = %v, want a RetrieveError with 401", err)
	}

	var wg sync.WaitGroup
	for range 100 {
		wg.Go(func() {
			_, err := ts.Token()
			var re *oauth2.RetrieveError
			if !errors.As(err, &re) || !strings.Contains(err.Error(), "forteauth: no token") {
				t.Errorf("during the cool-down err = %v, want the fetch error wrapped", err)
			}
		})
	}
	wg.Wait()
	if n := tokenRequests(srv); n != 1 {
		t.Fatalf("token requests = %d during the cool-down, want 1", n)
	}
	if !strings.Contains(logs.String(), "cool_down") || strings.Contains(logs.String(), "wrong-secret-0123") {
		t.Fatalf("cool-down not logged, or the secret was: %q", logs.String())
	}

	// Each failure in a row doubles the cool-down (jittered to [d/2, d]) up to failureBackoff.max.
	want := failureBackoff.base
	for i := 2; i <= 8; i++ {
		f := ts.failure.Load()
		d := f.until.Sub(clock.Now())
		if d < want/2 || d > want {
			t.Fatalf("cool-down %d is %v, want in [%v, %v]", i-1, d, want/2, want)
		}
		clock.Advance(d)
		if _, err := ts.Token(); err == nil {
			t.Fatal("bad credentials produced a token")
		}
		if n := tokenRequests(srv); n != i {
			t.Fatalf("token requests = %d after cool-down %d, want %d", n, i-1, i)
		}
		want = min(2*want, failureBackoff.max)
	}
	if d := ts.failure.Load().until.Sub(clock.Now()); d > failureBackoff.max {
		t.Fatalf("cool-down %v exceeds its cap %v", d, failureBackoff.max)
	}
}

func TestRetryAfterLengthensCoolDownAndBackoff(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	src := newTestSource(t, withServer(srv))
	ts, clock, rec := src.ts, src.clock, src.sleeps
	tooBusy := fortetest.Failure{Status: http.StatusServiceUnavailable, RetryAfter: "120"} // beyond one fetch's budget

	srv.FailNext(tooBusy)
	if _, err := ts.Token(); err == nil {
		t.Fatal("want the injected 503")
	}
	if d := ts.failure.Load().until.Sub(clock.Now()); d < 120*time.Second {
		t.Fatalf("cool-down %v after Retry-After: 120, want at least 120s", d)
	}
	if n := tokenRequests(srv); n != 1 || len(rec.recorded()) != 0 {
		t.Fatalf("token requests %d, retry waits %v: a wait beyond the budget must end the fetch at once", n, rec.recorded())
	}

	clock.Advance(120 * time.Second)
	mustToken(t, ts)
	srv.FailNext(tooBusy)
	clock.Advance(time.Hour - 2*time.Minute) // in the window, 1m30s before stale
	mustToken(t, ts)
	eventually(t, "the failed background refresh to finish", func() bool { return tokenRequests(srv) == 3 && !ts.refreshing.Load() })
	e := ts.cache.Load()
	if e.refreshAfter != e.staleAfter {
		t.Fatalf("next background attempt at age %v; Retry-After: 120 should put it off to the stale point %v", e.refreshAfter, e.staleAfter)
	}
}

func TestSuccessEndsTheCoolDown(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	src := newTestSource(t, withServer(srv))
	ts, clock := src.ts, src.clock
	srv.FailNext(fortetest.Failure{Status: http.StatusUnauthorized})

	if _, err := ts.Token(); err == nil {
		t.Fatal("want the injected 401")
	}
	clock.Advance(failureBackoff.base)
	mustToken(t, ts)
	if ts.failure.Load() != nil {
		t.Fatal("a successful fetch left the cool-down in place")
	}
	if n := tokenRequests(srv); n != 2 {
		t.Fatalf("token requests = %d, want 2", n)
	}
}

func TestTokenExpiredOnArrivalIsNotCached(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	src := newTestSource(t, withServer(srv))
	ts, clock := src.ts, src.clock
	// The request "was sent" two hours before the answer arrived: the 1 h token is dead on arrival.
	base := ts.endpoint.client.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	ts.endpoint.client.Transport = roundTripFunc(func(r *http.Request) (*http.Response, error) {
		resp, err := base.RoundTrip(r)
		clock.Advance(2 * time.Hour)
		return resp, err
	})

	_, err := ts.Token()
	if !errors.Is(err, ErrInvalidResponse) || !strings.Contains(err.Error(), "expires in 3600s") {
		t.Fatalf("err = %v, want ErrInvalidResponse about the expired token", err)
	}
	if ts.cache.Load() != nil {
		t.Fatal("an expired token was cached")
	}
	if n := tokenRequests(srv); n != 1 {
		t.Fatalf("token requests = %d, want 1: a token dead on arrival is not fetched again at once", n)
	}
	if _, err2 := ts.Token(); !errors.Is(err2, ErrInvalidResponse) || tokenRequests(srv) != 1 {
		t.Fatalf("during the cool-down: err %v, token requests %d; want the error again and no request", err2, tokenRequests(srv))
	}
}

func TestInvalidateDropsOnlyTheCachedToken(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	ts := newTestSource(t, withServer(srv)).ts
	first := mustToken(t, ts)

	ts.Invalidate(&oauth2.Token{AccessToken: "some-other-token"})
	if mustToken(t, ts).AccessToken != first.AccessToken || tokenRequests(srv) != 1 {
		t.Fatal("invalidating a token that is not cached dropped the cached one")
	}
	ts.Invalidate(first) // a copy: compared by value
	second := mustToken(t, ts)
	if second.AccessToken == first.AccessToken || tokenRequests(srv) != 2 {
		t.Fatal("Invalidate(cached token) did not lead to a new fetch")
	}
	ts.Invalidate(first) // stale news: must not drop second
	if mustToken(t, ts).AccessToken != second.AccessToken || tokenRequests(srv) != 2 {
		t.Fatal("invalidating an old token dropped the new one")
	}
	ts.Invalidate(nil)
	if ts.cache.Load() != nil {
		t.Fatal("Invalidate(nil) kept the cached token")
	}
}

func TestAgeUsesTheLargerOfWallAndMonotonicClocks(t *testing.T) {
	tok := &oauth2.Token{AccessToken: "t", ExpiresIn: 3600}

	// Suspended machine: the monotonic clock stood still for two hours
	// while the wall clock (and the token's real expiry) moved on.
	e := newEntry(tok, time.Now(), 5*time.Minute, 30*time.Second)
	e.sentWall -= int64(2 * time.Hour)
	if st := e.state(time.Now()); st != stale {
		t.Fatalf("after a 2h suspend the token is %v, want stale", st)
	}

	// Wall clock stepped back two hours: the monotonic clock still sees a
	// token requested 59m45s ago, inside the margin.
	e = newEntry(tok, time.Now().Add(-(59*time.Minute + 45*time.Second)), 5*time.Minute, 30*time.Second)
	e.sentWall += int64(2 * time.Hour)
	if st := e.state(time.Now()); st != stale {
		t.Fatalf("after the wall clock stepped back the token is %v, want stale", st)
	}
}

// stepWallClock makes ts's cached token look as if the wall clock had
// moved by d since it was fetched while the monotonic clock had not: a
// machine suspended for d (or a clock stepped forward) if d > 0, a clock
// stepped back if d < 0. A time.Time with a monotonic reading cannot be
// made to disagree with its wall clock, so the entry's record of the wall
// clock at fetch time is moved instead, which is the same to entry.age.
func stepWallClock(ts *TokenSource, d time.Duration) {
	e := *ts.cache.Load()
	e.sentWall -= int64(d)
	ts.cache.Store(&e)
}

// TestWallClockStepsAtTheSource runs on the real clock, whose readings
// carry the monotonic clock that entry.age compares with the wall clock.
func TestWallClockStepsAtTheSource(t *testing.T) {
	t.Run("jump forward, as after a suspend", func(t *testing.T) {
		srv := fortetest.NewServer()
		defer srv.Close()
		ts := (&Config{ClientID: srv.ClientID, ClientSecret: srv.ClientSecret, TokenURL: srv.TokenURL}).TokenSource(context.Background())
		first := mustToken(t, ts)
		stepWallClock(ts, 2*time.Hour) // the 1 h token has expired meanwhile
		second := mustToken(t, ts)
		if second.AccessToken == first.AccessToken {
			t.Fatal("after a 2 h suspend the expired token was handed out")
		}
		if n := srv.Stats().TokenRequests; n != 2 {
			t.Errorf("endpoint saw %d requests, want 2", n)
		}
		if !second.Expiry.After(time.Now()) {
			t.Errorf("the new token's Expiry %v is not in the future", second.Expiry)
		}
	})
	t.Run("jump backward", func(t *testing.T) {
		srv := fortetest.NewServer()
		defer srv.Close()
		ts := (&Config{ClientID: srv.ClientID, ClientSecret: srv.ClientSecret, TokenURL: srv.TokenURL}).TokenSource(context.Background())
		before := time.Now()
		first := mustToken(t, ts)
		stepWallClock(ts, -2*time.Hour)
		// The clock now reads two hours earlier. The token is as young
		// as it was, so it is still handed out without a request.
		tok := mustToken(t, ts)
		if tok.AccessToken != first.AccessToken || srv.Stats().TokenRequests != 1 {
			t.Fatal("stepping the clock back made the source fetch again")
		}
		// Its Expiry must be on the wall clock as it reads now, and so
		// never later than the token's real expiry, an hour after the
		// request. Otherwise oauth2.ReuseTokenSource, which compares
		// Expiry with time.Now, would keep the token for two hours after
		// it expired, and every request would get a 401.
		if realExpiry := before.Add(time.Hour).Round(0); tok.Expiry.After(realExpiry) {
			t.Fatalf("after the wall clock stepped back 2h, Expiry is %v after the token's real expiry", tok.Expiry.Sub(realExpiry).Round(time.Second))
		}
		held, err := oauth2.ReuseTokenSource(nil, ts).Token()
		if err != nil {
			t.Fatal(err)
		}
		if until := time.Until(held.Expiry); until > time.Hour {
			t.Fatalf("oauth2.ReuseTokenSource would hold the 1 h token for another %v", until.Round(time.Second))
		}
	})
}

func TestReportedExpiryBringsOAuth2WrappersBackInTime(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	src := newTestSource(t, withServer(srv))
	ts, clock := src.ts, src.clock
	sent := clock.Now()

	tok := mustToken(t, ts)
	e := ts.cache.Load()
	if want := sent.Add(e.refreshAfter + oauth2Delta); !tok.Expiry.Equal(want) {
		t.Fatalf("fresh token Expiry = %v, want refresh start + 10s = %v", tok.Expiry, want)
	}
	if tok.ExpiresIn != 3600 {
		t.Fatalf("ExpiresIn = %d, want the server's 3600", tok.ExpiresIn)
	}

	release := srv.Hold()
	defer release()
	clock.Advance(e.refreshAfter)
	tok = mustToken(t, ts)
	if want := clock.Now().Add(dueRecheck + oauth2Delta); !tok.Expiry.Equal(want) {
		t.Fatalf("token in the refresh window has Expiry %v, want now + 1s + 10s = %v", tok.Expiry, want)
	}
	clock.Advance(e.staleAfter - e.refreshAfter - time.Millisecond)
	tok = mustToken(t, ts)
	if want := sent.Add(e.staleAfter + oauth2Delta); !tok.Expiry.Equal(want) {
		t.Fatalf("token about to go stale has Expiry %v, want the stale point + 10s = %v", tok.Expiry, want)
	}
	release()
	eventually(t, "the refresh to finish", func() bool { return !ts.refreshing.Load() })

	short := fortetest.NewServer()
	defer short.Close()
	short.SetLifetime(2 * time.Second)
	src2 := newTestSource(t, withServer(short))
	ts2, clock2 := src2.ts, src2.clock
	sent = clock2.Now()
	if tok := mustToken(t, ts2); tok.Expiry.After(sent.Add(2 * time.Second)) {
		t.Fatalf("a 2s token reports Expiry %v, past its real expiry", tok.Expiry.Sub(sent))
	}
}

// TestOAuth2ReuseRuleNeverHoldsAStaleTokenOrWaits replays, on the fake
// clock, the rule by which oauth2.ReuseTokenSource (and so oauth2.NewClient)
// decides to ask its source again: when now is past Expiry minus 10 s. At
// each such moment the source must answer from its cache, and the token the
// wrapper held until then must not have gone stale.
func TestOAuth2ReuseRuleNeverHoldsAStaleTokenOrWaits(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	src := newTestSource(t, withServer(srv))
	ts, clock := src.ts, src.clock

	held := mustToken(t, ts)
	for clock.Now().Before(newFakeClock().Now().Add(5 * time.Hour)) {
		e := ts.cache.Load()
		askAgain := held.Expiry.Add(-oauth2Delta)
		if usableUntil := e.sent.Add(e.staleAfter); askAgain.After(usableUntil) {
			t.Fatalf("the wrapper would hold the token until %v, past the point it goes stale (%v)", askAgain, usableUntil)
		}
		clock.Advance(askAgain.Sub(clock.Now()))
		if st := ts.cache.Load().state(clock.Now()); st == stale {
			t.Fatalf("at %v the wrapper asks again and would have to wait for a fetch", clock.Now())
		}
		held = mustToken(t, ts)
		eventually(t, "a background refresh to land", func() bool { return !ts.refreshing.Load() })
	}
	// One fetch, then one per refresh interval (55 min to 57m15s with jitter).
	if n := tokenRequests(srv); n < 1+5*60/57 || n > 1+5*60/55+1 {
		t.Fatalf("token requests over 5 hours = %d, want one per 55-57 min", n)
	}
}

func TestNoGoroutineOutlivesTheRefresh(t *testing.T) {
	leaktest.Quiesce(t)
	srv := fortetest.NewServer()
	defer srv.Close()
	src := newTestSource(t, withServer(srv))
	ts, clock := src.ts, src.clock
	mustToken(t, ts)
	clock.Advance(time.Hour - time.Minute)
	mustToken(t, ts)
	eventually(t, "refresh and singleflight goroutines to exit", func() bool {
		return leaktest.Count(leaktest.BackgroundRefresh) == 0 && !ts.refreshing.Load() && leaktest.Count(leaktest.SharedFetch) == 0
	})
	if n := tokenRequests(srv); n != 2 {
		t.Fatalf("token requests = %d, want 2", n)
	}
}

func TestConfigChangesAfterTokenSourceHaveNoEffect(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	cfg := &Config{ClientID: srv.ClientID, ClientSecret: srv.ClientSecret, TokenURL: srv.TokenURL}
	ts := cfg.TokenSource(context.Background())
	cfg.ClientSecret = "changed"
	cfg.TokenURL = "http://example.com/"
	mustToken(t, ts)
}

func TestInvalidConfigFailsEveryCallWithoutRequests(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	ts := (&Config{ClientID: srv.ClientID, TokenURL: srv.TokenURL}).TokenSource(context.Background())
	for range 3 {
		if _, err := ts.Token(); !errors.Is(err, ErrInvalidConfig) {
			t.Fatalf("err = %v, want ErrInvalidConfig", err)
		}
	}
	if n := tokenRequests(srv); n != 0 {
		t.Fatalf("token requests = %d, want 0", n)
	}
}

func TestNilContextIsBackground(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	cfg := &Config{ClientID: srv.ClientID, ClientSecret: srv.ClientSecret, TokenURL: srv.TokenURL}
	//lint:ignore SA1012 a nil context must not panic
	if _, err := cfg.TokenSource(nil).Token(); err != nil {
		t.Fatal(err)
	}
	//lint:ignore SA1012 a nil context must not panic
	if _, err := cfg.Token(nil); err != nil {
		t.Fatal(err)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// noWaitCheck is an oauth2.TokenSource over a *TokenSource that records
// every call, after the first, that would have to wait for a fetch.
type noWaitCheck struct {
	ts    *TokenSource
	mu    sync.Mutex
	calls int
	waits int
}

func (c *noWaitCheck) Token() (*oauth2.Token, error) {
	c.mu.Lock()
	if e := c.ts.cache.Load(); c.calls > 0 && (e == nil || e.state(c.ts.clock.now()) == stale) {
		c.waits++
	}
	c.calls++
	c.mu.Unlock()
	return c.ts.Token()
}

// TestThroughOAuth2NewClientNoRequestWaitsAfterTheFirst runs the real
// oauth2.NewClient, on the real clock, over two lifetimes of 6 s tokens
// (one with -short). The refresh window is 3 s and the margin 1.5 s, so
// every background refresh has at least 0.75 s before anyone would wait.
func TestThroughOAuth2NewClientNoRequestWaitsAfterTheFirst(t *testing.T) {
	t.Parallel()
	srv := fortetest.NewServer()
	defer srv.Close()
	srv.SetLifetime(6 * time.Second)
	cfg := &Config{ClientID: srv.ClientID, ClientSecret: srv.ClientSecret, TokenURL: srv.TokenURL}
	check := &noWaitCheck{ts: cfg.TokenSource(context.Background())}
	c := oauth2.NewClient(context.Background(), check)

	lifetimes := 2
	if testing.Short() {
		lifetimes = 1
	}
	stop := time.Now().Add(time.Duration(lifetimes)*6*time.Second + time.Second)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for time.Now().Before(stop) {
				if code := get(t, c, srv.URL+"/v3/x"); code != 200 {
					t.Errorf("status %d", code)
					return
				}
			}
		})
	}
	wg.Wait()
	check.mu.Lock()
	defer check.mu.Unlock()
	if check.waits != 0 {
		t.Fatalf("%d of %d calls through oauth2.NewClient had to wait for a fetch", check.waits, check.calls)
	}
	if st := srv.Stats(); st.APIExpired != 0 || st.TokenRequests < lifetimes+1 {
		t.Fatalf("expired-token requests %d, token requests %d", st.APIExpired, st.TokenRequests)
	}
}
