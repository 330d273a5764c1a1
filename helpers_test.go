package forteauth

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/forteauth/forteauth/fortetest"
	"golang.org/x/oauth2"
)

// What more than one of the package's test files uses: the values that
// must never leak and how to look for them, the fake clock, the one source
// builder, fake endpoints, and small call helpers.

// Values that must never show up in an error, a log line or a failure
// message; see hide.
const (
	testClientID = "client-id-123"
	testSecret   = "s3cr3t-value-XYZ"
	// testAccessToken is a recognisable access token for bodies built by hand.
	testAccessToken = "RECOGNISABLE-access-token-0123456789abcdef"
)

// hide makes s safe to print in a failure message.
func hide(s string, secrets ...string) string {
	for _, x := range append(secrets, testSecret) {
		if x != "" {
			s = strings.ReplaceAll(s, x, "<SECRET>")
		}
	}
	return s
}

// assertAbsent fails if any of values occurs in s, without printing it.
func assertAbsent(t *testing.T, what, s string, values ...string) {
	t.Helper()
	for _, v := range values {
		if v != "" && strings.Contains(s, v) {
			t.Errorf("%s contains a value that must never appear there (%d-byte value): %s", what, len(v), hide(s, values...))
		}
	}
}

// printedForms are the ways a leaked secret could show up in formatted
// output: as is, and hex-encoded by %x and %X.
func printedForms(secret string) []string {
	h := hex.EncodeToString([]byte(secret))
	return []string{secret, h, strings.ToUpper(h)}
}

// printVerbs are the formats every printable value is checked under.
var printVerbs = []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%20v", "%-40s"}

// formatAll prints v under every verb and with fmt.Sprint and Sprintln,
// also inside a slice and a map.
func formatAll(v any) map[string]string {
	out := make(map[string]string)
	for _, verb := range printVerbs {
		out[verb] = fmt.Sprintf(verb, v)
	}
	out["Sprint"] = fmt.Sprint(v)
	out["Sprintln"] = fmt.Sprintln(v)
	out["in a slice"] = fmt.Sprintf("%+v", []any{v})
	out["in a map"] = fmt.Sprintf("%#v", map[string]any{"cfg": v})
	return out
}

// fakeClock is an injectable clock that moves only when told to.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// sleepRecorder stands in for clock.sleep: it returns at once, advancing
// the fake clock (if any) and recording each wait.
type sleepRecorder struct {
	mu    sync.Mutex
	clock *fakeClock
	waits []time.Duration
}

func (r *sleepRecorder) sleep(ctx context.Context, d time.Duration) error {
	r.mu.Lock()
	r.waits = append(r.waits, d)
	r.mu.Unlock()
	if r.clock != nil {
		r.clock.Advance(d)
	}
	return ctx.Err()
}

func (r *sleepRecorder) recorded() []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Duration(nil), r.waits...)
}

// testClock is the clock a test gives a source: the fake clock, if any
// (else the system's), and rec's instant waits.
func testClock(fake *fakeClock, rec *sleepRecorder) clock {
	c := systemClock()
	if fake != nil {
		c.now = fake.Now
	}
	c.sleep = rec.sleep
	return c
}

// testSource is a TokenSource under test, with what a test drives it by.
type testSource struct {
	ts     *TokenSource
	clock  *fakeClock        // the source's clock, which moves only when told to
	sleeps *sleepRecorder    // the source's retry waits: they return at once, advancing clock
	srv    *fortetest.Server // the endpoint, unless withTokenURL named another
}

// sourceOption adjusts how newTestSource builds its source.
type sourceOption func(*sourceSettings)

type sourceSettings struct {
	srv      *fortetest.Server
	tokenURL string
	clock    *fakeClock
	bubble   bool
	mods     []func(*Config)
}

// withServer makes the source fetch from srv with srv's credentials.
func withServer(srv *fortetest.Server) sourceOption {
	return func(s *sourceSettings) { s.srv = srv }
}

// withTokenURL makes the source fetch from u with the test credentials
// (testClientID and testSecret): configFor(u).
func withTokenURL(u string) sourceOption {
	return func(s *sourceSettings) { s.tokenURL = u }
}

