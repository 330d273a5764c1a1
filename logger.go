package forteauth

import (
	"context"
	"fmt"
	"log/slog"
)

// logger returns the one logger of everything made from c (a
// TokenSource, its endpoint and its Store sharing): c.Logger behind a
// withholdingHandler using r, or one that discards everything if c.Logger
// is nil.
func (c *Config) logger(r *redactor) *slog.Logger {
	if c.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(&withholdingHandler{c.Logger.Handler(), r})
}

// withholdingHandler hands records to h with every value that holds the
// secret withheld: the message, and every attribute's key and value,
// whatever a LogValuer returns, and groups at any depth. A value of a kind
// a handler would print by reflection is logged as its %+v text, so that
// it is checked too.
type withholdingHandler struct {
	h slog.Handler
	r *redactor
}

func (h *withholdingHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.h.Enabled(ctx, level)
}

func (h *withholdingHandler) Handle(ctx context.Context, rec slog.Record) error {
	out := slog.NewRecord(rec.Time, rec.Level, h.r.withhold(rec.Message), rec.PC)
	rec.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(h.attr(a))
		return true
	})
	return h.h.Handle(ctx, out)
}

func (h *withholdingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &withholdingHandler{h.h.WithAttrs(h.attrs(as)), h.r}
}

func (h *withholdingHandler) WithGroup(name string) slog.Handler {
	return &withholdingHandler{h.h.WithGroup(h.r.withhold(name)), h.r}
}

func (h *withholdingHandler) attrs(as []slog.Attr) []slog.Attr {
	out := make([]slog.Attr, len(as))
	for i, a := range as {
		out[i] = h.attr(a)
	}
	return out
}

func (h *withholdingHandler) attr(a slog.Attr) slog.Attr {
	a.Key = h.r.withhold(a.Key)
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		v = slog.StringValue(h.r.withhold(v.String()))
	case slog.KindGroup:
		v = slog.GroupValue(h.attrs(v.Group())...)
	case slog.KindAny:
		if err, ok := v.Any().(error); ok {
			v = slog.StringValue(h.r.withhold(err.Error()))
		} else {
			v = slog.StringValue(h.r.withhold(fmt.Sprintf("%+v", v.Any())))
		}
	}
	a.Value = v
	return a
}
