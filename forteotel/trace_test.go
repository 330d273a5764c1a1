package forteotel_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/forteauth/forteauth"
	"github.com/forteauth/forteauth/forteotel"
	"github.com/forteauth/forteauth/fortetest"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// traced is a TokenSource on a memory server whose fetches and waits are
// recorded, in the current synctest bubble.
type traced struct {
	srv    *fortetest.Server
	cfg    *forteauth.Config
	ts     *forteauth.TokenSource
	rec    *tracetest.SpanRecorder
	tracer trace.Tracer // the program's own
}

func newTraced(t *testing.T, mod func(*forteauth.Config)) *traced {
	t.Helper()
	srv := fortetest.NewMemoryServer()
	t.Cleanup(srv.Close)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { tp.Shutdown(context.Background()) })
	cfg := &forteauth.Config{ClientID: srv.ClientID, ClientSecret: srv.ClientSecret, TokenURL: srv.TokenURL,
		HTTPClient: srv.Client(), Trace: forteotel.NewTrace(tp)}
	if mod != nil {
		mod(cfg)
	}
	return &traced{srv, cfg, cfg.TokenSource(context.Background()), rec, tp.Tracer("the program")}
}

// named returns the ended spans called name.
func (x *traced) named(name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range x.rec.Ended() {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

// attr returns the value of s's attribute k.
func attr(s sdktrace.ReadOnlySpan, k attribute.Key) attribute.Value {
	for _, a := range s.Attributes() {
		if a.Key == k {
			return a.Value
		}
	}
	return attribute.Value{}
}

// TestAColdStartGivesOneFetchSpanAndAWaitSpanPerCaller: 50 callers, each
// in a span of its own, wait for one fetch: one fetch span, the root of a
// trace of its own, and 50 wait spans, each a child of its caller's span
// and linked to the fetch span.
func TestAColdStartGivesOneFetchSpanAndAWaitSpanPerCaller(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		x := newTraced(t, nil)
		release := x.srv.Hold()
		callers := make([]trace.SpanContext, 50)
		var wg sync.WaitGroup
		for i := range callers {
			wg.Go(func() {
				ctx, span := x.tracer.Start(context.Background(), fmt.Sprint("caller-", i))
				defer span.End()
				callers[i] = span.SpanContext()
				if _, err := x.ts.TokenContext(ctx); err != nil {
					t.Error(err)
				}
			})
		}
		synctest.Wait() // one fetch at the endpoint, 50 callers waiting for it
		release()
		wg.Wait()

		fetches, waits := x.named(forteotel.FetchSpanName), x.named(forteotel.WaitSpanName)
		if len(fetches) != 1 || len(waits) != 50 {
			t.Fatalf("%d fetch spans and %d wait spans, want 1 and 50", len(fetches), len(waits))
		}
		f := fetches[0]
		if f.Parent().IsValid() || attr(f, forteotel.ReasonKey).AsString() != "no_token" || attr(f, forteotel.AttemptsKey).AsInt64() != 1 ||
			attr(f, forteotel.StatusKey).AsInt64() != 201 || attr(f, forteotel.FromStoreKey).AsBool() || f.Status().Code == codes.Error {
			t.Errorf("the fetch span: parent %v, attributes %v, status %v; want a root, no_token, 1 attempt, 201, not from the Store, no error",
				f.Parent().IsValid(), f.Attributes(), f.Status())
		}
		parents := map[trace.SpanID]bool{}
		for _, c := range callers {
			parents[c.SpanID()] = true
		}
		for _, w := range waits {
			if !parents[w.Parent().SpanID()] || len(w.Links()) != 1 || w.Links()[0].SpanContext.SpanID() != f.SpanContext().SpanID() {
				t.Fatalf("a wait span's parent is no caller's span, or it is not linked to the fetch span alone: %v", w.Links())
			}
			delete(parents, w.Parent().SpanID())
		}
	})
}

// TestABackgroundRefreshGivesAFetchSpanAndNoWaitSpan: no caller waits for
// a refresh in the window.
func TestABackgroundRefreshGivesAFetchSpanAndNoWaitSpan(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		x := newTraced(t, nil)
		x.ts.Token()
		time.Sleep(58 * time.Minute) // past the refresh point (55 to 57.25 min), before the stale one (59.5)
		x.ts.Token()
		synctest.Wait()
		fetches, waits := x.named(forteotel.FetchSpanName), x.named(forteotel.WaitSpanName)
		if len(fetches) != 2 || len(waits) != 1 || attr(fetches[1], forteotel.ReasonKey).AsString() != "refresh_due" {
			t.Fatalf("%d fetch spans, %d wait spans; want 2 (the second a refresh_due) and 1, the first call's", len(fetches), len(waits))
		}
	})
}

// TestAFailedFetchHasErrorStatusAndItsAttempts: four 503s are four
// attempts, and an error of type "status"; the callers' wait span ends
// with an error too.
func TestAFailedFetchHasErrorStatusAndItsAttempts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		x := newTraced(t, nil)
		for range 4 {
			x.srv.FailNext(fortetest.Failure{Status: http.StatusServiceUnavailable})
		}
		if _, err := x.ts.Token(); err == nil {
			t.Fatal("Token succeeded against four 503s")
		}
		f, w := x.named(forteotel.FetchSpanName)[0], x.named(forteotel.WaitSpanName)[0]
		if f.Status().Code != codes.Error || attr(f, forteotel.AttemptsKey).AsInt64() != 4 ||
			attr(f, forteotel.StatusKey).AsInt64() != 503 || attr(f, forteotel.ErrorTypeKey).AsString() != "status" {
			t.Errorf("the failed fetch's span: status %v, attributes %v; want Error, 4 attempts, 503, error.type status", f.Status(), f.Attributes())
		}
		if w.Status().Code != codes.Error {
			t.Errorf("the wait span of a call that got an error has status %v", w.Status())
		}
	})
}

