package redisstore_test

import (
	"context"
	"regexp"
	"testing"
	"time"

	"github.com/forteauth/forteauth"
	"github.com/forteauth/forteauth/fortetest"
	"github.com/forteauth/forteauth/redisstore"
	"github.com/redis/go-redis/v9"
	"golang.org/x/oauth2"
)

// Issue 10's targets.
const (
	// failoverExtraRequests: a failover costs the whole fleet at most this
	// many token requests more than perfect sharing (L + 1).
	failoverExtraRequests = 3
	// No caller waits on the store longer than storeTimeout, the core's
	// bound on one Store call; storeWaitSlack is the least time a Token
	// call is allowed besides, for a fetch from the fake endpoint and the
	// scheduler of two shared cores under -race. A test with a phase
	// before its fault allows the longest call it measured then, if that
	// is longer: the machine's own speed that day.
	storeTimeout   = time.Second
	storeWaitSlack = 500 * time.Millisecond
)

// checkFleetAfterFault asserts, for a run of n sources on tokens of
// lifetime that made requests token requests: no Token error, no more
// requests than perfect sharing (L + 1) and extra, and no Token call
// waiting on the store longer than the store timeout and slack.
func checkFleetAfterFault(t testing.TB, run *caller, lifetime time.Duration, n, requests, extra int, slack time.Duration) {
	t.Helper()
	run.check(t)
	l := lifetimesIn(run.elapsed, lifetime)
	longest := run.longestCall()
	t.Logf("%d sources, %v (L = %d lifetimes of %v), %d Token calls: %d token requests (perfect sharing: L+1 = %d; issue 10's target for a failover: L+1+%d = %d; no store: about N x (L+1) = %d); longest Token call %v",
		n, run.elapsed.Round(time.Millisecond), l, lifetime, run.calls.Load(), requests, l+1,
		failoverExtraRequests, l+1+failoverExtraRequests, n*(l+1), longest.Round(time.Millisecond))
	if requests > l+1+extra {
		t.Errorf("%d token requests, want at most L+1+%d = %d", requests, extra, l+1+extra)
	}
	if longest > storeTimeout+slack {
		t.Errorf("a Token call took %v: no caller may wait on the store longer than the store timeout (%v, + %v slack)",
			longest.Round(time.Millisecond), storeTimeout, slack.Round(time.Millisecond))
	}
}

// sourceMaker returns a new source of a test's fleet, and its Config.
type sourceMaker func() (*forteauth.Config, *forteauth.TokenSource)

// fleetOf returns n sources from newSource, and the Config of the last
// (they differ only in their Store's client).
func fleetOf(n int, newSource sourceMaker) (*forteauth.Config, []*forteauth.TokenSource) {
	var cfg *forteauth.Config
	var sources []*forteauth.TokenSource
	for range n {
		c, ts := newSource()
		cfg, sources = c, append(sources, ts)
	}
	return cfg, sources
}

// checkSharingResumed checks that, once Redis is back, a member of the
// fleet that fetches a token stores it, and a new source adopts it without
// a request. The member may still be leaving a failed store alone (the
// core's storeRetryMax), so it tries until its token is stored.
func checkSharingResumed(t testing.TB, srv *fortetest.Server, admin redis.Cmdable, cfg *forteauth.Config, member *forteauth.TokenSource, newSource sourceMaker) {
	t.Helper()
	var tok *oauth2.Token
	eventually(t, 3*storeRetryMax, "a member's new token in Redis", func() bool {
		member.Invalidate(nil)
		var err error
		if tok, err = member.Token(); err != nil {
			t.Fatal(err)
		}
		stored, err := storedAccessToken(t, admin, cfg)
		if err == nil && stored == tok.AccessToken {
			return true
		}
		time.Sleep(100 * time.Millisecond)
		return false
	})
	before := srv.Stats().TokenRequests
	_, fresh := newSource()
	got, err := fresh.Token()
	if err != nil {
		t.Fatal(err)
	}
	if n := srv.Stats().TokenRequests - before; n != 0 || got.AccessToken != tok.AccessToken {
		t.Errorf("a new source made %d token requests after the fault, want 0 and the stored token", n)
	}
}

