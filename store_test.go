package forteauth

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/forteauth/forteauth/fortetest"
	"golang.org/x/oauth2"
)

// memStore is an in-memory Store and Locker whose values expire on a fake
// clock, with switches for the faults a real store has. Its locks expire
// in real time, as the lease protocol waits in real time.
type memStore struct {
	now func() time.Time

	mu       sync.Mutex
	vals     map[string]memItem
	locks    map[string]memItem // by the key they lock
	ttls     []time.Duration    // of every Set
	budgets  []time.Duration    // the time each read had, from its context's deadline
	gets     int                // reads: Get and GetLocked
	renewals int
	fail     error         // returned by every call while set
	stall    chan struct{} // while set, reads wait for it or their context
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

func (m *memStore) GetLocked(ctx context.Context, key string) ([]byte, bool, error) {
	v, err := m.Get(ctx, key)
	if err != nil {
		return nil, false, err
	}
	return v, m.held(key), nil
}

// held reports whether key's lock is held.
func (m *memStore) held(key string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	it, ok := m.locks[key]
	return ok && time.Now().Before(it.expires)
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

func (m *memStore) Unlock(ctx context.Context, key, owner string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if it, ok := m.locks[key]; ok && string(it.v) == owner {
		delete(m.locks, key)
	}
	return nil
}

// plainStore is a memStore seen as a Store only, without the lock.
type plainStore struct{ m *memStore }

func (p plainStore) Get(ctx context.Context, key string) ([]byte, error) { return p.m.Get(ctx, key) }
func (p plainStore) Set(ctx context.Context, key string, v []byte, ttl time.Duration) error {
	return p.m.Set(ctx, key, v, ttl)
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
	if st, _, err := sources[0].shared.read(context.Background(), sources[0].sealerFor(testCredsOf(sources[0]))); err != nil || st.tok == nil || st.tok.AccessToken != second.AccessToken {
		t.Fatal("the tampered value was not replaced by the new token")
	}
}

func TestStoreValueSealedUnderAnotherSecretIsIgnored(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	sources, store, clock := fleet(t, srv, 1, nil)
	ts := sources[0]

	other := Config{ClientID: srv.ClientID, ClientSecret: "another-secret", TokenURL: srv.TokenURL, Store: store}
	sl := mustSealer(t, other.TokenURL, other.ClientID, other.ClientSecret)
	planted := stored{&oauth2.Token{AccessToken: "planted-token-value", ExpiresIn: 3600}, clock.Now()}
	store.Set(context.Background(), ts.sealerFor(testCredsOf(ts)).key, sl.seal(planted), time.Hour) // at our key

	if tok := mustToken(t, ts); tok.AccessToken == "planted-token-value" || tokenRequests(srv) != 1 {
		t.Fatal("a value sealed under another secret was used")
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

// TestAStoreWithoutALockerShares: a Store that is not a Locker still
// shares the token; a source that finds none fetches its own at once,
// with no lock to take or wait for.
func TestAStoreWithoutALockerShares(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	clock := newFakeClock()
	m := newMemStore(clock.Now)
	opts := []sourceOption{withServer(srv), withStore(plainStore{m}), withClock(clock)}
	first := mustToken(t, newTestSource(t, opts...).ts)
	second := mustToken(t, newTestSource(t, opts...).ts)
	if second.AccessToken != first.AccessToken || tokenRequests(srv) != 1 {
		t.Fatalf("%d token requests for two sources sharing a plain Store, want 1", tokenRequests(srv))
	}
	if m.tries != 0 || len(m.locks) != 0 {
		t.Errorf("%d Lock calls through a Store that is not a Locker", m.tries)
	}
}

// TestStoreKeysFollowTheCredentials: sources on two secrets share one
// Store, each group its own token, for one request each; a source whose
// secret changes moves from the first group's token to the second's.
func TestStoreKeysFollowTheCredentials(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	one := fortetest.Credentials{ClientID: srv.ClientID, ClientSecret: srv.ClientSecret}
	two := fortetest.Credentials{ClientID: srv.ClientID, ClientSecret: "the-second-secret"}
	srv.AcceptCredentials(one, two)
	clock := newFakeClock()
	m := newMemStore(clock.Now)
	group := func(c fortetest.Credentials) (tokens []string) {
		for range 3 {
			ts := newTestSource(t, withServer(srv), withStore(m), withClock(clock),
				withConfig(func(cfg *Config) { cfg.ClientID, cfg.ClientSecret = c.ClientID, c.ClientSecret })).ts
			tokens = append(tokens, mustToken(t, ts).AccessToken)
		}
		return tokens
	}
	a, b := group(one), group(two)
	if a[0] != a[1] || a[1] != a[2] || b[0] != b[1] || b[1] != b[2] || a[0] == b[0] || tokenRequests(srv) != 2 {
		t.Fatalf("%d token requests for two groups of 3 on two secrets, want 2: one token per group", tokenRequests(srv))
	}

	var secret atomic.Value
	secret.Store(one.ClientSecret)
	fn := func(context.Context) (Credentials, error) {
		return Credentials{srv.ClientID, secret.Load().(string)}, nil
	}
	ts := newTestSource(t, withServer(srv), withStore(m), withClock(clock),
		withConfig(func(cfg *Config) { cfg.ClientID, cfg.ClientSecret, cfg.Credentials = "", "", fn })).ts
	if tok := mustToken(t, ts); tok.AccessToken != a[0] {
		t.Fatal("a source on the first secret did not take the first group's token")
	}
	secret.Store(two.ClientSecret)
	ts.Invalidate(nil)
	if tok := mustToken(t, ts); tok.AccessToken != b[0] || tokenRequests(srv) != 2 {
		t.Fatalf("after its secret changed, the source got the second group's token: %v, token requests %d (want 2)", tok.AccessToken == b[0], tokenRequests(srv))
	}
}
