package redisstore_test

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/forteauth/forteauth"
	"github.com/forteauth/forteauth/internal/leaktest"
	"github.com/forteauth/forteauth/redisstore"
	"github.com/redis/go-redis/v9"
)

// The core's constants (store.go) that these tests depend on.
const (
	storeRetryMax       = 5 * time.Second // the longest a source leaves a failed store alone
	storeConnectTimeout = 2500 * time.Millisecond
	leaseTTL            = 3 * time.Second // the refresh lock's life, renewed by its holder
)

// caller calls a set of TokenSources continuously, as a busy service
// does, pausing pace between one source's calls, and records failures
// and the longest Token call.
type caller struct {
	stop     chan struct{}
	wg       sync.WaitGroup
	once     sync.Once
	start    time.Time
	elapsed  time.Duration
	calls    atomic.Int64
	failures atomic.Int64
	firstErr atomic.Value
	mu       sync.Mutex
	longest  time.Duration
}

func callContinuously(t testing.TB, pace time.Duration, sources ...*forteauth.TokenSource) *caller {
	c := &caller{stop: make(chan struct{}), start: time.Now()}
	for _, ts := range sources {
		c.wg.Go(func() {
			for {
				select {
				case <-c.stop:
					return
				default:
				}
				c.calls.Add(1)
				start := time.Now()
				_, err := ts.Token()
				took := time.Since(start)
				if err != nil {
					c.failures.Add(1)
					c.firstErr.CompareAndSwap(nil, err.Error())
				}
				c.mu.Lock()
				c.longest = max(c.longest, took)
				c.mu.Unlock()
				time.Sleep(pace)
			}
		})
	}
	t.Cleanup(c.end)
	return c
}

// end stops the callers, waits for them and for background refreshes, and
// records how long the run took.
func (c *caller) end() {
	c.once.Do(func() {
		close(c.stop)
		c.wg.Wait()
		for deadline := time.Now().Add(30 * time.Second); leaktest.Count(leaktest.BackgroundRefresh) > 0 && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		c.elapsed = time.Since(c.start)
	})
}

// check fails t if a Token call failed.
func (c *caller) check(t testing.TB) {
	t.Helper()
	if f := c.failures.Load(); f > 0 {
		t.Errorf("%d of %d Token calls failed; the first: %v", f, c.calls.Load(), c.firstErr.Load())
	}
}

func (c *caller) longestCall() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.longest
}

// TestLockHolderKilledMidRefresh: a process takes the fleet's refresh lock
// and is killed while its token request is in flight, leaving the lock in
// Redis. Another source must wait at most one lease (3 s) for the dead
// holder's token, then take the lock and fetch one itself, and the rest of
// the fleet adopts that token.
func TestLockHolderKilledMidRefresh(t *testing.T) {
	t.Parallel()
	srv := newServer(t, time.Hour)
	rdb := newClient(t, sharedAddr)
	logger, logs := newLogger()
	cfg := configFor(srv, redisstore.New(rdb), logger)
	ctx := context.Background()

	release := srv.Hold()
	defer release()
	child := childCommand("lockholder", srv, sharedAddr)
	var childErr bytes.Buffer
	child.Stderr = &childErr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	kill := func() { once.Do(func() { child.Process.Kill(); child.Wait() }) }
	defer kill()

	eventually(t, 60*time.Second, "the child's token request", func() bool { return srv.Stats().TokenRequests == 1 })
	owner := rdb.Get(ctx, lockKey(cfg)).Val()
	if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(owner) {
		t.Fatalf("while its token request is held, the child's lock %s holds %q, want a 128-bit hex owner (child's stderr: %s)", lockKey(cfg), owner, childErr.String())
	}
	if ttl := rdb.PTTL(ctx, lockKey(cfg)).Val(); ttl <= 0 || ttl > leaseTTL {
		t.Fatalf("the lock's TTL is %v, want (0, %v]: a dead holder's lock must expire on its own, within a lease", ttl, leaseTTL)
	}
	kill()
	release()
	if got := rdb.Get(ctx, lockKey(cfg)).Val(); got != owner {
		t.Fatalf("the killed holder's lock is %q, want it still held by %q", got, owner)
	}

	start := time.Now()
	tok, err := cfg.TokenSource(ctx).Token()
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("with the dead holder's lock in Redis, a token took %v", took.Round(time.Millisecond))
	if took > leaseTTL+5*time.Second {
		t.Errorf("a token took %v with a dead lock holder, want at most a lease (%v) plus a fetch", took, leaseTTL)
	}
	if logs.count(logLockGivenUp) != 1 {
		t.Errorf("want the take-over logged once:\n%s", logs)
	}
	if n := srv.Stats().TokenRequests; n != 2 {
		t.Errorf("token requests = %d, want 2: the killed child's and one more", n)
	}
	if got, err := storedAccessToken(t, rdb, cfg); err != nil || got != tok.AccessToken {
		t.Errorf("the store holds %.12q (%v), want the new token", got, err)
	}

	if n := rdb.Exists(ctx, lockKey(cfg)).Val(); n != 0 {
		t.Errorf("the source that took over left the lock held")
	}

	// The fleet carries on: new members adopt the token without a request.
	for i := range 3 {
		got, err := configFor(srv, newStore(t, sharedAddr), nil).TokenSource(ctx).Token()
		if err != nil || got.AccessToken != tok.AccessToken {
			t.Fatalf("member %d: %v, or not the shared token", i, err)
		}
	}
	if n := srv.Stats().TokenRequests; n != 2 {
		t.Errorf("token requests = %d after three more members, want still 2", n)
	}
}

