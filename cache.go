package forteauth

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"golang.org/x/oauth2"
)

// state is where a cached token is in its life.
//
//	sent                 refresh opens      stale (margin)    expiry
//	 |------- fresh -------|---- refreshDue ----|---- stale ------|
//
// fresh: hand it out. refreshDue: hand it out and start one background
// refresh. stale: do not hand it out; callers wait for a new token.
type state uint8

const (
	fresh state = iota
	refreshDue
	stale
)

const (
	// oauth2Delta is the early expiry x/oauth2's ReuseTokenSource (and so
	// oauth2.NewClient) applies to every token; see entry.token.
	oauth2Delta = 10 * time.Second
	// dueRecheck is how soon a wrapper should ask again for a token in
	// its refresh window; see entry.token.
	dueRecheck = time.Second

	// The first failed background refresh waits bgBackoffBase before the
	// next, doubling to bgBackoffMax.
	bgBackoffBase = time.Second
	bgBackoffMax  = 30 * time.Second

	// After a failed blocking fetch, callers get its error for coolDownBase,
	// doubling with each failure in a row to coolDownMax.
	coolDownBase = time.Second
	coolDownMax  = 30 * time.Second

	// unauthorizedGrace: a 401 to a token younger than this (or a quarter
	// of its lifetime, if less) does not invalidate it. A token that new
	// was rejected for something a new token will not fix, and fetching
	// one per 401 would flood the token endpoint.
	unauthorizedGrace = 5 * time.Second
)

// entry is one cached token and the ages at which its state changes.
// An entry is never modified once stored; a change stores a new one.
type entry struct {
	tok      *oauth2.Token // as fetched; callers get copies
	header   string        // Authorization value, built once for Transport
	sent     time.Time     // when the request for tok was sent
	sentWall int64         // sent on the wall clock, in Unix ns; see age
	lifetime time.Duration // expires_in

	refreshAfter time.Duration // age at which a background refresh starts
	staleAfter   time.Duration // age from which tok is not handed out
	failures     int           // background refreshes failed in a row
}

// newEntry caches tok, fetched by a request sent at sent. window and
// margin are clamped to the token's lifetime. The refresh start is spread
// at random over the first half of the time between the window opening and
// the token going stale, so that a fleet started together does not refresh
// together, and every refresh has at least that half to finish before
// anyone waits.
func newEntry(tok *oauth2.Token, sent time.Time, window, margin time.Duration) *entry {
	life := time.Duration(tok.ExpiresIn) * time.Second
	window = min(window, life/2)
	margin = min(margin, life/4)
	return &entry{
		tok:          tok,
		header:       "Bearer " + tok.AccessToken,
		sent:         sent,
		sentWall:     sent.UnixNano(),
		lifetime:     life,
		refreshAfter: life - window + jitter((window-margin)/2),
		staleAfter:   life - margin,
	}
}

// jitter returns a random duration in [0, d).
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return rand.N(d)
}

// age is how long ago the token was requested. Both clocks are read and
// the larger wins: the monotonic clock is immune to wall-clock steps
// backwards, but stops while the machine is suspended, when only the wall
// clock sees that the token has aged.
func (e *entry) age(now time.Time) time.Duration {
	return max(now.Sub(e.sent), time.Duration(now.UnixNano()-e.sentWall))
}

func (e *entry) state(now time.Time) state {
	switch age := e.age(now); {
	case age >= e.staleAfter:
		return stale
	case age >= e.refreshAfter:
		return refreshDue
	}
	return fresh
}

// token returns a copy of the cached token for a caller at time now.
//
// Its Expiry is not the token's own but the time this source wants to be
// asked again, plus oauth2Delta, and never later than the real expiry.
// x/oauth2's ReuseTokenSource, which oauth2.NewClient wraps around every
// source, asks its source again only oauth2Delta before Expiry; with the
// real expiry it would keep the token through the refresh window (so no
// background refresh would start) and then make every request wait for a
// fetch. With this Expiry it comes back when the window opens, and then
// every dueRecheck until the token goes stale, so that it picks up the
// refreshed token, and a failed refresh is retried, while its token is
// still usable.
//
// Expiry is counted from now on the wall clock as it reads now, by the
// token's age, not from sentWall: x/oauth2 compares it with time.Now, and
// after the wall clock has been set back, sentWall lies ahead of it, so
// that an Expiry counted from sentWall would fall after the real expiry.
func (e *entry) token(now time.Time) *oauth2.Token {
	age := e.age(now)
	next := e.refreshAfter
	if age >= e.refreshAfter {
		next = min(age+dueRecheck, e.staleAfter)
	}
	t := *e.tok
	t.Expiry = time.Unix(0, now.UnixNano()+int64(min(next+oauth2Delta, e.lifetime)-age))
	return &t
}

