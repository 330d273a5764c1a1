package redisstore_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/forteauth/forteauth/redisstore"
	"github.com/redis/go-redis/v9"
)

func testKey() string { return "forteauth:test:" + randomHex(8) }

// closedAddr returns a loopback address that nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func TestGetOfAMissingKeyIsNil(t *testing.T) {
	v, err := newStore(t, sharedAddr).Get(context.Background(), testKey())
	if v != nil || err != nil {
		t.Fatalf("Get = %q, %v; want nil, nil", v, err)
	}
}

func TestSetStoresBytesWithAMillisecondTTL(t *testing.T) {
	rdb := newClient(t, sharedAddr)
	s := redisstore.New(rdb)
	ctx := context.Background()
	key := testKey()
	value := []byte{1, 0, 0xff, '\r', '\n', 0}
	if err := s.Set(ctx, key, value, 1500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if ttl := rdb.PTTL(ctx, key).Val(); ttl <= 0 || ttl > 1500*time.Millisecond {
		t.Fatalf("PTTL = %v, want (0, 1.5s]", ttl)
	}
	if got, err := s.Get(ctx, key); err != nil || !bytes.Equal(got, value) {
		t.Fatalf("Get = %q, %v; want %q", got, err, value)
	}
	// A TTL under a millisecond is rounded up to one, not refused.
	if err := s.Set(ctx, testKey(), value, time.Microsecond); err != nil {
		t.Fatalf("Set with a 1µs TTL: %v", err)
	}
	// The value expires.
	eventually(t, 10*time.Second, "the value to expire", func() bool {
		v, err := s.Get(ctx, key)
		return v == nil && err == nil
	})
}

// TestGetLockedReadsTheValueAndTheLock on a single node and on a Cluster,
// where a key's lock must hash to the key's slot for one MGET to read
// both: keys spread over the slots all work.
func TestGetLockedReadsTheValueAndTheLock(t *testing.T) {
	for _, c := range []struct {
		name  string
		store func(t *testing.T) *redisstore.Store
		keys  int
	}{
		{"single", func(t *testing.T) *redisstore.Store { return newStore(t, sharedAddr) }, 1},
		{"cluster", func(t *testing.T) *redisstore.Store { return redisstore.New(newClusterClient(t, clusterAddrs(t))) }, 20},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := c.store(t)
			for range c.keys {
				checkGetLocked(t, s, "forteauth:v1:"+randomHex(16))
			}
		})
	}
}

// checkGetLocked takes key through no value, locked, stored and locked,
// and stored, reading each with GetLocked.
func checkGetLocked(t *testing.T, s *redisstore.Store, key string) {
	t.Helper()
	ctx := context.Background()
	check := func(what string, wantV []byte, wantLocked bool) {
		t.Helper()
		v, locked, err := s.GetLocked(ctx, key)
		if err != nil || !bytes.Equal(v, wantV) || locked != wantLocked || (wantV == nil) != (v == nil) {
			t.Fatalf("%s: GetLocked(%s) = %q, %v, %v; want %q, %v, nil", what, key, v, locked, err, wantV, wantLocked)
		}
	}
	check("nothing stored", nil, false)
	owner, ok, err := s.Lock(ctx, key, time.Minute)
	if err != nil || !ok {
		t.Fatalf("Lock = %v, %v", ok, err)
	}
	check("locked", nil, true)
	value := []byte{1, 0, 0xff, '\r', '\n', 0}
	if err := s.Set(ctx, key, value, time.Minute); err != nil {
		t.Fatal(err)
	}
	check("stored and locked", value, true)
	if err := s.Unlock(ctx, key, owner); err != nil {
		t.Fatal(err)
	}
	check("stored", value, false)
}

