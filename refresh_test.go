package forteauth

import (
	"context"
	"errors"
	"fmt"
	"io"
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

// Deciding and running refreshes: the shared blocking fetch, the background
// refresh and its backoff, the cool-down after a failed fetch, and the 401
// flood guard that decides what a rejected token costs.

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
	ts.coolDown(context.Background(), clock.Now(), errors.New("endpoint down"))
	if _, err := ts.refresh(nil, FetchNoToken); err == nil || !strings.Contains(err.Error(), "endpoint down") || tokenRequests(srv) != 1 {
		t.Fatalf("late waiter after a failure: err %v, token requests %d", err, tokenRequests(srv))
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

// The 401 flood guard, seen through a Transport: a token the API rejects
// costs at most one fetch per cool-down, however many requests are rejected.

// guardState returns the rounds of ts's 401 flood guard and the end of
// its cool-down. It is the only test code that reads the guard itself.
func guardState(ts *TokenSource) (rounds int, until time.Time) {
	g := &ts.unauthorized
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.rounds, g.until
}

// floodSetup returns a client whose API requests go to srv's API unless
// reject is set; then the API answers 401 to every token.
func floodSetup(t *testing.T) (srv *fortetest.Server, ts *TokenSource, clock *fakeClock, c *http.Client, reject *atomic.Bool) {
	t.Helper()
	src := newTestSource(t)
	srv, ts, clock = src.srv, src.ts, src.clock
	reject = new(atomic.Bool)
	c = &http.Client{Transport: &Transport{Source: ts, Base: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if reject.Load() {
			closeBody(r)
			return unauthorizedResponse(r), nil
		}
		return http.DefaultTransport.RoundTrip(r)
	})}}
	return srv, ts, clock, c, reject
}

func unauthorizedResponse(r *http.Request) *http.Response {
	return &http.Response{StatusCode: http.StatusUnauthorized, Header: http.Header{},
		Body: io.NopCloser(strings.NewReader(`{"error":"rejected"}`)), Request: r}
}

// maxCoolDowns is the most 401 cool-downs that can start within d: each
// lasts at least half of 1 s doubling to 30 s.
func maxCoolDowns(d time.Duration) int {
	n, spent := 1, time.Duration(0)
	for {
		spent += min(failureBackoff.base<<(n-1), failureBackoff.max) / 2
		if spent > d {
			return n
		}
		n++
	}
}

func TestTransport401ToATokenRevokedAtIssueIsRecovered(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	ts := newTestSource(t, withServer(srv)).ts
	c := &http.Client{Transport: &Transport{Source: ts}}
	mustToken(t, ts) // issued now, and the fake clock does not move
	srv.Revoke()
	if code := get(t, c, srv.URL+"/v3/x"); code != 200 {
		t.Fatalf("status %d, want 200: a token revoked 0 s after issue must be recovered", code)
	}
	if n := tokenRequests(srv); n != 2 {
		t.Fatalf("token requests = %d, want 2: the revoked token and one replacement", n)
	}
	if code := get(t, c, srv.URL+"/v3/x"); code != 200 || tokenRequests(srv) != 2 {
		t.Fatalf("next request: status %d, token requests %d; want 200 with the replacement", code, tokenRequests(srv))
	}
}

func TestTransport401FloodCostsOneTokenRequestPerCoolDown(t *testing.T) {
	srv, ts, clock, c, reject := floodSetup(t)
	reject.Store(true)
	const requests, step = 1200, 100 * time.Millisecond // 120 s
	for i := range requests {
		if code := get(t, c, srv.URL+"/v3/x"); code != 401 {
			t.Fatalf("request %d: status %d, want the API's 401", i, code)
		}
		clock.Advance(step)
	}
	rounds, _ := guardState(ts)
	n := tokenRequests(srv)
	if limit := maxCoolDowns(requests * step); rounds < 1 || rounds > limit {
		t.Fatalf("%d cool-downs in %v, want 1 to %d", rounds, requests*step, limit)
	}
	t.Logf("%d requests over %v: %d token requests, %d cool-downs (at most %d possible)",
		requests, requests*step, n, rounds, maxCoolDowns(requests*step))
	if n < 2 || n > 1+rounds {
		t.Fatalf("%d requests over %v cost %d token requests with %d cool-downs; want 2 to %d",
			requests, requests*step, n, rounds, 1+rounds)
	}
}

