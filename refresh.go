package forteauth

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"
)

// This file decides when a TokenSource refreshes its token and runs the
// refreshes: in the background while the token is usable, shared by every
// waiting caller when it is not, with backoff and cool-down after
// failures, and after the API rejected a token (the 401 flood guard).

// get returns a cached entry that may be handed out and the time it was
// judged usable at. The fresh path is one clock read and one atomic load.
func (s *TokenSource) get(ctx context.Context) (*entry, time.Time, error) {
	now := s.clock.now()
	e := s.cache.Load()
	if e != nil {
		switch e.state(now) {
		case fresh:
			return e, now, nil
		case refreshDue:
			s.refreshInBackground(e)
			return e, now, nil
		}
	}
	return s.wait(ctx, e)
}

// wait gets the result of the shared fetch, starting it if needed; seen is
// the unusable entry (or nil) that made the caller wait.
func (s *TokenSource) wait(ctx context.Context, seen *entry) (*entry, time.Time, error) {
	if s.err != nil {
		return nil, time.Time{}, s.err
	}
	if err := ctx.Err(); err != nil {
		return nil, time.Time{}, fmt.Errorf("forteauth: not waiting for a token: %w", err)
	}
	prior := s.failure.Load()
	select {
	case r := <-s.group.DoChan("", func() (any, error) { return s.refresh(seen) }):
		// Getting back the error of the failure on record when the wait
		// began means that no fetch ran for this call: the cool-down
		// answered it.
		if r.Err != nil && prior != nil && r.Err == prior.err {
			s.counters.coolDownErrors.Add(1)
		} else {
			s.counters.waits.Add(1)
		}
		if r.Err != nil {
			return nil, time.Time{}, r.Err
		}
		return r.Val.(*entry), s.clock.now(), nil
	case <-ctx.Done():
		s.counters.waits.Add(1)
		return nil, time.Time{}, fmt.Errorf("forteauth: gave up waiting for a token: %w", ctx.Err())
	}
}

// refreshInBackground starts one background refresh of seen unless one
// is running.
func (s *TokenSource) refreshInBackground(seen *entry) {
	if !s.refreshing.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer s.refreshing.Store(false)
		s.group.Do("", func() (any, error) { return s.refresh(seen) }) // refresh stores or logs the outcome
	}()
}

// refresh is the shared fetch for callers that saw seen in the cache. It
// runs detached from every caller, and its outcome is recorded for all of
// them: a new entry, a postponed background refresh, or a cool-down.
//
// A caller's look at the cache and its start of the shared fetch are not
// one atomic step: another fetch may have ended, and stored a token or a
// failure, in between. Then nothing is fetched again.
func (s *TokenSource) refresh(seen *entry) (*entry, error) {
	now := s.clock.now()
	if cur := s.cache.Load(); cur != seen && cur != nil && cur.state(now) != stale {
		return cur, nil
	}
	if f := s.failure.Load(); f != nil && now.Before(f.until) {
		return nil, f.err
	}
	return s.replace(seen)
}

// replace obtains a token to replace seen, from the Store if there is one
// and it holds a better token, else from the endpoint, and records the
// outcome.
func (s *TokenSource) replace(seen *entry) (*entry, error) {
	if s.share != nil {
		e, release := s.share.acquire(s.ctx, s.canReplace(seen), s.cfg.refreshWindow(), s.cfg.expiryMargin())
		if e != nil {
			s.counters.storeHits.Add(1)
			return s.store(e), nil
		}
		if old, ok := s.awaitStore(); ok {
			return old, nil
		}
		defer release()
	}
	f, err := s.endpoint.fetch(s.ctx)
	now := s.clock.now()
	if err == nil {
		e := newEntry(f.tok, f.sent, s.cfg.refreshWindow(), s.cfg.expiryMargin())
		if e.state(now) != stale {
			s.counters.fetches.Add(1)
			e = s.store(e)
			if s.share != nil {
				s.share.save(s.ctx, e)
			}
			return e, nil
		}
		err = fmt.Errorf("%w: the token expires in %ds but the request took %v; check the network path to the token endpoint",
			ErrInvalidResponse, f.tok.ExpiresIn, e.age(now).Round(time.Millisecond))
	}
	s.counters.fetchFailures.Add(1)
	if old := s.cache.Load(); old != nil && old.state(now) != stale {
		s.counters.backgroundFailures.Add(1)
		s.postponeRefresh(old, now, err)
		return nil, err
	}
	return nil, s.coolDown(now, err)
}

