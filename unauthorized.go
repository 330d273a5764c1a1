package forteauth

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"
)

// unauthorized is a TokenSource's answer to 401s from the API: the one
// place where a 401 is handled.
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
	log *slog.Logger

	// rejected is the last token invalidated, by a 401 or Invalidate,
	// which the Store may still hold and must not give back; invalidated
	// says the cache was emptied so, and nothing cached since.
	rejected    atomic.Pointer[string]
	invalidated atomic.Bool

	mu      sync.Mutex
	rounds  int           // tokens on trial rejected in a row
	until   time.Time     // no 401 invalidates a token before this
	tried   *oauth2.Token // the token on trial whose rejection started the cool-down
	pending bool          // a 401 emptied the cache: the next token cached is on trial
}

// admit returns e as it is to be cached: on trial if it replaces a token
// a 401 invalidated, or if it is fetched while a round holds.
func (g *unauthorized) admit(e *entry) *entry {
	g.invalidated.Store(false)
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

// accept records that the API answered e, a token on trial, with anything
// but 401: new tokens help again, so the rounds end and the next
// rejection is recovered at once.
func (g *unauthorized) accept(e *entry) {
	if e.accepted.Load() || e.accepted.Swap(true) {
		return
	}
	g.mu.Lock()
	g.rounds, g.until, g.tried = 0, time.Time{}, nil
	g.mu.Unlock()
}

// reject handles a 401, at now, to e, which came from cache. It reports
// whether the request is to be sent once more with another token, and
// whether it dropped e's token from cache.
func (g *unauthorized) reject(ctx context.Context, now time.Time, e *entry, cache *atomic.Pointer[entry]) (replay, dropped bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if now.Before(g.until) {
		return false, false
	}
	for {
		cur := cache.Load()
		if cur == nil || cur.tok != e.tok {
			return true, false // already replaced or dropped: the replay gets another token
		}
		if cur.accepted != nil && !cur.accepted.Load() && g.tried != cur.tok {
			g.startRound(ctx, now, cur.tok)
			return false, false
		}
		// cur, not e: a failed background refresh may have cached a copy
		// of e with its refresh put off, and that copy holds the token.
		if cache.CompareAndSwap(cur, nil) {
			g.markRejected(cur.tok.AccessToken)
			g.pending = true
			return true, true
		}
	}
}

// markRejected records tok as the token last invalidated.
func (g *unauthorized) markRejected(tok string) {
	g.rejected.Store(&tok)
	g.invalidated.Store(true)
}

// wasInvalidated reports whether a 401 or Invalidate emptied the cache,
// with nothing cached since: the next fetch replaces a rejected token.
func (g *unauthorized) wasInvalidated() bool { return g.invalidated.Load() }

// wasRejected reports whether tok is the token last invalidated.
func (g *unauthorized) wasRejected(tok string) bool {
	r := g.rejected.Load()
	return r != nil && *r == tok
}

// startRound starts a cool-down after the rejection of tried, a token on
// trial. g.mu is held.
func (g *unauthorized) startRound(ctx context.Context, now time.Time, tried *oauth2.Token) {
	g.rounds++
	d := failureBackoff.after(g.rounds)
	g.until, g.tried = now.Add(d), tried
	g.log.WarnContext(ctx, "forteauth: the API rejected a new token before accepting any; its 401s are returned as they are until the cool-down ends; check the client's permissions, and that TokenURL and the API are in the same environment",
		"rounds", g.rounds, "cool_down", d.Round(time.Millisecond))
}

// answered records the status of the API's answer to a request sent with
// a, whose context is ctx, and reports whether the request should be sent once more with another
// token (see reauthorize): for a 401 only, at most once per request (the
// caller's duty). Transport calls it after every request it sends with a
// token from s, so the common case costs two branches: only a 401 or a
// token on trial does more.
func (s *TokenSource) answered(ctx context.Context, a authorization, status int) bool {
	if status != http.StatusUnauthorized && a.from.accepted == nil {
		return false
	}
	return s.answeredSlow(ctx, a.from, status)
}

// answeredSlow is answered for a 401 or a token on trial, kept apart so
// that answered stays small enough to be inlined.
func (s *TokenSource) answeredSlow(ctx context.Context, e *entry, status int) bool {
	if status != http.StatusUnauthorized {
		s.unauthorized.accept(e)
		return false
	}
	replay, dropped := s.unauthorized.reject(ctx, s.clock.now(), e, &s.cache)
	if dropped {
		s.counters.unauthorized.Add(1)
	}
	return replay
}

// reauthorize returns the authorization to send a request once more with
// after answered asked for it: a token other than a's, waiting for it no
// longer than ctx allows. ok is false if there is none, and the request is
// not to be sent again; when it is true, the replay is counted.
func (s *TokenSource) reauthorize(ctx context.Context, a authorization) (next authorization, ok bool) {
	next, err := s.authorize(ctx)
	if err != nil || next.header == a.header {
		return authorization{}, false
	}
	s.counters.replays.Add(1)
	return next, true
}