func TestConcurrent401sFetchOneNewToken(t *testing.T) {
	for _, tt := range []struct {
		name      string
		rejectAll bool
		want      int
	}{
		{"the new token is accepted", false, 200},
		{"the API rejects every token", true, 401},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := fortetest.NewServer()
			defer srv.Close()
			ts := newTestSource(t, withServer(srv)).ts
			first := "Bearer " + mustToken(t, ts).AccessToken
			srv.Revoke()
			const callers = 50
			var (
				atAPI sync.WaitGroup // the callers holding the first token
				mu    sync.Mutex
				sends = map[string]int{}
			)
			atAPI.Add(callers)
			c := &http.Client{Transport: &Transport{Source: ts, Base: roundTripFunc(func(r *http.Request) (*http.Response, error) {
				mu.Lock()
				sends[r.Header.Get("X-Caller")]++
				mu.Unlock()
				if r.Header.Get("Authorization") == first {
					atAPI.Done()
					atAPI.Wait() // all 50 are answered 401 for the first token together
				}
				if tt.rejectAll {
					return unauthorizedResponse(r), nil
				}
				return http.DefaultTransport.RoundTrip(r)
			})}}
			var wg sync.WaitGroup
			for i := range callers {
				wg.Go(func() {
					req, _ := http.NewRequest("GET", srv.URL+"/v3/x", nil)
					req.Header.Set("X-Caller", fmt.Sprint(i))
					resp, err := c.Do(req)
					if err != nil {
						t.Error(err)
						return
					}
					resp.Body.Close()
					if resp.StatusCode != tt.want {
						t.Errorf("status %d, want %d", resp.StatusCode, tt.want)
					}
				})
			}
			within(t, "50 concurrent requests", wg.Wait)
			if n := tokenRequests(srv); n != 2 {
				t.Fatalf("token requests = %d, want 2: the rejected token and one replacement", n)
			}
			for i := range callers {
				if n := sends[fmt.Sprint(i)]; n < 1 || n > 2 || !tt.rejectAll && n != 2 {
					t.Fatalf("caller %d was sent %d times; want once and at most one replay (a replay with the new token if it is accepted)", i, n)
				}
			}
		})
	}
}

func TestTransport401GuardEndsOnAnyOtherAnswer(t *testing.T) {
	srv, _, clock, c, reject := floodSetup(t)
	reject.Store(true)
	if code := get(t, c, srv.URL+"/v3/x"); code != 401 || tokenRequests(srv) != 2 {
		t.Fatalf("status %d, token requests %d; want 401 after one recovery attempt (2)", code, tokenRequests(srv))
	}
	if code := get(t, c, srv.URL+"/v3/x"); code != 401 || tokenRequests(srv) != 2 {
		t.Fatalf("status %d, token requests %d; want 401 as is during the cool-down (2)", code, tokenRequests(srv))
	}
	reject.Store(false)
	if code := get(t, c, srv.URL+"/v3/x"); code != 200 {
		t.Fatalf("status %d, want 200 once the API accepts the token", code)
	}
	// That answer ended the guard: a rejection of the accepted token,
	// within what was the cool-down, is recovered at once.
	srv.Revoke()
	if code := get(t, c, srv.URL+"/v3/x"); code != 200 || tokenRequests(srv) != 3 {
		t.Fatalf("status %d, token requests %d; want 200 with a new token (3)", code, tokenRequests(srv))
	}
	// The rounds start over: the next cool-down is a first one, at most 1 s.
	reject.Store(true)
	if code := get(t, c, srv.URL+"/v3/x"); code != 401 || tokenRequests(srv) != 4 {
		t.Fatalf("status %d, token requests %d; want 401 after one recovery attempt (4)", code, tokenRequests(srv))
	}
	clock.Advance(failureBackoff.base)
	if code := get(t, c, srv.URL+"/v3/x"); code != 401 || tokenRequests(srv) != 5 {
		t.Fatalf("status %d, token requests %d; want 401 after one more attempt (5) once a first cool-down has passed",
			code, tokenRequests(srv))
	}
}

func TestTransport401CoolDownGrowsAndCapsAt30s(t *testing.T) {
	srv, ts, clock, c, reject := floodSetup(t)
	mustToken(t, ts)
	reject.Store(true)
	for round := 1; round <= 8; round++ {
		before := tokenRequests(srv)
		if code := get(t, c, srv.URL+"/v3/x"); code != 401 || tokenRequests(srv) != before+1 {
			t.Fatalf("round %d: status %d, token requests %d; want 401 after one new token (%d)",
				round, code, tokenRequests(srv), before+1)
		}
		rounds, until := guardState(ts)
		d := until.Sub(clock.Now())
		want := min(time.Second<<(round-1), 30*time.Second)
		if rounds != round || d < want/2 || d > want {
			t.Fatalf("after round %d: %d rounds, cool-down %v; want %d rounds and %v to %v", round, rounds, d, round, want/2, want)
		}
		clock.Advance(d - time.Millisecond)
		if code := get(t, c, srv.URL+"/v3/x"); code != 401 || tokenRequests(srv) != before+1 {
			t.Fatalf("round %d, 1 ms before the cool-down ends: status %d, token requests %d; want 401 as is (%d)",
				round, code, tokenRequests(srv), before+1)
		}
		clock.Advance(time.Millisecond)
	}
}
