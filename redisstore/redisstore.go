// Package redisstore lets the TokenSources of a fleet share one Forte token
// through Redis: it implements forteauth.Store and forteauth.Locker on a
// go-redis client.
//
//	rdb := redis.NewClient(&redis.Options{Addr: "redis:6379"}) // or a Sentinel or Cluster client
//	cfg := &forteauth.Config{
//		ClientID:     os.Getenv("FORTE_CLIENT_ID"),
//		ClientSecret: os.Getenv("FORTE_CLIENT_SECRET"),
//		TokenURL:     forteauth.ProductionTokenURL,
//		Store:        redisstore.New(rdb),
//	}
//	client := cfg.Client(ctx)
//
// The TokenSource does the rest: it derives the key name (which holds no
// secret), seals every value with AES-256-GCM under a key derived from the
// client secret, opens and checks what it reads, and falls back to the
// token endpoint when Redis fails, is slow or is full. A Store therefore
// stores opaque bytes only, and Redis never sees a token or the secret in
// clear. docs/design.md in the repository says exactly what is stored and
// what happens when Redis fails.
//
// The Store keeps a key's value under the key itself, and the key's lock
// under the key followed by ":lock" and, in braces, the key again: a Redis
// Cluster hash tag, so that a value and its lock live in one slot and one
// MGET reads both, on a single node, behind Sentinel and on a Cluster
// alike. forteauth's keys are "forteauth:v1:" and 32 hex digits, so a
// key and its lock are
//
//	forteauth:v1:<hex>
//	forteauth:v1:<hex>:lock{forteauth:v1:<hex>}
//
// The commands, each on a single key or on a key and its lock:
//
//	Get        GET key
//	Set        SET key value PX ttl
//	GetLocked  MGET key lock
//	Lock       SET lock owner NX PX ttl    (owner: 128 random bits, hex)
//	Renew      EVALSHA (or EVAL) of a compare-and-pexpire script
//	Unlock     EVALSHA (or EVAL) of a compare-and-delete script
//
// An ACL user for the Store needs these commands, and PEXPIRE and DEL
// (which the scripts run), on keys matching "forteauth:*", and nothing
// else:
//
//	ACL SETUSER forteauth on >password ~forteauth:* +get +mget +set +pexpire +del +evalsha +eval
//
// Every call returns when its context ends, even if the client would wait
// longer: go-redis applies a context's deadline to its socket reads only
// with Options.ContextTimeoutEnabled, and otherwise waits for ReadTimeout
// (5 s by default) on a Redis that has stopped answering. The abandoned
// command finishes in the background, within the client's own timeouts.
// A call that ends so says why Redis did not answer when it can: New adds
// a hook to the client that remembers the last failed dial, and such an
// error names it (a refused connection, say), where go-redis, still
// retrying the dial, would leave only "context deadline exceeded".
//
// This is a separate Go module, so that programs that do not share tokens
// through Redis do not depend on go-redis. While the core module
// github.com/forteauth/forteauth is not published, this module's go.mod
// points at it with a replace directive (../); a program that uses both
// from a checkout needs the same replace.
package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/forteauth/forteauth"
	"github.com/redis/go-redis/v9"
)

var (
	_ forteauth.Store  = (*Store)(nil)
	_ forteauth.Locker = (*Store)(nil)
)

// releaseTimeout bounds the release of a lock that was taken after its
// caller had stopped waiting for it.
const releaseTimeout = 5 * time.Second

// Store is a forteauth.Store and forteauth.Locker on Redis. It is safe
// for concurrent use. Set it as forteauth.Config.Store; it is not meant to
// be called directly.
type Store struct {
	c    redis.UniversalClient
	dial *dialWatch
}

// New returns a Store that keeps values and locks in the Redis that c
// talks to: a *redis.Client, a failover (Sentinel) client, a
// *redis.ClusterClient or a *redis.Ring. The Store does not close c. It
// adds to c (to each node of a Cluster or Ring client) a hook that only
// watches dials, so that its errors can name a dial that failed.
func New(c redis.UniversalClient) *Store {
	s := &Store{c: c, dial: &dialWatch{}}
	addHook := func(n *redis.Client) { n.AddHook(s.dial) }
	switch c := c.(type) {
	case *redis.ClusterClient:
		c.OnNewNode(addHook)
		c.ForEachShard(context.Background(), func(_ context.Context, n *redis.Client) error { addHook(n); return nil })
	case *redis.Ring:
		c.OnNewNode(addHook)
		c.ForEachShard(context.Background(), func(_ context.Context, n *redis.Client) error { addHook(n); return nil })
	default:
		c.AddHook(s.dial)
	}
	return s
}

// dialWatch is a go-redis hook that remembers the last failed dial.
type dialWatch struct {
	mu  sync.Mutex
	err error
	at  time.Time
}

func (w *dialWatch) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := next(ctx, network, addr)
		if err != nil && ctx.Err() == nil { // a dial cut short by its context says nothing about Redis
			w.mu.Lock()
			w.err, w.at = err, time.Now()
			w.mu.Unlock()
		}
		return c, err
	}
}

func (w *dialWatch) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

func (w *dialWatch) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// since returns the last dial error seen at or after t, or nil.
func (w *dialWatch) since(t time.Time) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == nil || w.at.Before(t) {
		return nil
	}
	return w.err
}

// unlockScript deletes KEYS[1] only if it still holds ARGV[1], the owner
// that took the lock, so that a holder whose lock expired and was taken by
// another cannot release the other's lock.
var unlockScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then
	return redis.call("DEL", KEYS[1])
end
return 0
`)

// renewScript sets the TTL of KEYS[1] to ARGV[2] milliseconds only if it
// still holds ARGV[1], so that only the holder extends its lease.
var renewScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then
	return redis.call("PEXPIRE", KEYS[1], ARGV[2])
end
return 0
`)

