package forteauth_test

import (
	"context"
	"net/http"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/forteauth/forteauth"
	"github.com/forteauth/forteauth/fortetest"
	"github.com/forteauth/forteauth/internal/benchenv"
	"golang.org/x/oauth2"
)

// The benchmarks below pair forteauth with the x/oauth2 anchor (a JSON
// fetcher in oauth2.ReuseTokenSource, sent through oauth2.Transport; see
// internal/benchenv) on the same fake endpoint, as sub-benchmarks
// lib=forteauth and lib=oauth2 run one after the other. The Floor
// benchmarks measure the parts that neither can avoid. .ci/bench runs
// them with the storm and the memory measurement and prints the table in
// docs/benchmarks.md.

// benchSources returns a fetched forteauth source and a fetched anchor
// over one fake endpoint with one-hour tokens, so that every call is a
// cache hit.
func benchSources(b *testing.B) (*forteauth.TokenSource, oauth2.TokenSource) {
	b.Helper()
	srv := fortetest.NewServer()
	b.Cleanup(srv.Close)
	cfg := benchenv.Config(srv.URL, srv.ClientID, srv.ClientSecret)
	ts := cfg.TokenSource(context.Background())
	anchor := benchenv.Anchor(cfg, 0)
	for _, s := range []oauth2.TokenSource{ts, anchor} {
		if _, err := s.Token(); err != nil {
			b.Fatal(err)
		}
	}
	if n := srv.Stats().TokenRequests; n != 2 {
		b.Fatalf("token requests = %d, want one per source", n)
	}
	return ts, anchor
}

// lib is one side of a pairing: forteauth's value or the anchor's.
type lib[T any] struct {
	name string
	v    T
}

// pair returns forteauth's value and the anchor's, in the order .ci/bench
// asks for with FORTEAUTH_BENCH_ORDER: it alternates between runs, so that
// neither library always runs first, on a warmer or colder machine.
func pair[T any](forteauth, anchor T) []lib[T] {
	l := []lib[T]{{"forteauth", forteauth}, {"oauth2", anchor}}
	if os.Getenv("FORTEAUTH_BENCH_ORDER") == "oauth2-first" {
		slices.Reverse(l)
	}
	return l
}

// sinkToken keeps the compiler from optimising a benchmarked call away.
var sinkToken *oauth2.Token

func BenchmarkTokenCacheHit(b *testing.B) {
	ts, anchor := benchSources(b)
	for _, lib := range pair[oauth2.TokenSource](ts, anchor) {
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
	ts, anchor := benchSources(b)
	for _, lib := range pair[oauth2.TokenSource](ts, anchor) {
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

// BenchmarkTransportRoundTrip measures what the transport adds to a
// request: a GET to the API's host, with two typical headers, over a base
// that answers at once. forteauth's Transport decides by its default host
// rule (the token endpoint's host), as in cfg.Client.
func BenchmarkTransportRoundTrip(b *testing.B) {
	ts, anchor := benchSources(b)
	noop := benchenv.NewNoop()
	for _, lib := range pair[http.RoundTripper](
		&forteauth.Transport{Source: ts, Base: noop},
		&oauth2.Transport{Source: anchor, Base: noop},
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

// sinkTime and sinkRequest keep the floor benchmarks' results alive.
var (
	sinkTime    time.Time
	sinkRequest *http.Request
	sinkMu      sync.Mutex // for sinkToken from RunParallel's goroutines
)

// BenchmarkFloor measures the parts of a cache hit and of a RoundTrip
// that neither library can avoid on this machine: reading the clock,
// copying a token to the heap (forteauth's Token does this once per call,
// because oauth2's wrappers write into the token they receive), on one
// goroutine and under RunParallel, and cloning a request to set one
// header (what oauth2.Transport does).
func BenchmarkFloor(b *testing.B) {
	// What an allocation costs depends on the live heap, which the GC
	// marks: keep the same server and sources alive as the benchmarks
	// above, so that the floors are measured on the same heap.
	benchSources(b)
	b.Run("op=time.Now", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sinkTime = time.Now()
		}
	})
	b.Run("op=token-copy", func(b *testing.B) {
		src := &oauth2.Token{AccessToken: "fortetest.0123456789abcdef", TokenType: "Bearer", ExpiresIn: 3600, Expiry: time.Now().Add(time.Hour)}
		b.ReportAllocs()
		for b.Loop() {
			t := new(oauth2.Token)
			*t = *src
			sinkToken = t
		}
	})
	b.Run("op=token-copy-parallel", func(b *testing.B) {
		src := &oauth2.Token{AccessToken: "fortetest.0123456789abcdef", TokenType: "Bearer", ExpiresIn: 3600, Expiry: time.Now().Add(time.Hour)}
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			var t *oauth2.Token
			for pb.Next() {
				t = new(oauth2.Token)
				*t = *src
			}
			sinkMu.Lock()
			sinkToken = t
			sinkMu.Unlock()
		})
	})
	b.Run("op=clone-set-header", func(b *testing.B) {
		req := apiRequest(b)
		const auth = "Bearer fortetest.0123456789abcdef0123456789abcdef0123456789abcdef"
		b.ReportAllocs()
		for b.Loop() {
			r := req.Clone(req.Context())
			r.Header.Set("Authorization", auth)
			sinkRequest = r
		}
	})
}
