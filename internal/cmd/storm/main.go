// Command storm measures what callers feel while short-lived tokens expire
// under load: many goroutines send requests through forteauth's Transport
// and through the x/oauth2 anchor (see internal/benchenv), against the
// fake endpoint of fortetest with short tokens and a slow token endpoint.
//
//	go run ./internal/cmd/storm -d 10s
//
// For each library it prints one Go benchmark line, which benchstat reads:
//
//	BenchmarkStorm/lib=forteauth 1 18 token-requests 0 blocked-calls 0 stalled-controls 590000 p99-ns 6430000 max-ns 423201 calls 0 failed-calls
//
// token-requests are the requests that reached the token endpoint;
// the other figures count the calls that started after the first token
// had arrived: blocked-calls took longer than -blocked, p99-ns and max-ns
// are their latency. The base transport answers at once, so a call's
// latency is the time spent getting a token. After every call the same
// request is cloned, given a header and sent through the no-op base: that
// control call waits for nothing, so stalled-controls, the control calls
// slower than -blocked, count the times the machine stalled the process
// (another process, the hypervisor) and a call of the library was as
// likely to be caught.
//
// With -mermaid FILE it also writes the slowest call of each 100 ms as a
// Mermaid xychart, one line per library. .ci/bench runs it and puts both
// in docs/benchmarks.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/forteauth/forteauth"
	"github.com/forteauth/forteauth/fortetest"
	"github.com/forteauth/forteauth/internal/benchenv"
	"golang.org/x/oauth2"
)

func main() {
	var (
		libs       = flag.String("lib", "forteauth,oauth2", "libraries to storm one after the other, comma-separated: forteauth, oauth2, oauth2-unscaled")
		goroutines = flag.Int("goroutines", 64, "concurrent callers")
		duration   = flag.Duration("d", 10*time.Second, "how long each library is stormed")
		lifetime   = flag.Duration("lifetime", time.Second, "token lifetime (whole seconds)")
		latency    = flag.Duration("latency", 50*time.Millisecond, "token endpoint latency")
		think      = flag.Duration("think", time.Millisecond, "pause between a caller's calls, as a request's own work")
		threshold  = flag.Duration("blocked", 10*time.Millisecond, "a call slower than this counts as blocked")
		mermaid    = flag.String("mermaid", "", "write the slowest call per 100 ms of each library to this file, as a Mermaid xychart")
	)
	flag.Parse()
	// The pkg line keeps the storm apart from the go test benchmarks when
	// benchstat reads both from one file.
	fmt.Println("pkg: github.com/forteauth/forteauth/internal/cmd/storm")
	var results []*result
	for _, lib := range strings.Split(*libs, ",") {
		r, err := storm(lib, *goroutines, *duration, *lifetime, *latency, *think, *threshold)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("BenchmarkStorm/lib=%s 1 %d token-requests %d blocked-calls %d stalled-controls %d p99-ns %d max-ns %d calls %d failed-calls\n",
			r.lib, r.requests, r.blocked, r.stalls, r.p99.Nanoseconds(), r.max.Nanoseconds(), r.after, r.errors)
		results = append(results, r)
	}
	if *mermaid != "" {
		if err := os.WriteFile(*mermaid, chart(results, *duration, *goroutines, *lifetime, *latency), 0o644); err != nil {
			log.Fatal(err)
		}
	}
}

// result is one library's storm.
type result struct {
	lib      string
	requests int           // token requests that reached the endpoint
	after    int64         // calls that started after the first token arrived
	blocked  int64         // of those, calls slower than the threshold
	stalls   int64         // control calls slower than the threshold
	errors   int64         // failed calls
	p99, max time.Duration // of the calls after the first token
	slowest  []time.Duration
}

// merge adds a caller's figures to the storm's.
func (r *result) merge(o *result) {
	r.after += o.after
	r.blocked += o.blocked
	r.errors += o.errors
	r.stalls += o.stalls
	r.max = max(r.max, o.max)
	for i, s := range o.slowest {
		r.slowest[i] = max(r.slowest[i], s)
	}
}