// awaitStore puts a background refresh off until the Store's pause after a
// fault ends, and returns the still-usable token to keep meanwhile, if the
// Store is pausing and the token stays usable until then. A failover
// makes every source whose refresh falls in it see a fault; fetching
// directly would cost a token request each, where waiting for the new
// master costs none. A token that goes stale first is fetched directly by
// the callers that then wait, as without a Store.
func (s *TokenSource) awaitStore() (*entry, bool) {
	until, paused := s.share.pausedUntil()
	now := s.clock.now()
	old := s.cache.Load()
	if !paused || old == nil || old.state(now) != refreshDue {
		return nil, false
	}
	after := old.age(now) + until.Sub(now)
	if after >= old.staleAfter {
		return nil, false
	}
	s.cache.CompareAndSwap(old, old.deferred(after))
	return old, true
}

// store caches e, a new token, as the one to hand out.
func (s *TokenSource) store(e *entry) *entry {
	e = s.onTrial(e)
	s.cache.Store(e)
	s.failure.Store(nil)
	return e
}

// canReplace returns the test a token from the Store must pass to replace
// seen: not a token this source invalidated, not seen itself, and usable;
// for a background refresh of a still-usable token, not itself due for
// refresh, or the next call would only start another refresh.
func (s *TokenSource) canReplace(seen *entry) wanted {
	rejected := s.rejected.Load()
	return func(e *entry, now time.Time) bool {
		switch {
		case rejected != nil && e.tok.AccessToken == *rejected:
			return false
		case seen == nil || seen.state(now) == stale:
			return e.state(now) != stale && (seen == nil || e.tok.AccessToken != seen.tok.AccessToken)
		}
		return e.tok.AccessToken != seen.tok.AccessToken && e.state(now) == fresh
	}
}

// postponeRefresh keeps old, still usable, after a background refresh
// failed with err: its next refresh waits for failureBackoff, or for the
// Retry-After the endpoint sent if that is longer.
func (s *TokenSource) postponeRefresh(old *entry, now time.Time, err error) {
	age := old.age(now)
	next := old.postponed(age + max(failureBackoff.after(old.failures+1), serverWait(err)))
	s.cache.CompareAndSwap(old, next)
	s.log.Warn("forteauth: background token refresh failed; keeping the current token",
		"error", err, "failures", next.failures,
		"retry_in", (next.refreshAfter - age).Round(time.Millisecond),
		"token_usable_for", (old.staleAfter - age).Round(time.Millisecond))
}

// failure remembers a failed blocking fetch so that callers during its
// cool-down get its error instead of each sending a request.
type failure struct {
	err   error // what callers get: the fetch error, wrapped
	until time.Time
	count int // failures in a row
}

// coolDown records a failed blocking fetch and returns the error callers
// get until the cool-down ends. The cool-down follows failureBackoff with
// the failures in a row, and is at least the wait the endpoint asked for
// with Retry-After.
func (s *TokenSource) coolDown(now time.Time, err error) error {
	n := 1
	if prev := s.failure.Load(); prev != nil {
		n = prev.count + 1
	}
	d := max(failureBackoff.after(n), serverWait(err))
	f := &failure{
		err:   fmt.Errorf("forteauth: no token; %d token fetch(es) failed in a row, so callers get this error for %v before the next attempt: %w", n, d.Round(time.Millisecond), err),
		until: now.Add(d),
		count: n,
	}
	s.failure.Store(f)
	s.log.Error("forteauth: token fetch failed; callers get this error until the cool-down ends",
		"error", err, "failures", f.count, "cool_down", d.Round(time.Millisecond))
	return f.err
}