// TestSentinelMasterKilledMidRun kills the master under a busy fleet of 10
// sources that reach Redis through Sentinel (redis.NewFailoverClient), with
// 2 s tokens. No Token call may fail while the Sentinels promote the
// replica, and once they have, the fleet shares through the new master.
//
// No Token call may wait on the store longer than the store timeout. The
// tokens are shorter than any failover, so while no Redis answers every
// source's token goes stale and each fetches its own, once a lifetime;
// after the promotion a source may still leave the store alone for up to
// storeRetryMax. So the bound on token requests is derived from the
// failover this run measured: perfect sharing (L + 1) and, for each
// source, one request per lifetime of the failover and the pause after it.
// (Issue 10's 3 more than perfect sharing is met by
// TestSentinelMasterKilledWhileAFetchHoldsTheLock, and by tokens that
// outlive the failover: TestSentinelFailoverWithinTheRefreshWindowCostsNoRequest.)
func TestSentinelMasterKilledMidRun(t *testing.T) {
	t.Parallel()
	s := privateSentinel(t)
	srv := newServer(t, shortLifetime)
	const n = 10
	logger, logs := newLogger()
	newSource := func() (*forteauth.Config, *forteauth.TokenSource) {
		cfg := shortConfig(srv, redisstore.New(newFailoverClient(t, s.sentinelAddrs(), sentinelMaster)), logger)
		return cfg, cfg.TokenSource(context.Background())
	}
	cfg, sources := fleetOf(n, newSource)

	run := callContinuously(t, callerPace, sources...)
	time.Sleep(shortLifetime) // one lifetime with the master up
	slack := max(storeWaitSlack, run.longestCall())
	s.master.stop() // as a crash would
	promoted := s.waitPromoted(t, time.Now())
	unshared := lifetimesIn(promoted+storeRetryMax, shortLifetime)
	t.Logf("the Sentinels promoted the replica %v after the master was killed: up to %d lifetimes without sharing", promoted.Round(time.Millisecond), unshared)
	time.Sleep(max(0, 4*shortLifetime-promoted)) // four lifetimes after the kill
	run.end()

	faults := logs.count(logStoreFailed)
	t.Logf("%d sources logged a store fault", faults)
	if faults == 0 {
		t.Errorf("no source logged a store fault: the fleet never met the dead master, so this test tested nothing")
	}
	checkFleetAfterFault(t, run, shortLifetime, n, srv.Stats().TokenRequests, n*unshared, slack)
	checkSharingResumed(t, srv, newClient(t, s.replica.addr), cfg, sources[0], newSource)
}

// Tokens that outlive a Sentinel failover, for
// TestSentinelFailoverWithinTheRefreshWindowCostsNoRequest. The core
// clamps RefreshWindow to half the lifetime, hence 20 s for a 10 s window.
// A source starts its background refresh at age lifetime − RefreshWindow +
// random[0, (RefreshWindow − ExpiryMargin)/2), 10–14.75 s, and its token
// goes stale at lifetime − ExpiryMargin, 19.5 s. After a store fault the
// source leaves the store alone for a pause of at most 5 s (storeRetryMax),
// and fetches by itself only if its token would go stale first: the 9.5 s
// from the window's opening to the stale point leave room for the failover
// (about 3 s) and a whole 5 s pause after it.
const (
	longLifetime = 20 * time.Second
	longWindow   = 10 * time.Second
	longMargin   = 500 * time.Millisecond
	// killEarly is how long before the fleet's first background refresh
	// the master is killed: late enough that the outage covers as many
	// of the refreshes, spread over 4.75 s, as it can, early enough that
	// the first one meets it whatever the scheduler does.
	killEarly = 400 * time.Millisecond
)

