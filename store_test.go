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

// memStore is an in-memory Store and Locker whose entries expire on a
// fake clock, with switches for the faults a real store has.
type memStore struct {
	now func() time.Time

	mu     sync.Mutex
	vals   map[string]memItem
	locks  map[string]memItem
	ttls   []time.Duration // of every Set
	gets   int
	fail   error         // returned by every call while set
	stall  chan struct{} // while set, Get waits for it or its context
	nlocks int
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
	if m.fail != nil {
		return "", false, m.fail
	}
	if it, ok := m.locks[key]; ok && m.now().Before(it.expires) {
		return "", false, nil
	}
	m.nlocks++
	owner := fmt.Sprint("owner-", m.nlocks)
	m.locks[key] = memItem{[]byte(owner), m.now().Add(ttl)}
	return owner, true, nil
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
		t.Fatalf("the failed store was asked %d times within storeRetry, want 1", gets)
	}

	store.set(func(m *memStore) { m.fail = nil })
	clock.Advance(storeRetry)
	mustToken(t, ts)
	if gets, ttls := store.stats(); gets < 2 || len(ttls) != 1 { // read before and after taking the lock
		t.Fatalf("after storeRetry the store was not used again (gets %d, sets %d)", gets, len(ttls))
	}
	if !strings.Contains(logs.String(), "token store works again") {
		t.Fatalf("recovery not logged:\n%s", logs)
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

func TestWaitersAdoptTheLockHoldersToken(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	sources, store, clock := fleet(t, srv, 1, nil)
	ts := sources[0]
	store.Lock(context.Background(), ts.share.lockKey, time.Minute) // another process is fetching

	got := make(chan *oauth2.Token, 1)
	go func() {
		tok, _ := ts.Token()
		got <- tok
	}()
	eventually(t, "the source to look in the store", func() bool { gets, _ := store.stats(); return gets >= 2 })
	holders := newEntry(&oauth2.Token{AccessToken: "the-holders-token-value", ExpiresIn: 3600}, clock.Now(), time.Minute, time.Second)
	store.Set(context.Background(), ts.share.key, ts.share.seal(holders), time.Hour)

	select {
	case tok := <-got:
		if tok == nil || tok.AccessToken != "the-holders-token-value" {
			t.Fatal("did not adopt the lock holder's token")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("waiter never returned")
	}
	if n := tokenRequests(srv); n != 0 {
		t.Fatalf("token requests = %d, want 0", n)
	}
}

func TestADeadLockHolderCostsAtMostTheLockWait(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	sources, store, _ := fleet(t, srv, 1, nil)
	ts := sources[0]
	ts.share.lockWait = 100 * time.Millisecond
	store.Lock(context.Background(), ts.share.lockKey, time.Hour) // its holder died

	within(t, "Token while a dead holder has the lock", func() { mustToken(t, ts) })
	if n := tokenRequests(srv); n != 1 {
		t.Fatalf("token requests = %d, want 1 after the wait", n)
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
