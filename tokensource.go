package forteauth

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/sync/singleflight"
)

// TokenSource is a caching oauth2.TokenSource for one Config, safe for
// concurrent use. Make one with Config.TokenSource and share it; it needs
// no Close, and no goroutine it starts outlives the fetch it runs.
//
// What a caller may rely on:
//
//   - While the cached token is fresh, Token returns it without locking or
//     waiting: one clock read and one atomic load.
//   - Once the refresh window opens (Config.RefreshWindow before expiry;
//     the exact start is random, early in the window, so that a fleet does
//     not refresh in step), the next call starts one background fetch and
//     every caller keeps getting the current token meanwhile. If that
//     fetch fails the token is kept, the failure is logged, and the next
//     attempt waits 1 s, doubling to 30 s (or the endpoint's Retry-After,
//     up to 5 minutes).
//   - A token is never handed out within Config.ExpiryMargin of its
//     expiry. With no such token, callers wait for one shared fetch, each
//     only as long as its own context allows; a caller that gives up ends
//     its own wait, not the fetch.
//   - A fetch makes at most 4 requests within 30 s, 10 s each, retrying
//     network errors, 408, 429 and 5xx, honouring Retry-After. When a
//     fetch that callers waited for fails, callers get its error at once,
//     without a request, for a cool-down of 0.5 to 1 s that doubles while
//     failures go on, up to 30 s, or the endpoint's Retry-After.
//   - The window is clamped to half a token's lifetime and the margin to a
//     quarter, so short-lived tokens are not refreshed on every call.
//   - With Config.Credentials, the credentials are asked for once per
//     fetch, and a rejection of new ones is recovered from; see
//     Config.Credentials.
//   - With Config.Store, the source looks in the Store before it fetches,
//     and stores what it fetches; see Store.
//   - Through Transport, a 401 from the API invalidates the token and the
//     request is sent once more with a new one; see Transport.
type TokenSource struct {
	cfg      *Config // a copy, behind a pointer so that printing *s as a value does not reach the secret
	err      error   // from cfg.validate; returned by every call
	ctx      context.Context
	hosts    []string     // what Transport sends tokens to by default: Config.APIHosts, or TokenURL's host
	clock    clock        // shared with endpoint and shared
	red      *redactor    // for TokenURL as printed, and the logs
	log      *slog.Logger // Config.Logger behind red
	endpoint *endpoint

	cache      atomic.Pointer[entry]
	failure    atomic.Pointer[failure] // last failed blocking fetch
	refreshing atomic.Bool             // a background refresh is running
	group      singleflight.Group
	inFlight   atomic.Pointer[context.Context] // the context of the fetch running now, with a Trace

	creds   *credentials
	shared  *sharing               // nil without Config.Store
	sealers atomic.Pointer[sealed] // the sealer of the credentials last used

	unauthorized unauthorized // what 401s from the API do; see answered
	skipped      sync.Map     // hosts Transport sent requests to without a token, logged once each
	nskipped     atomic.Int32 // entries in skipped

	counters // for Stats; last, away from the fields the fresh path reads
}

// newTokenSource makes the source Config.TokenSource returns; ctx is
// used as that method says.
func newTokenSource(ctx context.Context, c *Config) *TokenSource {
	cfg := *c
	s := &TokenSource{
		cfg:   &cfg,
		err:   cfg.validate(),
		ctx:   context.WithoutCancel(ctx),
		clock: systemClock(),
		red:   newRedactor(cfg.ClientID, cfg.ClientSecret),
	}
	s.log = cfg.logger(s.red)
	s.unauthorized.log = s.log
	s.endpoint = newEndpoint(&cfg, cfg.httpClient(ctx), &s.clock, s.red, s.log, &s.counters)
	s.creds = cfg.credentials(s.red, s.log, &s.counters)
	s.hosts = cfg.apiHosts()
	if s.err == nil && cfg.Store != nil {
		s.shared = newSharing(cfg.Store, &s.clock, s.log, &s.counters, s.endpoint.retry.budget)
	}
	return s
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
// background refresh; see docs/design.md. Calls in the same state of one
// token get Equal values: Expiry moves when the refresh window opens, each
// second within it, with a new token, and when the wall clock is set back
// by the margin or more (a smaller step needs no correction).
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
			s.unauthorized.markRejected(e.tok.AccessToken)
			return
		}
	}
}

