package forteauth

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/forteauth/forteauth/fortetest"
	"github.com/forteauth/forteauth/internal/leaktest"
)

// counts returns st without its token times, to compare counters alone.
func counts(st Stats) Stats {
	st.Expiry, st.RefreshAt = time.Time{}, time.Time{}
	return st
}

func wantCounts(t *testing.T, ts *TokenSource, when string, want Stats) {
	t.Helper()
	if got := counts(ts.Stats()); got != want {
		t.Fatalf("%s:\n got %+v\nwant %+v", when, got, want)
	}
}

func TestStatsOfANewSourceAreZero(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	ts := newTestSource(t, withServer(srv)).ts
	if st := ts.Stats(); st != (Stats{}) {
		t.Fatalf("Stats of a source not yet used = %+v, want all zero", st)
	}
	if st := (*TokenSource)(nil).Stats(); st != (Stats{}) {
		t.Fatalf("Stats of a nil source = %+v, want all zero", st)
	}
}

func TestStatsExpiryAndRefreshAtFollowTheCachedToken(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	s := newTestSource(t, withServer(srv))
	ts, clock := s.ts, s.clock
	sent := clock.Now()
	mustToken(t, ts)
	e := ts.cache.Load()

	for range 3 {
		st := ts.Stats()
		if want := sent.Add(time.Hour); !st.Expiry.Equal(want) {
			t.Fatalf("Expiry = %v, want %v: the request's time plus expires_in", st.Expiry, want)
		}
		if want := sent.Add(e.refreshAfter); !st.RefreshAt.Equal(want) {
			t.Fatalf("RefreshAt = %v, want %v", st.RefreshAt, want)
		}
		// Spread over the first half of the window, before the margin.
		if d := st.RefreshAt.Sub(sent); d < 55*time.Minute || d >= 55*time.Minute+(5*time.Minute-30*time.Second)/2 {
			t.Fatalf("RefreshAt is %v after the request, want in the early refresh window", d)
		}
		clock.Advance(10 * time.Minute) // both stay put as the token ages
	}

	ts.Invalidate(nil)
	if st := ts.Stats(); !st.Expiry.IsZero() || !st.RefreshAt.IsZero() {
		t.Fatalf("with no token cached, Expiry = %v and RefreshAt = %v, want zero", st.Expiry, st.RefreshAt)
	}
}

// Stats.Expiry is counted as entry.token counts the Expiry it hands out:
// moved by a wall clock set back since the fetch, so that the token does
// not look as if it lived longer.
func TestStatsExpiryAfterTheWallClockSteppedBack(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	ts := (&Config{ClientID: srv.ClientID, ClientSecret: srv.ClientSecret, TokenURL: srv.TokenURL}).TokenSource(context.Background())
	before := time.Now()
	mustToken(t, ts)
	after := time.Now()
	if a, b := ts.Stats(), ts.Stats(); !a.Expiry.Equal(b.Expiry) || !a.RefreshAt.Equal(b.RefreshAt) {
		t.Fatalf("two snapshots disagree: Expiry %v and %v, RefreshAt %v and %v", a.Expiry, b.Expiry, a.RefreshAt, b.RefreshAt)
	}
	stepWallClock(ts, -2*time.Hour)
	st := ts.Stats()
	if left := time.Until(st.Expiry); left > time.Hour || left < time.Hour-time.Since(before)-time.Second {
		t.Fatalf("after the wall clock stepped back 2h, Expiry is %v from now, want just under 1h", left.Round(time.Second))
	}
	if st.Expiry.After(after.Add(time.Hour)) {
		t.Fatalf("Expiry %v is after the token's real expiry", st.Expiry)
	}
}

// After a suspend (the wall clock moved on, the monotonic clock did not),
// Expiry is on the wall clock: a 1 h token is seen to have expired.
func TestStatsExpiryAfterASuspend(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	ts := (&Config{ClientID: srv.ClientID, ClientSecret: srv.ClientSecret, TokenURL: srv.TokenURL}).TokenSource(context.Background())
	mustToken(t, ts)
	stepWallClock(ts, 2*time.Hour)
	if left := time.Until(ts.Stats().Expiry); left > -time.Hour+time.Second || left < -time.Hour-time.Minute {
		t.Fatalf("after a 2 h suspend, Expiry is %v from now, want about an hour ago", left.Round(time.Second))
	}
}

