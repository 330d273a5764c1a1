// Command sourcemem measures the heap that each token source holds while
// many are alive in one process: -n sources with distinct client IDs, each
// holding a fetched token, for forteauth's TokenSource and for the x/oauth2
// anchor (see internal/benchenv).
//
//	go run ./internal/cmd/sourcemem -n 10000
//
// The figure is the growth of the live heap (runtime.MemStats.HeapAlloc
// after a forced GC) from before the sources were made to after, divided
// by -n. Each library runs in a process of its own when -lib names one, as
// .ci/bench does, so that neither measures the other's garbage.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"runtime"
	"strings"

	"github.com/forteauth/forteauth"
	"github.com/forteauth/forteauth/internal/benchenv"
	"golang.org/x/oauth2"
)

func main() {
	var (
		libs   = flag.String("lib", "forteauth,oauth2", "libraries to measure, comma-separated: forteauth, oauth2")
		n      = flag.Int("n", 10000, "token sources to hold at once")
		asJSON = flag.Bool("json", false, "print one JSON object per library instead of text")
	)
	flag.Parse()
	srv := benchenv.NewAnyClientServer()
	defer srv.Close()
	for _, lib := range strings.Split(*libs, ",") {
		r, err := measure(lib, *n, srv.URL)
		if err != nil {
			log.Fatal(err)
		}
		if *asJSON {
			json.NewEncoder(os.Stdout).Encode(r)
			continue
		}
		fmt.Printf("%-10s %d sources: %.0f bytes per source (live heap %d -> %d)\n", r.Lib, r.Sources, r.BytesPerSource, r.HeapBefore, r.HeapAfter)
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

func measure(lib string, n int, endpoint string) (*benchenv.MemResult, error) {
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
		return nil, err
	} else if _, err := warm.Token(); err != nil {
		return nil, err
	}
	sources := make([]oauth2.TokenSource, n)
	before := liveHeap()
	for i := range sources {
		s, _ := newSource(lib, config(i))
		if _, err := s.Token(); err != nil {
			return nil, fmt.Errorf("sourcemem: source %d: %w", i, err)
		}
		sources[i] = s
	}
	after := liveHeap()
	runtime.KeepAlive(sources)
	return &benchenv.MemResult{
		Lib:            lib,
		Sources:        n,
		HeapBefore:     before,
		HeapAfter:      after,
		BytesPerSource: float64(int64(after)-int64(before)) / float64(n),
	}, nil
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
