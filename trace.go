package forteauth

import "context"

// Trace holds hooks that see a TokenSource's token fetches, the calls
// that wait for one, and Transport's replays after a 401, for tracing;
// package github.com/forteauth/forteauth/forteotel makes one that records
// them as OpenTelemetry spans. Set it as Config.Trace.
//
// Any hook may be nil. None runs on a cache hit: a call that finds a
// usable token costs the same with a Trace as without one. Hooks run in
// the goroutine of the fetch, the call or the request they report; they
// must be safe for concurrent use and return quickly. They are never
// given the secret, a token or a body from the token endpoint.
type Trace struct {
	// FetchStart is called as a fetch starts, with a context detached
	// from every caller, and returns the context the fetch runs in: its
	// call of Config.Credentials, its Store calls, its requests through
	// Config.HTTPClient and its log records all get it, so that what they
	// record nests under what FetchStart put in it (a span, say).
	FetchStart func(ctx context.Context, reason FetchReason) context.Context
	// FetchDone is called as that fetch ends, with the context
	// FetchStart returned, and what the fetch did.
	FetchDone func(ctx context.Context, info FetchInfo)

	// WaitStart is called when a call (Token, TokenContext, a request
	// through Transport) finds no usable token and waits for a fetch,
	// with the call's context. It returns the context WaitDone gets.
	WaitStart func(ctx context.Context) context.Context
	// WaitDone is called as that wait ends: the call got a token or an
	// error (err), or gave up (err wraps its context's error). fetch is
	// the context FetchStart returned for the fetch the call waited for,
	// or nil if none ran for it (the cool-down, or a fetch that ended just
	// before, answered it).
	WaitDone func(ctx, fetch context.Context, err error)

	// Replayed is called when Transport sends a request once more with a
	// new token, with the request's context and the status of the answer
	// that caused it (401).
	Replayed func(ctx context.Context, status int)
}

// FetchReason is why a fetch ran.
type FetchReason string

// The reasons for a fetch.
const (
	FetchNoToken  FetchReason = "no_token"       // no usable token: at start, or the cached one went stale
	FetchRefresh  FetchReason = "refresh_due"    // a background refresh in the refresh window
	FetchRejected FetchReason = "token_rejected" // the API rejected the token: a 401 through Transport, or Invalidate
)

// FetchInfo is what a fetch did, for Trace.FetchDone.
type FetchInfo struct {
	Reason FetchReason
	// Attempts counts the HTTP requests the fetch sent to the token
	// endpoint, retries and those with other credentials included.
	Attempts int
	// LastStatus is the HTTP status of the last answer, 0 if none came.
	LastStatus int
	// FromStore says the token came from Config.Store, with no request.
	FromStore bool
	// Err is why the fetch got no usable token, nil if it got one.
	Err error
}

func (s *TokenSource) trace() *Trace { return s.cfg.Trace }

// startFetch returns the context a fetch for reason runs in, and records
// it as the fetch in flight, for waits that end before it.
func (s *TokenSource) startFetch(reason FetchReason) context.Context {
	t := s.trace()
	if t == nil {
		return s.ctx
	}
	ctx := s.ctx
	if t.FetchStart != nil {
		ctx = t.FetchStart(ctx, reason)
	}
	s.inFlight.Store(&ctx)
	return ctx
}

func (s *TokenSource) endFetch(ctx context.Context, info FetchInfo) {
	t := s.trace()
	if t == nil {
		return
	}
	s.inFlight.Store(nil)
	if t.FetchDone != nil {
		t.FetchDone(ctx, info)
	}
}

// fetchInFlight returns the context of the fetch running now, or nil.
func (s *TokenSource) fetchInFlight() context.Context {
	if p := s.inFlight.Load(); p != nil {
		return *p
	}
	return nil
}

func (s *TokenSource) startWait(ctx context.Context) context.Context {
	if t := s.trace(); t != nil && t.WaitStart != nil {
		return t.WaitStart(ctx)
	}
	return ctx
}

func (s *TokenSource) endWait(ctx, fetch context.Context, err error) {
	if t := s.trace(); t != nil && t.WaitDone != nil {
		t.WaitDone(ctx, fetch, err)
	}
}

// replayed reports a request Transport sends again after status.
func (s *TokenSource) replayed(ctx context.Context, status int) {
	if t := s.trace(); t != nil && t.Replayed != nil {
		t.Replayed(ctx, status)
	}
}