// TestRedisStoppedAndRestartedMidRun kills Redis under a busy fleet of 2 s
// tokens and starts it again, empty. No Token call may fail; each source
// logs the fault once and fetches directly while Redis is down; after
// Redis is back and the source's pause (at most 5 s) has passed, the
// sources share through it again.
func TestRedisStoppedAndRestartedMidRun(t *testing.T) {
	t.Parallel()
	r := privateRedis(t)
	admin := newClient(t, r.addr)
	srv := newServer(t, shortLifetime)
	const n = 4
	var sources []*forteauth.TokenSource
	var logs []*logBuffer
	var cfg *forteauth.Config
	for range n {
		logger, lb := newLogger()
		cfg = shortConfig(srv, newStore(t, r.addr), logger)
		sources = append(sources, cfg.TokenSource(context.Background()))
		logs = append(logs, lb)
	}
	allLogged := func(s string) func() bool {
		return func() bool {
			return !slices.ContainsFunc(logs, func(l *logBuffer) bool { return l.count(s) == 0 })
		}
	}

	run := callContinuously(t, 2*time.Millisecond, sources...)
	time.Sleep(shortLifetime) // one lifetime with Redis up
	up := srv.Stats().TokenRequests

	r.stop() // as a crash would
	eventually(t, 15*time.Second, "every source to log the fault", allLogged(logStoreFailed))
	time.Sleep(2 * shortLifetime) // two more lifetimes without Redis
	down := srv.Stats().TokenRequests - up
	t.Logf("token requests: %d in the first lifetime with Redis up, %d in about three lifetimes with Redis down (%d sources)", up, down, n)
	if up > 2 {
		t.Errorf("%d token requests in the first lifetime, want 1 or 2: the sources did not share", up)
	}
	if down < n {
		t.Errorf("%d token requests with Redis down, want at least one per source (%d)", down, n)
	}

	r.restart(t)
	eventually(t, 30*time.Second, "every source to use the store again", allLogged(logStoreWorks))
	eventually(t, 10*time.Second, "a shared token in Redis again", func() bool {
		_, err := storedAccessToken(t, admin, cfg)
		return err == nil
	})
	run.end()
	run.check(t)
	for i, l := range logs {
		if c := l.count(logStoreFailed); c != 1 {
			t.Errorf("source %d logged the fault %d times, want once:\n%s", i, c, l)
		}
	}

	// A source of the fleet stores its new token, and a new source adopts it.
	admin.Del(context.Background(), storeKey(cfg))
	sources[0].Invalidate(nil)
	tok, err := sources[0].Token()
	if err != nil {
		t.Fatal(err)
	}
	if got, err := storedAccessToken(t, admin, cfg); err != nil || got != tok.AccessToken {
		t.Fatalf("after the restart the store holds %.12q (%v), want the source's new token", got, err)
	}
	before := srv.Stats().TokenRequests
	got, err := shortConfig(srv, newStore(t, r.addr), nil).TokenSource(context.Background()).Token()
	if err != nil || got.AccessToken != tok.AccessToken {
		t.Fatalf("a new source got %v, or not the stored token", err)
	}
	if n := srv.Stats().TokenRequests - before; n != 0 {
		t.Errorf("a new source made %d token requests, want 0: it should adopt the stored token", n)
	}
}

