// Package leaktest counts the goroutines that forteauth starts for its
// background work, so that a test can wait for earlier tests' work to end
// and then count only its own.
//
// It is for the tests of both modules, the root package's and redisstore's
// (whose replace directive lets it import internal packages). goleak, which
// both also use, checks once at the end of a run that nothing is left; a
// test needs to know mid-run what is running now.
package leaktest

import (
	"runtime"
	"strings"
	"testing"
	"time"
)

// Stack frames that name forteauth's background work, for Count.
const (
	// BackgroundRefresh is in the stack of a goroutine running a
	// TokenSource's background refresh.
	BackgroundRefresh = "forteauth.(*TokenSource).refreshInBackground.func"
	// SharedFetch is in the stack of a goroutine that runs a fetch shared
	// by the callers waiting for it.
	SharedFetch = "created by golang.org/x/sync/singleflight.(*Group).DoChan"
)

// quiesceLimit bounds Quiesce's wait. It is generous so that a loaded
// machine cannot make a test flake; a pass returns as soon as all is quiet.
const quiesceLimit = 10 * time.Second

// Count returns the number of goroutines whose stack mentions fn, a
// function name or any other text of a goroutine's stack trace.
func Count(fn string) int {
	buf := make([]byte, 8<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, fn) {
			n++
		}
	}
	return n
}

// Quiesce waits up to 10 s until no goroutine runs a BackgroundRefresh or
// a SharedFetch, and fails t if one still does. A test that counts them
// calls it first, so that it sees only those it starts itself.
func Quiesce(t testing.TB) {
	t.Helper()
	waitQuiet(t, quiesceLimit)
}

func waitQuiet(t testing.TB, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		refreshes, fetches := Count(BackgroundRefresh), Count(SharedFetch)
		if refreshes == 0 && fetches == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("leaktest: after %v, %d background refreshes and %d shared fetches that earlier tests started are still running", limit, refreshes, fetches)
			return
		}
		time.Sleep(time.Millisecond)
	}
}