// withConfig has mod adjust the Config before the source is made from it.
func withConfig(mod func(*Config)) sourceOption {
	return func(s *sourceSettings) { s.mods = append(s.mods, mod) }
}

// withStore sets Config.Store.
func withStore(store Store) sourceOption {
	return withConfig(func(c *Config) { c.Store = store })
}

// withHTTPClient sets Config.HTTPClient.
func withHTTPClient(hc *http.Client) sourceOption {
	return withConfig(func(c *Config) { c.HTTPClient = hc })
}

// withClock puts the source on clock, which other sources may share, as
// the processes of one machine share its clock.
func withClock(clock *fakeClock) sourceOption {
	return func(s *sourceSettings) { s.clock = clock }
}

// inBubble makes the source one for a test inside synctest.Test: on the
// bubble's clock, with real (and so fake) waits, and fetching from a
// fortetest memory server, its own unless withServer names one.
func inBubble() sourceOption {
	return func(s *sourceSettings) { s.bubble = true }
}

// newTestSource returns a TokenSource on a fake clock with instant retry
// waits, or, inBubble, on the bubble's clock. Without withServer or
// withTokenURL, it starts a fortetest server of its own, closed at the
// end of t.
func newTestSource(t *testing.T, opts ...sourceOption) *testSource {
	t.Helper()
	var set sourceSettings
	for _, opt := range opts {
		opt(&set)
	}
	cfg := set.config(t)
	ts := cfg.TokenSource(context.Background())
	if set.bubble {
		return &testSource{ts: ts, srv: set.srv}
	}
	if set.clock == nil {
		set.clock = newFakeClock()
	}
	rec := &sleepRecorder{clock: set.clock}
	ts.clock = testClock(set.clock, rec)
	return &testSource{ts: ts, clock: set.clock, sleeps: rec, srv: set.srv}
}

// config returns the Config set describes, starting its server if need be.
func (set *sourceSettings) config(t *testing.T) *Config {
	t.Helper()
	var cfg *Config
	switch {
	case set.tokenURL != "":
		cfg = configFor(set.tokenURL)
	default:
		if set.srv == nil {
			set.srv = fortetest.NewServer()
			if set.bubble {
				set.srv = fortetest.NewMemoryServer()
			}
			t.Cleanup(set.srv.Close)
		}
		cfg = &Config{ClientID: set.srv.ClientID, ClientSecret: set.srv.ClientSecret, TokenURL: set.srv.TokenURL}
		if set.bubble {
			cfg.HTTPClient = set.srv.Client()
		}
	}
	for _, mod := range set.mods {
		mod(cfg)
	}
	return cfg
}

// fetchedSource returns a TokenSource for the fake server that holds a
// token, and that token.
func fetchedSource(t *testing.T) (*TokenSource, string) {
	t.Helper()
	ts := newTestSource(t, withServer(newForteServer(t))).ts
	tok, err := ts.Token()
	if err != nil {
		t.Fatalf("Token: %s", hide(err.Error()))
	}
	if len(tok.AccessToken) < 24 {
		t.Fatalf("fake server issued a short token (%d bytes)", len(tok.AccessToken))
	}
	return ts, tok.AccessToken
}

// configFor is a valid Config for tokenURL with the distinctive secret.
func configFor(tokenURL string) *Config {
	return &Config{ClientID: testClientID, ClientSecret: testSecret, TokenURL: tokenURL}
}

// testEndpoint returns the endpoint cfg.Token would use, with instant retry waits.
func testEndpoint(t *testing.T, cfg *Config) (*boundEndpoint, *sleepRecorder) {
	t.Helper()
	if err := cfg.validate(); err != nil {
		t.Fatalf("validate: %v", err)
	}
	rec := &sleepRecorder{}
	clk := testClock(nil, rec)
	red := newRedactor(cfg.ClientID, cfg.ClientSecret)
	e := newEndpoint(cfg, cfg.httpClient(context.Background()), &clk, red, cfg.logger(red), new(counters))
	return &boundEndpoint{e, Credentials{cfg.ClientID, cfg.ClientSecret}}, rec
}

