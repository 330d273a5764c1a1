package forteauth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/forteauth/forteauth/fortetest"
	"golang.org/x/oauth2"
)

// memStore is an in-memory Store and Renewer whose values expire on a
// fake clock, with switches for the faults a real store has. Its locks
// expire in real time, as the lease protocol waits in real time.
type memStore struct {
	now func() time.Time

	mu       sync.Mutex
	vals     map[string]memItem
	locks    map[string]memItem
	ttls     []time.Duration // of every Set
	budgets  []time.Duration // the time each Get had, from its context's deadline
	gets     int
	renewals int
	fail     error         // returned by every call while set
	stall    chan struct{} // while set, Get waits for it or its context
	nlocks   int           // locks taken
	tries    int           // calls of Lock
}

type memItem struct {
	v       []byte
	expires time.Time
}

func newMemStore(now func() time.Time) *memStore {
	return &memStore{now: now, vals: map[string]memItem{}, locks: map[string]memItem{}}
}

func (m *memStore) Get(ctx context.Context, key string) ([]byte, error) {
	m.mu.Lock()
	stall := m.stall
	m.mu.Unlock()
	if stall != nil {
		select {
		case <-stall:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.gets++
	if d, ok := ctx.Deadline(); ok {
		m.budgets = append(m.budgets, time.Until(d))
	}
	if m.fail != nil {
		return nil, m.fail
	}
	it, ok := m.vals[key]
	if !ok || !m.now().Before(it.expires) {
		return nil, nil
	}
	return bytes.Clone(it.v), nil
}

func (m *memStore) Set(ctx context.Context, key string, v []byte, ttl time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	m.ttls = append(m.ttls, ttl)
	m.vals[key] = memItem{bytes.Clone(v), m.now().Add(ttl)}
	return nil
}

func (m *memStore) Lock(ctx context.Context, key string, ttl time.Duration) (string, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tries++
	if m.fail != nil {
		return "", false, m.fail
	}
	if it, ok := m.locks[key]; ok && time.Now().Before(it.expires) {
		return "", false, nil
	}
	m.nlocks++
	owner := fmt.Sprint("owner-", m.nlocks)
	m.locks[key] = memItem{[]byte(owner), time.Now().Add(ttl)}
	return owner, true, nil
}

func (m *memStore) Renew(ctx context.Context, key, owner string, ttl time.Duration) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return false, m.fail
	}
	it, ok := m.locks[key]
	if !ok || string(it.v) != owner || !time.Now().Before(it.expires) {
		return false, nil
	}
	m.renewals++
	m.locks[key] = memItem{it.v, time.Now().Add(ttl)}
	return true, nil
}

// readsLocks is a memStore that is also a LockReader.
type readsLocks struct{ *memStore }