func TestLockIsExclusive(t *testing.T) {
	rdb := newClient(t, sharedAddr)
	a, b := redisstore.New(rdb), newStore(t, sharedAddr)
	ctx := context.Background()
	key := testKey()
	owner, ok, err := a.Lock(ctx, key, time.Minute)
	if err != nil || !ok || !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(owner) {
		t.Fatalf("Lock = %q, %v, %v; want a 128-bit hex owner", owner, ok, err)
	}
	if got := rdb.Get(ctx, lockOf(key)).Val(); got != owner {
		t.Fatalf("the lock holds %q, want the owner %q", got, owner)
	}
	if ttl := rdb.PTTL(ctx, lockOf(key)).Val(); ttl <= 0 || ttl > time.Minute {
		t.Fatalf("the lock's PTTL = %v, want (0, 1m]", ttl)
	}
	for _, s := range []*redisstore.Store{a, b} {
		if o, ok, err := s.Lock(ctx, key, time.Minute); o != "" || ok || err != nil {
			t.Fatalf("Lock of a held lock = %q, %v, %v; want \"\", false, nil", o, ok, err)
		}
	}
}

func TestLockOwnersDiffer(t *testing.T) {
	s := newStore(t, sharedAddr)
	seen := map[string]bool{}
	for range 100 {
		owner, ok, err := s.Lock(context.Background(), testKey(), time.Minute)
		if err != nil || !ok || seen[owner] {
			t.Fatalf("Lock = %q, %v, %v; owners must be new each time", owner, ok, err)
		}
		seen[owner] = true
	}
}

