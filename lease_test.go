package forteauth

import (
	"context"
	"testing"
	"time"

	"github.com/forteauth/forteauth/fortetest"
	"golang.org/x/oauth2"
)

// TestWaitersAdoptTheLockHoldersToken: a source that finds the lock held
// by another, in the one read that finds no token, waits for the holder's
// token and takes it, with no token request and no try of the lock.
func TestWaitersAdoptTheLockHoldersToken(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	clock := newFakeClock()
	m := newMemStore(clock.Now)
	ts := newTestSource(t, withServer(srv), withStore(m), withClock(clock)).ts
	m.Lock(context.Background(), ts.sealer.key, time.Minute) // another process is fetching
	m.set(func(m *memStore) { m.tries = 0 })

	got := make(chan *oauth2.Token, 1)
	go func() { tok, _ := ts.Token(); got <- tok }()
	eventually(t, "the source to wait for the holder", func() bool {
		gets, _ := m.stats()
		return gets >= 1
	})
	holders := stored{&oauth2.Token{AccessToken: "the-holders-token-value", ExpiresIn: 3600}, clock.Now()}
	m.Set(context.Background(), ts.sealer.key, ts.sealer.seal(holders), time.Hour)
	select {
	case tok := <-got:
		if tok == nil || tok.AccessToken != "the-holders-token-value" {
			t.Fatal("did not adopt the lock holder's token")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("waiter never returned")
	}
	m.mu.Lock()
	tries := m.tries
	m.mu.Unlock()
	if tries != 0 || tokenRequests(srv) != 0 {
		t.Errorf("%d Lock calls and %d token requests while another held the lock, want 0 and 0", tries, tokenRequests(srv))
	}
}

// TestAFreeLockIsTakenForTheFetch: a source that finds no token and the
// lock free takes the lock, fetches, stores its token and lets go.
func TestAFreeLockIsTakenForTheFetch(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	clock := newFakeClock()
	m := newMemStore(clock.Now)
	ts := newTestSource(t, withServer(srv), withStore(m), withClock(clock)).ts
	mustToken(t, ts)
	if _, ttls := m.stats(); m.nlocks != 1 || tokenRequests(srv) != 1 || len(m.locks) != 0 || len(ttls) != 1 {
		t.Errorf("%d locks taken, %d token requests, %d locks left, %d values stored; want 1, 1, 0 and 1", m.nlocks, tokenRequests(srv), len(m.locks), len(ttls))
	}
}

func TestADeadLockHolderCostsAtMostOneLease(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	sources, store, _ := fleet(t, srv, 1, nil)
	ts := sources[0]
	ts.shared.lease, ts.shared.pollFirst = 300*time.Millisecond, 10*time.Millisecond
	store.Lock(context.Background(), ts.sealer.key, ts.shared.lease) // its holder died at once

	start := time.Now()
	within(t, "Token while a dead holder has the lock", func() { mustToken(t, ts) })
	took := time.Since(start)
	if n := tokenRequests(srv); n != 1 {
		t.Fatalf("token requests = %d, want 1 after the lease", n)
	}
	if took < ts.shared.lease {
		t.Errorf("a token came after %v, before the dead holder's lease (%v) ended", took, ts.shared.lease)
	}
	if n := store.nlocks; n != 2 {
		t.Errorf("%d locks taken, want 2: the dead holder's and the waiter's", n)
	}
}

// TestALiveHolderIsWaitedForHoweverSlow: the holder's fetch takes six
// leases; it renews its lease, so the other source waits for its token
// and makes no request of its own.
func TestALiveHolderIsWaitedForHoweverSlow(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	srv.SetLatency(600 * time.Millisecond)
	sources, store, _ := fleet(t, srv, 2, nil)
	holder, waiter := sources[0], sources[1]
	for _, ts := range sources {
		ts.shared.lease, ts.shared.pollFirst, ts.shared.pollMax = 100*time.Millisecond, 10*time.Millisecond, 50*time.Millisecond
	}
	got := make(chan string, 1)
	go func() { got <- mustToken(t, holder).AccessToken }()
	eventually(t, "the holder's token request", func() bool { return srv.Stats().TokenRequests == 1 })
	tok := mustToken(t, waiter)
	if held := <-got; tok.AccessToken != held || tokenRequests(srv) != 1 {
		t.Fatalf("token requests = %d: the waiter did not adopt the live holder's token", tokenRequests(srv))
	}
	store.mu.Lock()
	renewals := store.renewals
	store.mu.Unlock()
	if renewals < 3 {
		t.Errorf("the holder renewed its lease %d times in six leases, want at least 3", renewals)
	}
	if len(store.locks) != 0 {
		t.Errorf("the lock is still held after the fetch: %v", store.locks)
	}
}

// TestWaitersLookRarely: a waiter looks for a 1 s holder's token a few
// times, not every few milliseconds.
func TestWaitersLookRarely(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	srv.SetLatency(time.Second)
	sources, store, _ := fleet(t, srv, 2, nil)
	got := make(chan struct{})
	go func() { defer close(got); mustToken(t, sources[0]) }()
	eventually(t, "the holder's token request", func() bool { return srv.Stats().TokenRequests == 1 })
	before, _ := store.stats()
	mustToken(t, sources[1])
	after, _ := store.stats()
	<-got
	// pollFirst 250 ms, then doubling: at most 0.25, 0.75, 1.75 s.
	if n := after - before; n > 4 || tokenRequests(srv) != 1 {
		t.Fatalf("the waiter read the store %d times while a holder fetched for 1 s (want at most 4), %d token requests", n, tokenRequests(srv))
	}
}
