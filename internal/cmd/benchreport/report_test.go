package main

import (
	"math"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/forteauth/forteauth/internal/benchenv"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const sampleBench = `goos: linux
goarch: amd64
pkg: github.com/forteauth/forteauth
cpu: AMD EPYC
BenchmarkTokenCacheHit/lib=forteauth-2         	 2514632	       220.0 ns/op	     112 B/op	       1 allocs/op
BenchmarkTokenCacheHit/lib=oauth2-2            	 5830680	       100.0 ns/op	       0 B/op	       0 allocs/op
BenchmarkTokenCacheHitParallel/lib=forteauth-2 	 4998939	       190.0 ns/op	     112 B/op	       1 allocs/op
BenchmarkTokenCacheHitParallel/lib=oauth2-2    	 6704564	       150.0 ns/op	       0 B/op	       0 allocs/op
BenchmarkTransportRoundTrip/lib=forteauth-2    	  683109	      1400 ns/op	     848 B/op	       3 allocs/op
BenchmarkTransportRoundTrip/lib=oauth2-2       	  520894	      2000 ns/op	     992 B/op	       7 allocs/op
BenchmarkFloor/op=time.Now-2                   	11745531	       75.00 ns/op	       0 B/op	       0 allocs/op
BenchmarkFloor/op=token-copy-2                 	 9984900	       110.0 ns/op	     112 B/op	       1 allocs/op
BenchmarkFloor/op=token-copy-parallel-2        	 9984900	       100.0 ns/op	     112 B/op	       1 allocs/op
BenchmarkFloor/op=clone-set-header-2           	  805650	      1300 ns/op	     912 B/op	       6 allocs/op
PASS
ok  	github.com/forteauth/forteauth	12.874s
`

func TestParseBench(t *testing.T) {
	m := parseBench([]byte(sampleBench))
	if len(m) != 10 {
		t.Fatalf("parsed %d benchmarks, want 10: %v", len(m), m)
	}
	if r := m["TokenCacheHit/lib=forteauth"]; r != (result{220, 112, 1}) {
		t.Errorf("TokenCacheHit/lib=forteauth = %+v", r)
	}
	if r := m["Floor/op=time.Now"]; r.ns != 75 {
		t.Errorf("Floor/op=time.Now = %+v", r)
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{7}, 7},
	} {
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
	if !math.IsNaN(median(nil)) {
		t.Error("median of nothing is not NaN")
	}
}

func TestReportJudgesTargets(t *testing.T) {
	r := report{opts: options{count: 1, benchtime: "1s", storms: 1, stormD: 10 * time.Second, mems: 1, sources: 10000}}
	// Two runs, the second on a machine twice as slow: medians of the
	// times move, the per-run ratios do not.
	first := parseBench([]byte(sampleBench))
	slower := map[string]result{}
	for name, res := range first {
		res.ns *= 2
		slower[name] = res
	}
	r.bench.add(first)
	r.bench.add(slower)
	storm := func(lib string, requests int, blocked int64) benchenv.StormResult {
		return benchenv.StormResult{Lib: lib, Goroutines: 64, Duration: 10 * time.Second, Lifetime: time.Second, Latency: 50 * time.Millisecond,
			Requests: requests, After: 1000, Blocked: blocked, Threshold: 10 * time.Millisecond, P99: time.Microsecond, Max: time.Millisecond}
	}
	stalled := storm("forteauth", 18, 3)
	stalled.Stalls = 5
	stalled.Bursts = []benchenv.Burst{{Calls: 3, At: 4300 * time.Millisecond, Span: 27 * time.Millisecond, Fetch: 180 * time.Millisecond}}
	r.storms = []benchenv.StormResult{storm("forteauth", 18, 0), storm("oauth2", 10, 640), stalled}
	r.mems = []benchenv.MemResult{{Lib: "forteauth", Sources: 10000, BytesPerSource: 1000}, {Lib: "oauth2", Sources: 10000, BytesPerSource: 300}}
	var b strings.Builder
	r.write(&b)
	out := b.String()
	for _, want := range []string{
		"| `Token()` cache hit, 1 goroutine | 330 ns | 150 ns | 2.20x (2.20–2.20) | ≤ 1.25x | **no**; less the one token copy per call (floor below): 1.10x |",
		"| `Token()` cache hit, `RunParallel` | 285 ns | 225 ns | 1.27x (1.27–1.27) | ≤ 1.00x | **no**; less the one token copy per call (floor below): 0.60x |",
		"| forteauth `Token()`, `RunParallel`, less one token copy under `RunParallel` | 135 ns (x/oauth2: 225 ns; ratio 0.60x) | — |",
		"| `Transport.RoundTrip` over a no-op base | 2100 ns | 3000 ns | 0.70x (0.70–0.70) | ≤ 0.70x | yes |",
		"| `Transport.RoundTrip`, allocs/op | 3 | 7 | — | ≤ 3 | yes |",
		"| 18 | 10 | — | ≈ 10 ÷ 0.5 = 20 (16–21 with the jittered start) | yes |",
		"| 0, 3 | 640 | — | 0 | **no** in 1 of 2 runs; the control calls of those runs stalled 5 times |",
		"| 0, 5 | 0 | — | — | — |",
		"forteauth storm run 2, its blocked calls by burst (a token goes stale a quarter of its life after the refresh window opens, so a refresh has at least 125ms, an eighth of the 1s lifetime, to finish before callers wait; the endpoint answers in 50ms):",
		"- 3 calls at 4.3s, within 27ms; a token request in flight took 180ms",
		"| 1000 B | 300 B | 3.33x |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}
