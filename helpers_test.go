package forteauth

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/forteauth/forteauth/fortetest"
)

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

// newTestSource returns a TokenSource on a fake clock with instant retry
// waits. Without withServer or withTokenURL, it starts a fortetest server
// of its own, closed at the end of t.
func newTestSource(t *testing.T, opts ...sourceOption) *testSource {
	t.Helper()
	var set sourceSettings
	for _, opt := range opts {
		opt(&set)
	}
	var cfg *Config
	if set.tokenURL != "" {
		cfg = configFor(set.tokenURL)
	} else {
		if set.srv == nil {
			set.srv = fortetest.NewServer()
			t.Cleanup(set.srv.Close)
		}
		cfg = &Config{ClientID: set.srv.ClientID, ClientSecret: set.srv.ClientSecret, TokenURL: set.srv.TokenURL}
	}
	for _, mod := range set.mods {
		mod(cfg)
	}
	if set.clock == nil {
		set.clock = newFakeClock()
	}
	rec := &sleepRecorder{clock: set.clock}
	ts := cfg.TokenSource(context.Background())
	ts.clock = testClock(set.clock, rec)
	return &testSource{ts: ts, clock: set.clock, sleeps: rec, srv: set.srv}
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

// testEndpoint returns the endpoint cfg.Token would use, with instant retry waits.
func testEndpoint(t *testing.T, cfg *Config) (*endpoint, *sleepRecorder) {
	t.Helper()
	if err := cfg.validate(); err != nil {
		t.Fatalf("validate: %v", err)
	}
	rec := &sleepRecorder{}
	clk := testClock(nil, rec)
	red := newRedactor(cfg.ClientID, cfg.ClientSecret)
	return newEndpoint(cfg, cfg.httpClient(context.Background()), &clk, red, cfg.logger(red)), rec
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
