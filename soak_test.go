package forteauth

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/forteauth/forteauth/fortetest"
	"github.com/forteauth/forteauth/internal/leaktest"
	"golang.org/x/oauth2"
)

// TestSoak sends requests from 1,000 goroutines through one cfg.Client for
// 30 s (5 s with -short, as CI runs it) against the fake server, with 2 s
// tokens, 20% of token requests failing with 503 and a random token
// latency of up to 100 ms. No request may reach the API with an expired
// token, the token endpoint sees no more than a full fetch's attempts per
// token lifetime, and goroutines and heap are back where they started.
//
// Each caller pauses for a random time up to 6 s before and between
// requests, about 330 requests a second in all, so that the machine is
// busy but not saturated even under the race detector: the 0.5 s margin of
// a 2 s token is meant for a request's transit, not for a CPU queue that
// the test itself builds.
func TestSoak(t *testing.T) {
	const (
		callers   = 1000
		lifetime  = 2 * time.Second
		failRate  = 0.2
		maxPause  = 6 * time.Second
		heapSlack = 16 << 20
	)
	d := 30 * time.Second
	if testing.Short() {
		d = 5 * time.Second
	}
	srv := fortetest.NewServer()
	defer srv.Close()
	srv.SetLifetime(lifetime)
	srv.SetFailureRate(failRate, fortetest.Failure{Status: http.StatusServiceUnavailable})
	srv.SetLatencyRange(0, 100*time.Millisecond)
	// Keep a connection per caller, so that the soak does not run the
	// machine out of ports with connections closed after each request.
	tr := &http.Transport{MaxIdleConnsPerHost: callers}
	timed := &slowestTrip{base: tr}
	cfg := &Config{ClientID: srv.ClientID, ClientSecret: srv.ClientSecret, TokenURL: srv.TokenURL,
		HTTPClient: &http.Client{Transport: timed, Timeout: 30 * time.Second}}
	client := cfg.Client(context.Background())

	goroutinesBefore := runtime.NumGoroutine()
	heapBefore := liveHeap()

	var ok, failed, other, unexpected atomic.Int64
	start := time.Now()
	stop := start.Add(d)
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			pause := func() { time.Sleep(min(rand.N(maxPause), time.Until(stop))) }
			pause() // no burst of 1,000 new connections at once
			for time.Now().Before(stop) {
				resp, err := client.Get(srv.URL + "/v3/soak")
				switch {
				case err != nil:
					// A fetch that failed all its attempts with no usable
					// token cached: callers get its error, the injected
					// 503, for the cool-down. Rare (0.2^4 per fetch), and
					// allowed; any other error is not.
					failed.Add(1)
					if re := (*oauth2.RetrieveError)(nil); !errors.As(err, &re) || re.Response.StatusCode != http.StatusServiceUnavailable {
						unexpected.Add(1)
					}
				case resp.StatusCode == http.StatusOK:
					ok.Add(1)
				default:
					other.Add(1)
				}
				if err == nil {
					resp.Body.Close()
				}
				pause()
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	st := srv.Stats()
	t.Logf("%v: %d API requests (%d OK, %d failed before sending, %d other), %d token requests, %d tokens issued; slowest API round trip %v",
		elapsed.Round(time.Millisecond), st.APIRequests, ok.Load(), failed.Load(), other.Load(), st.TokenRequests, st.TokensIssued, timed.slowest())

	// A token is handed out with at least a quarter of its life, 0.5 s,
	// left: one that expired on its way to the API is the cache's fault
	// only if no round trip took that long, else the machine's, as this
	// run measured it. A token the API never issued is a fault always.
	margin := lifetime / 4
	if unknown := st.APIRejected - st.APIExpired; unknown != 0 || other.Load() != int64(st.APIRejected) {
		t.Errorf("the API rejected %d requests whose token it never issued; callers got %d answers other than 200, %d of them 401s",
			unknown, other.Load(), st.APIRejected)
	}
	if st.APIExpired != 0 && timed.slowest() < margin {
		t.Errorf("the API saw %d requests with an expired token, though no round trip took the token's margin (slowest %v, margin %v)",
			st.APIExpired, timed.slowest(), margin)
	}
	if ok.Load() == 0 || unexpected.Load() != 0 {
		t.Errorf("%d requests succeeded; %d failed with another error than the injected 503's", ok.Load(), unexpected.Load())
	}
	lifetimes := int(elapsed / lifetime)
	if limit := (lifetimes+1)*defaultRetry.attempts + 1; st.TokenRequests > limit {
		t.Errorf("%d token requests over %d lifetimes, want at most %d: one full fetch per lifetime", st.TokenRequests, lifetimes+1, limit)
	}

	// Callers are done; a background refresh may still be finishing, in a
	// retry's backoff after an injected 503. It ends with its fetch.
	leaktest.Quiesce(t)
	tr.CloseIdleConnections()
	eventually(t, "goroutines to return to where they started", func() bool {
		tr.CloseIdleConnections()
		return runtime.NumGoroutine() <= goroutinesBefore
	})
	if heapAfter := liveHeap(); heapAfter > heapBefore+heapSlack {
		t.Errorf("live heap grew from %d to %d bytes", heapBefore, heapAfter)
	}
}

// liveHeap returns the bytes of live heap objects after a full GC.
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// slowestTrip is a base RoundTripper that remembers its slowest API
// round trip, to tell an overloaded machine from a cache fault.
type slowestTrip struct {
	base http.RoundTripper
	max  atomic.Int64
}

func (s *slowestTrip) RoundTrip(r *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := s.base.RoundTrip(r)
	d := int64(time.Since(start))
	for r.URL.Path != fortetest.TokenPath {
		if m := s.max.Load(); d <= m || s.max.CompareAndSwap(m, d) {
			break
		}
	}
	return resp, err
}

func (s *slowestTrip) slowest() time.Duration {
	return time.Duration(s.max.Load()).Round(time.Millisecond)
}
