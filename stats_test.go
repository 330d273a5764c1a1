package forteauth

import (
	"context"
	"testing"
	"time"

	"github.com/forteauth/forteauth/fortetest"
)

func TestStatsOfANewSourceAreZero(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	ts, _, _ := sourceFor(t, srv, nil)
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
	ts, clock, _ := sourceFor(t, srv, nil)
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
