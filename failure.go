package forteauth

import (
	"context"
	"fmt"
	"time"
)

// What a fetch that got no usable token leaves behind: a background
// refresh of a token still usable is put off, with backoff; a fetch that
// callers waited for starts a cool-down, during which they get its error
// at once instead of each sending a request.

// failed records a fetch that got no usable token: a background refresh
// of a token still usable is put off, a blocking fetch cools down.
func (s *TokenSource) failed(ctx context.Context, err error) error {
	now := s.clock.now()
	s.counters.fetchFailures.Add(1)
	if old := s.cache.Load(); old != nil && old.state(now) != stale {
		s.counters.backgroundFailures.Add(1)
		s.postponeRefresh(ctx, old, now, err)
		return err
	}
	return s.coolDown(ctx, now, err)
}

// postponeRefresh keeps old, still usable, after a background refresh
// failed with err: its next refresh waits for failureBackoff, or for the
// Retry-After the endpoint sent if that is longer.
func (s *TokenSource) postponeRefresh(ctx context.Context, old *entry, now time.Time, err error) {
	age := old.age(now)
	next := old.refreshAt(age + max(failureBackoff.after(old.failures+1), serverWait(err)))
	next.failures++
	s.cache.CompareAndSwap(old, next)
	s.log.WarnContext(ctx, "forteauth: background token refresh failed; keeping the current token",
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
func (s *TokenSource) coolDown(ctx context.Context, now time.Time, err error) error {
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
	s.log.ErrorContext(ctx, "forteauth: token fetch failed; callers get this error until the cool-down ends",
		"error", err, "failures", f.count, "cool_down", d.Round(time.Millisecond))
	return f.err
}