// spanSeen records the span in the contexts it is handed.
type spanSeen struct {
	mu    sync.Mutex
	spans []trace.SpanID
}

func (s *spanSeen) saw(ctx context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.spans = append(s.spans, trace.SpanContextFromContext(ctx).SpanID())
}

// sawStore is a memStore that records the span in its calls' contexts.
type sawStore struct {
	*memStore
	seen spanSeen
}

func (s *sawStore) Get(ctx context.Context, key string) ([]byte, error) {
	s.seen.saw(ctx)
	return s.memStore.Get(ctx, key)
}

func (s *sawStore) Set(ctx context.Context, key string, v []byte, ttl time.Duration) error {
	s.seen.saw(ctx)
	return s.memStore.Set(ctx, key, v, ttl)
}

// roundTripFunc is an http.RoundTripper.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// contextHandler is a slog.Handler that records the span of each record's
// context.
type contextHandler struct{ seen *spanSeen }

func (h contextHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h contextHandler) Handle(ctx context.Context, _ slog.Record) error {
	h.seen.saw(ctx)
	return nil
}
func (h contextHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h contextHandler) WithGroup(string) slog.Handler      { return h }

// TestTheFetchSpanIsInTheContextOfItsRequestsStoreCallsAndLogs: the HTTP
// client, the Store and the log handler are handed the fetch span's
// context, so that their spans nest under it and records join its trace.
func TestTheFetchSpanIsInTheContextOfItsRequestsStoreCallsAndLogs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var httpSeen, logSeen spanSeen
		store := &sawStore{memStore: &memStore{vals: map[string][]byte{}}}
		x := newTraced(t, func(c *forteauth.Config) {
			base := c.HTTPClient.Transport
			c.HTTPClient = &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
				httpSeen.saw(r.Context())
				return base.RoundTrip(r)
			})}
			c.Store = store
			c.Logger = slog.New(contextHandler{&logSeen})
		})
		x.srv.FailNext(fortetest.Failure{Status: http.StatusServiceUnavailable}) // a retry, logged
		if _, err := x.ts.Token(); err != nil {
			t.Fatal(err)
		}
		fetch := x.named(forteotel.FetchSpanName)[0].SpanContext().SpanID()
		for what, seen := range map[string]*spanSeen{"the HTTP client": &httpSeen, "the Store": &store.seen, "the log handler": &logSeen} {
			if len(seen.spans) == 0 {
				t.Errorf("%s was never called", what)
			}
			for _, id := range seen.spans {
				if id != fetch {
					t.Errorf("%s was handed span %v, want the fetch span %v", what, id, fetch)
				}
			}
		}
	})
}

// TestAReplayAfterA401IsAnEventOnTheCallersSpan.
func TestAReplayAfterA401IsAnEventOnTheCallersSpan(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		x := newTraced(t, nil)
		client := &http.Client{Transport: &forteauth.Transport{Source: x.ts, Base: x.srv.Client().Transport}}
		x.ts.Token()
		x.srv.Revoke()
		ctx, span := x.tracer.Start(context.Background(), "the request")
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, x.srv.URL+"/v3/payments", nil)
		resp, err := client.Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("the request after a revocation: %v, %v; want 200 after a replay", resp, err)
		}
		resp.Body.Close()
		span.End()
		req0 := x.named("the request")[0]
		if ev := req0.Events(); len(ev) != 1 || ev[0].Name != forteotel.ReplayEventName || ev[0].Attributes[0] != forteotel.StatusKey.Int(401) {
			t.Errorf("the request's span has events %v, want one %s with status 401", ev, forteotel.ReplayEventName)
		}
		if fetches := x.named(forteotel.FetchSpanName); attr(fetches[len(fetches)-1], forteotel.ReasonKey).AsString() != "token_rejected" {
			t.Errorf("the fetch after the 401 has reason %v, want token_rejected", attr(fetches[len(fetches)-1], forteotel.ReasonKey))
		}
	})
}

// TestNoSpanHoldsTheSecretOrAToken scans every span, attribute, event and
// status of runs that succeed, fail and replay, for the secret and every
// token issued.
func TestNoSpanHoldsTheSecretOrAToken(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		x := newTraced(t, nil)
		x.srv.FailNext(fortetest.Failure{Status: http.StatusBadRequest, Body: `{"error":{"message":"bad ` + x.srv.ClientSecret + `"}}`})
		x.ts.Token()
		time.Sleep(time.Second)
		tok, err := x.ts.Token()
		if err != nil {
			t.Fatal(err)
		}
		var dump bytes.Buffer
		for _, s := range x.rec.Ended() {
			fmt.Fprintf(&dump, "%s %v %v %v %v\n", s.Name(), s.Attributes(), s.Events(), s.Status(), s.Links())
		}
		for _, v := range []string{x.srv.ClientSecret, tok.AccessToken, "fortetest."} {
			if strings.Contains(dump.String(), v) {
				t.Errorf("a span holds the secret or a token (%d bytes)", len(v))
			}
		}
	})
}
