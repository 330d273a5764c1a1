package forteauth

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/oauth2"
)

// This file decides when a TokenSource refreshes its token and runs the
// refreshes: in the background while the token is usable, shared by every
// waiting caller when it is not, from the Store when it holds a token that
// will do, with backoff and cool-down after failures.

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
	ctx = s.startWait(ctx)
	reason := FetchNoToken
	if seen == nil && s.unauthorized.wasInvalidated() {
		reason = FetchRejected
	}
	prior := s.failure.Load()
	select {
	case r := <-s.group.DoChan("", func() (any, error) { return s.refresh(seen, reason) }):
		res := r.Val.(fetchResult)
		s.endWait(ctx, res.fetch, r.Err)
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
		return res.e, s.clock.now(), nil
	case <-ctx.Done():
		s.counters.waits.Add(1)
		err := fmt.Errorf("forteauth: gave up waiting for a token: %w", ctx.Err())
		s.endWait(ctx, s.fetchInFlight(), err)
		return nil, time.Time{}, err
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
		s.group.Do("", func() (any, error) { return s.refresh(seen, FetchRefresh) }) // refresh stores or logs the outcome
	}()
}

// fetchResult is what the shared fetch gives every caller that waited for
// it: the entry, and the context the fetch ran in (nil if none ran), for
// a Trace to link the waits to.
type fetchResult struct {
	e     *entry
	fetch context.Context
}

// refresh is the shared fetch for callers that saw seen in the cache. It
// runs detached from every caller, and its outcome is recorded for all of
// them: a new entry, a postponed background refresh, or a cool-down.
//
// A caller's look at the cache and its start of the shared fetch are not
// one atomic step: another fetch may have ended, and stored a token or a
// failure, in between. Then nothing is fetched again.
func (s *TokenSource) refresh(seen *entry, reason FetchReason) (fetchResult, error) {
	now := s.clock.now()
	if cur := s.cache.Load(); cur != seen && cur != nil && cur.state(now) != stale {
		return fetchResult{e: cur}, nil
	}
	if f := s.failure.Load(); f != nil && now.Before(f.until) {
		return fetchResult{}, f.err
	}
	ctx := s.startFetch(reason)
	info := FetchInfo{Reason: reason}
	e, err := s.replace(ctx, seen, &info)
	if err != nil {
		info.Err = err
		err = s.failed(ctx, err)
	}
	s.endFetch(ctx, info)
	return fetchResult{e, ctx}, err
}

// replace obtains a token to replace seen, with the credentials the
// source supplies for this fetch: from the Store if there is one and it
// holds a better token for them, else from the endpoint. It records what
// it did in info, and returns the error of a fetch that got no token.
func (s *TokenSource) replace(ctx context.Context, seen *entry, info *FetchInfo) (*entry, error) {
	cr, err := s.currentCredentials(ctx)
	if err != nil {
		return nil, err
	}
	if s.shared != nil {
		e, release := s.fromStore(ctx, seen, s.sealerFor(cr))
		if e != nil {
			info.FromStore = true
			s.counters.storeHits.Add(1)
			return s.setCached(e), nil
		}
		defer release()
		if old, ok := s.postponeForStore(); ok {
			return old, nil
		}
	}
	return s.fetch(ctx, cr, info)
}

// currentCredentials asks the source for this fetch's credentials, within
// a fetch budget of its own: a func that hangs fails the fetch.
func (s *TokenSource) currentCredentials(ctx context.Context) (Credentials, error) {
	ctx, cancel := context.WithTimeout(ctx, s.endpoint.retry.budget)
	defer cancel()
	return s.creds.get(ctx)
}

