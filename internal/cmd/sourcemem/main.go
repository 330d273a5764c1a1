// Command sourcemem measures the heap that each token source holds while
// many are alive in one process: -n sources with distinct client IDs, each
// holding a fetched token, for forteauth's TokenSource and for the x/oauth2
// anchor (see internal/benchenv).
//
//	go run ./internal/cmd/sourcemem -n 10000
//
// The figure is the growth of the live heap (runtime.MemStats.HeapAlloc
// after a forced GC) from before the sources were made to after, divided
// by -n, printed as a Go benchmark line that benchstat reads:
//
//	BenchmarkSourceHeap/lib=forteauth 1 1091 B/source
//
// Each library runs in a process of its own when -lib names one, as
// .ci/bench does, so that neither measures the other's garbage.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net/http"
	"runtime"
	"strings"

	"github.com/forteauth/forteauth"
	"github.com/forteauth/forteauth/internal/benchenv"
	"golang.org/x/oauth2"
)

func main() {
	var (
		libs = flag.String("lib", "forteauth,oauth2", "libraries to measure, comma-separated: forteauth, oauth2")
		n    = flag.Int("n", 10000, "token sources to hold at once")
	)
	flag.Parse()
	srv := benchenv.NewAnyClientServer()
	defer srv.Close()
	// The pkg line keeps these figures apart from the go test benchmarks
	// when benchstat reads both from one file.
	fmt.Println("pkg: github.com/forteauth/forteauth/internal/cmd/sourcemem")
	for _, lib := range strings.Split(*libs, ",") {
		perSource, err := measure(lib, *n, srv.URL)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("BenchmarkSourceHeap/lib=%s 1 %.0f B/source\n", lib, perSource)
	}
}

// newSource returns lib's token source for cfg.
func newSource(lib string, cfg *forteauth.Config) (oauth2.TokenSource, error) {
	switch lib {
	case "forteauth":
		return cfg.TokenSource(context.Background()), nil
	case "oauth2":
		return benchenv.Anchor(cfg, 0), nil
	}
	return nil, fmt.Errorf("sourcemem: unknown library %q", lib)
}

// measure returns the growth of the live heap per source while n of lib's
// sources hold a token each.
func measure(lib string, n int, endpoint string) (float64, error) {
	// One client for all sources, as a program would share one; its
	// connection is opened by the warm-up fetch, before the first reading.
	client := &http.Client{Transport: benchenv.Reroute(endpoint, http.DefaultTransport)}
	config := func(i int) *forteauth.Config {
		return &forteauth.Config{
			ClientID:     fmt.Sprintf("client-%06d", i),
			ClientSecret: "sourcemem-secret",
			TokenURL:     forteauth.ProductionTokenURL,
			HTTPClient:   client,
		}
	}
	if warm, err := newSource(lib, config(-1)); err != nil {
		return 0, err
	} else if _, err := warm.Token(); err != nil {
		return 0, err
	}
	sources := make([]oauth2.TokenSource, n)
	before := liveHeap()
	for i := range sources {
		s, _ := newSource(lib, config(i))
		if _, err := s.Token(); err != nil {
			return 0, fmt.Errorf("sourcemem: source %d: %w", i, err)
		}
		sources[i] = s
	}
	after := liveHeap()
	runtime.KeepAlive(sources)
	return float64(int64(after)-int64(before)) / float64(n), nil
}

// liveHeap returns the bytes of live heap objects after a full GC. The
// second GC frees what the first one's finalizers released.
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
