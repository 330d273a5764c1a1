package forteauth

import (
	"context"
	"time"
)

// The refresh lock of a Store that is a Locker: one source of a fleet
// fetches a token while the others wait for it.

const (
	// leaseTTL is the life of the refresh lock. Its holder renews it every
	// leaseTTL/3 while it fetches, so that a live holder keeps it however
	// slow the endpoint is, and a dead or cut-off one loses it within
	// leaseTTL.
	leaseTTL = 3 * time.Second
	// pollFirst is how long a source that finds the lock held waits
	// before it first looks for the holder's token: about one fetch, so
	// that most waiters look once. Later waits double up to pollMax, each
	// lengthened by up to a quarter at random so that waiters spread out.
	pollFirst = 250 * time.Millisecond
	pollMax   = time.Second
)

func noRelease() {}

// lockOrWait follows a read of the Store that found seen, a token the
// caller will not use, and locked, whether its lock was held. It takes the
// lock if it is free, or else waits for the holder's token.
//
// It returns a token the Store holds other than seen, if one appeared,
// for the caller to judge, and release, to call once the caller is done.
// If release holds the lock, the caller is to fetch (unless it uses the
// token returned) and save its token first. Without a Locker, or if the
// Store fails or ctx ends, it returns no token and a release that does
// nothing: the caller fetches by itself.
func (sh *sharing) lockOrWait(ctx context.Context, sl *sealer, seen stored, locked bool) (stored, func()) {
	if sh.locker == nil {
		return stored{}, noRelease
	}
	if !locked {
		release, ok, err := sh.lock(ctx, sl.key)
		if err != nil {
			return stored{}, noRelease
		}
		if ok {
			return sh.readLocked(ctx, sl, seen, release)
		}
	}
	return sh.awaitHolder(ctx, sl, seen)
}

// readLocked reads the Store again once the caller holds the lock: the
// previous holder may have saved its token just before it let go.
func (sh *sharing) readLocked(ctx context.Context, sl *sealer, seen stored, release func()) (stored, func()) {
	st, _, err := sh.read(ctx, sl)
	if err != nil || st.same(seen) {
		return stored{}, release
	}
	return st, release
}

// awaitHolder waits for the token of the source that holds the lock. It
// reads the Store rarely, and ever more rarely, until a token other than
// seen appears; each time the holder's lease would have run out had it
// stopped renewing it, it tries the lock. It gives up, and the caller
// fetches by itself, once a live holder's fetch would be over, or when
// ctx ends.
func (sh *sharing) awaitHolder(ctx context.Context, sl *sealer, seen stored) (stored, func()) {
	start := time.Now()
	deadline, recheck := start.Add(sh.holdFor), start.Add(sh.lease)
	wait := sh.pollFirst
	for {
		next := time.Now().Add(wait + jitter(wait/4))
		wait = min(2*wait, sh.pollMax)
		tryLock := !next.Before(recheck)
		if tryLock {
			next = recheck
		}
		if next.After(deadline) {
			next = deadline
		}
		if sleep(ctx, time.Until(next)) != nil {
			return stored{}, noRelease
		}
		st, _, err := sh.read(ctx, sl)
		if err != nil || st.tok != nil && !st.same(seen) {
			return st, noRelease
		}
		if !time.Now().Before(deadline) {
			sh.log.InfoContext(ctx, "forteauth: the token store's refresh lock is held but no new token arrived; fetching directly",
				"waited", time.Since(start).Round(time.Millisecond))
			return stored{}, noRelease
		}
		if !tryLock {
			continue
		}
		release, ok, err := sh.lock(ctx, sl.key)
		if err != nil {
			return stored{}, noRelease
		}
		if !ok { // the holder is alive and renewing, or a new one took over
			recheck = time.Now().Add(sh.lease)
			continue
		}
		sh.log.InfoContext(ctx, "forteauth: the token store's refresh lock was given up without a new token; fetching",
			"waited", time.Since(start).Round(time.Millisecond))
		return sh.readLocked(ctx, sl, seen, release)
	}
}

// lock tries to take key's lock. If it does, it renews the lock while the
// caller works, and release stops the renewal and releases it.
func (sh *sharing) lock(ctx context.Context, key string) (release func(), ok bool, err error) {
	lctx, cancel := context.WithTimeout(ctx, sh.timeout())
	owner, ok, err := sh.locker.Lock(lctx, key, sh.lease)
	cancel()
	if err != nil {
		sh.fault(ctx, "lock", err)
		return nil, false, err
	}
	sh.worked(ctx, true)
	if !ok {
		return nil, false, nil
	}
	stop := sh.renew(ctx, key, owner)
	return func() {
		stop()
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sh.timeout())
		defer cancel()
		if err := sh.locker.Unlock(uctx, key, owner); err != nil {
			sh.fault(uctx, "unlock", err)
			return
		}
		sh.worked(uctx, true)
	}, true, nil
}

// renew extends the lease every third of its life until stop is called,
// and stop returns once the renewing goroutine has ended. A renewal that
// fails is tried again at the next tick, as the lease outlives two missed
// renewals; one that finds the lock lost ends the renewal. Failed
// renewals are not faults: pausing the Store now would keep the holder
// from saving the token it is fetching.
func (sh *sharing) renew(ctx context.Context, key, owner string) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(sh.lease / 3)
		defer t.Stop()
		for {
			select {
			case <-t.C:
			case <-ctx.Done():
				return
			}
			rctx, cancelRenew := context.WithTimeout(ctx, storeTimeout)
			held, err := sh.locker.Renew(rctx, key, owner, sh.lease)
			cancelRenew()
			if err == nil && !held {
				return
			}
		}
	}()
	return func() {
		cancel()
		<-done
	}
}
