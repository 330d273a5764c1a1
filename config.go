package forteauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"time"
	"unicode"

	"golang.org/x/oauth2"
)

// Token endpoints of Forte's two public environments. Merchants may be given
// another base URL by their account manager; any https URL ending in
// /auth/v1/oauth2/token works as Config.TokenURL.
const (
	SandboxTokenURL    = "https://sandbox-api.sandbox.lemmax.com/auth/v1/oauth2/token"
	ProductionTokenURL = "https://api.prod.lemmax.com/auth/v1/oauth2/token"
)

const (
	defaultRefreshWindow = 5 * time.Minute
	defaultExpiryMargin  = 30 * time.Second
	// defaultHTTPTimeout bounds each request of the client used when neither
	// Config.HTTPClient nor the context supplies one.
	defaultHTTPTimeout = 30 * time.Second
)

// ErrInvalidConfig is wrapped by every error caused by a Config field.
// Such errors are returned before any request is sent, and are returned
// again by every call until the Config is fixed and a new TokenSource made.
var ErrInvalidConfig = errors.New("forteauth: invalid Config")

// Config describes how to obtain tokens from a Forte token endpoint.
//
// A Config is read when TokenSource, Client or Token is called; later
// changes to it do not affect sources and clients already made. A Config
// printed with fmt, logged with log/slog or encoded with encoding/json shows
// "[REDACTED]" for ClientSecret and for a password in TokenURL; decoding one
// from JSON works as usual.
type Config struct {
	// ClientID and ClientSecret are the credentials issued by Forte. Set
	// both, or Credentials.
	ClientID     string
	ClientSecret string

	// Credentials, if set, supplies ClientID and ClientSecret for each
	// token fetch, so that they can change while the program runs. Set it
	// or the two fields, not both.
	//
	// It is called once per fetch, by the fetch that all waiting callers
	// share, with a context that ends with the fetch budget (30 s); never
	// on a cache hit. If the endpoint rejects what it returned (400, 401
	// or 403), it is called again at once, and other credentials it then
	// returns are tried within the same fetch; if the newest are rejected
	// where the endpoint accepted others last, as while a new secret is
	// not active yet at Forte, those are tried once, and the fallback is
	// logged. Every later fetch tries the newest first. A call that fails
	// fails its fetch with an error wrapping ErrCredentials and the func's
	// error: a usable cached token is kept meanwhile, and the next fetch
	// calls it again. CredentialsFromFiles reads a Kubernetes or Vault
	// Agent mounted secret.
	//
	// The Store key and the sealing of a fleet's shared token follow the
	// credentials in use, and every secret it returned (the latest 8) is
	// withheld from errors and logs.
	Credentials func(ctx context.Context) (Credentials, error) `json:"-"`

	// TokenURL is the token endpoint, usually SandboxTokenURL or
	// ProductionTokenURL. It must be https, or http to a loopback host
	// (for tests and local fakes). Required.
	TokenURL string

	// APIHosts lists the hosts of Forte's API that Client, and a Transport
	// whose Hosts is empty, send the token to: "host" for any port, or
	// "host:port". If empty, the token goes to TokenURL's host only, which
	// is the API's host too; set it when the API is reached under another
	// name or port (a proxy, "localhost" where TokenURL says "127.0.0.1").
	// A request to any other host is sent without the token, and logged.
	APIHosts []string

	// HTTPClient sends token requests. If nil, the *http.Client stored in
	// the context under oauth2.HTTPClient is used, else a client with a 30 s
	// timeout. Token requests never follow redirects, whatever the
	// client's CheckRedirect says, so the secret is sent only to TokenURL.
	HTTPClient *http.Client

	// RefreshWindow is how long before expiry a background refresh starts
	// while callers keep using the current token. 0 means 5 minutes. It is
	// clamped to half a token's lifetime and must be longer than
	// ExpiryMargin.
	RefreshWindow time.Duration

	// ExpiryMargin is the least time a token handed out has left before it
	// expires; after that point callers wait for a new one. 0 means 30
	// seconds. It is clamped to a quarter of a token's lifetime.
	ExpiryMargin time.Duration

	// Store, if set, shares tokens with other TokenSources for the same
	// credentials, usually in other processes, so that a fleet makes about
	// one token request per token lifetime. See Store.
	Store Store

	// Logger receives refresh failures, retries and cool-downs: the events
	// no caller sees as an error. It never receives the secret or a whole
	// token. Records made during a fetch or a wait reach its Handler with
	// their context, which carries the fetch's or the call's span when a
	// Trace set one. If nil, nothing is logged.
	Logger *slog.Logger

	// Trace, if set, sees every token fetch, every call that waits for
	// one, and every request Transport sends again after a 401; see
	// Trace. forteotel.NewTrace makes one that records OpenTelemetry
	// spans.
	Trace *Trace
}

