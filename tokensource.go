package forteauth

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/sync/singleflight"
)

// Token fetches one new token, without caching. It fails with an error
// wrapping ErrInvalidConfig, before any request, if c is incomplete.
//
// ctx bounds the whole fetch, retries included, which also has its own
// 30-second limit. The token's Expiry is when the request was sent plus
// the expires_in the endpoint answered; Extra returns the fields of the
// answer's "data" object. Most programs want TokenSource or Client, which
// cache.
func (c *Config) Token(ctx context.Context) (*oauth2.Token, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	tok, _, err := newFetcher(c, c.httpClient(ctx)).fetch(ctx)
	return tok, err
}

// TokenSource returns a source that caches tokens from c and refreshes
// them before they expire; see TokenSource for what it guarantees.
//
// ctx supplies values only (an oauth2.HTTPClient, for instance): token
// fetches run detached from its cancellation, so a source made with a
// request's context keeps working after that request ends. If c is
// incomplete, every call of the source returns an error wrapping
// ErrInvalidConfig.
func (c *Config) TokenSource(ctx context.Context) *TokenSource {
	if ctx == nil {
		ctx = context.Background()
	}
	cfg := *c
	s := &TokenSource{
		cfg:   &cfg,
		err:   cfg.validate(),
		ctx:   context.WithoutCancel(ctx),
		fetch: newFetcher(&cfg, cfg.httpClient(ctx)),
		now:   time.Now,
	}
	s.log = s.fetch.log
	if u, err := url.Parse(cfg.TokenURL); s.err == nil && err == nil {
		s.host = u.Host
	}
	if s.err == nil && cfg.Store != nil {
		s.share, s.err = newSharing(&cfg, s.log)
	}
	return s
}

// Client returns an *http.Client that adds a token from c.TokenSource(ctx)
// to each request to the token endpoint's host, the host of Forte's API.
//
// It keeps the Transport, Timeout, CheckRedirect and Jar of c.HTTPClient,
// else of the oauth2.HTTPClient in ctx, else uses http.DefaultTransport
// with a 30 s timeout. ctx is used as TokenSource uses it.
func (c *Config) Client(ctx context.Context) *http.Client {
	if ctx == nil {
		ctx = context.Background()
	}
	hc := c.httpClient(ctx)
	return &http.Client{
		Transport:     &Transport{Source: c.TokenSource(ctx), Base: hc.Transport},
		CheckRedirect: hc.CheckRedirect,
		Jar:           hc.Jar,
		Timeout:       hc.Timeout,
	}
}

// TokenSource is a caching oauth2.TokenSource for one Config, safe for
// concurrent use. Make one with Config.TokenSource and share it; it needs
// no Close.
//
// While the cached token is fresh, Token returns it without locking or
// waiting. Once the refresh window opens (Config.RefreshWindow before
// expiry; the exact start is random, early in the window, so that a fleet
// does not refresh in step), one background fetch replaces the token while
// callers keep using it; if that fetch fails the token is kept, the failure
// is logged and the next attempt backs off. With no token, or one within
// Config.ExpiryMargin of expiry, callers wait for a single shared fetch,
// each only as long as its own context allows. When a waited-for fetch
// fails, callers get its error for a short cool-down (growing to 30 s
// while failures continue) rather than each sending a request.
//
// No goroutine outlives the fetch it runs.
type TokenSource struct {
	cfg   *Config // a copy, behind a pointer so that printing *s as a value does not reach the secret
	err   error   // from cfg.validate; returned by every call
	ctx   context.Context
	fetch *fetcher
	host  string       // TokenURL's host: what Transport sends tokens to by default
	log   *slog.Logger // the fetcher's: Config.Logger behind its redactor
	now   func() time.Time

	cache      atomic.Pointer[entry]
	failure    atomic.Pointer[failure] // last failed blocking fetch
	refreshing atomic.Bool             // a background refresh is running
	group      singleflight.Group

	share    *sharing               // nil without Config.Store
	rejected atomic.Pointer[string] // the last token invalidated, which the Store may still hold

	unauthorized unauthorized // the guard against 401 floods; see answered
}

// Token returns a usable token, as TokenContext with a context that never
// ends. It implements oauth2.TokenSource.
func (s *TokenSource) Token() (*oauth2.Token, error) {
	return s.TokenContext(context.Background())
}

// TokenContext returns a token with at least Config.ExpiryMargin left (or
// a quarter of its lifetime, if less), waiting for a fetch only if no such
// token is cached, and no longer than ctx allows. Each call returns a new
// *oauth2.Token, which the caller may modify; its Extra values, the fields
// of the endpoint's "data" object as encoding/json decodes them, are shared
// by every copy of one token and must not be modified.
//
// The token's Expiry is the time this source would rather be asked again
// (plus the 10 s that x/oauth2 subtracts), at most its real expiry, so
// that oauth2.NewClient and ReuseTokenSource come back in time for the
// background refresh; see docs/oauth2.md. Calls in the same state of one
// token get Equal values: Expiry moves when the refresh window opens, each
// second within it, with a new token, and when the wall clock is set back.
// ExpiresIn is the lifetime the endpoint gave.
func (s *TokenSource) TokenContext(ctx context.Context) (*oauth2.Token, error) {
	e, now, err := s.get(ctx)
	if err != nil {
		return nil, err
	}
	return e.token(now), nil
}

