package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/forteauth/forteauth/internal/benchenv"
)

// benchRuns holds the results of each go test run, by benchmark name.
type benchRuns []map[string]result

func (b *benchRuns) add(m map[string]result) { *b = append(*b, m) }

// median returns the median of f over name's runs, NaN if it has none.
func (b benchRuns) median(name string, f func(result) float64) float64 {
	return b.medianOf(func(run map[string]result) float64 {
		if r, ok := run[name]; ok {
			return f(r)
		}
		return math.NaN()
	})
}

// medianOf returns the median of f over the runs, NaN if it has none.
// Computing a ratio per run, from two benchmarks of that same run, and
// then its median, cancels most of the drift of a shared machine, which
// slows both libraries alike.
func (b benchRuns) medianOf(f func(run map[string]result) float64) float64 {
	v, _, _ := b.spread(f)
	return v
}

// spread returns the median, least and greatest of f over the runs.
func (b benchRuns) spread(f func(run map[string]result) float64) (med, lo, hi float64) {
	var v []float64
	for _, run := range b {
		if x := f(run); !math.IsNaN(x) {
			v = append(v, x)
		}
	}
	if len(v) == 0 {
		return math.NaN(), math.NaN(), math.NaN()
	}
	return median(v), slices.Min(v), slices.Max(v)
}

// ratioOf returns, for one run, a/b of the ns/op of two benchmarks, each
// less sub ns (a floor benchmark's name, or "").
func ratioOf(a, b, sub string) func(run map[string]result) float64 {
	return func(run map[string]result) float64 {
		ra, oka := run[a]
		rb, okb := run[b]
		if !oka || !okb || rb.ns == 0 {
			return math.NaN()
		}
		x := ra.ns
		if sub != "" {
			rs, ok := run[sub]
			if !ok {
				return math.NaN()
			}
			x -= rs.ns
		}
		return x / rb.ns
	}
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	v = slices.Sorted(slices.Values(v))
	if n := len(v); n%2 == 0 {
		return (v[n/2-1] + v[n/2]) / 2
	}
	return v[len(v)/2]
}

func ns(r result) float64      { return r.ns }
func allocs(r result) float64  { return r.allocs }
func bytesOp(r result) float64 { return r.bytes }

// report is everything measured, ready to print.
type report struct {
	opts      options
	args      string
	machine   machine
	bench     benchRuns
	storms    []benchenv.StormResult
	unscaled  benchenv.StormResult // one storm of the anchor with x/oauth2's default early expiry
	unscaledD time.Duration        // the length it was asked to run
	mems      []benchenv.MemResult
}

// The refresh point of a token with forteauth's defaults, as a share of a
// short token's lifetime: the window (clamped to half the lifetime) opens
// at 1/2, and the random start falls in the first half of the span to the
// stale point (a quarter of the lifetime before expiry), so before 5/8.
// See docs/cache.md.
const (
	refreshOpens  = 0.5
	refreshLatest = 0.625
)