// TestSentinelFailoverWithinTheRefreshWindowCostsNoRequest kills the
// master under a busy fleet of 10 sources on Sentinel clients just before
// the first of them starts to refresh their shared token, with tokens that
// outlive the failover. A source whose background refresh meets the dead
// master keeps its still-usable token and tries the store again after its
// pause, instead of fetching one of its own; the first source to reach
// the new master refreshes for the fleet, and the others take its token
// from there. So the failover costs no token request: from the kill until
// every source has replaced the first token, the fleet makes exactly one,
// the refresh it would have made without the fault. With tokens shorter
// than the failover (TestSentinelMasterKilledMidRun) every source fetches
// its own.
//
// These tokens are refreshed from half their life on, so a fleet makes up
// to two requests a lifetime without any fault, and issue 10's L+1+3,
// asserted over the whole run by checkFleetAfterFault, is loose here: the
// count around the failover is the one that shows it cost nothing.
func TestSentinelFailoverWithinTheRefreshWindowCostsNoRequest(t *testing.T) {
	t.Parallel()
	s := privateSentinel(t)
	srv := newServer(t, longLifetime)
	const n = 10
	logger, logs := newLogger()
	newSource := func() (*forteauth.Config, *forteauth.TokenSource) {
		cfg := configFor(srv, redisstore.New(newFailoverClient(t, s.sentinelAddrs(), sentinelMaster)), logger)
		cfg.RefreshWindow, cfg.ExpiryMargin = longWindow, longMargin
		return cfg, cfg.TokenSource(context.Background())
	}
	cfg, sources := fleetOf(n, newSource)
	fetches := func() (counts []int64) {
		for _, ts := range sources {
			counts = append(counts, ts.Stats().Fetches)
		}
		return counts
	}

	run := callContinuously(t, callerPace, sources...)
	eventually(t, topologyTimeout, "a token in every source", func() bool {
		for _, ts := range sources {
			if ts.Stats().Expiry.IsZero() {
				return false
			}
		}
		return true
	})
	// Stats.Expiry is the cached token's request time plus its lifetime,
	// and RefreshAt when its background refresh is due, jittered apart
	// from one source to the next.
	expiry, firstRefresh := sources[0].Stats().Expiry, sources[0].Stats().RefreshAt
	for i, ts := range sources {
		st := ts.Stats()
		if !st.Expiry.Equal(expiry) {
			t.Fatalf("source %d's first token expires at %v, source 0's at %v: the fleet did not start on one shared token", i, st.Expiry, expiry)
		}
		if st.RefreshAt.Before(firstRefresh) {
			firstRefresh = st.RefreshAt
		}
	}
	sent := expiry.Add(-longLifetime)
	time.Sleep(time.Until(firstRefresh.Add(-killEarly)))
	before, fetchedBefore := srv.Stats().TokenRequests, fetches()
	slack := max(storeWaitSlack, run.longestCall())
	s.master.stop() // as a crash would
	killed := time.Now()
	if before != 1 {
		t.Fatalf("%d token requests before the kill at token age %v, want 1: the fleet refreshed before the master was killed, so the failover meets no refresh",
			before, killed.Sub(sent).Round(time.Millisecond))
	}
	promoted := s.waitPromoted(t, killed)
	t.Logf("the master was killed at token age %v, %v before the fleet's first refresh; the Sentinels promoted the replica %v later",
		killed.Sub(sent).Round(time.Millisecond), firstRefresh.Sub(killed).Round(time.Millisecond), promoted.Round(time.Millisecond))

	// Every source replaces the first token by the time it goes stale.
	// The fleet's next refresh is due at least 10 s (lifetime − window)
	// after the one the failover delayed, which came after the kill: not
	// before then, so every request counted here is that refresh or one
	// the failover cost.
	eventually(t, longLifetime, "every source to replace the first token", func() bool {
		for _, ts := range sources {
			if ts.Stats().Expiry.Equal(expiry) {
				return false
			}
		}
		return true
	})
	during := srv.Stats().TokenRequests - before
	var fetchedDuring []int
	for i, f := range fetches() {
		if f > fetchedBefore[i] {
			fetchedDuring = append(fetchedDuring, i)
		}
	}
	// The fleet shares again at the latest storeRetryMax after the
	// promotion. If that is after the token goes stale, the failover this
	// run measured outlasted the token, and each source may fetch its own.
	want, extra := 1, failoverExtraRequests
	if stale := expiry.Add(-longMargin); killed.Add(promoted + storeRetryMax).After(stale) {
		want, extra = 1+n, n
		t.Logf("the failover (%v) and the store pause after it outlast the token: each source may fetch its own", promoted.Round(time.Millisecond))
	}
	t.Logf("from the kill until every source had replaced the first token (at token age %v): %d token request(s), want %d at most; sources that fetched: %v",
		time.Since(sent).Round(time.Millisecond), during, want, fetchedDuring)
	if during != 1 && (want == 1 || during > want) {
		t.Errorf("%d token requests from the kill until every source had replaced the first token, want %d: the fleet's refresh, and none for the failover", during, want)
	}

	// The fleet's next refresh, through the new master, comes within
	// 14.75 s of the delayed one, so by token age 34.25 s; the run ends
	// after it, and far enough from 2 lifetimes that L does not depend on
	// the scheduler.
	time.Sleep(time.Until(sent.Add(7 * longLifetime / 4)))
	run.end()

	faults := logs.count(logStoreFailed)
	var storeFaults int64
	for _, ts := range sources {
		storeFaults += ts.Stats().StoreFaults
	}
	t.Logf("%d sources logged a store fault (%d failed Store calls in all)", faults, storeFaults)
	if faults == 0 {
		t.Errorf("no source logged a store fault: no refresh met the dead master, so this test tested nothing")
	}
	checkFleetAfterFault(t, run, longLifetime, n, srv.Stats().TokenRequests, extra, slack)
	checkSharingResumed(t, srv, newClient(t, s.replica.addr), cfg, sources[0], newSource)
}