// backedOff returns e with its next background refresh put off after one
// more failure, at age age, by a growing backoff or by the wait the
// endpoint asked for, whichever is longer.
func (e *entry) backedOff(age, serverWait time.Duration) *entry {
	e2 := *e
	e2.failures++
	e2.refreshAfter = min(age+max(doubling(bgBackoffBase, bgBackoffMax, e2.failures), serverWait), e.staleAfter)
	return &e2
}

// unauthorizedInvalidates reports whether a 401 answer to this token
// at time now should invalidate it; see unauthorizedGrace.
func (e *entry) unauthorizedInvalidates(now time.Time) bool {
	return e.age(now) >= min(unauthorizedGrace, e.lifetime/4)
}

// doubling returns base<<(n-1), at most ceiling, jittered down by up to
// half: the wait before attempt n+1 after n failures.
func doubling(base, ceiling time.Duration, n int) time.Duration {
	d := ceiling
	if n < 32 {
		d = min(d, base<<(n-1))
	}
	return d/2 + jitter(d/2)
}

// failure remembers a failed blocking fetch so that callers during its
// cool-down get its error instead of each sending a request. The
// cool-down grows with failures in a row, and is at least the wait the
// endpoint asked for with Retry-After.
type failure struct {
	err   error // what callers get: the fetch error, wrapped
	until time.Time
	count int // failures in a row
}

func newFailure(err error, now time.Time, prev *failure) *failure {
	n := 1
	if prev != nil {
		n = prev.count + 1
	}
	d := max(doubling(coolDownBase, coolDownMax, n), serverWait(err))
	return &failure{
		err:   fmt.Errorf("forteauth: no token; %d token fetch(es) failed in a row, so callers get this error for %v before the next attempt: %w", n, d.Round(time.Millisecond), err),
		until: now.Add(d),
		count: n,
	}
}

// Store is a token cache shared by TokenSources, usually in different
// processes, so that a fleet asks the token endpoint for about one token
// per lifetime instead of one per process. Set Config.Store to use one;
// package github.com/forteauth/forteauth/redisstore implements it on Redis.
//
// A TokenSource consults its Store only when its own cache cannot answer:
// at start, when a refresh is due, and after Invalidate. It seals every
// value it stores with AES-256-GCM under a key derived from ClientSecret
// and bound to the key name, so a Store holds only opaque bytes, under
// keys that contain no secret; a value that does not open is ignored and
// replaced. Store errors and slowness never fail a token request: the
// TokenSource fetches from the endpoint itself, logs the fault once, and
// tries the Store again after a short pause that grows while it fails.
//
// Implementations must be safe for concurrent use.
type Store interface {
	// Get returns the value stored under key, or nil and no error if
	// there is none.
	Get(ctx context.Context, key string) ([]byte, error)
	// Set stores value under key, to be dropped after ttl.
	Set(ctx context.Context, key string, value []byte, ttl time.Duration) error
}

// Locker is implemented by a Store that can let one TokenSource at a time,
// across the fleet, refresh a token. Sources that find the lock held wait
// for the holder's new token: as long as the holder renews its lock if
// the Locker is also a Renewer, else a short, bounded time, after which
// they fetch one themselves.
type Locker interface {
	// Lock takes the lock named key for ttl unless another holder has
	// it. It returns a value identifying this holder, and ok false (with
	// no error) if the lock is held.
	Lock(ctx context.Context, key string, ttl time.Duration) (owner string, ok bool, err error)
	// Unlock releases the lock named key if owner still holds it.
	Unlock(ctx context.Context, key, owner string) error
}
