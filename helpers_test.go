package forteauth

import (
	"bytes"
	"context"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
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

// testSource returns cfg.TokenSource with a fake clock and instant retry waits.
func testSource(t *testing.T, cfg *Config) (*TokenSource, *fakeClock, *sleepRecorder) {
	t.Helper()
	clock := newFakeClock()
	rec := &sleepRecorder{clock: clock}
	ts := cfg.TokenSource(context.Background())
	ts.clock = testClock(clock, rec)
	return ts, clock, rec
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

// testFetcher returns the endpoint cfg.Token would use, with instant retry waits.
func testFetcher(t *testing.T, cfg *Config) (*endpoint, *sleepRecorder) {
	t.Helper()
	if err := cfg.validate(); err != nil {
		t.Fatalf("validate: %v", err)
	}
	rec := &sleepRecorder{}
	clk := testClock(nil, rec)
	red := newRedactor(cfg.ClientID, cfg.ClientSecret)
	return newEndpoint(cfg, cfg.httpClient(context.Background()), &clk, red, cfg.logger(red), new(counters)), rec
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

// refreshGoroutines counts goroutines running a background refresh.
func refreshGoroutines() int {
	return goroutinesRunning("forteauth.(*TokenSource).refreshInBackground.func")
}

// singleflightGoroutines counts goroutines started to run a shared fetch.
func singleflightGoroutines() int {
	return goroutinesRunning("created by golang.org/x/sync/singleflight.(*Group).DoChan")
}

// quiesce waits for background refreshes and shared fetches that earlier
// tests started to end, so that a test counting them sees only its own.
func quiesce(t *testing.T) {
	t.Helper()
	eventually(t, "earlier tests' refreshes and fetches to end", func() bool {
		return refreshGoroutines() == 0 && singleflightGoroutines() == 0
	})
}

// goroutinesRunning counts the goroutines whose stack mentions fn.
func goroutinesRunning(fn string) int {
	buf := make([]byte, 8<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, fn) {
			n++
		}
	}
	return n
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
