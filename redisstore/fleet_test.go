package redisstore_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/forteauth/forteauth"
	"github.com/forteauth/forteauth/fortetest"
	"github.com/forteauth/forteauth/internal/leaktest"
	"github.com/forteauth/forteauth/redisstore"
	"github.com/redis/go-redis/v9"
)

// TestFiftySourcesInOneProcessShareOneTokenPerLifetime runs 50
// TokenSources sharing Redis, each on a client of its own as if in a
// process of its own, next to 50 that share nothing, for ten lifetimes of
// 2 s tokens (three with -short), with every source called continuously,
// on each topology: a single node, a 3-master Cluster (the token and its
// lock in one slot, read together with MGET), and a master and replica
// behind Sentinels. The sharing fleet must make at most L + 1 token requests; the
// other makes about N × L.
func TestFiftySourcesInOneProcessShareOneTokenPerLifetime(t *testing.T) {
	t.Run("single", func(t *testing.T) {
		runSourceFleet(t, func(*fortetest.Server) func() *redisstore.Store {
			return func() *redisstore.Store { return newStore(t, sharedAddr) }
		})
	})
	t.Run("cluster", func(t *testing.T) {
		addrs := clusterAddrs(t)
		runSourceFleet(t, func(*fortetest.Server) func() *redisstore.Store {
			return func() *redisstore.Store { return redisstore.New(newClusterClient(t, addrs)) }
		})
	})
	t.Run("sentinel", func(t *testing.T) {
		addrs, master := sentinelAddrs(t)
		runSourceFleet(t, func(*fortetest.Server) func() *redisstore.Store {
			return func() *redisstore.Store { return redisstore.New(newFailoverClient(t, addrs, master)) }
		})
	})
}

// fleetLifetimes is how many token lifetimes a fleet test runs for: ten,
// or three with -short, enough to see every source adopt the refreshes of
// others.
func fleetLifetimes() int {
	if testing.Short() {
		return 3
	}
	return 10
}

// runSourceFleet is TestFiftySourcesInOneProcessShareOneTokenPerLifetime
// on the Redis that setup's store function gives a client of: setup gets
// the sharing fleet's server first, to choose its client ID.
func runSourceFleet(t *testing.T, setup func(*fortetest.Server) func() *redisstore.Store) {
	const n = 50
	lifetimes := fleetLifetimes()
	shared := newServer(t, shortLifetime)
	alone := newServer(t, shortLifetime)
	newStore := setup(shared)
	logger, logs := newLogger()
	var sources []*forteauth.TokenSource
	for range n {
		sources = append(sources,
			shortConfig(shared, newStore(), logger).TokenSource(context.Background()),
			shortConfig(alone, nil, logger).TokenSource(context.Background()))
	}

	var calls, failures atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	stalls := watchStalls()
	start := time.Now()
	for _, ts := range sources {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				calls.Add(1)
				if tok, err := ts.Token(); err != nil || tok.AccessToken == "" {
					failures.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprint(err))
				}
				time.Sleep(callerPace)
			}
		})
	}
	time.Sleep(time.Duration(lifetimes) * shortLifetime) // the run
	close(stop)
	wg.Wait()
	eventually(t, 30*time.Second, "the last background refreshes", func() bool { return leaktest.Count(leaktest.BackgroundRefresh) == 0 })
	elapsed := time.Since(start)
	stall := stalls.end()

	l := lifetimesIn(elapsed, shortLifetime)
	with, without := shared.Stats().TokenRequests, alone.Stats().TokenRequests
	t.Logf("%d sources, %v (L = %d lifetimes of %v), %d Token calls: token requests %d sharing Redis (target <= L+1 = %d), %d without a store (N x L = %d); longest stall %v",
		n, elapsed.Round(time.Millisecond), l, shortLifetime, calls.Load(), with, l+1, without, n*l, stall.Round(time.Millisecond))
	if f := failures.Load(); f > 0 {
		t.Errorf("%d of %d Token calls failed; the first: %v", f, calls.Load(), firstErr.Load())
	}
	if with > l+1 {
		t.Errorf("the sources sharing Redis made %d token requests over %d lifetimes, want at most %d", with, l, l+1)
	}
	if without < n*l/2 {
		t.Errorf("the sources without a store made only %d token requests, want about N x L = %d: is the comparison broken?", without, n*l)
	}
	if logs.count(logStoreFailed) > 0 {
		t.Errorf("store faults:\n%s", logs)
	}
}