// TestRedisFullFallsBackAndLogsOnce fills Redis (maxmemory 1 byte,
// noeviction), so that every write fails with OOM while reads work. Tokens
// still come, the fault is logged once per source (reads that work do not
// end an outage of writes), and once Redis has room again the store is
// used again.
func TestRedisFullFallsBackAndLogsOnce(t *testing.T) {
	t.Parallel()
	r := privateRedis(t)
	admin := newClient(t, r.addr)
	ctx := context.Background()
	srv := newServer(t, time.Hour)
	if err := admin.ConfigSet(ctx, "maxmemory-policy", "noeviction").Err(); err != nil {
		t.Fatal(err)
	}
	if err := admin.ConfigSet(ctx, "maxmemory", "1").Err(); err != nil {
		t.Fatal(err)
	}
	if err := admin.Set(ctx, "probe", "x", 0).Err(); err == nil || !strings.Contains(err.Error(), "OOM") {
		t.Fatalf("SET on a full Redis: %v, want OOM", err)
	}

	const n, rounds = 3, 3
	var sources []*forteauth.TokenSource
	var logs []*logBuffer
	var cfg *forteauth.Config
	for range n {
		logger, lb := newLogger()
		cfg = configFor(srv, newStore(t, r.addr), logger)
		sources = append(sources, cfg.TokenSource(ctx))
		logs = append(logs, lb)
	}
	for range rounds {
		for _, ts := range sources {
			ts.Invalidate(nil)
			if _, err := ts.Token(); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(200 * time.Millisecond) // past the first pauses, so that the store is tried again
	}
	if got := srv.Stats().TokenRequests; got != n*rounds {
		t.Errorf("token requests = %d, want %d direct fetches", got, n*rounds)
	}
	for i, l := range logs {
		if c := l.count(logStoreFailed); c != 1 || !strings.Contains(l.String(), "OOM") || l.count(logStoreWorks) != 0 {
			t.Errorf("source %d logged the fault %d times (want once, with Redis's OOM error, and no recovery):\n%s", i, c, l)
		}
	}

	// Room again: after the store retry, sources share again.
	if err := admin.ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(storeRetryMax) // the longest pause; every fault above happened before this point
	sources[0].Invalidate(nil)
	tok, err := sources[0].Token()
	if err != nil {
		t.Fatal(err)
	}
	if got, err := storedAccessToken(t, admin, cfg); err != nil || got != tok.AccessToken {
		t.Fatalf("with room again the store holds %.12q (%v), want the new token", got, err)
	}
	before := srv.Stats().TokenRequests
	if got, err := configFor(srv, newStore(t, r.addr), nil).TokenSource(ctx).Token(); err != nil || got.AccessToken != tok.AccessToken {
		t.Fatalf("a new source got %v, or not the stored token", err)
	}
	if got := srv.Stats().TokenRequests; got != before {
		t.Errorf("a new source made %d token requests, want 0", got-before)
	}
}

// TestRedisHungDelaysAFetchByAtMostTheStoreTimeout pauses Redis (SIGSTOP:
// it accepts connections but never answers) under a client configured to
// wait 30 s for an answer. The Store returns when the core's timeout ends
// (2.5 s for a source's first call, which may have to connect), so a token
// comes in about that.
func TestRedisHungDelaysAFetchByAtMostTheStoreTimeout(t *testing.T) {
	t.Parallel()
	r := privateRedis(t)
	rdb := newClient(t, r.addr, func(o *redis.Options) { o.ReadTimeout, o.WriteTimeout = 30*time.Second, 30*time.Second })
	if err := rdb.Ping(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	srv := newServer(t, time.Hour)
	logger, logs := newLogger()
	cfg := configFor(srv, redisstore.New(rdb), logger)

	r.pause()
	defer r.resume()
	start := time.Now()
	_, err := cfg.TokenSource(context.Background()).Token()
	took := time.Since(start)
	r.resume()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("with Redis hung, a token took %v", took.Round(time.Millisecond))
	if took > storeConnectTimeout+5*time.Second {
		t.Errorf("a token took %v with Redis hung, want about the %v store timeout of a first call plus a fetch", took, storeConnectTimeout)
	}
	if srv.Stats().TokenRequests != 1 || logs.count(logStoreFailed) != 1 || !strings.Contains(logs.String(), "no answer from Redis") {
		t.Errorf("want one direct fetch and the fault logged once; %d requests, logs:\n%s", srv.Stats().TokenRequests, logs)
	}
}

// TestTamperedValueIsIgnoredAndReplaced flips a byte of the stored value
// in Redis. The next source must not use it, must fetch a new token, and
// must replace the value with one that opens.
func TestTamperedValueIsIgnoredAndReplaced(t *testing.T) {
	t.Parallel()
	srv := newServer(t, time.Hour)
	rdb := newClient(t, sharedAddr)
	ctx := context.Background()
	logger, logs := newLogger()
	cfg := configFor(srv, redisstore.New(rdb), logger)
	first, err := cfg.TokenSource(ctx).Token()
	if err != nil {
		t.Fatal(err)
	}

	key := storeKey(cfg)
	keys, err := scanKeys(rdb, "forteauth:v1:*")
	if err != nil || !slices.Contains(keys, key) {
		t.Fatalf("SCAN forteauth:v1:* found %d keys (%v), none of them %s", len(keys), err, key)
	}
	v, err := rdb.Get(ctx, key).Bytes()
	if err != nil {
		t.Fatal(err)
	}
	v[len(v)/2] ^= 0x01
	if err := rdb.SetArgs(ctx, key, v, redis.SetArgs{KeepTTL: true}).Err(); err != nil {
		t.Fatal(err)
	}

	second, err := configFor(srv, newStore(t, sharedAddr), logger).TokenSource(ctx).Token()
	if err != nil {
		t.Fatal(err)
	}
	if second.AccessToken == first.AccessToken || srv.Stats().TokenRequests != 2 {
		t.Fatalf("the tampered value was used (token requests %d)", srv.Stats().TokenRequests)
	}
	// Logged once per look: before and after taking the refresh lock.
	if logs.count(logIgnoringValue) == 0 || !strings.Contains(logs.String(), "does not open") {
		t.Errorf("want the bad value logged:\n%s", logs)
	}
	if got, err := storedAccessToken(t, rdb, cfg); err != nil || got != second.AccessToken {
		t.Fatalf("the tampered value was not replaced by one that opens to the new token: %.12q, %v", got, err)
	}
	if third, err := configFor(srv, newStore(t, sharedAddr), nil).TokenSource(ctx).Token(); err != nil || third.AccessToken != second.AccessToken || srv.Stats().TokenRequests != 2 {
		t.Fatalf("the replacement was not adopted: %v, %d token requests", err, srv.Stats().TokenRequests)
	}
}

// TestValueSealedUnderAnotherSecretIsIgnored plants, at our key, a token
// sealed under another secret, as someone who can write to Redis but has
// not got the secret could. It must not be used, and is replaced.
func TestValueSealedUnderAnotherSecretIsIgnored(t *testing.T) {
	t.Parallel()
	srv := newServer(t, time.Hour)
	rdb := newClient(t, sharedAddr)
	ctx := context.Background()
	logger, logs := newLogger()
	cfg := configFor(srv, redisstore.New(rdb), logger)

	other := *cfg
	other.ClientSecret = "another-secret"
	key := storeKey(cfg)
	planted := seal(&other, key, storedToken{AccessToken: "planted-token-value-0123456789", ExpiresIn: 3600, Sent: time.Now().UnixNano()})
	if err := rdb.Set(ctx, key, planted, time.Hour).Err(); err != nil {
		t.Fatal(err)
	}

	tok, err := cfg.TokenSource(ctx).Token()
	if err != nil {
		t.Fatal(err)
	}
	if tok.AccessToken == "planted-token-value-0123456789" || srv.Stats().TokenRequests != 1 {
		t.Fatal("a value sealed under another secret was used")
	}
	if !strings.Contains(logs.String(), "does not open") {
		t.Errorf("the planted value was not logged:\n%s", logs)
	}
	if got, err := storedAccessToken(t, rdb, cfg); err != nil || got != tok.AccessToken {
		t.Fatalf("the planted value was not replaced: %.12q, %v", got, err)
	}
}

// TestOtherBadValuesAreIgnored: whatever else is found at the key, a
// source fetches a token of its own and replaces the value.
func TestOtherBadValuesAreIgnored(t *testing.T) {
	t.Parallel()
	const planted = "planted-token-value-0123456789"
	for name, value := range map[string]func(cfg *forteauth.Config, st storedToken) []byte{
		"moved from another key": func(cfg *forteauth.Config, st storedToken) []byte { return seal(cfg, storeKey(cfg)+"x", st) },
		"truncated": func(cfg *forteauth.Config, st storedToken) []byte {
			v := seal(cfg, storeKey(cfg), st)
			return v[:len(v)-1]
		},
		"another version": func(cfg *forteauth.Config, st storedToken) []byte {
			v := seal(cfg, storeKey(cfg), st)
			v[0] = 2
			return v
		},
		"empty": func(*forteauth.Config, storedToken) []byte { return []byte{} },
		"plaintext": func(*forteauth.Config, storedToken) []byte {
			return []byte(`{"access_token":"` + planted + `","expires_in":3600}`)
		},
		"header injection": func(cfg *forteauth.Config, st storedToken) []byte {
			st.AccessToken = "x\r\nX-Injected: 1"
			return seal(cfg, storeKey(cfg), st)
		},
		"expired": func(cfg *forteauth.Config, st storedToken) []byte {
			st.Sent -= int64(time.Hour)
			return seal(cfg, storeKey(cfg), st)
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			srv := newServer(t, time.Hour)
			rdb := newClient(t, sharedAddr)
			ctx := context.Background()
			cfg := configFor(srv, redisstore.New(rdb), nil)
			st := storedToken{AccessToken: planted, ExpiresIn: 3600, Sent: time.Now().UnixNano()}
			if err := rdb.Set(ctx, storeKey(cfg), value(cfg, st), time.Hour).Err(); err != nil {
				t.Fatal(err)
			}
			got, err := cfg.TokenSource(ctx).Token()
			if err != nil || got.AccessToken == planted || srv.Stats().TokenRequests != 1 {
				t.Fatalf("%v; the bad value was used, or no token fetched", err)
			}
			if stored, err := storedAccessToken(t, rdb, cfg); err != nil || stored != got.AccessToken {
				t.Fatalf("not replaced: %.12q, %v", stored, err)
			}
		})
	}
}

// TestStoredValueIsAsDocumented checks docs/design.md against what is in
// Redis: the key name, the sealing, the sealed JSON and the TTL; and that
// a value sealed as documented is adopted.
func TestStoredValueIsAsDocumented(t *testing.T) {
	t.Parallel()
	srv := newServer(t, time.Hour)
	rdb := newClient(t, sharedAddr)
	ctx := context.Background()
	cfg := configFor(srv, redisstore.New(rdb), nil)
	before := time.Now()
	tok, err := cfg.TokenSource(ctx).Token()
	after := time.Now()
	if err != nil {
		t.Fatal(err)
	}
	key := storeKey(cfg)
	if !regexp.MustCompile(`^forteauth:v1:[0-9a-f]{32}$`).MatchString(key) {
		t.Fatalf("key %q", key)
	}
	v, err := rdb.Get(ctx, key).Bytes()
	if err != nil {
		t.Fatal(err)
	}
	st, err := open(cfg, key, v)
	if err != nil {
		t.Fatalf("the stored value does not open as documented: %v", err)
	}
	if st.AccessToken != tok.AccessToken || st.ExpiresIn != 3600 || st.Sent < before.UnixNano() || st.Sent > after.UnixNano() {
		t.Fatalf("sealed %+v, want the token, expires_in 3600 and the send time", st)
	}
	if len(v) != 1+12+len(`{"access_token":"","expires_in":3600,"sent":}`)+len(st.AccessToken)+len(fmt.Sprint(st.Sent))+16 {
		t.Errorf("value of %d bytes: want version, nonce, sealed JSON and tag, nothing else", len(v))
	}
	ttl := rdb.PTTL(ctx, key).Val()
	if ttl > time.Hour-30*time.Second || ttl < time.Hour-31*time.Second-time.Since(before) {
		t.Errorf("TTL %v, want the token's usable life: 1 h minus the 30 s margin, minus the time since", ttl)
	}
	for _, s := range []string{cfg.ClientSecret, cfg.ClientID, tok.AccessToken} {
		if strings.Contains(key, s) || bytes.Contains(v, []byte(s)) {
			t.Errorf("the key or value holds %q in clear", s)
		}
	}
	if n := rdb.Exists(ctx, lockKey(cfg)).Val(); n != 0 {
		t.Errorf("the refresh lock %s is still held after the fetch", lockKey(cfg))
	}

	// A value sealed as documented is adopted without a token request.
	planted := storedToken{AccessToken: "sealed-by-the-test-0123456789", ExpiresIn: 3600, Sent: time.Now().UnixNano()}
	if err := rdb.Set(ctx, key, seal(cfg, key, planted), time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	got, err := configFor(srv, newStore(t, sharedAddr), nil).TokenSource(ctx).Token()
	if err != nil || got.AccessToken != planted.AccessToken || srv.Stats().TokenRequests != 1 {
		t.Fatalf("a value sealed as docs/design.md says was not adopted: %v", err)
	}
}

// TestClusterClient runs a source pair through a *redis.ClusterClient on a
// one-node Redis Cluster holding every slot.
func TestClusterClient(t *testing.T) {
	t.Parallel()
	r := privateRedis(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
	admin := newClient(t, r.addr)
	ctx := context.Background()
	if err := admin.Do(ctx, "cluster", "addslotsrange", 0, 16383).Err(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the cluster to be ok", func() bool {
		return strings.Contains(admin.ClusterInfo(ctx).Val(), "cluster_state:ok")
	})
	newCluster := func() *redisstore.Store {
		c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{r.addr}})
		t.Cleanup(func() { c.Close() })
		return redisstore.New(c)
	}
	srv := newServer(t, time.Hour)
	a, err := configFor(srv, newCluster(), nil).TokenSource(ctx).Token()
	if err != nil {
		t.Fatal(err)
	}
	b, err := configFor(srv, newCluster(), nil).TokenSource(ctx).Token()
	if err != nil || b.AccessToken != a.AccessToken || srv.Stats().TokenRequests != 1 {
		t.Fatalf("%v; the second source did not adopt the first's token through the cluster (%d requests)", err, srv.Stats().TokenRequests)
	}
	s := newCluster()
	owner, ok, err := s.Lock(ctx, "forteauth:test:lock", time.Minute)
	if err != nil || !ok || owner == "" {
		t.Fatalf("Lock through the cluster: %q %v %v", owner, ok, err)
	}
	if ok, err := s.Renew(ctx, "forteauth:test:lock", owner, time.Minute); err != nil || !ok {
		t.Fatalf("Renew through the cluster: %v %v", ok, err)
	}
	if err := s.Unlock(ctx, "forteauth:test:lock", owner); err != nil {
		t.Fatalf("Unlock through the cluster: %v", err)
	}
}

func scanKeys(c *redis.Client, pattern string) ([]string, error) {
	var keys []string
	iter := c.Scan(context.Background(), 0, pattern, 1000).Iterator()
	for iter.Next(context.Background()) {
		keys = append(keys, iter.Val())
	}
	return keys, iter.Err()
}
