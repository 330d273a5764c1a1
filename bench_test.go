package forteauth_test

import (
	"context"
	"net/http"
	"os"
	"slices"
	"testing"

	"github.com/forteauth/forteauth"
	"github.com/forteauth/forteauth/fortetest"
	"github.com/forteauth/forteauth/internal/benchenv"
	"golang.org/x/oauth2"
)

// The benchmarks below pair forteauth with the x/oauth2 anchor (a JSON
// fetcher in oauth2.ReuseTokenSource, sent through oauth2.Transport; see
// internal/benchenv) on the same fake endpoint, as sub-benchmarks
// lib=forteauth and lib=oauth2, and forteauth with Config.Trace set as
// lib=forteauth+trace. Beside them, as further lib values, run
// the floors that the targets in docs/benchmarks.md are judged against:
// lib=oauth2+copy (the anchor plus the one token copy per call that
// forteauth's design pays), lib=base (the no-op base transport alone) and
// lib=base+copy (the least a RoundTripper that may not modify the caller's
// request can do). .ci/bench runs them with the storm and the memory
// measurement and tabulates everything with benchstat -col /lib.

// benchSources returns a fetched forteauth source, one with Config.Trace
// set, and a fetched anchor, over one fake endpoint with one-hour tokens,
// so that every call is a cache hit.
func benchSources(b *testing.B) (ts, traced *forteauth.TokenSource, anchor oauth2.TokenSource) {
	b.Helper()
	srv := fortetest.NewServer()
	b.Cleanup(srv.Close)
	cfg := benchenv.Config(srv.URL, srv.ClientID, srv.ClientSecret)
	ts = cfg.TokenSource(context.Background())
	cfg.Trace = benchTrace()
	traced = cfg.TokenSource(context.Background())
	anchor = benchenv.Anchor(cfg, 0)
	for _, s := range []oauth2.TokenSource{ts, traced, anchor} {
		if _, err := s.Token(); err != nil {
			b.Fatal(err)
		}
	}
	if n := srv.Stats().TokenRequests; n != 3 {
		b.Fatalf("token requests = %d, want one per source", n)
	}
	return ts, traced, anchor
}

// benchTrace is a Trace whose hooks do what a tracer's do at least: put a
// value in the context. On a cache hit none is called.
func benchTrace() *forteauth.Trace {
	type key struct{}
	return &forteauth.Trace{
		FetchStart: func(ctx context.Context, _ forteauth.FetchReason) context.Context {
			return context.WithValue(ctx, key{}, 1)
		},
		FetchDone: func(context.Context, forteauth.FetchInfo) {},
		WaitStart: func(ctx context.Context) context.Context { return context.WithValue(ctx, key{}, 2) },
		WaitDone:  func(_, _ context.Context, _ error) {},
		Replayed:  func(context.Context, int) {},
	}
}

// lib is one column of benchstat's table: forteauth, the anchor, or a
// floor.
type lib[T any] struct {
	name string
	v    T
}

// inOrder returns libs in the order .ci/bench asks for with
// FORTEAUTH_BENCH_ORDER: it reverses them every other run, so that no
// library always runs first, on a warmer or colder machine.
func inOrder[T any](libs ...lib[T]) []lib[T] {
	if os.Getenv("FORTEAUTH_BENCH_ORDER") == "oauth2-first" {
		slices.Reverse(libs)
	}
	return libs
}

// copying hands every caller its own copy of the token its source returns,
// as forteauth's Token does: oauth2's wrappers write into the token they
// receive, so a shared one would be a data race. Over the anchor it is the
// floor of such a design: the anchor's cache hit plus one token copy.
type copying struct{ src oauth2.TokenSource }

func (c copying) Token() (*oauth2.Token, error) {
	t, err := c.src.Token()
	if err != nil {
		return nil, err
	}
	own := new(oauth2.Token)
	*own = *t
	return own, nil
}

func tokenLibs(b *testing.B) []lib[oauth2.TokenSource] {
	ts, traced, anchor := benchSources(b)
	return inOrder[oauth2.TokenSource](
		lib[oauth2.TokenSource]{"forteauth", ts},
		lib[oauth2.TokenSource]{"forteauth+trace", traced},
		lib[oauth2.TokenSource]{"oauth2", anchor},
		lib[oauth2.TokenSource]{"oauth2+copy", copying{anchor}},
	)
}

// sinkToken keeps the compiler from optimising a benchmarked call away.
var sinkToken *oauth2.Token

func BenchmarkTokenCacheHit(b *testing.B) {
	for _, lib := range tokenLibs(b) {
		b.Run("lib="+lib.name, func(b *testing.B) {
			b.ReportAllocs()
			var tok *oauth2.Token
			for b.Loop() {
				var err error
				if tok, err = lib.v.Token(); err != nil {
					b.Fatal(err)
				}
			}
			sinkToken = tok
		})
	}
}

func BenchmarkTokenCacheHitParallel(b *testing.B) {
	for _, lib := range tokenLibs(b) {
		b.Run("lib="+lib.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := lib.v.Token(); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// minimalCopy sends a copy of each request with a header map of its own
// and a fixed Authorization value: the least a RoundTripper may do to add
// a header, since it may not modify the caller's request. It takes three
// allocations: the request and its one Authorization value in one object,
// and the map, which is two (its header and its slots).
type minimalCopy struct{ base http.RoundTripper }

func (m minimalCopy) RoundTrip(req *http.Request) (*http.Response, error) {
	c := new(struct {
		req  http.Request
		auth [1]string
	})
	c.req = *req
	c.auth[0] = "Bearer fortetest.0123456789abcdef0123456789abcdef0123456789abcdef"
	h := make(http.Header, len(req.Header)+1)
	for k, v := range req.Header {
		h[k] = v
	}
	h["Authorization"] = c.auth[:]
	c.req.Header = h
	return m.base.RoundTrip(&c.req)
}

// BenchmarkTransportRoundTrip measures what the transport adds to a
// request: a GET to the API's host, with two typical headers, over a base
// that answers at once. forteauth's Transport decides by its default host
// rule (the token endpoint's host), as in cfg.Client.
func BenchmarkTransportRoundTrip(b *testing.B) {
	ts, traced, anchor := benchSources(b)
	noop := benchenv.NewNoop()
	for _, lib := range inOrder[http.RoundTripper](
		lib[http.RoundTripper]{"forteauth", &forteauth.Transport{Source: ts, Base: noop}},
		lib[http.RoundTripper]{"forteauth+trace", &forteauth.Transport{Source: traced, Base: noop}},
		lib[http.RoundTripper]{"oauth2", &oauth2.Transport{Source: anchor, Base: noop}},
		lib[http.RoundTripper]{"base", noop},
		lib[http.RoundTripper]{"base+copy", minimalCopy{noop}},
	) {
		b.Run("lib="+lib.name, func(b *testing.B) {
			req := apiRequest(b)
			// The token goes on the copy, never on req: check that once.
			if resp, err := lib.v.RoundTrip(req); err != nil || resp.StatusCode != http.StatusOK || req.Header.Get("Authorization") != "" {
				b.Fatalf("RoundTrip: %v; caller's request modified: %v", err, req.Header.Get("Authorization") != "")
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := lib.v.RoundTrip(req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func apiRequest(b *testing.B) *http.Request {
	b.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, benchenv.APIURL, nil)
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Content-Type", "application/json")
	return req
}