func TestStatsCountFetchesAndWaitsButNotCacheHits(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	s := newTestSource(t, withServer(srv))
	ts, clock := s.ts, s.clock
	c := &http.Client{Transport: &Transport{Source: ts}}

	mustToken(t, ts)
	after1 := Stats{TokenRequests: 1, Fetches: 1, Waits: 1}
	wantCounts(t, ts, "after the first Token", after1)
	for range 100 {
		clock.Advance(time.Second)
		mustToken(t, ts)
		if code := get(t, c, srv.URL+"/v3/x"); code != 200 {
			t.Fatalf("status %d", code)
		}
	}
	wantCounts(t, ts, "after 100 cache hits through Token and 100 through Transport", after1)

	ts.Invalidate(nil)
	if code := get(t, c, srv.URL+"/v3/x"); code != 200 {
		t.Fatalf("status %d", code)
	}
	wantCounts(t, ts, "after a request through Transport that waited", Stats{TokenRequests: 2, Fetches: 2, Waits: 2})
}

func TestStatsCountEveryCallerThatJoinedAFetch(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	ts := newTestSource(t, withServer(srv)).ts
	leaktest.Quiesce(t)

	release := srv.Hold()
	const callers = 20
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() { mustToken(t, ts) })
	}
	eventually(t, "every caller to wait for the fetch", func() bool {
		return leaktest.Count("forteauth.(*TokenSource).wait(") == callers
	})
	release()
	wg.Wait()
	wantCounts(t, ts, "after 20 callers shared one fetch", Stats{TokenRequests: 1, Fetches: 1, Waits: callers})
}

func TestStatsCountRetriesAsRequestsOfOneFetch(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	ts := newTestSource(t, withServer(srv)).ts
	unavailable := fortetest.Failure{Status: http.StatusServiceUnavailable}
	srv.FailNext(unavailable, unavailable)
	mustToken(t, ts)
	wantCounts(t, ts, "after a fetch that succeeded on its third request", Stats{TokenRequests: 3, Fetches: 1, Waits: 1})
}

func TestStatsCountFailedFetchesAndCoolDownAnswers(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	s := newTestSource(t, withServer(srv))
	ts, clock := s.ts, s.clock
	unavailable := fortetest.Failure{Status: http.StatusServiceUnavailable}
	srv.FailNext(unavailable, unavailable, unavailable, unavailable)

	if _, err := ts.Token(); err == nil {
		t.Fatal("four 503s produced a token")
	}
	wantCounts(t, ts, "after a fetch that failed four times", Stats{TokenRequests: 4, FetchFailures: 1, Waits: 1})
	for range 3 {
		if _, err := ts.Token(); err == nil || !strings.Contains(err.Error(), "forteauth: no token") {
			t.Fatalf("during the cool-down err = %v, want the cool-down error", err)
		}
	}
	wantCounts(t, ts, "after 3 calls during the cool-down", Stats{TokenRequests: 4, FetchFailures: 1, Waits: 1, CoolDownErrors: 3})

	// After the cool-down, a failing fetch is a wait again, not a cool-down answer.
	clock.Advance(failureBackoff.max)
	srv.FailNext(fortetest.Failure{Status: http.StatusForbidden}) // not retried
	if _, err := ts.Token(); err == nil {
		t.Fatal("a 403 produced a token")
	}
	wantCounts(t, ts, "after a second failed fetch", Stats{TokenRequests: 5, FetchFailures: 2, Waits: 2, CoolDownErrors: 3})

	clock.Advance(failureBackoff.max)
	mustToken(t, ts)
	wantCounts(t, ts, "after the fetch that ended the failures", Stats{TokenRequests: 6, Fetches: 1, FetchFailures: 2, Waits: 3, CoolDownErrors: 3})
}

func TestStatsCountAWaitWhoseContextEnded(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	ts := newTestSource(t, withServer(srv)).ts
	release := srv.Hold()
	defer release()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := ts.TokenContext(ctx)
		done <- err
	}()
	eventually(t, "the fetch to reach the server", func() bool { return tokenRequests(srv) == 1 })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	wantCounts(t, ts, "after a caller gave up waiting", Stats{TokenRequests: 1, Waits: 1})

	// The fetch goes on without its caller, and is counted when it ends.
	release()
	eventually(t, "the abandoned fetch to store its token", func() bool { return ts.Stats().Fetches == 1 })
	wantCounts(t, ts, "after the abandoned fetch ended", Stats{TokenRequests: 1, Fetches: 1, Waits: 1})
}

