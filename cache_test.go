package forteauth

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/forteauth/forteauth/fortetest"
	"golang.org/x/oauth2"
)

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

func TestWallStep(t *testing.T) {
	const g, margin = wallStepGrain, 30 * time.Second
	for _, c := range []struct{ skew, want time.Duration }{
		{0, 0},
		{time.Hour, 0},               // a suspend: the wall-clock age is the age
		{-time.Millisecond, 0},       // noise
		{-250 * time.Millisecond, 0}, // noise on a loaded machine
		{-margin + 1, 0},             // a step back smaller than the margin
		{-margin, -margin - g/2},
		{-2 * time.Hour, -2*time.Hour - g/2},
		{-2*time.Hour + g/4, -2*time.Hour - g/2}, // noise around a step
		{-2*time.Hour - g/4, -2*time.Hour - g/2},
	} {
		got := wallStep(c.skew, margin)
		if got != c.want {
			t.Errorf("wallStep(%v, %v) = %v, want %v", c.skew, margin, got, c.want)
		}
		if got != 0 && got > c.skew {
			t.Errorf("wallStep(%v, %v) = %v is later than the step", c.skew, margin, got)
		}
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

// TestExpiryIsStableForOneToken runs on the real clock, whose readings
// carry both clocks: the wall and monotonic readings of one time.Now are
// taken apart, so an Expiry recomputed from both on every call differs by
// nanoseconds from one call to the next.
func TestExpiryIsStableForOneToken(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	ts := (&Config{ClientID: srv.ClientID, ClientSecret: srv.ClientSecret, TokenURL: srv.TokenURL}).TokenSource(context.Background())
	first := mustToken(t, ts)
	for i := range 10000 {
		tok := mustToken(t, ts)
		if !tok.Expiry.Equal(first.Expiry) {
			t.Fatalf("call %d: Expiry %v, want the first call's %v (off by %v)", i, tok.Expiry, first.Expiry, tok.Expiry.Sub(first.Expiry))
		}
	}
}

// TestExpiryMovesOnlyWithTheState checks, on the fake clock, that Expiry is
// the same for every call within one state, and moves when the refresh
// window opens, at each dueRecheck step within it, and with a new token.
func TestExpiryMovesOnlyWithTheState(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	release := srv.Hold() // no background refresh lands while we look
	defer release()
	src := newTestSource(t, withServer(srv))
	ts, clock := src.ts, src.clock
	go release() // let the first fetch through
	fresh := mustToken(t, ts)
	release = srv.Hold()
	e := ts.cache.Load()

	clock.Advance(e.refreshAfter / 2)
	if tok := mustToken(t, ts); !tok.Expiry.Equal(fresh.Expiry) {
		t.Fatalf("fresh token: Expiry moved from %v to %v", fresh.Expiry, tok.Expiry)
	}
	clock.Advance(e.refreshAfter - e.refreshAfter/2) // the window opens
	due := mustToken(t, ts)
	if due.Expiry.Equal(fresh.Expiry) {
		t.Fatal("Expiry did not change when the refresh window opened")
	}
	clock.Advance(dueRecheck / 2)
	if tok := mustToken(t, ts); !tok.Expiry.Equal(due.Expiry) {
		t.Fatalf("within one recheck step: Expiry moved from %v to %v", due.Expiry, tok.Expiry)
	}
	clock.Advance(dueRecheck / 2)
	if tok := mustToken(t, ts); !tok.Expiry.Equal(due.Expiry.Add(dueRecheck)) {
		t.Fatalf("next recheck step: Expiry %v, want %v", tok.Expiry, due.Expiry.Add(dueRecheck))
	}
	release()
	eventually(t, "the background refresh to land", func() bool { return ts.cache.Load() != e })
	if tok := mustToken(t, ts); tok.Expiry.Equal(due.Expiry.Add(dueRecheck)) {
		t.Fatal("a new token kept the old token's Expiry")
	}
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
// oauth2.NewClient, in a synctest bubble, over three lifetimes of 6 s
// tokens, with four callers each making a request every 50 ms. The
// refresh window is 3 s and the margin 1.5 s, so every background refresh
// has at least 0.75 s before anyone would wait.
func TestThroughOAuth2NewClientNoRequestWaitsAfterTheFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fortetest.NewMemoryServer()
		const lifetime, lifetimes = 6 * time.Second, 3
		srv.SetLifetime(lifetime)
		cfg := &Config{ClientID: srv.ClientID, ClientSecret: srv.ClientSecret, TokenURL: srv.TokenURL, HTTPClient: srv.Client()}
		check := &noWaitCheck{ts: cfg.TokenSource(context.Background())}
		c := oauth2.NewClient(context.WithValue(context.Background(), oauth2.HTTPClient, srv.Client()), check)

		stop := time.Now().Add(lifetimes*lifetime + time.Second)
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for time.Now().Before(stop) {
					if code := get(t, c, srv.URL+"/v3/x"); code != 200 {
						t.Errorf("status %d", code)
						return
					}
					time.Sleep(50 * time.Millisecond)
				}
			})
		}
		wg.Wait()
		if check.waits != 0 {
			t.Fatalf("%d of %d calls through oauth2.NewClient had to wait for a fetch", check.waits, check.calls)
		}
		if st := srv.Stats(); st.APIExpired != 0 || st.APIRejected != 0 || st.TokenRequests < lifetimes+1 {
			t.Fatalf("expired-token requests %d, rejected %d, token requests %d", st.APIExpired, st.APIRejected, st.TokenRequests)
		}
	})
}