// validate reports the first problem with c, naming the field and the fix.
func (c *Config) validate() error {
	switch {
	case c.Credentials != nil && (c.ClientID != "" || c.ClientSecret != ""):
		return fmt.Errorf("%w: both Credentials and ClientID or ClientSecret are set; set Credentials, or the two fields", ErrInvalidConfig)
	case c.Credentials != nil:
	case c.ClientID == "":
		return fmt.Errorf("%w: ClientID is empty; set it to the client ID Forte issued, or set Credentials", ErrInvalidConfig)
	case c.ClientSecret == "":
		return fmt.Errorf("%w: ClientSecret is empty; load it from your secret store, or set Credentials", ErrInvalidConfig)
	}
	switch {
	case c.TokenURL == "":
		return fmt.Errorf("%w: TokenURL is empty; use forteauth.SandboxTokenURL or forteauth.ProductionTokenURL", ErrInvalidConfig)
	case c.RefreshWindow < 0 || c.ExpiryMargin < 0:
		return fmt.Errorf("%w: RefreshWindow and ExpiryMargin must not be negative; use 0 for the defaults", ErrInvalidConfig)
	case c.refreshWindow() <= c.expiryMargin():
		return fmt.Errorf("%w: RefreshWindow (%v) must be longer than ExpiryMargin (%v), or tokens go stale before any background refresh; raise RefreshWindow",
			ErrInvalidConfig, c.refreshWindow(), c.expiryMargin())
	}
	for _, h := range c.APIHosts {
		if host, _ := splitHostPort(h); host == "" || strings.ContainsAny(h, "/?#@ ") {
			return fmt.Errorf("%w: APIHosts holds %q, which is not a host or host:port; give names such as \"api.prod.lemmax.com\" or \"127.0.0.1:8080\", without a scheme or path",
				ErrInvalidConfig, h)
		}
	}
	// The errors below show TokenURL only as redactor.url prints it: a
	// password pasted into it stays out of them.
	u, err := url.Parse(c.TokenURL)
	if err != nil {
		return fmt.Errorf("%w: %s; give an absolute https URL such as forteauth.SandboxTokenURL",
			ErrInvalidConfig, newRedactor(c.ClientID, c.ClientSecret).parseError(err))
	}
	switch {
	case u.Host == "":
		return fmt.Errorf("%w: TokenURL %q has no host; give an absolute https URL", ErrInvalidConfig, c.printedURL())
	case u.User != nil:
		return fmt.Errorf("%w: TokenURL must not contain user information; the credentials go in ClientID and ClientSecret", ErrInvalidConfig)
	case u.Scheme == "https":
	case u.Scheme == "http" && isLoopback(u.Hostname()):
	case u.Scheme == "http":
		return fmt.Errorf("%w: TokenURL %q is plain http to a non-loopback host, which would expose the secret; use https", ErrInvalidConfig, c.printedURL())
	default:
		return fmt.Errorf("%w: TokenURL %q has scheme %q; use https", ErrInvalidConfig, c.printedURL(), u.Scheme)
	}
	return nil
}

// printedURL is TokenURL as c prints it; see redactor.url.
func (c *Config) printedURL() string {
	return newRedactor(c.ClientID, c.ClientSecret).url(c.TokenURL)
}

// apiHosts returns the hosts named in the APIHosts field's comment.
func (c *Config) apiHosts() []string {
	if len(c.APIHosts) > 0 {
		return slices.Clone(c.APIHosts)
	}
	if u, err := url.Parse(c.TokenURL); err == nil && u.Host != "" {
		return []string{u.Host}
	}
	return nil
}

func (c *Config) refreshWindow() time.Duration {
	if c.RefreshWindow == 0 {
		return defaultRefreshWindow
	}
	return c.RefreshWindow
}

func (c *Config) expiryMargin() time.Duration {
	if c.ExpiryMargin == 0 {
		return defaultExpiryMargin
	}
	return c.ExpiryMargin
}