// Get returns the value stored under key, or nil and no error if there is
// none (or it has expired).
func (s *Store) Get(ctx context.Context, key string) ([]byte, error) {
	return do(ctx, s.dial, func() ([]byte, error) {
		v, err := s.c.Get(ctx, key).Bytes()
		switch {
		case errors.Is(err, redis.Nil):
			return nil, nil
		case err != nil:
			return nil, fmt.Errorf("redisstore: GET %s: %w", key, err)
		}
		return v, nil
	})
}

// GetLocked returns the value stored under key, or nil if there is none,
// and whether key's lock is held, with one MGET.
func (s *Store) GetLocked(ctx context.Context, key string) (value []byte, locked bool, err error) {
	type read struct {
		v      []byte
		locked bool
	}
	lock := lockKey(key)
	r, err := do(ctx, s.dial, func() (read, error) {
		vals, err := s.c.MGet(ctx, key, lock).Result()
		if err != nil {
			return read{}, fmt.Errorf("redisstore: MGET %s %s: %w", key, lock, err)
		}
		var r read
		if v, ok := vals[0].(string); ok {
			r.v = []byte(v)
		}
		r.locked = vals[1] != nil
		return r, nil
	})
	return r.v, r.locked, err
}

// lockKey names key's lock: key's name, then ":lock" and key's name again
// in braces, a Redis Cluster hash tag that puts the lock in key's slot. A
// key without braces hashes whole, so the tag gives its slot.
func lockKey(key string) string { return key + ":lock{" + key + "}" }

// Set stores value under key for ttl, rounded up to a whole millisecond
// (SET key value PX ttl).
func (s *Store) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	_, err := do(ctx, s.dial, func() (struct{}, error) {
		cmd := redis.NewStatusCmd(ctx, "set", key, value, "px", millis(ttl))
		if err := s.c.Process(ctx, cmd); err != nil {
			return struct{}{}, fmt.Errorf("redisstore: SET %s: %w", key, err)
		}
		return struct{}{}, nil
	})
	return err
}

// Lock takes key's lock for ttl, rounded up to a whole millisecond,
// unless it is held (SET lock owner NX PX ttl). owner is 128
// random bits in hex, to be passed to Unlock. A lock held by another gives
// ok false and no error.
//
// If ctx ends before Redis answers, Lock returns ctx's error; should the
// lock turn out to have been taken all the same, it is released in the
// background.
func (s *Store) Lock(ctx context.Context, key string, ttl time.Duration) (owner string, ok bool, err error) {
	var b [16]byte
	rand.Read(b[:]) // never fails since Go 1.24
	me := hex.EncodeToString(b[:])
	lock := lockKey(key)
	taken := make(chan bool, 1)
	ok, err = do(ctx, s.dial, func() (bool, error) {
		cmd := redis.NewBoolCmd(ctx, "set", lock, me, "nx", "px", millis(ttl))
		err := s.c.Process(ctx, cmd)
		taken <- err == nil && cmd.Val()
		if err != nil {
			return false, fmt.Errorf("redisstore: SET %s NX: %w", lock, err)
		}
		return cmd.Val(), nil
	})
	switch {
	case err != nil:
		go func() { // do may have given up on a SET that succeeds later
			if <-taken {
				rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
				defer cancel()
				s.Unlock(rctx, key, me)
			}
		}()
		return "", false, err
	case !ok:
		return "", false, nil
	}
	return me, true, nil
}

// Unlock releases key's lock if owner still holds it, with a
// compare-and-delete script; a lock that expired and was taken by another
// holder is left alone.
func (s *Store) Unlock(ctx context.Context, key, owner string) error {
	lock := lockKey(key)
	_, err := do(ctx, s.dial, func() (struct{}, error) {
		if err := unlockScript.Run(ctx, s.c, []string{lock}, owner).Err(); err != nil {
			return struct{}{}, fmt.Errorf("redisstore: unlock %s: %w", lock, err)
		}
		return struct{}{}, nil
	})
	return err
}

// Renew extends key's lock to ttl from now, rounded up to a whole
// millisecond, if owner still holds it, with a compare-and-pexpire script.
// A lock that has expired or is held by another gives ok false and no
// error.
func (s *Store) Renew(ctx context.Context, key, owner string, ttl time.Duration) (ok bool, err error) {
	lock := lockKey(key)
	return do(ctx, s.dial, func() (bool, error) {
		n, err := renewScript.Run(ctx, s.c, []string{lock}, owner, millis(ttl)).Int()
		if err != nil {
			return false, fmt.Errorf("redisstore: renew %s: %w", lock, err)
		}
		return n == 1, nil
	})
}

// do runs f and returns its result, or ctx's error as soon as ctx ends if
// that comes first, with the dial error seen meanwhile if there was one.
// f goes on in the background until the client gives up on it.
func do[T any](ctx context.Context, dial *dialWatch, f func() (T, error)) (T, error) {
	if ctx.Done() == nil {
		return f()
	}
	type result struct {
		v   T
		err error
	}
	start := time.Now()
	ch := make(chan result, 1)
	go func() {
		v, err := f()
		ch <- result{v, err}
	}()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
		var zero T
		if err := dial.since(start); err != nil {
			return zero, fmt.Errorf("redisstore: no answer from Redis: %w; the last dial failed: %w", context.Cause(ctx), err)
		}
		return zero, fmt.Errorf("redisstore: no answer from Redis: %w", context.Cause(ctx))
	}
}

// millis is ttl in whole milliseconds, rounded up and at least 1, as PX
// takes it.
func millis(ttl time.Duration) int64 {
	return max(1, int64((ttl+time.Millisecond-1)/time.Millisecond))
}