// fetch gets a new token from the endpoint with cr, or those credentials
// a rejection of cr leads to, caches it and stores it in the Store, under
// the credentials that got it.
func (s *TokenSource) fetch(ctx context.Context, cr Credentials, info *FetchInfo) (*entry, error) {
	bctx, cancel := context.WithTimeout(ctx, s.endpoint.retry.budget)
	defer cancel()
	f, used, err := s.creds.obtain(bctx, s.endpoint, cr, info)
	if err != nil {
		return nil, err
	}
	now := s.clock.now()
	e := s.newEntry(f.tok, f.sent)
	if e.state(now) == stale {
		return nil, fmt.Errorf("%w: the token expires in %ds but the request took %v; check the network path to the token endpoint",
			ErrInvalidResponse, f.tok.ExpiresIn, e.age(now).Round(time.Millisecond))
	}
	s.counters.fetches.Add(1)
	e = s.setCached(e)
	if s.shared != nil {
		s.shared.save(ctx, s.sealerFor(used), stored{e.tok, e.sent}, e.staleAfter-e.age(now))
	}
	return e, nil
}

// newEntry is the cache entry for tok, requested at sent, with this
// source's refresh window and margin.
func (s *TokenSource) newEntry(tok *oauth2.Token, sent time.Time) *entry {
	return newEntry(tok, sent, s.cfg.refreshWindow(), s.cfg.expiryMargin())
}

// setCached makes e, a new token, the one to hand out, and ends any
// cool-down.
func (s *TokenSource) setCached(e *entry) *entry {
	e = s.unauthorized.admit(e)
	s.cache.Store(e)
	s.failure.Store(nil)
	return e
}

// fromStore looks in the Store, under sl's key, for a token to replace
// seen with, before the caller fetches one (see sharing and lockOrWait). It returns the
// entry to use, or nil and the function to call once the caller's own
// fetch is over, which releases the fleet's refresh lock if the caller
// took it.
func (s *TokenSource) fromStore(ctx context.Context, seen *entry, sl *sealer) (*entry, func()) {
	if sl == nil {
		return nil, noRelease
	}
	st, locked, err := s.shared.read(ctx, sl)
	if err != nil {
		return nil, noRelease
	}
	if e := s.adoptable(st, seen); e != nil {
		return e, noRelease
	}
	st, release := s.shared.lockOrWait(ctx, sl, st, locked)
	if e := s.adoptable(st, seen); e != nil {
		release()
		return e, noRelease
	}
	return nil, release
}

// adoptable returns the entry for st, a token read from the Store, if it
// may replace seen: not a token this source invalidated, not seen itself,
// and usable; for a background refresh of a still-usable token, not
// itself due for refresh, or the next call would only start another
// refresh.
func (s *TokenSource) adoptable(st stored, seen *entry) *entry {
	if st.tok == nil || seen != nil && st.tok.AccessToken == seen.tok.AccessToken {
		return nil
	}
	if s.unauthorized.wasRejected(st.tok.AccessToken) {
		return nil
	}
	now := s.clock.now()
	e := s.newEntry(st.tok, st.sent)
	switch e.state(now) {
	case fresh:
		return e
	case refreshDue:
		if seen == nil || seen.state(now) == stale {
			return e
		}
	}
	return nil
}

// postponeForStore puts a background refresh off until the Store's pause
// after a fault ends, and returns the still-usable token to keep
// meanwhile, if the Store is pausing and the token stays usable until
// then. A failover makes every source whose refresh falls in it see a
// fault; fetching directly would cost a token request each, where waiting
// for the new master costs none. A token that goes stale first is fetched
// directly by the callers that then wait, as without a Store.
func (s *TokenSource) postponeForStore() (*entry, bool) {
	until, paused := s.shared.pausedUntil()
	now := s.clock.now()
	old := s.cache.Load()
	if !paused || old == nil || old.state(now) != refreshDue {
		return nil, false
	}
	after := old.age(now) + until.Sub(now)
	if after >= old.staleAfter {
		return nil, false
	}
	s.cache.CompareAndSwap(old, old.refreshAt(after))
	return old, true
}