func TestLockExpires(t *testing.T) {
	s := newStore(t, sharedAddr)
	ctx := context.Background()
	key := testKey()
	if _, ok, err := s.Lock(ctx, key, 100*time.Millisecond); !ok || err != nil {
		t.Fatalf("Lock: %v, %v", ok, err)
	}
	eventually(t, 10*time.Second, "the lock to expire and be taken again", func() bool {
		_, ok, err := s.Lock(ctx, key, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	})
}

func TestUnlockDeletesOnlyItsOwnLock(t *testing.T) {
	rdb := newClient(t, sharedAddr)
	s := redisstore.New(rdb)
	ctx := context.Background()
	key := testKey()

	owner, _, _ := s.Lock(ctx, key, time.Minute)
	if err := s.Unlock(ctx, key, "0123456789abcdef0123456789abcdef"); err != nil {
		t.Fatal(err)
	}
	if got := rdb.Get(ctx, lockOf(key)).Val(); got != owner {
		t.Fatalf("Unlock by another owner deleted the lock (it holds %q)", got)
	}
	if err := s.Unlock(ctx, key, owner); err != nil {
		t.Fatal(err)
	}
	if n := rdb.Exists(ctx, lockOf(key)).Val(); n != 0 {
		t.Fatal("Unlock by the owner left the lock")
	}

	// A holder whose lock expired and was taken by another does not
	// release the other's.
	old, _, _ := s.Lock(ctx, key, 50*time.Millisecond)
	var current string
	eventually(t, 10*time.Second, "the lock to expire and be taken by another", func() bool {
		o, ok, err := s.Lock(ctx, key, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		current = o
		return ok
	})
	if err := s.Unlock(ctx, key, old); err != nil {
		t.Fatal(err)
	}
	if got := rdb.Get(ctx, lockOf(key)).Val(); got != current {
		t.Fatalf("the old holder's Unlock released the new holder's lock (it holds %q)", got)
	}
	// Unlocking what is not locked is no error.
	if err := s.Unlock(ctx, testKey(), old); err != nil {
		t.Fatal(err)
	}
}

func TestRenewExtendsOnlyItsOwnLease(t *testing.T) {
	rdb := newClient(t, sharedAddr)
	s := redisstore.New(rdb)
	ctx := context.Background()
	key := testKey()
	owner, _, _ := s.Lock(ctx, key, time.Second)
	if ok, err := s.Renew(ctx, key, owner, time.Minute); !ok || err != nil {
		t.Fatalf("Renew by the owner = %v, %v; want true, nil", ok, err)
	}
	if ttl := rdb.PTTL(ctx, lockOf(key)).Val(); ttl <= time.Second || ttl > time.Minute {
		t.Fatalf("after Renew for 1m the lock's PTTL = %v, want (1s, 1m]", ttl)
	}
	if ok, err := s.Renew(ctx, key, "0123456789abcdef0123456789abcdef", time.Hour); ok || err != nil {
		t.Fatalf("Renew by another owner = %v, %v; want false, nil", ok, err)
	}
	if ttl := rdb.PTTL(ctx, lockOf(key)).Val(); ttl > time.Minute {
		t.Fatalf("Renew by another owner extended the lock to %v", ttl)
	}
	if got := rdb.Get(ctx, lockOf(key)).Val(); got != owner {
		t.Fatalf("the lock holds %q after Renew, want the owner %q", got, owner)
	}
	// A lease that ran out is not brought back.
	old, _, _ := s.Lock(ctx, testKey(), time.Millisecond)
	if ok, err := s.Renew(ctx, key+"-gone", old, time.Minute); ok || err != nil {
		t.Fatalf("Renew of a lock that is not there = %v, %v; want false, nil", ok, err)
	}
	if n := rdb.Exists(ctx, lockOf(key+"-gone")).Val(); n != 0 {
		t.Fatal("Renew of a lock that is not there created it")
	}
}

// TestARefusedConnectionIsNamed: with nothing listening and go-redis's
// default retries, which outlast the context, the error says that the
// connection was refused, not only that time ran out.
func TestARefusedConnectionIsNamed(t *testing.T) {
	addr := closedAddr(t)
	s := newStore(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, err := s.Get(ctx, "k")
	t.Logf("Get with nothing listening: %v", err)
	if err == nil || !strings.Contains(err.Error(), "connection refused") || !strings.HasPrefix(err.Error(), "redisstore: ") {
		t.Fatalf("Get with nothing listening: %v, want a redisstore error that names the refused connection", err)
	}
}

func TestUnlockAfterScriptFlush(t *testing.T) {
	r := privateRedis(t)
	rdb := newClient(t, r.addr)
	s := redisstore.New(rdb)
	ctx := context.Background()
	for range 2 {
		owner, _, _ := s.Lock(ctx, "l", time.Minute)
		if err := rdb.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		if err := s.Unlock(ctx, "l", owner); err != nil {
			t.Fatal(err)
		}
		if rdb.Exists(ctx, "l").Val() != 0 {
			t.Fatal("Unlock after SCRIPT FLUSH left the lock")
		}
	}
}

// documentedACL is the ACL rule of the package doc and docs/design.md.
const documentedACL = "~forteauth:* +get +mget +set +pexpire +del +evalsha +eval"

// TestTheDocumentedACLSuffices: a user with only the documented commands
// shares a token, waits on a held lock, and renews and releases a lease,
// with no error logged.
func TestTheDocumentedACLSuffices(t *testing.T) {
	ctx := context.Background()
	admin := newClient(t, sharedAddr)
	user, password := "forteauth-test-"+randomHex(4), randomHex(16)
	if err := admin.Do(ctx, append([]any{"acl", "setuser", user, "on", ">" + password}, anySlice(strings.Fields(documentedACL))...)...).Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Do(context.Background(), "acl", "deluser", user) })
	for _, doc := range []string{"redisstore.go", "../docs/design.md"} {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), documentedACL) {
			t.Errorf("%s does not give the ACL rule %q", doc, documentedACL)
		}
	}
	newACLStore := func() *redisstore.Store {
		return newStore(t, sharedAddr, func(o *redis.Options) { o.Username, o.Password = user, password })
	}

	s := newACLStore()
	key := "forteauth:test:" + randomHex(8)
	owner, ok, err := s.Lock(ctx, key, time.Minute)
	if err != nil || !ok {
		t.Fatalf("Lock = %v, %v", ok, err)
	}
	if ok, err := s.Renew(ctx, key, owner, time.Minute); err != nil || !ok {
		t.Fatalf("Renew = %v, %v", ok, err)
	}
	if _, locked, err := s.GetLocked(ctx, key); err != nil || !locked {
		t.Fatalf("GetLocked = %v, %v", locked, err)
	}
	if err := s.Unlock(ctx, key, owner); err != nil {
		t.Fatal(err)
	}

	srv := newServer(t, time.Hour)
	logger, logs := newLogger()
	var tokens []string
	for range 2 {
		tok, err := configFor(srv, newACLStore(), logger).TokenSource(ctx).Token()
		if err != nil {
			t.Fatal(err)
		}
		tokens = append(tokens, tok.AccessToken)
	}
	if tokens[0] != tokens[1] || srv.Stats().TokenRequests != 1 || logs.String() != "" {
		t.Errorf("two sources under the ACL made %d token requests (want 1) and logged: %s", srv.Stats().TokenRequests, logs.String())
	}
}