// TestSentinelMasterKilledWhileAFetchHoldsTheLock: a source takes the
// refresh lock and its token request is held while the lock reaches the
// replica; then the master is killed and the request answered, so that
// the holder's store and unlock go to a dead master, and the replica is
// promoted with the lock. A fleet of 10 sources that starts on the new
// master must see no Token error and make no more token requests than
// without a store.
//
// Issue 10's targets, asserted by checkFleetAfterFault: at most 3 token requests more
// than perfect sharing, and no Token call waiting on the store (here: on
// the dead holder's lock) longer than the store timeout.
func TestSentinelMasterKilledWhileAFetchHoldsTheLock(t *testing.T) {
	t.Parallel()
	s := privateSentinel(t)
	srv := newServer(t, shortLifetime)
	ctx := context.Background()
	newSource := func() (*forteauth.Config, *forteauth.TokenSource) {
		cfg := shortConfig(srv, redisstore.New(newFailoverClient(t, s.sentinelAddrs(), sentinelMaster)), nil)
		return cfg, cfg.TokenSource(ctx)
	}
	cfg, holder := newSource()
	replica := newClient(t, s.replica.addr)

	release := srv.Hold()
	defer release()
	done := make(chan error, 1)
	go func() {
		_, err := holder.Token()
		done <- err
	}()
	eventually(t, 30*time.Second, "the holder's token request", func() bool { return srv.Stats().TokenRequests == 1 })
	eventually(t, 10*time.Second, "the refresh lock on the replica", func() bool {
		return regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(replica.Get(ctx, lockKey(cfg)).Val())
	})
	s.master.stop()
	killed := time.Now()
	release()
	if err := <-done; err != nil {
		t.Fatalf("the holder's Token, its store calls going to a dead master: %v", err)
	}
	promoted := s.waitPromoted(t, killed)
	t.Logf("the Sentinels promoted the replica %v after the master was killed; the lock there has %v left",
		promoted.Round(time.Millisecond), replica.PTTL(ctx, lockKey(cfg)).Val().Round(time.Millisecond))

	const n = 10
	_, others := fleetOf(n-1, newSource)
	sources := append([]*forteauth.TokenSource{holder}, others...)
	before := srv.Stats().TokenRequests
	run := callContinuously(t, callerPace, sources...)
	time.Sleep(3 * shortLifetime)
	run.end()

	checkFleetAfterFault(t, run, shortLifetime, n, srv.Stats().TokenRequests-before, failoverExtraRequests, storeWaitSlack)
	checkSharingResumed(t, srv, replica, cfg, holder, newSource)
}

// TestClusterNodeRestartedMidRun kills the Cluster master that holds the
// token's key under a busy fleet of 6 sources on Cluster clients, and
// starts it again a lifetime later, empty, on its port and with its slots.
// No Token call may fail, token requests stay below those of a fleet
// without a store, and once the Cluster is whole again the fleet shares
// through it.
//
// Issue 10's target, asserted by checkFleetAfterFault: no Token call waits on the
// store longer than the store timeout.
func TestClusterNodeRestartedMidRun(t *testing.T) {
	t.Parallel()
	c := privateCluster(t)
	srv := newServer(t, shortLifetime)
	ctx := context.Background()
	admin := newClusterClient(t, c.addrs())
	newSource := func() (*forteauth.Config, *forteauth.TokenSource) {
		cfg := shortConfig(srv, redisstore.New(newClusterClient(t, c.addrs())), nil)
		return cfg, cfg.TokenSource(ctx)
	}
	const n = 6
	cfg, sources := fleetOf(n, newSource)
	m, err := admin.MasterForKey(ctx, storeKey(cfg))
	if err != nil {
		t.Fatal(err)
	}
	node := c.node(m.Options().Addr)
	if node == nil {
		t.Fatalf("the token key's master %s is not one of the Cluster's nodes %v", m.Options().Addr, c.addrs())
	}

	run := callContinuously(t, callerPace, sources...)
	time.Sleep(shortLifetime) // one lifetime with the Cluster whole
	slack := max(storeWaitSlack, run.longestCall())
	node.stop()
	time.Sleep(shortLifetime) // one lifetime without the token key's master
	node.restart(t)
	wctx, cancel := context.WithTimeout(ctx, topologyTimeout)
	defer cancel()
	if err := c.waitOK(wctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * shortLifetime)
	run.end()

	checkFleetAfterFault(t, run, shortLifetime, n, srv.Stats().TokenRequests, (n-1)*(lifetimesIn(run.elapsed, shortLifetime)+1), slack) // no more than without a store
	checkSharingResumed(t, srv, admin, cfg, sources[0], newSource)
}