// transport returns the RoundTripper that lib's users would send requests
// through, over the no-op base.
func transport(lib string, cfg *forteauth.Config, lifetime time.Duration) (http.RoundTripper, error) {
	base := benchenv.NewNoop()
	switch lib {
	case "forteauth":
		return &forteauth.Transport{Source: cfg.TokenSource(context.Background()), Base: base}, nil
	case "oauth2":
		// x/oauth2's 10 s early expiry, scaled to the short token.
		return &oauth2.Transport{Source: benchenv.Anchor(cfg, benchenv.ScaledEarlyExpiry(lifetime)), Base: base}, nil
	case "oauth2-unscaled":
		return &oauth2.Transport{Source: benchenv.Anchor(cfg, 0), Base: base}, nil
	}
	return nil, fmt.Errorf("storm: unknown library %q; want forteauth, oauth2 or oauth2-unscaled", lib)
}

// storm runs goroutines callers through lib's transport for d, against a
// fake endpoint whose tokens last lifetime and take latency to arrive.
func storm(lib string, goroutines int, d, lifetime, latency, think, threshold time.Duration) (*result, error) {
	srv := fortetest.NewServer()
	defer srv.Close()
	srv.SetLifetime(lifetime)
	srv.SetLatency(latency)
	cfg := benchenv.Config(srv.URL, srv.ClientID, srv.ClientSecret)
	rt, err := transport(lib, cfg, lifetime)
	if err != nil {
		return nil, err
	}
	c := &crowd{rt: rt, noop: benchenv.NewNoop(), think: think, threshold: threshold}
	c.start = time.Now()
	c.stop = c.start.Add(d)
	total, hist := c.run(goroutines, slots(d))
	total.lib = lib
	total.requests = srv.Stats().TokenRequests
	// The histogram's quantile is its bucket's upper bound, up to 6% above
	// the true value: never report a p99 above the slowest call.
	total.p99 = min(hist.quantile(0.99), total.max)
	return total, nil
}

// crowd is what the callers of one storm share.
type crowd struct {
	rt               http.RoundTripper // the library's transport
	noop             http.RoundTripper // a base like the library's, for the control calls
	start, stop      time.Time
	think, threshold time.Duration
	firstDone        atomic.Int64 // when the first call succeeded, as ns since start; 0 until then
}

// run runs goroutines callers until the storm ends and returns their
// figures together.
func (c *crowd) run(goroutines, slots int) (*result, *histogram) {
	var (
		mu    sync.Mutex
		total = &result{slowest: make([]time.Duration, slots)}
		hist  histogram
		wg    sync.WaitGroup
	)
	for range goroutines {
		wg.Go(func() {
			// h stays on this goroutine's stack: 8 KiB of live heap per
			// caller would make the collector run more often, and its
			// pauses would then reach the p99.
			var (
				r = result{slowest: make([]time.Duration, slots)}
				h histogram
			)
			c.caller(&r, &h)
			mu.Lock()
			defer mu.Unlock()
			total.merge(&r)
			hist.merge(&h)
		})
	}
	wg.Wait()
	return total, &hist
}

// caller makes calls until the storm ends, and counts them in r and h.
func (c *crowd) caller(r *result, h *histogram) {
	req, _ := http.NewRequest(http.MethodGet, benchenv.APIURL, nil)
	req.Header.Set("Accept", "application/json")
	for {
		begin := time.Now()
		if begin.After(c.stop) {
			return
		}
		resp, err := c.rt.RoundTrip(req)
		end := time.Now()
		lat := end.Sub(begin)
		i := min(int(begin.Sub(c.start)/slot), len(r.slowest)-1)
		r.slowest[i] = max(r.slowest[i], lat)
		if err != nil || resp.StatusCode != http.StatusOK {
			r.errors++
		} else {
			c.firstDone.CompareAndSwap(0, int64(end.Sub(c.start)))
		}
		if f := c.firstDone.Load(); f != 0 && int64(begin.Sub(c.start)) > f {
			r.after++
			h.add(lat)
			r.max = max(r.max, lat)
			if lat > c.threshold {
				r.blocked++
			}
			if c.control(req) > c.threshold {
				r.stalls++
			}
		}
		time.Sleep(c.think)
	}
}

// control sends req through the no-op base as an authenticating transport
// would, cloned and with an Authorization header, and returns how long that
// took: nothing in it waits, so a slow control call is a stall of the process.
func (c *crowd) control(req *http.Request) time.Duration {
	begin := time.Now()
	clone := req.Clone(req.Context())
	clone.Header.Set("Authorization", "Bearer control")
	c.noop.RoundTrip(clone)
	return time.Since(begin)
}