func anySlice(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

// TestErrorsNameThePackage: with nothing listening, every call fails with
// an error that starts "redisstore: ".
func TestErrorsNameThePackage(t *testing.T) {
	addr := closedAddr(t)
	s := newStore(t, addr, func(o *redis.Options) { o.MaxRetries = -1; o.DialerRetries = 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, getErr := s.Get(ctx, "k")
	setErr := s.Set(ctx, "k", []byte("v"), time.Second)
	_, _, lockErr := s.Lock(ctx, "k", time.Second)
	unlockErr := s.Unlock(ctx, "k", "o")
	_, renewErr := s.Renew(ctx, "k", "o", time.Second)
	_, _, getLockedErr := s.GetLocked(ctx, "k")
	for name, err := range map[string]error{"Get": getErr, "Set": setErr, "Lock": lockErr, "Unlock": unlockErr, "Renew": renewErr, "GetLocked": getLockedErr} {
		if err == nil || !strings.HasPrefix(err.Error(), "redisstore: ") {
			t.Errorf("%s: %v, want an error starting with \"redisstore: \"", name, err)
		}
	}
}

// TestCallsReturnWhenTheContextEnds: with Redis hung and a client that
// would wait 30 s, every call returns when its context ends.
func TestCallsReturnWhenTheContextEnds(t *testing.T) {
	t.Parallel()
	r := privateRedis(t)
	rdb := newClient(t, r.addr, func(o *redis.Options) { o.ReadTimeout, o.WriteTimeout = 30*time.Second, 30*time.Second })
	var unlocks atomic.Int64
	rdb.AddHook(scriptHook{&unlocks})
	s := redisstore.New(rdb)
	if err := rdb.Ping(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	r.pause()
	defer r.resume()

	call := func(name string, f func(ctx context.Context) error) {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := f(ctx)
		if took := time.Since(start); took > 10*time.Second {
			t.Errorf("%s took %v with a 200ms context", name, took)
		}
		if !errors.Is(err, context.DeadlineExceeded) || !strings.HasPrefix(err.Error(), "redisstore: ") {
			t.Errorf("%s: %v, want a redisstore error wrapping context.DeadlineExceeded", name, err)
		}
	}
	call("Get", func(ctx context.Context) error { _, err := s.Get(ctx, "k"); return err })
	call("GetLocked", func(ctx context.Context) error { _, _, err := s.GetLocked(ctx, "k"); return err })
	call("Set", func(ctx context.Context) error { return s.Set(ctx, "k", []byte("v"), time.Minute) })
	call("Unlock", func(ctx context.Context) error { return s.Unlock(ctx, "other", "o") })
	call("Renew", func(ctx context.Context) error { _, err := s.Renew(ctx, "other", "o", time.Minute); return err })
	before := unlocks.Load()
	call("Lock", func(ctx context.Context) error { _, _, err := s.Lock(ctx, "l", time.Minute); return err })

	// The lock that Redis grants once it answers again has no holder
	// waiting for it: the Store releases it.
	r.resume()
	eventually(t, 20*time.Second, "the abandoned lock to be released", func() bool {
		return unlocks.Load() > before && rdb.Exists(context.Background(), lockOf("l")).Val() == 0
	})
}

// scriptHook counts the unlock script's successful runs on key "l"'s lock.
type scriptHook struct{ n *atomic.Int64 }

func (h scriptHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h scriptHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if name, args := cmd.Name(), cmd.Args(); (name == "evalsha" || name == "eval") && len(args) > 3 && args[3] == lockOf("l") && err == nil {
			h.n.Add(1)
		}
		return err
	}
}
func (h scriptHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
