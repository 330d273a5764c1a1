package forteauth

import (
	"context"
	"testing"
	"time"

	"github.com/forteauth/forteauth/fortetest"
)

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

func TestWallStep(t *testing.T) {
	const g = wallStepGrain
	for _, c := range []struct{ skew, want time.Duration }{
		{0, 0},
		{time.Hour, 0}, // a suspend: the wall-clock age is the age
		{-g/2 + 1, 0},  // noise
		{-g / 2, -g / 2},
		{-g, -3 * g / 2},
		{-2 * time.Hour, -2*time.Hour - g/2},
		{-2*time.Hour + g/4, -2*time.Hour - g/2}, // noise around a step
		{-2*time.Hour - g/4, -2*time.Hour - g/2},
	} {
		got := wallStep(c.skew)
		if got != c.want {
			t.Errorf("wallStep(%v) = %v, want %v", c.skew, got, c.want)
		}
		if c.skew < 0 && got > c.skew && c.skew <= -g/2 {
			t.Errorf("wallStep(%v) = %v is later than the step", c.skew, got)
		}
	}
}