// unauthorized is a TokenSource's flood guard for 401s from the API.
//
// The first 401 to a token invalidates it, whatever its age, and the
// request is sent once more with a new token. The new token is on trial
// (entry.accepted is set) until the API answers anything but 401 to it. A
// token on trial that is rejected before that shows that new tokens do not
// help, so it starts a round: for a cool-down that grows with the rounds in
// a row (as a failed fetch's does), 401s go back to callers as they are,
// and no token is invalidated. After it, the next 401 invalidates the token
// and its replacement is on trial in turn. An API that rejects every token
// thus costs one token request per cool-down, not one per request.
type unauthorized struct {
	mu      sync.Mutex
	rounds  int           // tokens on trial rejected in a row
	until   time.Time     // no 401 invalidates a token before this
	tried   *oauth2.Token // the token on trial whose rejection started the cool-down
	pending bool          // a 401 emptied the cache: the next token stored is on trial
}

// answered records the status of the API's answer to a request sent with
// a, and reports whether the request should be sent once more with another
// token (see reauthorize): for a 401 only, at most once per request (the
// caller's duty). Transport calls it after every request it sends with a
// token from s.
//
// It is called after every request Transport sends with a token, so the
// common case is inlined and costs two branches: only a 401 or a token on
// trial does more, and a token on trial only an atomic load once the API
// has accepted it.
func (s *TokenSource) answered(a authorization, status int) bool {
	if status != http.StatusUnauthorized && a.from.accepted == nil {
		return false
	}
	return s.answeredSlow(a.from, status)
}

// answeredSlow is answered for a 401 or a token on trial.
func (s *TokenSource) answeredSlow(e *entry, status int) bool {
	if status == http.StatusUnauthorized {
		return s.rejectedByAPI(e)
	}
	if !e.accepted.Load() && !e.accepted.Swap(true) {
		// The API has taken a token on trial: new tokens help again,
		// so the guard ends and the next rejection is recovered at once.
		g := &s.unauthorized
		g.mu.Lock()
		g.rounds, g.until, g.tried = 0, time.Time{}, nil
		g.mu.Unlock()
	}
	return false
}

// rejectedByAPI handles a 401 to e; see answered and unauthorized.
func (s *TokenSource) rejectedByAPI(e *entry) bool {
	now := s.clock.now()
	g := &s.unauthorized
	g.mu.Lock()
	defer g.mu.Unlock()
	if now.Before(g.until) {
		return false
	}
	for {
		cur := s.cache.Load()
		if cur == nil || cur.tok != e.tok {
			return true // already replaced or dropped: the retry gets another token
		}
		if cur.accepted != nil && !cur.accepted.Load() && g.tried != cur.tok {
			g.rounds++
			d := failureBackoff.after(g.rounds)
			g.until, g.tried = now.Add(d), cur.tok
			s.log.Warn("forteauth: the API rejected a new token before accepting any; its 401s are returned as they are until the cool-down ends; check the client's permissions, and that TokenURL and the API are in the same environment",
				"rounds", g.rounds, "cool_down", d.Round(time.Millisecond))
			return false
		}
		// cur, not e: a failed background refresh may have stored a copy
		// of e with its refresh postponed, and that copy holds the token.
		if s.cache.CompareAndSwap(cur, nil) {
			s.counters.unauthorized.Add(1)
			s.rejected.Store(&cur.tok.AccessToken)
			g.pending = true
			return true
		}
	}
}

// onTrial returns e to be stored as the cached token: on trial if it
// replaces a token a 401 invalidated, or if it is fetched while the guard
// holds (no token has been accepted since a round started).
func (s *TokenSource) onTrial(e *entry) *entry {
	g := &s.unauthorized
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.pending && g.rounds == 0 {
		return e
	}
	g.pending = false
	e2 := *e
	e2.accepted = new(atomic.Bool)
	return &e2
}