func TestStatsCountBackgroundRefreshes(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	s := newTestSource(t, withServer(srv))
	ts, clock := s.ts, s.clock
	mustToken(t, ts)

	srv.FailNext(fortetest.Failure{Status: http.StatusForbidden})
	clock.Advance(time.Hour - 30*time.Second - time.Minute) // in the window, a minute before stale
	mustToken(t, ts)
	eventually(t, "the failed refresh to finish", func() bool { return tokenRequests(srv) == 2 && !ts.refreshing.Load() })
	wantCounts(t, ts, "after a failed background refresh", Stats{TokenRequests: 2, Fetches: 1, FetchFailures: 1, BackgroundFailures: 1, Waits: 1})

	// The next attempt is put off by the backoff, and RefreshAt says when.
	st := ts.Stats()
	if d := st.RefreshAt.Sub(clock.Now()); d <= 0 || d > failureBackoff.base {
		t.Fatalf("RefreshAt is %v from now after one failed refresh, want within the first backoff (%v)", d, failureBackoff.base)
	}
	if d := st.Expiry.Sub(clock.Now()); d != time.Minute+30*time.Second {
		t.Fatalf("Expiry is %v from now, want the kept token's 1m30s", d)
	}

	clock.Advance(failureBackoff.base)
	mustToken(t, ts)
	eventually(t, "the retried refresh to finish", func() bool { return ts.Stats().Fetches == 2 && !ts.refreshing.Load() })
	wantCounts(t, ts, "after a background refresh that succeeded", Stats{TokenRequests: 3, Fetches: 2, FetchFailures: 1, BackgroundFailures: 1, Waits: 1})
}

func TestStatsCountUnauthorizedAndReplays(t *testing.T) {
	t.Run("replayed", func(t *testing.T) {
		srv, ts, _, c := revokedSetup(t)
		if code := get(t, c, srv.URL+"/v3/x"); code != 200 {
			t.Fatalf("status %d, want 200 after the replay", code)
		}
		wantCounts(t, ts, "after a 401 and its replay", Stats{TokenRequests: 2, Fetches: 2, Waits: 2, Unauthorized: 1, Replays: 1})
	})
	t.Run("body cannot be sent again", func(t *testing.T) {
		srv, ts, _, c := revokedSetup(t)
		req, _ := http.NewRequest("POST", srv.URL+"/v3/payments", io.NopCloser(strings.NewReader(`{"amount":100}`)))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Fatalf("status %d, want the 401", resp.StatusCode)
		}
		wantCounts(t, ts, "after a 401 that could not be replayed", Stats{TokenRequests: 1, Fetches: 1, Waits: 1, Unauthorized: 1})
	})
	t.Run("an API that rejects every token", func(t *testing.T) {
		srv := fortetest.NewServer()
		defer srv.Close()
		ts := newTestSource(t, withServer(srv)).ts
		c := &http.Client{Transport: &Transport{Source: ts, Base: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			return &http.Response{StatusCode: 401, Body: io.NopCloser(strings.NewReader("no")), Request: r}, nil
		})}}
		for range 3 {
			if code := get(t, c, srv.URL+"/v3/x"); code != 401 {
				t.Fatalf("status %d, want 401", code)
			}
		}
		// The first 401 dropped the token and was replayed; the new
		// token's rejection started the flood guard's cool-down, during
		// which 401s drop nothing and are not counted.
		wantCounts(t, ts, "after three requests to an API that rejects every token", Stats{TokenRequests: 2, Fetches: 2, Waits: 2, Unauthorized: 1, Replays: 1})
	})
}

func TestStatsCountStoreHitsAndFaults(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	sources, store, _ := fleet(t, srv, 2, nil)
	mustToken(t, sources[0])
	mustToken(t, sources[1])
	wantCounts(t, sources[0], "the source that fetched", Stats{TokenRequests: 1, Fetches: 1, Waits: 1})
	wantCounts(t, sources[1], "the source that took the Store's token", Stats{StoreHits: 1, Waits: 1})

	store.set(func(m *memStore) { m.fail = errors.New("connection refused") })
	sources[1].Invalidate(nil)
	mustToken(t, sources[1])
	wantCounts(t, sources[1], "after fetching past a failing Store", Stats{TokenRequests: 1, Fetches: 1, StoreHits: 1, StoreFaults: 1, Waits: 2})
}

func TestStatsIsSafeDuringFetchesAndNeverDecreases(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	ts := newTestSource(t, withServer(srv)).ts
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			var last Stats
			for range 50 {
				ts.Invalidate(nil)
				if _, err := ts.Token(); err != nil {
					t.Error(err)
					return
				}
				st := ts.Stats()
				if st.TokenRequests < last.TokenRequests || st.Fetches < last.Fetches || st.Waits < last.Waits {
					t.Errorf("counters went down: %+v after %+v", counts(st), counts(last))
					return
				}
				last = st
			}
		})
	}
	wg.Wait()
	// A call may find the token another goroutine's fetch has just stored;
	// every fetch has at least one caller waiting for it.
	if st := ts.Stats(); st.Waits > 200 || st.Waits < st.Fetches || st.Fetches < 1 || st.Fetches != st.TokenRequests {
		t.Fatalf("after 200 calls just after an Invalidate: %+v; want a wait for each fetch, at most 200, and one request per fetch", counts(st))
	}
}