// httpClient returns the client named in the HTTPClient field's comment.
func (c *Config) httpClient(ctx context.Context) *http.Client {
	if c.HTTPClient != nil {
		return c.HTTPClient
	}
	if hc, ok := ctx.Value(oauth2.HTTPClient).(*http.Client); ok && hc != nil {
		return hc
	}
	return &http.Client{Timeout: defaultHTTPTimeout}
}

// isLoopback reports whether host (without port or brackets) names this machine.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

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
	ctx, cancel := context.WithTimeout(ctx, defaultRetry.budget)
	defer cancel()
	clk, red, counts := systemClock(), newRedactor(c.ClientID, c.ClientSecret), new(counters)
	log := c.logger(red)
	creds := c.credentials(red, log, counts)
	cr, err := creds.get(ctx)
	if err != nil {
		return nil, err
	}
	f, _, err := creds.obtain(ctx, newEndpoint(c, c.httpClient(ctx), &clk, red, log, counts), cr, new(FetchInfo))
	return f.tok, err
}

// credentials returns the supply of credentials named in the Credentials
// field's comment, for a source that withholds with red, logs to log and
// counts in counts.
func (c *Config) credentials(red *redactor, log *slog.Logger, counts *counters) *credentials {
	fn := c.Credentials
	if fn == nil {
		static := Credentials{c.ClientID, c.ClientSecret}
		fn = func(context.Context) (Credentials, error) { return static, nil }
	}
	return &credentials{fn: fn, red: red, log: log, counts: counts}
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
	return newTokenSource(ctx, c)
}

// Client returns an *http.Client that adds a token from c.TokenSource(ctx)
// to each request to the API's hosts: c.APIHosts, by default the token
// endpoint's host, the host of Forte's API.
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

// printable is the Config shown by fmt, encoding/json and log/slog: the
// secret replaced by a marker that still tells whether one is set, and
// TokenURL as printedURL shows it.
func (c Config) printable() any {
	// A type of its own, so that printing it does not call Format again,
	// named Config so that %#v prints "forteauth.Config{...}".
	type Config configFields
	p := Config(c)
	if p.ClientSecret != "" {
		p.ClientSecret = redacted
	}
	p.TokenURL = c.printedURL()
	return p
}

// configFields is Config without its methods, for printable.
type configFields = Config

// Format implements fmt.Formatter so that every verb, %#v included, prints c
// with ClientSecret, and any password in TokenURL, replaced by "[REDACTED]".
func (c Config) Format(f fmt.State, verb rune) {
	fmt.Fprintf(f, fmt.FormatString(f, verb), c.printable())
}

// MarshalJSON encodes c with ClientSecret, and any password in TokenURL,
// replaced by "[REDACTED]", so that a Config (or a struct holding one)
// written to a log or a debug endpoint does not carry the secret.
func (c Config) MarshalJSON() ([]byte, error) {
	return json.Marshal(c.printable())
}

// LogValue implements slog.LogValuer: c logs as a group of its fields, as
// fmt prints them (without the secret or a password in TokenURL), under
// snake_case keys such as client_id; a pointer or interface field logs as
// its type name, and only if it is set, as an empty slice is left out.
func (c Config) LogValue() slog.Value {
	v := reflect.ValueOf(c.printable())
	var attrs []slog.Attr
	for i := range v.NumField() {
		f, name := v.Field(i), snakeCase(v.Type().Field(i).Name)
		switch f.Kind() {
		case reflect.Pointer, reflect.Interface, reflect.Func:
			if !f.IsNil() {
				attrs = append(attrs, slog.String(name, fmt.Sprintf("%T", f.Interface())))
			}
		case reflect.Slice:
			if f.Len() > 0 {
				attrs = append(attrs, slog.Any(name, f.Interface()))
			}
		default:
			attrs = append(attrs, slog.Any(name, f.Interface()))
		}
	}
	return slog.GroupValue(attrs...)
}

// snakeCase turns a Go field name into a log key: ClientID is client_id,
// TokenURL token_url, HTTPClient http_client.
func snakeCase(name string) string {
	var b strings.Builder
	for i, r := range name {
		upper := unicode.IsUpper(r)
		// A word starts at an upper-case letter after a lower-case one, or
		// before a lower-case one after an upper-case run ("HTTPClient").
		if upper && i > 0 && (unicode.IsLower(rune(name[i-1])) ||
			i+1 < len(name) && unicode.IsLower(rune(name[i+1])) && unicode.IsUpper(rune(name[i-1]))) {
			b.WriteByte('_')
		}
		b.WriteRune(unicode.ToLower(r))
	}
	return b.String()
}