// authorization is a token as Transport sends it: the Authorization
// value, and the cached entry it came from, to name the token when
// Transport reports the API's answer (see answered).
type authorization struct {
	header string
	from   *entry
}

// The methods below, and answered and reauthorize (unauthorized.go), are
// all that Transport uses of a TokenSource.

// apiHosts returns the hosts Transport sends tokens to when its Hosts is
// empty, or the error that makes every call fail.
func (s *TokenSource) apiHosts() ([]string, error) { return s.hosts, s.err }

// authorize returns the authorization for one API request, waiting for a
// token no longer than ctx allows.
func (s *TokenSource) authorize(ctx context.Context) (authorization, error) {
	e, _, err := s.get(ctx)
	if err != nil {
		return authorization{}, err
	}
	return authorization{e.header, e}, nil
}

// maxSkippedHosts bounds the hosts sentWithoutToken remembers.
const maxSkippedHosts = 64

// sentWithoutToken logs, once per host, that Transport sent a request to
// host without a token because host is not among allowed: a request to
// the API under another name ("localhost" for "127.0.0.1", another port)
// would otherwise show only the API's 401.
func (s *TokenSource) sentWithoutToken(ctx context.Context, host string, allowed []string) {
	if s.nskipped.Load() >= maxSkippedHosts {
		return // a client that calls many hosts must not make this grow without bound
	}
	if _, seen := s.skipped.LoadOrStore(host, true); !seen {
		s.nskipped.Add(1)
		s.log.WarnContext(ctx, "forteauth: sent a request without a token: its host is not one the token goes to; if it is Forte's API, add it to Config.APIHosts (or Transport.Hosts)",
			"host", host, "token_hosts", allowed)
	}
}

// Format implements fmt.Formatter: every verb prints the client ID, the
// token URL and the state of the cache, with the token redacted.
func (s *TokenSource) Format(f fmt.State, verb rune) {
	if s == nil {
		fmt.Fprint(f, "(*forteauth.TokenSource)(nil)")
		return
	}
	fmt.Fprintf(f, "&forteauth.TokenSource{ClientID:%q TokenURL:%q Token:%s}", s.clientID(), s.red.url(s.cfg.TokenURL), s.describeToken())
}

// LogValue implements slog.LogValuer with the same content as Format.
func (s *TokenSource) LogValue() slog.Value {
	if s == nil {
		return slog.StringValue("<nil>")
	}
	return slog.GroupValue(
		slog.String("client_id", s.clientID()),
		slog.String("token_url", s.red.url(s.cfg.TokenURL)),
		slog.String("token", s.describeToken()),
	)
}

// clientID is the client ID of Config, or the one its Credentials func
// gave last.
func (s *TokenSource) clientID() string {
	if s.cfg.ClientID != "" {
		return s.cfg.ClientID
	}
	return s.creds.clientID()
}

// sealed is a sealer and the credentials it is for.
type sealed struct {
	cr Credentials
	sl *sealer
}

// sealerFor returns the sealer of cr: the Store key and sealing of its
// tokens follow the credentials in use, so that sources on different
// secrets share nothing, and a rotation starts a key of its own. It is
// nil if none can be made, and the Store is then not used.
func (s *TokenSource) sealerFor(cr Credentials) *sealer {
	if p := s.sealers.Load(); p != nil && p.cr == cr {
		return p.sl
	}
	sl, err := newSealer(s.cfg.TokenURL, cr.ClientID, cr.ClientSecret)
	if err != nil {
		return nil
	}
	s.sealers.Store(&sealed{cr, sl})
	return sl
}

func (s *TokenSource) describeToken() string {
	e := s.cache.Load()
	if e == nil {
		return "none"
	}
	return fmt.Sprintf("%s (usable for %v)", redact(e.tok.AccessToken), (e.staleAfter - e.age(s.clock.now())).Round(time.Second))
}

// redact shows enough of a token to tell two apart in a log, no more.
func redact(tok string) string {
	if len(tok) < 24 {
		return redacted
	}
	return fmt.Sprintf("%s…%s", tok[:4], redacted)
}
