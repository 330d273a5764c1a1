package forteauth

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/forteauth/forteauth/fortetest"
	"golang.org/x/oauth2"
)

// The refresh lock, in synctest bubbles: leases, polls and latency run on
// the bubble's clock, so each test asserts the exact schedule.

// bubbleFleet returns n sources sharing one memory server and one
// memStore, in the current bubble.
func bubbleFleet(t *testing.T, n int) ([]*TokenSource, *memStore, *fortetest.Server) {
	t.Helper()
	srv := fortetest.NewMemoryServer()
	t.Cleanup(srv.Close)
	m := newMemStore(time.Now)
	var sources []*TokenSource
	for range n {
		sources = append(sources, newTestSource(t, inBubble(), withServer(srv), withStore(m)).ts)
	}
	return sources, m, srv
}

// TestWaitersAdoptTheLockHoldersToken: a source that finds the lock held
// by another, in the one read that finds no token, waits for the holder's
// token and takes it at its first look after it was stored, with no token
// request and no try of the lock.
func TestWaitersAdoptTheLockHoldersToken(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sources, m, srv := bubbleFleet(t, 1)
		ts := sources[0]
		m.Lock(context.Background(), ts.sealerFor(testCredsOf(ts)).key, leaseTTL) // another process is fetching
		m.set(func(m *memStore) { m.tries = 0 })

		start := time.Now()
		got := make(chan *oauth2.Token, 1)
		go func() { tok, _ := ts.Token(); got <- tok }()
		time.Sleep(100 * time.Millisecond) // the holder's fetch takes this long
		holders := stored{&oauth2.Token{AccessToken: "the-holders-token-value", ExpiresIn: 3600}, time.Now()}
		m.Set(context.Background(), ts.sealerFor(testCredsOf(ts)).key, ts.sealerFor(testCredsOf(ts)).seal(holders), time.Hour)
		tok := <-got
		took := time.Since(start)

		if tok == nil || tok.AccessToken != "the-holders-token-value" {
			t.Fatal("did not adopt the lock holder's token")
		}
		if m.tries != 0 || tokenRequests(srv) != 0 {
			t.Errorf("%d Lock calls and %d token requests while another held the lock, want 0 and 0", m.tries, tokenRequests(srv))
		}
		if gets, _ := m.stats(); gets != 2 || took < pollFirst || took > pollFirst+pollFirst/4 {
			t.Errorf("adopted after %v and %d reads, want 2 reads, the second at the first look, %v to %v", took, gets, pollFirst, pollFirst+pollFirst/4)
		}
	})
}

// TestAFreeLockIsTakenForTheFetch: a source that finds no token and the
// lock free takes the lock, fetches, stores its token and lets go.
func TestAFreeLockIsTakenForTheFetch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sources, m, srv := bubbleFleet(t, 1)
		mustToken(t, sources[0])
		if _, ttls := m.stats(); m.nlocks != 1 || tokenRequests(srv) != 1 || len(m.locks) != 0 || len(ttls) != 1 {
			t.Errorf("%d locks taken, %d token requests, %d locks left, %d values stored; want 1, 1, 0 and 1", m.nlocks, tokenRequests(srv), len(m.locks), len(ttls))
		}
	})
}

// TestADeadLockHolderCostsOneLease: a holder that died at once leaves its
// lock until its lease ends; the waiter takes the lock then, not before,
// and fetches.
func TestADeadLockHolderCostsOneLease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sources, m, srv := bubbleFleet(t, 1)
		m.Lock(context.Background(), sources[0].sealerFor(testCredsOf(sources[0])).key, leaseTTL) // its holder died at once

		start := time.Now()
		mustToken(t, sources[0])
		if took := time.Since(start); took != leaseTTL {
			t.Errorf("a token came after %v, want exactly the dead holder's lease, %v", took, leaseTTL)
		}
		if n := tokenRequests(srv); n != 1 || m.nlocks != 2 {
			t.Errorf("%d token requests and %d locks taken, want 1 and 2: the dead holder's and the waiter's", n, m.nlocks)
		}
	})
}

// TestALiveHolderIsWaitedForHoweverSlow: the holder's fetch takes three
// leases; it renews its lease every third of one, so the other source
// waits for its token and makes no request of its own.
func TestALiveHolderIsWaitedForHoweverSlow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sources, m, srv := bubbleFleet(t, 2)
		holder, waiter := sources[0], sources[1]
		const fetch = 3 * leaseTTL
		srv.SetLatency(fetch)
		held := make(chan string, 1)
		go func() {
			tok, _ := holder.Token()
			held <- tok.AccessToken
		}()
		synctest.Wait() // the holder has the lock, and its request is at the endpoint

		start := time.Now()
		tok := mustToken(t, waiter)
		if tok.AccessToken != <-held || tokenRequests(srv) != 1 {
			t.Fatalf("%d token requests: the waiter did not adopt the live holder's token", tokenRequests(srv))
		}
		if took := time.Since(start); took < fetch || took > fetch+pollMax+pollMax/4 {
			t.Errorf("the waiter got the token after %v, want within a poll after the holder's %v fetch", took, fetch)
		}
		// A tick at the instant the fetch ends may come before or after it.
		if want := int(fetch / (leaseTTL / 3)); m.renewals < want-1 || m.renewals > want {
			t.Errorf("the holder renewed its lease %d times during a %v fetch, want %d or %d", m.renewals, fetch, want-1, want)
		}
		if len(m.locks) != 0 {
			t.Errorf("the lock is still held after the fetch: %v", m.locks)
		}
	})
}

// TestWaitersLookRarely: a waiter looks for a 1 s holder's token at about
// 0.25 s, 0.75 s and 1.75 s, not every few milliseconds.
func TestWaitersLookRarely(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sources, m, srv := bubbleFleet(t, 2)
		srv.SetLatency(time.Second)
		go sources[0].Token()
		synctest.Wait()
		before, _ := m.stats()
		mustToken(t, sources[1])
		after, _ := m.stats()
		// One read that finds the lock held, then looks at 0.25-0.31 s,
		// 0.75-0.94 s, and 1.75-2.2 s, which finds the token.
		if n := after - before; n != 4 || tokenRequests(srv) != 1 {
			t.Fatalf("the waiter read the store %d times while a holder fetched for 1 s (want 4), %d token requests", n, tokenRequests(srv))
		}
	})
}
