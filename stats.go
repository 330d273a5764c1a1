package forteauth

import "time"

// Stats is a snapshot of a TokenSource: what it has done since it was made,
// and the state of its cached token. Get one with TokenSource.Stats.
//
// The counters only ever grow. Each is read atomically, but not all in one
// step, so a snapshot taken while a fetch ends may show some of its counts
// and not yet others.
//
// What to alert on:
//
//   - Expiry within twice Config.RefreshWindow of now while
//     BackgroundFailures rises: the token endpoint is failing; callers are
//     still served, and will not be once the token runs out. This is the
//     one to have. (An idle source lets its token run out too, so alert
//     on the two together.)
//   - CoolDownErrors, or FetchFailures beyond BackgroundFailures, rising:
//     callers are getting errors now.
//   - Unauthorized rising: the API rejects the tokens it is given; check
//     that the credentials and TokenURL belong to the API's environment.
//   - StoreFaults rising: the shared Store is failing; callers are served,
//     at the cost of a token request per process.
type Stats struct {
	// TokenRequests counts the HTTP requests sent to the token endpoint,
	// retries included, whatever their outcome.
	TokenRequests int64
	// Fetches counts the fetches from the token endpoint that got a usable
	// token, which was then cached. One fetch is one or more requests.
	Fetches int64
	// FetchFailures counts the fetches that got no usable token once their
	// retries were spent (or not allowed): every failure, whether a caller
	// waited for it or not.
	FetchFailures int64
	// BackgroundFailures counts the FetchFailures of background refreshes:
	// those after which the still-usable token was kept, so that no caller
	// saw the error (it is only logged). Rising while Expiry comes near,
	// it is the warning that callers will soon wait and fail.
	BackgroundFailures int64

	// Waits counts the calls (Token, TokenContext, a request through
	// Transport) that found no usable token cached and waited for a fetch,
	// started or joined, including those whose context ended first. A
	// cache hit is never counted.
	Waits int64
	// CoolDownErrors counts the calls answered at once, without a request,
	// with the error of a failed fetch during its cool-down. They are not
	// counted in Waits.
	CoolDownErrors int64

	// Unauthorized counts the 401 answers from the API, to requests through
	// Transport, that invalidated the cached token. A 401 to a token
	// already replaced is not counted, nor one during the cool-down that
	// follows the rejection of a new token (when 401s are returned as they
	// are; see Transport), nor a call of Invalidate.
	Unauthorized int64
	// Replays counts the requests Transport sent again, with a new token,
	// after a 401.
	Replays int64

	// StoreHits counts the tokens taken from Config.Store instead of
	// fetched from the token endpoint.
	StoreHits int64
	// StoreFaults counts the Store calls (Get, Set, Lock, Unlock) that
	// failed or timed out. After each, the source leaves the Store alone
	// for a while and fetches directly; see Store.
	StoreFaults int64

	// CredentialFailures counts the calls of Config.Credentials that
	// failed: an error, an empty client ID or secret, or a file of
	// CredentialsFromFiles missing, unreadable or empty. Each failed its
	// fetch.
	CredentialFailures int64
	// CredentialChanges counts the times Config.Credentials returned other
	// credentials than at its call before: the rotations the source took.
	CredentialChanges int64
	// CredentialFallbacks counts the fetches that, the endpoint having
	// rejected the newest credentials, tried the ones it last accepted, as
	// while a new secret is not active yet.
	CredentialFallbacks int64

	// Expiry is when the cached token expires: when its request was sent,
	// on the wall clock, plus its lifetime (expires_in), moved earlier by
	// as much as the wall clock has been set back since, if by the margin
	// or more. It is later than
	// the Expiry of the *oauth2.Token that Token returns, which is when the
	// source wants to be asked again. It may be in the past for a token
	// that has gone stale while nothing asked for one. It is the zero Time
	// if no token is cached.
	Expiry time.Time
	// RefreshAt is when the cached token's background refresh is due: the
	// first attempt or, after failed ones, the next. The refresh starts
	// with the first call after it, so it may be in the past for an idle
	// source. It is the zero Time if no token is cached.
	RefreshAt time.Time
}

// Stats returns a snapshot of s. It is safe to call concurrently with s's
// other methods, and cheap (a few atomic loads and a clock read), so a
// metrics collector may call it on every scrape. It writes nothing, so it
// does not slow Token down.
func (s *TokenSource) Stats() Stats {
	if s == nil {
		return Stats{}
	}
	c := &s.counters
	st := Stats{
		TokenRequests:      c.tokenRequests.Load(),
		Fetches:            c.fetches.Load(),
		FetchFailures:      c.fetchFailures.Load(),
		BackgroundFailures: c.backgroundFailures.Load(),
		Waits:              c.waits.Load(),
		CoolDownErrors:     c.coolDownErrors.Load(),
		Unauthorized:       c.unauthorized.Load(),
		Replays:            c.replays.Load(),
		StoreHits:          c.storeHits.Load(),
		StoreFaults:        c.storeFaults.Load(),

		CredentialFailures:  c.credentialFailures.Load(),
		CredentialChanges:   c.credentialChanges.Load(),
		CredentialFallbacks: c.credentialFallbacks.Load(),
	}
	if e := s.cache.Load(); e != nil {
		// On the wall clock as a token's Expiry is: the same from one
		// snapshot to the next, and never later than the real expiry.
		skew := e.skew(s.clock.now())
		st.Expiry = e.wallTime(e.lifetime, skew)
		st.RefreshAt = e.wallTime(e.refreshAfter, skew)
	}
	return st
}
