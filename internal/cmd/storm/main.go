// Command storm measures what callers feel while short-lived tokens expire
// under load: many goroutines send requests through forteauth's Transport
// and through the x/oauth2 anchor (see internal/benchenv), against the
// fake endpoint of fortetest with short tokens and a slow token endpoint.
//
//	go run ./internal/cmd/storm -d 10s
//
// For each library it reports the requests that reached the token
// endpoint, the calls that took longer than -blocked after the first
// token had arrived, and the p99 and maximum latency of those calls. The
// base transport answers at once, so a call's latency is the time spent
// getting a token. .ci/bench runs it and puts the figures in
// docs/benchmarks.md.
package main

import (
	"context"
	"encoding/json"
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
		libs       = flag.String("lib", "forteauth,oauth2", "libraries to storm, comma-separated: forteauth, oauth2, oauth2-unscaled")
		goroutines = flag.Int("goroutines", 64, "concurrent callers")
		duration   = flag.Duration("d", 10*time.Second, "how long each library is stormed")
		lifetime   = flag.Duration("lifetime", time.Second, "token lifetime (whole seconds)")
		latency    = flag.Duration("latency", 50*time.Millisecond, "token endpoint latency")
		think      = flag.Duration("think", time.Millisecond, "pause between a caller's calls, as a request's own work")
		threshold  = flag.Duration("blocked", 10*time.Millisecond, "a call slower than this counts as blocked")
		asJSON     = flag.Bool("json", false, "print one JSON object per library instead of text")
	)
	flag.Parse()
	for _, lib := range strings.Split(*libs, ",") {
		r, err := storm(lib, *goroutines, *duration, *lifetime, *latency, *think, *threshold)
		if err != nil {
			log.Fatal(err)
		}
		if *asJSON {
			json.NewEncoder(os.Stdout).Encode(r)
			continue
		}
		fmt.Printf("%-16s endpoint requests %d in %v (%.0f lifetimes); calls %d, after the first token %d; blocked >%v: %d (control: %d); p99 %v; max %v; errors %d\n",
			r.Lib, r.Requests, r.Duration, r.Duration.Seconds()/r.Lifetime.Seconds(), r.Calls, r.After, r.Threshold, r.Blocked, r.Stalls, r.P99, r.Max, r.Errors)
		for _, b := range r.Bursts {
			fmt.Printf("%16s burst of %d blocked calls at %v, over %v; longest token request meanwhile: %v\n",
				"", b.Calls, b.At.Round(time.Millisecond), b.Span.Round(time.Millisecond), b.Fetch.Round(time.Millisecond))
		}
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
	return nil, fmt.Errorf("storm: unknown library %q", lib)
}

func storm(lib string, goroutines int, d, lifetime, latency, think, threshold time.Duration) (*benchenv.StormResult, error) {
	srv := fortetest.NewServer()
	defer srv.Close()
	srv.SetLifetime(lifetime)
	srv.SetLatency(latency)
	cfg := benchenv.Config(srv.URL, srv.ClientID, srv.ClientSecret)
	var fetches, blocked timeline
	start := time.Now()
	cfg.HTTPClient.Transport = &timedTransport{next: cfg.HTTPClient.Transport, start: start, log: &fetches}
	rt, err := transport(lib, cfg, lifetime)
	if err != nil {
		return nil, err
	}
	control := benchenv.NewNoop()

	var (
		stop      = start.Add(d)
		firstDone atomic.Int64 // when the first call succeeded, as ns since start; 0 until then
		mu        sync.Mutex
		total     = &benchenv.StormResult{Lib: lib, Goroutines: goroutines, Lifetime: lifetime, Latency: latency, Threshold: threshold}
		hist      histogram
		wg        sync.WaitGroup
	)
	for range goroutines {
		wg.Go(func() {
			var (
				r benchenv.StormResult
				h histogram
			)
			req, _ := http.NewRequest(http.MethodGet, benchenv.APIURL, nil)
			req.Header.Set("Accept", "application/json")
			for {
				begin := time.Now()
				if begin.After(stop) {
					break
				}
				resp, err := rt.RoundTrip(req)
				end := time.Now()
				r.Calls++
				if err != nil || resp.StatusCode != http.StatusOK {
					r.Errors++
				} else {
					firstDone.CompareAndSwap(0, int64(end.Sub(start)))
				}
				if f := firstDone.Load(); f != 0 && int64(begin.Sub(start)) > f {
					lat := end.Sub(begin)
					r.After++
					h.add(lat)
					r.Max = max(r.Max, lat)
					if lat > threshold {
						r.Blocked++
						blocked.add(span{begin.Sub(start), end.Sub(start)})
					}
					c := time.Now()
					clone := req.Clone(req.Context())
					clone.Header.Set("Authorization", "Bearer control")
					control.RoundTrip(clone)
					if time.Since(c) > threshold {
						r.Stalls++
					}
				}
				time.Sleep(think)
			}
			mu.Lock()
			defer mu.Unlock()
			total.Calls += r.Calls
			total.After += r.After
			total.Blocked += r.Blocked
			total.Errors += r.Errors
			total.Stalls += r.Stalls
			total.Max = max(total.Max, r.Max)
			hist.merge(&h)
		})
	}
	wg.Wait()
	total.Duration = time.Since(start)
	total.Requests = srv.Stats().TokenRequests
	total.P99 = hist.quantile(0.99)
	total.Bursts = bursts(blocked.all(), fetches.all())
	return total, nil
}
