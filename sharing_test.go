package forteauth

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/forteauth/forteauth/fortetest"
)

func TestStoreFailureFallsBackToTheEndpointAndIsRetriedLater(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	logger, logs := newTestLogger()
	sources, store, clock := fleet(t, srv, 1, func(c *Config) { c.Logger = logger })
	ts := sources[0]
	store.set(func(m *memStore) { m.fail = errors.New("OOM command not allowed when used memory > 'maxmemory'") })

	for range 3 {
		mustToken(t, ts)
		ts.Invalidate(nil)
	}
	if n := tokenRequests(srv); n != 3 {
		t.Fatalf("token requests = %d, want 3 direct fetches", n)
	}
	if n := strings.Count(logs.String(), "token store failed"); n != 1 {
		t.Fatalf("the fault was logged %d times, want once:\n%s", n, logs)
	}
	gets, _ := store.stats()
	if gets != 1 {
		t.Fatalf("the failed store was asked %d times within its pause, want 1", gets)
	}

	// The pause is short after one fault: a failover is over in seconds.
	clock.Advance(storeBackoff.base)
	mustToken(t, ts)
	ts.Invalidate(nil)
	if gets, _ := store.stats(); gets != 2 {
		t.Fatalf("after storeBackoff.base the store was asked %d times in all, want 2: the pause after one fault must be short", gets)
	}
	// and grows with faults in a row: the second is at least storeBackoff.base.
	clock.Advance(storeBackoff.base - time.Nanosecond)
	mustToken(t, ts)
	ts.Invalidate(nil)
	if gets, _ := store.stats(); gets != 2 {
		t.Fatalf("storeBackoff.base after a second fault in a row the store was asked again (%d in all): the pause must grow", gets)
	}

	store.set(func(m *memStore) { m.fail = nil })
	clock.Advance(storeBackoff.max)
	mustToken(t, ts)
	if gets, ttls := store.stats(); gets < 4 || len(ttls) != 1 { // read before and after taking the lock
		t.Fatalf("after storeBackoff.max the store was not used again (gets %d, sets %d)", gets, len(ttls))
	}
	if !strings.Contains(logs.String(), "token store works again") {
		t.Fatalf("recovery not logged:\n%s", logs)
	}
}

// TestAFullStoreIsLoggedOnce: a store that answers reads but refuses
// writes is one outage, not one per read.
func TestAFullStoreIsLoggedOnce(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	logger, logs := newTestLogger()
	full := &failingWrites{memStore: newMemStore(time.Now)}
	s := newTestSource(t, withServer(srv), withStore(full), withConfig(func(c *Config) { c.Logger = logger }))
	ts, clock := s.ts, s.clock
	for range 4 {
		clock.Advance(storeBackoff.max)
		ts.Invalidate(nil)
		mustToken(t, ts)
	}
	if n := strings.Count(logs.String(), "token store failed"); n != 1 || strings.Contains(logs.String(), "token store works again") {
		t.Fatalf("a store that stays full was logged as failing %d times (want once, with no recovery):\n%s", n, logs)
	}
}

type failingWrites struct{ *memStore }

func (f *failingWrites) Lock(context.Context, string, time.Duration) (string, bool, error) {
	return "", false, errors.New("OOM command not allowed when used memory > 'maxmemory'")
}

func TestBackgroundRefreshWaitsOutAStorePauseInsteadOfFetching(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	sources, store, clock := fleet(t, srv, 2, nil)
	first := mustToken(t, sources[0])
	mustToken(t, sources[1]) // from the store
	e := sources[1].cache.Load()

	// A failover: the store fails as sources[1]'s refresh falls due.
	store.set(func(m *memStore) { m.fail = errors.New("dial tcp 127.0.0.1:6379: connect: connection refused") })
	clock.Advance(e.refreshAfter)
	if tok := mustToken(t, sources[1]); tok.AccessToken != first.AccessToken {
		t.Fatal("the refresh-due token was not handed out")
	}
	eventually(t, "the background refresh to end", func() bool { return !sources[1].refreshing.Load() })
	if n := tokenRequests(srv); n != 1 {
		t.Fatalf("token requests = %d: a background refresh during a store fault fetched directly instead of waiting for the store", n)
	}
	if got := sources[1].cache.Load(); got.tok != e.tok || got.refreshAfter <= e.refreshAfter {
		t.Fatal("the refresh was not put off until the store's pause ends")
	}

	// The new master is up: sources[0] refreshes through the store, and
	// sources[1], once its pause is over, takes that token.
	store.set(func(m *memStore) { m.fail = nil })
	clock.Advance(storeBackoff.max)
	if e0 := sources[0].cache.Load(); e0.age(clock.Now()) < e0.refreshAfter {
		clock.Advance(e0.refreshAfter - e0.age(clock.Now())) // its own refresh point, jittered apart from sources[1]'s
	}
	second := mustToken(t, sources[0])
	eventually(t, "sources[0]'s refresh", func() bool {
		second = mustToken(t, sources[0])
		return second.AccessToken != first.AccessToken
	})
	eventually(t, "sources[1] to take the stored token", func() bool {
		return mustToken(t, sources[1]).AccessToken == second.AccessToken
	})
	if n := tokenRequests(srv); n != 2 {
		t.Fatalf("token requests = %d, want 2: one per lifetime for the fleet", n)
	}
}

// TestFirstStoreCallHasTimeToConnect: a source's calls before its Store
// first answers get storeConnectTimeout, to open a connection; the later
// ones storeTimeout.
func TestFirstStoreCallHasTimeToConnect(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sources, m, _ := bubbleFleet(t, 1)
		ts := sources[0]
		mustToken(t, ts)
		ts.Invalidate(nil)
		mustToken(t, ts)
		// A SYN dropped by a full listen queue is sent again after 1 s.
		if len(m.budgets) < 2 || m.budgets[0] != storeConnectTimeout || m.budgets[len(m.budgets)-1] != storeTimeout {
			t.Errorf("the reads had %v, want %v for the first, %v once the store has answered", m.budgets, storeConnectTimeout, storeTimeout)
		}
		if storeConnectTimeout <= 2*time.Second {
			t.Errorf("storeConnectTimeout %v leaves no room for a TCP SYN sent again after 1 s and the handshake", storeConnectTimeout)
		}
	})
}

// TestSlowStoreDelaysAFetchByAtMostTheStoreTimeout: once a Store has
// answered, a read it never answers costs a fetch storeTimeout, after
// which the source fetches directly.
func TestSlowStoreDelaysAFetchByAtMostTheStoreTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sources, m, srv := bubbleFleet(t, 1)
		ts := sources[0]
		mustToken(t, ts)
		stall := make(chan struct{})
		defer close(stall)
		m.set(func(m *memStore) { m.stall = stall })

		ts.Invalidate(nil)
		start := time.Now()
		mustToken(t, ts)
		if took := time.Since(start); took != storeTimeout || tokenRequests(srv) != 2 {
			t.Errorf("Token with a store that stopped answering took %v, and %d token requests in all; want %v and 2", took, tokenRequests(srv), storeTimeout)
		}
	})
}
