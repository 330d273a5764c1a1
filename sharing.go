package forteauth

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"
)

const (
	// storeTimeout bounds each Store call but a source's first, so that a
	// slow store delays a fetch by no more than this per call.
	storeTimeout = time.Second
	// storeConnectTimeout bounds the calls before the Store first answers
	// the source, which have to open a connection: long enough for a TCP
	// SYN lost to a full listen queue to be sent again (Linux does so
	// after 1 s) and the handshake to follow, so that a herd of new
	// processes does not give up on a store that is only busy accepting
	// them. Reconnecting after a fault gets storeTimeout: callers then
	// have a token, or are waiting for one already.
	storeConnectTimeout = 2500 * time.Millisecond
)

// storeBackoff is the pause after Store faults in a row for which a source
// leaves its Store alone: short enough to come back soon after a failover,
// long enough not to hammer a store that is down.
var storeBackoff = backoff{base: 100 * time.Millisecond, max: 5 * time.Second}

// sharing is a TokenSource's use of its Config.Store: every call bounded
// by a timeout, a pause after the Store fails, and the refresh lock (see
// lease.go). It reads and writes sealed tokens and says what it read; the
// TokenSource judges whether a token it read will do.
type sharing struct {
	store  Store
	locker Locker // the Store, if it is one
	log    *slog.Logger
	clock  *clock    // pauses; the lease waits use real timers
	counts *counters // the TokenSource's

	// holdFor is how long a lock holder may take: one fetch, and a Store
	// call to save its token.
	holdFor time.Duration
	// The lease protocol's durations, so that tests can shorten them.
	lease, pollFirst, pollMax time.Duration

	mu        sync.Mutex
	downUntil time.Time // the Store failed; leave it alone until then
	faults    int       // faults in a row, for the pause
	down      bool      // the failure has been logged
	downWrite bool      // the failure was a write, which only a write ends
	answered  bool      // a call has succeeded
	bad       string    // the last value that did not open, logged once
}

// newSharing returns store's use by a TokenSource that tells time by clk,
// logs to log, counts in counts, and whose fetches take at most
// fetchBudget.
func newSharing(store Store, clk *clock, log *slog.Logger, counts *counters, fetchBudget time.Duration) *sharing {
	sh := &sharing{
		store:     store,
		log:       log,
		clock:     clk,
		counts:    counts,
		holdFor:   fetchBudget + storeTimeout,
		lease:     leaseTTL,
		pollFirst: pollFirst,
		pollMax:   pollMax,
	}
	sh.locker, _ = store.(Locker)
	return sh
}

// read returns the token the Store holds for sl (the zero stored if none,
// or if the value does not open, which the next save replaces) and, if
// the Store is a Locker, whether the token's lock is held. It fails at
// once while the Store is paused after a fault.
func (sh *sharing) read(ctx context.Context, sl *sealer) (st stored, locked bool, err error) {
	if _, paused := sh.pausedUntil(); paused {
		return stored{}, false, errStorePaused
	}
	ctx, cancel := context.WithTimeout(ctx, sh.timeout())
	defer cancel()
	var v []byte
	if sh.locker != nil {
		v, locked, err = sh.locker.GetLocked(ctx, sl.key)
	} else {
		v, err = sh.store.Get(ctx, sl.key)
	}
	if err != nil {
		sh.fault(ctx, "get", err)
		return stored{}, false, err
	}
	sh.worked(ctx, false)
	if v == nil {
		return stored{}, locked, nil
	}
	st, err = sl.open(v)
	if err != nil && sh.firstSight(v) {
		sh.log.WarnContext(ctx, "forteauth: ignoring the token store's value; it will be replaced", "key", sl.key, "error", err)
	}
	return st, locked, nil
}

// save stores st under sl's key for ttl.
func (sh *sharing) save(ctx context.Context, sl *sealer, st stored, ttl time.Duration) {
	if _, paused := sh.pausedUntil(); ttl <= 0 || paused {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, sh.timeout())
	defer cancel()
	if err := sh.store.Set(ctx, sl.key, sl.seal(st), ttl); err != nil {
		sh.fault(ctx, "set", err)
		return
	}
	sh.worked(ctx, true)
}

// firstSight reports whether v differs from the last bad value seen, so
// that a bad value read again (after taking the lock, or while waiting
// for it) is logged once.
func (sh *sharing) firstSight(v []byte) bool {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.bad == string(v) {
		return false
	}
	sh.bad = string(v)
	return true
}

// errStorePaused is what a Store call gets while the Store is left alone
// after a fault.
var errStorePaused = errors.New("forteauth: the token store failed recently; not trying it again yet")

// pausedUntil returns when the pause after the last Store fault ends, and
// whether it still holds.
func (sh *sharing) pausedUntil() (time.Time, bool) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.downUntil, sh.clock.now().Before(sh.downUntil)
}

// timeout is the bound on the next Store call.
func (sh *sharing) timeout() time.Duration {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.answered {
		return storeTimeout
	}
	return storeConnectTimeout
}

// fault records a Store failure: the Store is left alone for a pause that
// grows with the faults in a row, and the first failure of an outage is
// logged.
func (sh *sharing) fault(ctx context.Context, op string, err error) {
	sh.counts.storeFaults.Add(1)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.faults++
	pause := storeBackoff.after(sh.faults)
	sh.downUntil = sh.clock.now().Add(pause)
	sh.downWrite = sh.downWrite || op != "get"
	if !sh.down {
		sh.down = true
		sh.log.WarnContext(ctx, "forteauth: token store failed; fetching tokens directly until it works again",
			"op", op, "error", err, "retry_in", pause.Round(time.Millisecond))
	}
}

// worked records a Store call that succeeded. An outage that began with a
// failed write ends only with a write that succeeds, so that a store that
// answers reads but refuses writes (a full Redis) is logged once.
func (sh *sharing) worked(ctx context.Context, write bool) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.answered = true
	if !sh.down || (sh.downWrite && !write) {
		return
	}
	sh.down, sh.downWrite, sh.faults = false, false, 0
	sh.log.InfoContext(ctx, "forteauth: token store works again")
}