// Invalidate drops tok from the cache if it is still the cached token, so
// that the next call fetches a new one; a nil tok drops whatever is cached.
// Use it when an API rejects a token before its expiry. Transport does
// this itself on a 401.
func (s *TokenSource) Invalidate(tok *oauth2.Token) {
	for {
		e := s.cache.Load()
		if e == nil || tok != nil && e.tok.AccessToken != tok.AccessToken {
			return
		}
		if s.cache.CompareAndSwap(e, nil) {
			s.rejected.Store(&e.tok.AccessToken)
			return
		}
	}
}

// get returns a cached entry that may be handed out and the time it was
// judged usable at. The fresh path is one clock read and one atomic load.
func (s *TokenSource) get(ctx context.Context) (*entry, time.Time, error) {
	now := s.now()
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
	select {
	case r := <-s.group.DoChan("", s.fetchAndStore(seen)):
		if r.Err != nil {
			return nil, time.Time{}, r.Err
		}
		return r.Val.(*entry), s.now(), nil
	case <-ctx.Done():
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
		s.group.Do("", s.fetchAndStore(seen)) // the outcome is stored or logged by fetchAndStore
	}()
}

// fetchAndStore returns the shared fetch for a caller that saw seen in the
// cache. It runs detached from every caller and records its outcome: a new
// entry, a postponed background refresh, or a cool-down.
//
// The caller's look at the cache and its start of the fetch are not one
// atomic step: another fetch may have ended, and stored a token or a
// failure, in between. The fetch then does not run again.
func (s *TokenSource) fetchAndStore(seen *entry) func() (any, error) {
	return func() (any, error) {
		now := s.now()
		if cur := s.cache.Load(); cur != seen && cur != nil && cur.state(now) != stale {
			return cur, nil
		}
		if f := s.failure.Load(); f != nil && now.Before(f.until) {
			return nil, f.err
		}
		return s.fetchNow(seen)
	}
}

// adoptable returns the test a token from the Store must pass to replace
// seen: not a token this source invalidated, not seen itself, and usable;
// for a background refresh of a still-usable token, not itself due for
// refresh, or the next call would only start another refresh.
func (s *TokenSource) adoptable(seen *entry) adoptable {
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

// fetchNow obtains a token to replace seen, from the Store if there is one
// and it holds a better token, else from the endpoint; it records the
// outcome for fetchAndStore.
func (s *TokenSource) fetchNow(seen *entry) (any, error) {
	if s.share != nil {
		e, release := s.share.acquire(s.ctx, s.adoptable(seen), s.cfg.refreshWindow(), s.cfg.expiryMargin())
		if e != nil {
			e = s.onTrial(e)
			s.cache.Store(e)
			s.failure.Store(nil)
			return e, nil
		}
		defer release()
	}
	tok, sent, err := s.fetch.fetch(s.ctx)
	now := s.now()
	if err == nil {
		e := newEntry(tok, sent, s.cfg.refreshWindow(), s.cfg.expiryMargin())
		if e.state(now) != stale {
			e = s.onTrial(e)
			s.cache.Store(e)
			s.failure.Store(nil)
			if s.share != nil {
				s.share.save(s.ctx, e)
			}
			return e, nil
		}
		err = fmt.Errorf("%w: the token expires in %ds but the request took %v; check the network path to the token endpoint",
			ErrInvalidResponse, tok.ExpiresIn, e.age(now).Round(time.Millisecond))
	}
	if old := s.cache.Load(); old != nil && old.state(now) != stale {
		age := old.age(now)
		next := old.backedOff(age, serverWait(err))
		s.cache.CompareAndSwap(old, next)
		s.log.Warn("forteauth: background token refresh failed; keeping the current token",
			"error", err, "failures", next.failures,
			"retry_in", (next.refreshAfter - age).Round(time.Millisecond),
			"token_usable_for", (old.staleAfter - age).Round(time.Millisecond))
		return nil, err
	}
	f := newFailure(err, now, s.failure.Load())
	s.failure.Store(f)
	s.log.Error("forteauth: token fetch failed; callers get this error until the cool-down ends",
		"error", err, "failures", f.count, "cool_down", f.until.Sub(now).Round(time.Millisecond))
	return nil, f.err
}

// Format implements fmt.Formatter: every verb prints the client ID, the
// token URL and the state of the cache, with the token redacted.
func (s *TokenSource) Format(f fmt.State, verb rune) {
	if s == nil {
		fmt.Fprint(f, "(*forteauth.TokenSource)(nil)")
		return
	}
	fmt.Fprintf(f, "&forteauth.TokenSource{ClientID:%q TokenURL:%q Token:%s}", s.cfg.ClientID, s.fetch.red.url(s.cfg.TokenURL), s.describeToken())
}

// LogValue implements slog.LogValuer with the same content as Format.
func (s *TokenSource) LogValue() slog.Value {
	if s == nil {
		return slog.StringValue("<nil>")
	}
	return slog.GroupValue(
		slog.String("client_id", s.cfg.ClientID),
		slog.String("token_url", s.fetch.red.url(s.cfg.TokenURL)),
		slog.String("token", s.describeToken()),
	)
}

func (s *TokenSource) describeToken() string {
	e := s.cache.Load()
	if e == nil {
		return "none"
	}
	return fmt.Sprintf("%s (usable for %v)", redact(e.tok.AccessToken), (e.staleAfter - e.age(s.now())).Round(time.Second))
}

// redact shows enough of a token to tell two apart in a log, no more.
func redact(tok string) string {
	if len(tok) < 24 {
		return redacted
	}
	return fmt.Sprintf("%s…%s", tok[:4], redacted)
}