// TestEightProcessesShareOneTokenPerLifetime runs 8 OS processes (this
// test binary, re-executed in child mode) sharing one Redis for ten
// lifetimes of 2 s tokens (three with -short), each calling the fake API continuously through
// cfg.Client. The fleet must make at most L + 1 token requests, every
// child must see no error, and the API must have seen no token that was
// not live.
func TestEightProcessesShareOneTokenPerLifetime(t *testing.T) {
	const n, workers = 8, 2
	srv := newServer(t, shortLifetime)
	run := runProcessFleet(t, srv, sharedAddr, n, workers, time.Duration(fleetLifetimes())*shortLifetime)

	l := lifetimesIn(run.elapsed, shortLifetime)
	var calls int
	for i, r := range run.reports {
		calls += r.Calls
		if r.Errors > 0 || r.Non200 > 0 || r.OK == 0 {
			t.Errorf("child %d: %d calls, %d OK, %d other statuses, %d errors; first: %s", i, r.Calls, r.OK, r.Non200, r.Errors, r.FirstErr)
		}
	}
	t.Logf("%d processes, %v (L = %d lifetimes of %v), %d API calls: %d token requests (target <= L+1 = %d); API stats %+v; longest stall %v",
		n, run.elapsed.Round(time.Millisecond), l, shortLifetime, calls, run.requests, l+1, run.stats, run.stall.Round(time.Millisecond))
	if run.requests > l+1 {
		t.Errorf("the fleet made %d token requests over %d lifetimes, want at most %d", run.requests, l, l+1)
	}
	if run.stats.APIRejected > 0 || run.stats.APIExpired > 0 {
		t.Errorf("the API rejected %d requests, %d of them for an expired token: every token handed out must be live", run.stats.APIRejected, run.stats.APIExpired)
	}
}

// TestStoreIsNotOnTheHotPath counts the commands a TokenSource sends to
// Redis while its token is fresh: none.
func TestStoreIsNotOnTheHotPath(t *testing.T) {
	srv := newServer(t, time.Hour)
	rdb := newClient(t, sharedAddr)
	var commands atomic.Int64
	rdb.AddHook(countingHook{&commands})
	ts := configFor(srv, redisstore.New(rdb), nil).TokenSource(context.Background())
	if _, err := ts.Token(); err != nil {
		t.Fatal(err)
	}
	if commands.Load() == 0 {
		t.Fatal("the first Token sent no command to Redis: is the store plugged in?")
	}
	before := commands.Load()
	for range 10000 {
		if _, err := ts.Token(); err != nil {
			t.Fatal(err)
		}
	}
	if n := commands.Load() - before; n != 0 {
		t.Fatalf("10000 calls for a fresh token sent %d commands to Redis, want 0", n)
	}
}

type countingHook struct{ n *atomic.Int64 }

func (h countingHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h countingHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}
func (h countingHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// BenchmarkFleetTokenRequests counts the token requests of 8 processes
// over 5 lifetimes of 2 s tokens, sharing Redis and not. Each run takes
// 10 s of wall time whatever b.N is, so run it with -benchtime=1x:
//
//	go test -run='^$' -bench=FleetTokenRequests -benchtime=1x
func BenchmarkFleetTokenRequests(b *testing.B) {
	const n, lifetimes, workers = 8, 5, 2
	for _, shared := range []bool{true, false} {
		name := "store=none"
		if shared {
			name = "store=redis"
		}
		b.Run(name, func(b *testing.B) {
			var run processFleet
			for range b.N {
				srv := newServer(b, shortLifetime)
				addr := ""
				if shared {
					addr = sharedAddr
				}
				run = runProcessFleet(b, srv, addr, n, workers, lifetimes*shortLifetime)
				for i, r := range run.reports {
					if r.Errors > 0 || r.Non200 > 0 {
						b.Fatalf("child %d: %+v", i, r)
					}
				}
			}
			l := lifetimesIn(run.elapsed, shortLifetime)
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(float64(n), "processes")
			b.ReportMetric(run.elapsed.Seconds(), "elapsed-s")
			b.ReportMetric(float64(l), "lifetimes")
			b.ReportMetric(float64(run.requests), "token-requests")
			b.ReportMetric(float64(run.stats.APIExpired), "expired-tokens-used")
		})
	}
}

// BenchmarkTokenCacheHit measures Token while the cached token is fresh,
// with and without a Redis store, from one goroutine and from GOMAXPROCS:
// the store must add nothing.
func BenchmarkTokenCacheHit(b *testing.B) {
	for _, mode := range []string{"serial", "parallel"} {
		for _, shared := range []bool{false, true} {
			name := mode + "/store=none"
			if shared {
				name = mode + "/store=redis"
			}
			b.Run(name, func(b *testing.B) {
				srv := newServer(b, time.Hour)
				var store forteauth.Store
				if shared {
					store = newStore(b, sharedAddr)
				}
				ts := configFor(srv, store, nil).TokenSource(context.Background())
				if _, err := ts.Token(); err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				if mode == "serial" {
					for b.Loop() {
						if _, err := ts.Token(); err != nil {
							b.Fatal(err)
						}
					}
					return
				}
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := ts.Token(); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		}
	}
}