// boundEndpoint is an endpoint that fetches with one set of credentials,
// a Config's fields, as a TokenSource with static credentials does.
type boundEndpoint struct {
	*endpoint
	cr Credentials
}

func (e *boundEndpoint) fetch(ctx context.Context) (fetched, error) {
	return e.endpoint.fetch(ctx, e.cr, new(FetchInfo))
}

// newForteServer starts a fortetest server that accepts testClientID and testSecret.
func newForteServer(t *testing.T) *fortetest.Server {
	t.Helper()
	srv := fortetest.NewServer()
	srv.ClientID, srv.ClientSecret = testClientID, testSecret // before any request
	t.Cleanup(srv.Close)
	return srv
}

// stubServer is an httptest server that counts its requests.
type stubServer struct {
	*httptest.Server
	requests atomic.Int32
}

func newStub(t *testing.T, h http.HandlerFunc) *stubServer {
	t.Helper()
	s := &stubServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		h(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

// respond answers with status, Content-Type ct and body.
func respond(status int, ct, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", ct)
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

// newSlowStub answers with a token, holding back the first slow answers
// by delay (or until the client goes away). It reads the request body
// first, so that net/http notices a client hanging up.
func newSlowStub(t *testing.T, slow int32, delay time.Duration) *stubServer {
	t.Helper()
	var stub *stubServer
	stub = newStub(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if stub.requests.Load() <= slow {
			timer := time.NewTimer(delay)
			defer timer.Stop()
			select {
			case <-timer.C:
			case <-r.Context().Done():
				return
			}
		}
		respond(http.StatusCreated, "application/json", tokenBody(testAccessToken, "Bearer", 3600))(w, r)
	})
	return stub
}

func tokenBody(token, tokenType string, expiresIn any) string {
	b, err := json.Marshal(map[string]any{"data": map[string]any{
		"access_token": token, "token_type": tokenType, "expires_in": expiresIn,
	}})
	if err != nil {
		panic(err)
	}
	return string(b)
}

// numericToken is an access token sent as a JSON number.
const numericToken = "9876543210123456"

// malformedAnswers are 2xx answers that hold no usable token, each
// answered once. token is a token value in body, which no error may show.
// TestFetchRejectsInvalidTokenResponsesWithoutRetry checks what fetch makes
// of them; TestMalformedAnswerIsNotCachedAndCoolsDown, what a TokenSource
// does with that.
var malformedAnswers = []struct {
	name        string
	status      int
	contentType string
	body        string
	token       string
}{
	{name: "empty access_token", body: tokenBody("", "Bearer", 3600)},
	{name: "access named access as in an old guide", body: `{"data":{"access":"` + testAccessToken + `","expires_in":3600,"token_type":"Bearer"}}`, token: testAccessToken},
	{name: "missing expires_in", body: `{"data":{"access_token":"` + testAccessToken + `","token_type":"Bearer"}}`, token: testAccessToken},
	{name: "null expires_in", body: tokenBody(testAccessToken, "Bearer", nil), token: testAccessToken},
	{name: "zero expires_in", body: tokenBody(testAccessToken, "Bearer", 0), token: testAccessToken},
	{name: "negative expires_in", body: tokenBody(testAccessToken, "Bearer", -60), token: testAccessToken},
	{name: "non-numeric expires_in", body: tokenBody(testAccessToken, "Bearer", "abc"), token: testAccessToken},
	{name: "fractional expires_in", body: tokenBody(testAccessToken, "Bearer", 1.5), token: testAccessToken},
	{name: "expires_in beyond 68 years", body: tokenBody(testAccessToken, "Bearer", int64(math.MaxInt32)+1), token: testAccessToken},
	{name: "expires_in huge float", body: tokenBody(testAccessToken, "Bearer", 1e300), token: testAccessToken},
	{name: "token_type MAC", body: tokenBody(testAccessToken, "MAC", 3600), token: testAccessToken},
	{name: "missing token_type", body: `{"data":{"access_token":"` + testAccessToken + `","expires_in":3600}}`, token: testAccessToken},
	{name: "missing data", body: `{"access_token":"` + testAccessToken + `","expires_in":3600,"token_type":"Bearer"}`, token: testAccessToken},
	{name: "null data", body: `{"data":null}`},
	{name: "data not an object", body: `{"data":"` + testAccessToken + `"}`, token: testAccessToken},
	{name: "empty body", body: ""},
	{name: "HTML error page with 200", status: http.StatusOK, contentType: "text/html",
		body: "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center></body></html>"},
	{name: "truncated JSON", body: `{"data":{"access_tok`},
	{name: "access_token with a space", body: tokenBody("RECOGNISABLE access-token-0123456789", "Bearer", 3600), token: "RECOGNISABLE access-token-0123456789"},
	{name: "access_token with a newline", body: tokenBody("RECOGNISABLE\naccess-token-0123456789", "Bearer", 3600), token: "RECOGNISABLE\naccess-token-0123456789"},
	{name: "access_token with non-ASCII", body: tokenBody("RECOGNISABLE-accéss-token-0123456789", "Bearer", 3600), token: "RECOGNISABLE-accéss-token-0123456789"},
	{name: "access_token a number", body: `{"data":{"access_token":` + numericToken + `,"expires_in":3600,"token_type":"Bearer"}}`, token: numericToken},
	// encoding/json stops at 10,000 levels of nesting, without recursing
	// further; below that, nesting where an object belongs is a type error.
	{name: "JSON nested 100000 deep", body: `{"data":` + strings.Repeat("[", 100000) + strings.Repeat("]", 100000) + `}`},
	{name: "JSON nested 5000 deep inside data", body: `{"data":` + strings.Repeat(`{"data":`, 5000) + `{}` + strings.Repeat("}", 5000) + `}`},
	// encoding/json turns invalid UTF-8 in a string into U+FFFD, which
	// the header check then rejects; outside a string it is a syntax error.
	// (Written by hand: json.Marshal would replace the bytes itself.)
	{name: "invalid UTF-8 in access_token", body: "{\"data\":{\"access_token\":\"RECOGNISABLE-\xff\xfe-token-0123456789\",\"token_type\":\"Bearer\",\"expires_in\":3600}}", token: "RECOGNISABLE"},
	{name: "invalid UTF-8 in token_type", body: "{\"data\":{\"access_token\":\"" + testAccessToken + "\",\"token_type\":\"Bear\xc3\x28er\",\"expires_in\":3600}}", token: testAccessToken},
	{name: "invalid UTF-8 outside strings", body: "{\xff\"data\":{\"access_token\":\"" + testAccessToken + "\",\"token_type\":\"Bearer\",\"expires_in\":3600}}", token: testAccessToken},
	{name: "body over 1 MiB", body: `{"data":{"access_token":"` + testAccessToken + `","expires_in":3600,"token_type":"Bearer"},"padding":"` + strings.Repeat("x", 1<<20) + `"}`, token: testAccessToken},
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// countingTransport counts the requests it sends.
type countingTransport struct {
	n    atomic.Int32
	base http.RoundTripper
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	base := c.base
	if base == nil {
		base = http.DefaultTransport
	}
	return base.RoundTrip(r)
}

func mustToken(t *testing.T, ts *TokenSource) *oauth2.Token {
	t.Helper()
	tok, err := ts.Token()
	if err != nil {
		t.Fatalf("Token: %v", err)
	}
	return tok
}

func tokenRequests(srv *fortetest.Server) int { return srv.Stats().TokenRequests }

func get(t *testing.T, c *http.Client, u string) int {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// within runs f and fails the test if it does not return in 10 s: how a
// test shows that a call does not wait on something held.
func within(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not return within 10s", what)
	}
}

// eventually waits up to 10 s for cond, for outcomes of background work
// that a test cannot otherwise join. The bound is generous so that a
// loaded machine cannot make it flake; a pass returns as soon as cond holds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after 10s waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// logBuffer is a concurrency-safe destination for a test's slog output.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newTestLogger() (*slog.Logger, *logBuffer) {
	b := &logBuffer{}
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})), b
}

// testCredsOf returns the static credentials of ts's Config.
func testCredsOf(ts *TokenSource) Credentials {
	return Credentials{ts.cfg.ClientID, ts.cfg.ClientSecret}
}
