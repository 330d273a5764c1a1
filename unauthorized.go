package forteauth

import (
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"
)

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
// e, and reports whether the request should be sent once more with another
// token: for a 401 only, at most once per request (the caller's duty).
//
// It is called after every request Transport sends with a token, so the
// common case is inlined and costs two branches: only a 401 or a token on
// trial does more, and a token on trial only an atomic load once the API
// has accepted it.
func (s *TokenSource) answered(e *entry, status int) bool {
	if status != http.StatusUnauthorized && e.accepted == nil {
		return false
	}
	return s.answeredSlow(e, status)
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
	now := s.now()
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
			d := doubling(coolDownBase, coolDownMax, g.rounds)
			g.until, g.tried = now.Add(d), cur.tok
			s.log.Warn("forteauth: the API rejected a new token before accepting any; its 401s are returned as they are until the cool-down ends; check the client's permissions, and that TokenURL and the API are in the same environment",
				"rounds", g.rounds, "cool_down", d.Round(time.Millisecond))
			return false
		}
		// cur, not e: a failed background refresh may have stored a copy
		// of e with its refresh put off, and that copy holds the token.
		if s.cache.CompareAndSwap(cur, nil) {
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