func (r *report) write(w io.Writer) {
	m := r.machine
	fmt.Fprintf(w, "Measured %s on %d × %s, %s; 1-minute load average %s at the start, %s at the end.\n\n",
		m.date.Format("2006-01-02 15:04 MST"), m.cpus, m.model, m.goVersion, m.loadStart, m.loadEnd)
	cmd := ".ci/bench"
	if r.args != "" {
		cmd += " " + r.args
	}
	o := r.opts
	fmt.Fprintf(w, "Command: `%s`: %d runs of the go test benchmarks (`-benchtime %s`), %d storms of %v per library, %d memory runs of %d sources per library. Figures are medians of the runs unless marked worst; a time ratio is the median of the ratios within each run, followed by their range, because a shared machine slows both libraries of one run alike.\n\n",
		cmd, o.count, o.benchtime, o.storms, o.stormD, o.mems, o.sources)

	fmt.Fprintln(w, "| metric | forteauth | x/oauth2 | ratio | target | met? |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- |")
	r.timeRow(w, "`Token()` cache hit, 1 goroutine", "TokenCacheHit", 1.25, "Floor/op=token-copy")
	r.allocRow(w, "`Token()` cache hit, 1 goroutine, allocs/op", "TokenCacheHit", 1)
	r.timeRow(w, "`Token()` cache hit, `RunParallel`", "TokenCacheHitParallel", 1.0, "Floor/op=token-copy-parallel")
	r.allocRow(w, "`Token()` cache hit, `RunParallel`, allocs/op", "TokenCacheHitParallel", 1)
	r.timeRow(w, "`Transport.RoundTrip` over a no-op base", "TransportRoundTrip", 0.7, "")
	r.allocRow(w, "`Transport.RoundTrip`, allocs/op", "TransportRoundTrip", 3)
	fa, an := r.bench.median("TransportRoundTrip/lib=forteauth", bytesOp), r.bench.median("TransportRoundTrip/lib=oauth2", bytesOp)
	fmt.Fprintf(w, "| `Transport.RoundTrip`, B/op | %.0f | %.0f | %s | — | — |\n", fa, an, ratio(fa, an))
	r.stormRows(w)
	r.memRow(w)

	fmt.Fprintln(w)
	fmt.Fprintln(w, "Floors, from the same runs and with the same live heap as the benchmarks above:")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| operation | ns/op | allocs/op |")
	fmt.Fprintln(w, "| --- | --- | --- |")
	for _, f := range []struct{ what, name string }{
		{"`time.Now()`", "Floor/op=time.Now"},
		{"copy a 112-byte `*oauth2.Token` to the heap", "Floor/op=token-copy"},
		{"the same copy under `RunParallel`", "Floor/op=token-copy-parallel"},
		{"`req.Clone` + `Header.Set` (request with 2 headers)", "Floor/op=clone-set-header"},
	} {
		fmt.Fprintf(w, "| %s | %s | %.0f |\n", f.what, nsString(r.bench.median(f.name, ns)), r.bench.median(f.name, allocs))
	}
	for _, l := range []struct{ what, name, floor string }{
		{"forteauth `Token()`, 1 goroutine, less one token copy", "TokenCacheHit", "Floor/op=token-copy"},
		{"forteauth `Token()`, `RunParallel`, less one token copy under `RunParallel`", "TokenCacheHitParallel", "Floor/op=token-copy-parallel"},
	} {
		fa, an, floor := l.name+"/lib=forteauth", l.name+"/lib=oauth2", l.floor
		less := r.bench.medianOf(func(run map[string]result) float64 { return run[fa].ns - run[floor].ns })
		fmt.Fprintf(w, "| %s | %s (x/oauth2: %s; ratio %.2fx) | — |\n",
			l.what, nsString(less), nsString(r.bench.median(an, ns)), r.bench.medianOf(ratioOf(fa, an, floor)))
	}
	r.writeBursts(w)
	if u := r.unscaled; u.Lib != "" {
		fmt.Fprintf(w, "\nThe x/oauth2 storm column uses `ReuseTokenSourceWithExpiry` with x/oauth2's 10 s early expiry scaled to the %v token (%v). With the unscaled default, in one storm of %v (which took %v to drain), every call fetched, one at a time under the wrapper's mutex: %d endpoint requests for %d calls, %d of them blocked > %v, the slowest %v.\n",
			u.Lifetime, dur(float64(scaledEarly(u.Lifetime))), r.unscaledD, u.Duration.Round(100*time.Millisecond), u.Requests, u.Calls, u.Blocked, u.Threshold, u.Max.Round(time.Millisecond))
	}
}

func scaledEarly(life time.Duration) time.Duration { return life / 360 }

// timeRow prints a ns/op row with its target ratio, judged on the median
// of the per-run ratios; the range of those ratios follows it. copyFloor,
// if set, is the floor benchmark to subtract when the target is missed.
func (r *report) timeRow(w io.Writer, what, name string, target float64, copyFloor string) {
	fa, an := name+"/lib=forteauth", name+"/lib=oauth2"
	q, lo, hi := r.bench.spread(ratioOf(fa, an, ""))
	met := yes(q <= target)
	if q > target && copyFloor != "" {
		met += fmt.Sprintf("; less the one token copy per call (floor below): %.2fx", r.bench.medianOf(ratioOf(fa, an, copyFloor)))
	}
	fmt.Fprintf(w, "| %s | %s | %s | %.2fx (%.2f–%.2f) | ≤ %.2fx | %s |\n",
		what, nsString(r.bench.median(fa, ns)), nsString(r.bench.median(an, ns)), q, lo, hi, target, met)
}

func (r *report) allocRow(w io.Writer, what, name string, limit float64) {
	fa, an := r.bench.median(name+"/lib=forteauth", allocs), r.bench.median(name+"/lib=oauth2", allocs)
	fmt.Fprintf(w, "| %s | %.0f | %.0f | — | ≤ %.0f | %s |\n", what, fa, an, limit, yes(fa <= limit))
}

