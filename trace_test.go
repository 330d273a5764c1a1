package forteauth

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/forteauth/forteauth/fortetest"
)

// hookKey marks the contexts a traceLog's hooks return.
type hookKey struct{}

// traceLog is a Trace that records the hooks called, in order.
type traceLog struct {
	mu     sync.Mutex
	calls  []string
	infos  []FetchInfo
	linked []any // the fetch context's mark seen by each WaitDone
}

func (l *traceLog) add(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = append(l.calls, s)
}

func (l *traceLog) trace() *Trace {
	return &Trace{
		FetchStart: func(ctx context.Context, r FetchReason) context.Context {
			l.add("FetchStart " + string(r))
			return context.WithValue(ctx, hookKey{}, "fetch "+string(r))
		},
		FetchDone: func(ctx context.Context, info FetchInfo) {
			l.add("FetchDone")
			l.mu.Lock()
			l.infos = append(l.infos, info)
			l.mu.Unlock()
		},
		WaitStart: func(ctx context.Context) context.Context { l.add("WaitStart"); return ctx },
		WaitDone: func(ctx, fetch context.Context, err error) {
			l.add("WaitDone")
			l.mu.Lock()
			defer l.mu.Unlock()
			if fetch != nil {
				l.linked = append(l.linked, fetch.Value(hookKey{}))
			} else {
				l.linked = append(l.linked, nil)
			}
		},
		Replayed: func(ctx context.Context, status int) { l.add("Replayed") },
	}
}

// TestTraceHooksSeeFetchesAndWaitsButNoCacheHit: a cold start calls the
// fetch and wait hooks once each, the wait given the fetch's context; a
// cache hit calls none; a fetch after Invalidate says token_rejected, and
// counts its attempts and last status.
func TestTraceHooksSeeFetchesAndWaitsButNoCacheHit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := &traceLog{}
		srv := fortetest.NewMemoryServer()
		ts := newTestSource(t, inBubble(), withServer(srv), withConfig(func(c *Config) { c.Trace = l.trace() })).ts
		mustToken(t, ts)
		for range 1000 {
			mustToken(t, ts)
		}
		srv.FailNext(fortetest.Failure{Status: http.StatusServiceUnavailable})
		ts.Invalidate(nil)
		mustToken(t, ts)

		want := []string{"WaitStart", "FetchStart no_token", "FetchDone", "WaitDone", "WaitStart", "FetchStart token_rejected", "FetchDone", "WaitDone"}
		if len(l.calls) != len(want) {
			t.Fatalf("hooks called %q, want %q", l.calls, want)
		}
		for i := range want {
			if l.calls[i] != want[i] {
				t.Fatalf("hooks called %q, want %q", l.calls, want)
			}
		}
		if l.linked[0] != "fetch no_token" || l.linked[1] != "fetch token_rejected" {
			t.Errorf("WaitDone got the fetch contexts %v, want those FetchStart returned", l.linked)
		}
		if i := l.infos[1]; i.Attempts != 2 || i.LastStatus != 201 || i.FromStore || i.Err != nil || i.Reason != FetchRejected {
			t.Errorf("the second fetch's info %+v, want 2 attempts (a 503, then 201), no error, token_rejected", i)
		}
	})
}

// TestAWaitThatGivesUpIsGivenTheFetchInFlight: a caller whose context ends
// while the fetch runs still links to it, with a Trace that sets only the
// hooks it needs.
func TestAWaitThatGivesUpIsGivenTheFetchInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var linked any
		tr := &Trace{
			FetchStart: func(ctx context.Context, r FetchReason) context.Context {
				return context.WithValue(ctx, hookKey{}, "the fetch")
			},
			WaitDone: func(_, fetch context.Context, _ error) {
				if fetch != nil {
					linked = fetch.Value(hookKey{})
				}
			},
		}
		srv := fortetest.NewMemoryServer()
		release := srv.Hold()
		ts := newTestSource(t, inBubble(), withServer(srv), withConfig(func(c *Config) { c.Trace = tr })).ts
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if _, err := ts.TokenContext(ctx); err == nil {
			t.Fatal("a caller whose context ended got a token")
		}
		if linked != "the fetch" {
			t.Errorf("the wait that gave up was given %v, want the fetch in flight", linked)
		}
		release()
		synctest.Wait()
	})
}
