package forteauth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
)

// logCapture is a slog.Handler that keeps every string it is handed,
// attributes given to WithAttrs and group names included, resolving
// LogValuers and walking groups.
type logCapture struct {
	mu   sync.Mutex
	recs int
	seen []string
}

func (c *logCapture) Enabled(context.Context, slog.Level) bool { return true }

func (c *logCapture) Handle(_ context.Context, r slog.Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.recs++
	c.seen = append(c.seen, r.Message)
	r.Attrs(func(a slog.Attr) bool {
		c.walk(a)
		return true
	})
	return nil
}

func (c *logCapture) WithAttrs(as []slog.Attr) slog.Handler {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, a := range as {
		c.walk(a)
	}
	return c
}

func (c *logCapture) WithGroup(name string) slog.Handler {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seen = append(c.seen, name)
	return c
}

func (c *logCapture) walk(a slog.Attr) {
	c.seen = append(c.seen, a.Key)
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindGroup:
		for _, g := range v.Group() {
			c.walk(g)
		}
	case slog.KindAny:
		if err, ok := v.Any().(error); ok {
			c.seen = append(c.seen, err.Error())
		}
		c.seen = append(c.seen, fmt.Sprintf("%+v", v.Any()), fmt.Sprintf("%#v", v.Any()))
	default:
		c.seen = append(c.seen, v.String())
	}
}

func (c *logCapture) snapshot() (int, []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.recs, slices.Clone(c.seen)
}

// secretValuer logs as the secret, as a careless LogValuer could.
type secretValuer struct{ secret string }

func (v secretValuer) LogValue() slog.Value { return slog.StringValue("valuer " + v.secret) }

func TestWithholdingHandlerWithholdsEveryAttribute(t *testing.T) {
	secret := `s3cr3t<"value`
	forms := encodedForms(testClientID, secret)
	capture := &logCapture{}
	cfg := configFor(SandboxTokenURL)
	cfg.ClientSecret = secret
	cfg.Logger = slog.New(capture)
	log := cfg.logger(newRedactor(cfg.ClientID, secret))

	log.Info("message "+secret,
		"string", "s "+secret,
		"error", fmt.Errorf("wrapped: %w", errors.New("e "+forms["encoding/json"])),
		"valuer", secretValuer{secret},
		"struct", struct{ S string }{forms["base64 std"]},
		slog.Group("g", slog.Group("h", "deep", forms["url.QueryEscape"], "n", 3)),
		secret, "as a key")
	log.With("with", secret).WithGroup("group "+secret).Info("with attrs", "k", secretValuer{secret})

	recs, seen := capture.snapshot()
	if recs != 2 {
		t.Fatalf("the handler got %d records, want 2", recs)
	}
	for _, s := range seen {
		assertNoForm(t, "a logged string", s, forms)
	}
	for _, want := range []string{withheld, "3", "as a key", "n"} {
		if !slices.Contains(seen, want) {
			t.Errorf("the handler never got %q; it got %q", want, stripAll(seen, forms))
		}
	}

	quiet := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg.Logger = quiet
	if cfg.logger(newRedactor(cfg.ClientID, secret)).Enabled(context.Background(), slog.LevelInfo) {
		t.Error("the redacting logger is enabled for Info under a handler that wants Warn and above")
	}
}

func stripAll(ss []string, forms map[string]string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = stripForms(s, forms)
	}
	return out
}