func (r *report) stormRows(w io.Writer) {
	by := map[string][]benchenv.StormResult{}
	for _, s := range r.storms {
		by[s.Lib] = append(by[s.Lib], s)
	}
	fa, an := by["forteauth"], by["oauth2"]
	if len(fa) == 0 || len(an) == 0 {
		return
	}
	s := fa[0]
	lifetimes := s.Duration.Seconds() / s.Lifetime.Seconds()
	lifetimes = math.Round(lifetimes*10) / 10
	lo, hi := math.Floor(lifetimes/refreshLatest), lifetimes/refreshOpens+1
	req := func(l []benchenv.StormResult) float64 {
		return medianOf(l, func(s benchenv.StormResult) float64 { return float64(s.Requests) })
	}
	faReq := req(fa)
	fmt.Fprintf(w, "| storm: token endpoint requests in %.0f s (%.0f lifetimes of %v, endpoint latency %v, %d callers) | %.0f | %.0f | — | ≈ %.0f ÷ %.1f = %.0f (%.0f–%.0f with the jittered start) | %s |\n",
		s.Duration.Seconds(), lifetimes, s.Lifetime, s.Latency, s.Goroutines, faReq, req(an), lifetimes, refreshOpens, lifetimes/refreshOpens, lo, hi, yes(faReq >= lo && faReq <= hi))
	worst := func(l []benchenv.StormResult, f func(benchenv.StormResult) float64) float64 {
		m := 0.0
		for _, s := range l {
			m = max(m, f(s))
		}
		return m
	}
	perRun := func(l []benchenv.StormResult, f func(benchenv.StormResult) int64) string {
		v := make([]string, len(l))
		for i, s := range l {
			v[i] = fmt.Sprint(f(s))
		}
		return strings.Join(v, ", ")
	}
	blocked := func(s benchenv.StormResult) int64 { return s.Blocked }
	stalls := func(s benchenv.StormResult) int64 { return s.Stalls }
	met, missed, stalled := "yes", 0, int64(0)
	for _, s := range fa {
		if s.Blocked > 0 {
			missed++
			stalled += s.Stalls
		}
	}
	if missed > 0 {
		met = fmt.Sprintf("**no** in %d of %d runs; the control calls of those runs stalled %d times", missed, len(fa), stalled)
	}
	fmt.Fprintf(w, "| storm: calls blocked > %v after the first token, each run (of about %.0f calls) | %s | %s | — | 0 | %s |\n",
		s.Threshold, medianOf(fa, func(s benchenv.StormResult) float64 { return float64(s.After) }), perRun(fa, blocked), perRun(an, blocked), met)
	fmt.Fprintf(w, "| storm: control calls > %v in the same runs: a request clone sent through the no-op base after each call, which waits for nothing, so only a stall of the machine makes it slow | %s | %s | — | — | — |\n",
		s.Threshold, perRun(fa, stalls), perRun(an, stalls))
	p99 := func(s benchenv.StormResult) float64 { return float64(s.P99) }
	fmt.Fprintf(w, "| storm: p99 caller latency after the first token | %v | %v | — | — | — |\n",
		dur(medianOf(fa, p99)), dur(medianOf(an, p99)))
	mx := func(s benchenv.StormResult) float64 { return float64(s.Max) }
	fmt.Fprintf(w, "| storm: max caller latency after the first token (worst run) | %v | %v | — | — | — |\n",
		dur(worst(fa, mx)), dur(worst(an, mx)))
	errs := func(s benchenv.StormResult) float64 { return float64(s.Errors) }
	if e := worst(fa, errs) + worst(an, errs); e > 0 {
		fmt.Fprintf(w, "| storm: failed calls (worst run) | %.0f | %.0f | — | 0 | %s |\n", worst(fa, errs), worst(an, errs), yes(worst(fa, errs) == 0))
	}
}

func (r *report) memRow(w io.Writer) {
	by := map[string][]float64{}
	n := 0
	for _, m := range r.mems {
		by[m.Lib] = append(by[m.Lib], m.BytesPerSource)
		n = m.Sources
	}
	if len(by["forteauth"]) == 0 {
		return
	}
	fa, an := median(by["forteauth"]), median(by["oauth2"])
	fmt.Fprintf(w, "| heap per token source, %d sources with distinct client IDs, each holding a token | %.0f B | %.0f B | %s | — | — |\n", n, fa, an, ratio(fa, an))
}

func medianOf[T any](l []T, f func(T) float64) float64 {
	v := make([]float64, len(l))
	for i, x := range l {
		v[i] = f(x)
	}
	return median(v)
}

func yes(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

func ratio(a, b float64) string {
	if b == 0 || math.IsNaN(a) || math.IsNaN(b) {
		return "—"
	}
	return fmt.Sprintf("%.2fx", a/b)
}

func nsString(v float64) string {
	switch {
	case math.IsNaN(v):
		return "—"
	case v < 100:
		return fmt.Sprintf("%.1f ns", v)
	}
	return fmt.Sprintf("%.0f ns", v)
}

// dur rounds a duration in ns to three significant figures.
func dur(v float64) time.Duration {
	d := time.Duration(v)
	for r := time.Duration(1); ; r *= 10 {
		if d < 1000*r {
			return d.Round(r)
		}
	}
}

// writeBursts describes each burst of blocked calls in forteauth's storms,
// with the token request it overlapped, so that a reader can tell a fetch
// the machine slowed down from a stall.
func (r *report) writeBursts(w io.Writer) {
	run := 0
	for _, s := range r.storms {
		if s.Lib != "forteauth" {
			continue
		}
		run++
		if len(s.Bursts) == 0 {
			continue
		}
		fmt.Fprintf(w, "\nforteauth storm run %d, its blocked calls by burst (a token goes stale a quarter of its life after the refresh window opens, so a refresh has at least %v, an eighth of the %v lifetime, to finish before callers wait; the endpoint answers in %v):\n\n",
			run, s.Lifetime/8, s.Lifetime, s.Latency)
		for _, b := range s.Bursts {
			fetch := "no token request in flight"
			if b.Fetch > 0 {
				fetch = fmt.Sprintf("a token request in flight took %v", b.Fetch.Round(time.Millisecond))
			}
			fmt.Fprintf(w, "- %d calls at %v, within %v; %s\n", b.Calls, b.At.Round(time.Millisecond), b.Span.Round(time.Millisecond), fetch)
		}
	}
}