func (r readsLocks) GetLocked(ctx context.Context, key, lockKey string) ([]byte, bool, error) {
	v, err := r.Get(ctx, key)
	if err != nil {
		return nil, false, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	it, held := r.locks[lockKey]
	return v, held && time.Now().Before(it.expires), nil
}

// lockOnly is a memStore without Renew, as a Locker that cannot renew.
type lockOnly struct{ m *memStore }

func (l lockOnly) Get(ctx context.Context, key string) ([]byte, error) { return l.m.Get(ctx, key) }
func (l lockOnly) Set(ctx context.Context, key string, v []byte, ttl time.Duration) error {
	return l.m.Set(ctx, key, v, ttl)
}
func (l lockOnly) Lock(ctx context.Context, key string, ttl time.Duration) (string, bool, error) {
	return l.m.Lock(ctx, key, ttl)
}
func (l lockOnly) Unlock(ctx context.Context, key, owner string) error {
	return l.m.Unlock(ctx, key, owner)
}

func (m *memStore) Unlock(ctx context.Context, key, owner string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if it, ok := m.locks[key]; ok && string(it.v) == owner {
		delete(m.locks, key)
	}
	return nil
}

func (m *memStore) set(f func(m *memStore)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f(m)
}

func (m *memStore) stats() (gets int, ttls []time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.gets, append([]time.Duration(nil), m.ttls...)
}

// fleet returns n TokenSources for srv's credentials sharing store and one
// fake clock, as n processes of one service would.
func fleet(t *testing.T, srv *fortetest.Server, n int, mod func(*Config)) ([]*TokenSource, *memStore, *fakeClock) {
	t.Helper()
	clock := newFakeClock()
	store := newMemStore(clock.Now)
	opts := []sourceOption{withServer(srv), withStore(store), withClock(clock)}
	if mod != nil {
		opts = append(opts, withConfig(mod))
	}
	var sources []*TokenSource
	for range n {
		sources = append(sources, newTestSource(t, opts...).ts)
	}
	return sources, store, clock
}

func TestStoreSharesOneTokenBetweenSources(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	sources, store, _ := fleet(t, srv, 5, nil)

	first := mustToken(t, sources[0])
	for _, ts := range sources[1:] {
		if tok := mustToken(t, ts); tok.AccessToken != first.AccessToken {
			t.Fatal("a source fetched its own token instead of the shared one")
		}
	}
	if n := tokenRequests(srv); n != 1 {
		t.Fatalf("token requests = %d for 5 sources sharing a store, want 1", n)
	}
	if got := mustToken(t, sources[1]).Extra("expires_in"); got != float64(3600) {
		t.Errorf("a token from the store has Extra(expires_in) = %#v, want float64(3600) as from the endpoint", got)
	}
	for k, it := range store.vals {
		for _, s := range []string{srv.ClientSecret, srv.ClientID, first.AccessToken} {
			if strings.Contains(k, s) || bytes.Contains(it.v, []byte(s)) {
				t.Fatalf("the store's key or value holds a secret, the client ID or the token in clear")
			}
		}
	}
}

func TestStoreTTLIsTheTokensUsableLifetime(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	sources, store, _ := fleet(t, srv, 1, nil)
	mustToken(t, sources[0])
	if _, ttls := store.stats(); len(ttls) != 1 || ttls[0] != time.Hour-30*time.Second {
		t.Fatalf("TTLs %v, want [59m30s]: expiry minus the margin", ttls)
	}
}

func TestStoreKeyDependsOnURLClientAndSecret(t *testing.T) {
	base := Config{ClientID: "id", ClientSecret: "secret-one", TokenURL: SandboxTokenURL, Store: newMemStore(time.Now)}
	key := func(c Config) string {
		sh, err := testSharing(&c)
		if err != nil {
			t.Fatal(err)
		}
		return sh.key
	}
	k := key(base)
	if strings.Contains(k, "secret-one") || key(base) != k {
		t.Fatalf("key %q holds the secret or is not stable", k)
	}
	for _, change := range []func(*Config){
		func(c *Config) { c.ClientSecret = "secret-two" },
		func(c *Config) { c.ClientID = "id2" },
		func(c *Config) { c.TokenURL = ProductionTokenURL },
	} {
		c := base
		change(&c)
		if key(c) == k {
			t.Fatalf("the key did not change with the Config: %+v", c)
		}
	}
}

// TestStoreKeysShareAHashTag: the token's key and its lock's key hash to
// one Redis Cluster slot, which a LockReader on a Cluster needs to read
// both in one command.
func TestStoreKeysShareAHashTag(t *testing.T) {
	sh, err := testSharing(&Config{ClientID: "id", ClientSecret: "secret-one", TokenURL: SandboxTokenURL, Store: newMemStore(time.Now)})
	if err != nil {
		t.Fatal(err)
	}
	tag := func(k string) string { // as Redis Cluster reads it
		if i := strings.IndexByte(k, '{'); i >= 0 {
			if j := strings.IndexByte(k[i+1:], '}'); j > 0 {
				return k[i+1 : i+1+j]
			}
		}
		return k
	}
	if tag(sh.key) == sh.key || tag(sh.key) != tag(sh.lockKey) || !strings.HasPrefix(sh.lockKey, sh.key) {
		t.Fatalf("key %q and lock key %q do not share a hash tag", sh.key, sh.lockKey)
	}
}

func TestStoreValueTamperedWithIsIgnoredAndReplaced(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	logger, logs := newTestLogger()
	sources, store, _ := fleet(t, srv, 2, func(c *Config) { c.Logger = logger })
	first := mustToken(t, sources[0])

	store.set(func(m *memStore) {
		for k, it := range m.vals {
			it.v[len(it.v)-1] ^= 1
			m.vals[k] = it
		}
	})
	second := mustToken(t, sources[1])
	if second.AccessToken == first.AccessToken || tokenRequests(srv) != 2 {
		t.Fatal("a tampered value was used")
	}
	if n := strings.Count(logs.String(), "does not open"); n != 1 {
		t.Fatalf("the bad value was logged %d times, want once:\n%s", n, logs)
	}
	// The replacement opens.
	if e, err := sources[0].share.load(context.Background(), func(*entry, time.Time) bool { return true }, time.Minute, time.Second); e == nil || err != nil || e.tok.AccessToken != second.AccessToken {
		t.Fatal("the tampered value was not replaced by the new token")
	}
}

func TestStoreValueSealedUnderAnotherSecretIsIgnored(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	sources, store, clock := fleet(t, srv, 1, nil)
	ts := sources[0]

	other := Config{ClientID: srv.ClientID, ClientSecret: "another-secret", TokenURL: srv.TokenURL, Store: store}
	sh, err := testSharing(&other)
	if err != nil {
		t.Fatal(err)
	}
	planted := newEntry(&oauth2.Token{AccessToken: "planted-token-value", ExpiresIn: 3600}, clock.Now(), time.Minute, time.Second)
	store.Set(context.Background(), ts.share.key, sh.seal(planted), time.Hour) // at our key

	if tok := mustToken(t, ts); tok.AccessToken == "planted-token-value" || tokenRequests(srv) != 1 {
		t.Fatal("a value sealed under another secret was used")
	}
}

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

func TestFirstStoreCallHasTimeToConnect(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	sources, store, _ := fleet(t, srv, 1, nil)
	ts := sources[0]
	mustToken(t, ts)
	ts.Invalidate(nil)
	mustToken(t, ts)
	store.mu.Lock()
	budgets := append([]time.Duration(nil), store.budgets...)
	store.mu.Unlock()
	if len(budgets) < 2 {
		t.Fatalf("%d Gets, want at least 2", len(budgets))
	}
	// A SYN dropped by a full listen queue is sent again after 1 s.
	if first := budgets[0]; first <= 2*time.Second || first > storeConnectTimeout {
		t.Errorf("the first Get had %v, want more than a TCP SYN retry and the handshake (2 s), at most storeConnectTimeout", first)
	}
	if last := budgets[len(budgets)-1]; last > storeTimeout {
		t.Errorf("a Get on a store that has answered had %v, want at most storeTimeout (%v)", last, storeTimeout)
	}
}

func TestSlowStoreDelaysAFetchByAtMostTheStoreTimeout(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	sources, store, _ := fleet(t, srv, 1, nil)
	stall := make(chan struct{})
	defer close(stall)
	store.set(func(m *memStore) { m.stall = stall })

	within(t, "Token with a store that never answers", func() { mustToken(t, sources[0]) })
	if n := tokenRequests(srv); n != 1 {
		t.Fatalf("token requests = %d, want 1 direct fetch", n)
	}
}

// TestWaitersAdoptTheLockHoldersToken: a source that finds the lock held
// by another waits for the holder's token and takes it, with no request.
// If its Store is a LockReader, which says in the read that finds no token
// that the lock is held, it does not try the lock first; with a plain
// Locker it tries once. With the lock free, both take it and fetch.
func TestWaitersAdoptTheLockHoldersToken(t *testing.T) {
	for _, c := range []struct {
		name      string
		store     func(*memStore) Store
		triesHeld int // Lock calls while another holds the lock
	}{
		{"LockReader", func(m *memStore) Store { return readsLocks{m} }, 0},
		{"Renewer", func(m *memStore) Store { return m }, 1},
	} {
		t.Run(c.name+"/held", func(t *testing.T) {
			srv := fortetest.NewServer()
			defer srv.Close()
			clock := newFakeClock()
			m := newMemStore(clock.Now)
			ts := newTestSource(t, withServer(srv), withStore(c.store(m)), withClock(clock)).ts
			m.Lock(context.Background(), ts.share.lockKey, time.Minute) // another process is fetching
			m.set(func(m *memStore) { m.tries = 0 })

			got := make(chan *oauth2.Token, 1)
			go func() { tok, _ := ts.Token(); got <- tok }()
			eventually(t, "the source to wait for the holder", func() bool {
				gets, _ := m.stats()
				m.mu.Lock()
				defer m.mu.Unlock()
				return gets >= 1 && m.tries == c.triesHeld
			})
			holders := newEntry(&oauth2.Token{AccessToken: "the-holders-token-value", ExpiresIn: 3600}, clock.Now(), time.Minute, time.Second)
			m.Set(context.Background(), ts.share.key, ts.share.seal(holders), time.Hour)
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
			if tries != c.triesHeld || tokenRequests(srv) != 0 {
				t.Errorf("%d Lock calls and %d token requests while another held the lock, want %d and 0", tries, tokenRequests(srv), c.triesHeld)
			}
		})
		t.Run(c.name+"/free", func(t *testing.T) {
			srv := fortetest.NewServer()
			defer srv.Close()
			clock := newFakeClock()
			m := newMemStore(clock.Now)
			ts := newTestSource(t, withServer(srv), withStore(c.store(m)), withClock(clock)).ts
			mustToken(t, ts)
			if m.nlocks != 1 || tokenRequests(srv) != 1 || len(m.locks) != 0 {
				t.Errorf("%d locks taken, %d token requests, %d locks left, want 1, 1 and 0", m.nlocks, tokenRequests(srv), len(m.locks))
			}
		})
	}
}

func TestADeadLockHolderCostsAtMostOneLease(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	sources, store, _ := fleet(t, srv, 1, nil)
	ts := sources[0]
	ts.share.lease, ts.share.pollFirst = 300*time.Millisecond, 10*time.Millisecond
	store.Lock(context.Background(), ts.share.lockKey, ts.share.lease) // its holder died at once

	start := time.Now()
	within(t, "Token while a dead holder has the lock", func() { mustToken(t, ts) })
	took := time.Since(start)
	if n := tokenRequests(srv); n != 1 {
		t.Fatalf("token requests = %d, want 1 after the lease", n)
	}
	if took < ts.share.lease {
		t.Errorf("a token came after %v, before the dead holder's lease (%v) ended", took, ts.share.lease)
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
		ts.share.lease, ts.share.pollFirst, ts.share.pollMax = 100*time.Millisecond, 10*time.Millisecond, 50*time.Millisecond
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

func TestALockThatCannotBeRenewedIsWaitedForAtMostTheLockWait(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	clock := newFakeClock()
	store := newMemStore(clock.Now)
	ts := newTestSource(t, withServer(srv), withStore(lockOnly{store}), withClock(clock)).ts
	ts.share.lockWait, ts.share.pollFirst = 100*time.Millisecond, 10*time.Millisecond
	store.Lock(context.Background(), ts.share.lockKey, time.Hour) // its holder died

	start := time.Now()
	within(t, "Token while a dead holder has the lock", func() { mustToken(t, ts) })
	if n := tokenRequests(srv); n != 1 || time.Since(start) < ts.share.lockWait {
		t.Fatalf("token requests = %d after %v, want 1 after the lock wait", n, time.Since(start))
	}
	if _, ttls := store.stats(); len(ttls) != 1 {
		t.Fatalf("%d values saved, want 1", len(ttls))
	}
}

func TestBackgroundRefreshAdoptsANewerTokenFromTheStore(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	sources, _, clock := fleet(t, srv, 2, nil)
	a, b := sources[0], sources[1]
	first := mustToken(t, a)
	mustToken(t, b)

	clock.Advance(time.Hour - time.Minute) // both in the window
	mustToken(t, a)
	eventually(t, "a's refresh", func() bool { return !a.refreshing.Load() && a.cache.Load().tok.AccessToken != first.AccessToken })
	mustToken(t, b)
	eventually(t, "b's refresh", func() bool { return !b.refreshing.Load() && b.cache.Load().tok.AccessToken != first.AccessToken })
	if a.cache.Load().tok.AccessToken != b.cache.Load().tok.AccessToken || tokenRequests(srv) != 2 {
		t.Fatalf("token requests = %d; b should have adopted a's new token", tokenRequests(srv))
	}
}

func TestInvalidatedTokenIsNotTakenBackFromTheStore(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	sources, _, _ := fleet(t, srv, 2, nil)
	a, b := sources[0], sources[1]
	first := mustToken(t, a)
	mustToken(t, b)

	b.Invalidate(first) // the API rejected it
	second := mustToken(t, b)
	if second.AccessToken == first.AccessToken || tokenRequests(srv) != 2 {
		t.Fatal("the invalidated token came back from the store")
	}
	a.Invalidate(nil)
	if tok := mustToken(t, a); tok.AccessToken != second.AccessToken || tokenRequests(srv) != 2 {
		t.Fatal("a did not adopt b's replacement")
	}
}

func TestStoreIsNotOnTheHotPath(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	sources, store, _ := fleet(t, srv, 1, nil)
	mustToken(t, sources[0])
	before, _ := store.stats()
	for range 100 {
		mustToken(t, sources[0])
	}
	if after, _ := store.stats(); after != before {
		t.Fatalf("%d store reads for cached tokens, want 0", after-before)
	}
}

func TestSealedValueIsBoundToItsKey(t *testing.T) {
	cfg := &Config{ClientID: "id", ClientSecret: "secret", TokenURL: SandboxTokenURL, Store: newMemStore(time.Now)}
	sh, err := testSharing(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e := newEntry(&oauth2.Token{AccessToken: "token-value", ExpiresIn: 3600}, time.Now(), time.Minute, time.Second)
	v := sh.seal(e)
	if tok, _, err := sh.open(v); err != nil || tok.AccessToken != "token-value" {
		t.Fatalf("open(seal) = %v, %v", tok, err)
	}
	moved, _ := testSharing(cfg) // same sealing key
	moved.key = sh.key + "-elsewhere"
	if _, _, err := moved.open(v); err == nil {
		t.Fatal("a value moved to another key opened")
	}
}

// testSharing is the Store sharing of a source made from c, on the system clock.
func testSharing(c *Config) (*sharing, error) {
	clk := systemClock()
	return newSharing(c, &clk, slog.New(slog.DiscardHandler), new(counters), defaultRetry.budget)
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
