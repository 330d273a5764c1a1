package forteauth

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/oauth2"
)

// Store is a token cache shared by TokenSources, usually in different
// processes, so that a fleet asks the token endpoint for about one token
// per lifetime instead of one per process. Set Config.Store to use one;
// package github.com/forteauth/forteauth/redisstore implements it on Redis.
//
// A TokenSource consults its Store only when its own cache cannot answer:
// at start, when a refresh is due, and after Invalidate. It seals every
// value it stores with AES-256-GCM under a key derived from ClientSecret
// and bound to the key name, so a Store holds only opaque bytes, under
// keys that contain no secret; a value that does not open is ignored and
// replaced. Store errors and slowness never fail a token request: the
// TokenSource fetches from the endpoint itself, logs the fault once, and
// tries the Store again after a short pause that grows while it fails.
//
// Implementations must be safe for concurrent use.
type Store interface {
	// Get returns the value stored under key, or nil and no error if
	// there is none.
	Get(ctx context.Context, key string) ([]byte, error)
	// Set stores value under key, to be dropped after ttl.
	Set(ctx context.Context, key string, value []byte, ttl time.Duration) error
}

// Locker is implemented by a Store that can let one TokenSource at a time,
// across the fleet, refresh a token. Sources that find the lock held wait
// for the holder's new token: as long as the holder renews its lock if
// the Locker is also a Renewer, else a short, bounded time, after which
// they fetch one themselves.
type Locker interface {
	// Lock takes the lock named key for ttl unless another holder has
	// it. It returns a value identifying this holder, and ok false (with
	// no error) if the lock is held.
	Lock(ctx context.Context, key string, ttl time.Duration) (owner string, ok bool, err error)
	// Unlock releases the lock named key if owner still holds it.
	Unlock(ctx context.Context, key, owner string) error
}

const (
	// storeTimeout bounds each Store call but a source's first, so that
	// a slow store delays a fetch by no more than this per call.
	storeTimeout = time.Second
	// storeConnectTimeout bounds the calls before the Store first answers
	// the source, which have to open a connection: long enough for a TCP
	// SYN lost to a full listen queue to be sent again (Linux does so
	// after 1 s) and the handshake to follow, so that a herd of new
	// processes does not give up on a store that is only busy accepting
	// them. Reconnecting after a fault gets storeTimeout: callers then
	// have a token, or are waiting for one already.
	storeConnectTimeout = 2500 * time.Millisecond

	// leaseTTL is the life of the refresh lock taken through a Renewer;
	// its holder renews it every leaseTTL/3 while it fetches, so that a
	// live holder keeps it however slow the endpoint is, and a dead or
	// cut-off one loses it within leaseTTL.
	leaseTTL = 3 * time.Second
	// pollFirst is how long a source that finds the lock held waits
	// before it first looks for the holder's token: about one fetch, so
	// that most waiters look once. Later waits double up to pollMax, each
	// lengthened by up to a quarter at random so that waiters spread out.
	pollFirst = 250 * time.Millisecond
	pollMax   = time.Second
	// lockWait bounds the wait for the holder of a lock that cannot be
	// renewed (a Locker that is not a Renewer): such a lock lives for a
	// whole fetch budget, and a dead holder would otherwise cost that.
	lockWait = 2 * time.Second

	sealVersion = 1
)

// storeBackoff is the pause after Store faults in a row for which a source
// leaves its Store alone: short enough to come back soon after a failover,
// long enough not to hammer a store that is down.
var storeBackoff = backoff{base: 100 * time.Millisecond, max: 5 * time.Second}

// Renewer is implemented by a Locker whose locks are leases: the holder
// extends its lock while it works, so that the lock can be short-lived.
// With a Renewer, a TokenSource takes the refresh lock for a few seconds
// and renews it every third of that while it fetches, and sources that
// find it held wait for as long as the holder lives (within their fetch
// budget) instead of a fixed time; a holder that dies or is cut off from
// the store costs them at most one lease.
type Renewer interface {
	Locker
	// Renew extends the lock named key to ttl from now if owner still
	// holds it. It returns ok false (with no error) if the lock has
	// expired or is held by another.
	Renew(ctx context.Context, key, owner string, ttl time.Duration) (ok bool, err error)
}

// LockReader is implemented by a Locker that can read a value and whether
// a lock is held in one call. A source about to fetch then learns from its
// first look that another source is fetching, and waits for that token
// without first trying the lock: one Store call fewer for every waiter of
// a cold start or a refresh. A TokenSource names a token's key and its
// lock's key with one Redis Cluster hash tag, so that a Store on a Cluster
// finds both in one slot.
type LockReader interface {
	Locker
	// GetLocked returns the value stored under key, or nil if there is
	// none, and whether the lock named lockKey is held, both as of one
	// instant.
	GetLocked(ctx context.Context, key, lockKey string) (value []byte, locked bool, err error)
}

// sharing is a TokenSource's use of its Config.Store.
type sharing struct {
	store   Store
	locker  Locker     // the Store, if it implements Locker
	renewer Renewer    // the Store, if it implements Renewer
	reader  LockReader // the Store, if it implements LockReader
	key     string     // holds no secret; changes with the token URL, client ID and secret
	lockKey string
	aead    cipher.AEAD // seals values under a key derived from the secret
	log     *slog.Logger
	clock   *clock        // token ages and pauses; waits use real timers
	counts  *counters     // the TokenSource's
	holdFor time.Duration // how long a lock holder may take: one fetch, and a Store call

	// The protocol's durations, so that tests can shorten them.
	lease, pollFirst, pollMax, lockWait time.Duration

	mu        sync.Mutex
	downUntil time.Time // the Store failed; leave it alone until then
	faults    int       // faults in a row, for the pause
	down      bool      // the failure has been logged
	downWrite bool      // the failure was a write, which only a write ends
	answered  bool      // a call has succeeded
	bad       string    // the last value that did not open, logged once
}

// newSharing returns c.Store's use by a TokenSource that tells time by clk,
// logs to log, counts in counts, and whose fetches take at most fetchBudget.
func newSharing(c *Config, clk *clock, log *slog.Logger, counts *counters, fetchBudget time.Duration) (*sharing, error) {
	secret := []byte(c.ClientSecret)
	// Both derivations bind the token URL and client ID, so that one
	// secret used against two endpoints shares nothing between them.
	salt := []byte(c.TokenURL + "\x00" + c.ClientID)
	id, err := hkdf.Key(sha256.New, secret, salt, "forteauth store key v1", 16)
	if err != nil {
		return nil, err
	}
	sealKey, err := hkdf.Key(sha256.New, secret, salt, "forteauth store seal v1", 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(sealKey)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	sh := &sharing{
		store: c.Store,
		// The braces are a Redis Cluster hash tag: the token and its
		// lock hash to one slot, as a LockReader reads them together.
		key:       "forteauth:v1:{" + hex.EncodeToString(id) + "}",
		aead:      aead,
		log:       log,
		clock:     clk,
		counts:    counts,
		holdFor:   fetchBudget + storeTimeout,
		lease:     leaseTTL,
		pollFirst: pollFirst,
		pollMax:   pollMax,
		lockWait:  lockWait,
	}
	sh.lockKey = sh.key + ":lock"
	sh.locker, _ = c.Store.(Locker)
	sh.renewer, _ = c.Store.(Renewer)
	sh.reader, _ = c.Store.(LockReader)
	return sh, nil
}

// storedToken is what is sealed in the Store.
type storedToken struct {
	AccessToken string `json:"access_token"`
	ExpiresIn   int64  `json:"expires_in"`
	Sent        int64  `json:"sent"` // Unix ns, wall clock of the source that fetched it
}

// seal encrypts e's token for the Store, bound to the key name so that a
// value cannot be moved to another key.
func (sh *sharing) seal(e *entry) []byte {
	plain, _ := json.Marshal(storedToken{e.tok.AccessToken, e.tok.ExpiresIn, e.sentWall})
	out := make([]byte, 1+sh.aead.NonceSize(), 1+sh.aead.NonceSize()+len(plain)+sh.aead.Overhead())
	out[0] = sealVersion
	rand.Read(out[1:]) // never fails since Go 1.24
	return sh.aead.Seal(out, out[1:], plain, []byte(sh.key))
}

// open reverses seal. Anything that was not sealed by a holder of the same
// secret for the same key, or does not hold a valid token, is an error.
func (sh *sharing) open(v []byte) (tok *oauth2.Token, sent time.Time, err error) {
	n := sh.aead.NonceSize()
	if len(v) < 1+n || v[0] != sealVersion {
		return nil, sent, errors.New("not a sealed token")
	}
	plain, err := sh.aead.Open(nil, v[1:1+n], v[1+n:], []byte(sh.key))
	if err != nil {
		return nil, sent, errors.New("sealed value does not open: tampered with, or sealed under another secret")
	}
	var st storedToken
	if err := json.Unmarshal(plain, &st); err != nil || !validHeaderToken(st.AccessToken) || st.ExpiresIn <= 0 || st.ExpiresIn > maxExpiresIn {
		return nil, sent, errors.New("sealed value holds no valid token")
	}
	tok = &oauth2.Token{AccessToken: st.AccessToken, TokenType: "Bearer", ExpiresIn: st.ExpiresIn}
	// The Store keeps only the documented fields, so Extra has those.
	extra := map[string]any{"access_token": st.AccessToken, "token_type": "Bearer", "expires_in": float64(st.ExpiresIn)}
	return tok.WithExtra(extra), time.Unix(0, st.Sent), nil
}

// wanted says whether a token found in the Store, as entry e at time now,
// may replace the caller's; see TokenSource.canReplace.
type wanted func(e *entry, now time.Time) bool

// acquire looks for a usable token in the Store before the caller fetches
// one. It returns that token's entry, or nil and a release function to call
// once the caller has fetched (and saved) a token itself. Store faults make
// it return nil at once: the caller fetches as if there were no Store.
func (sh *sharing) acquire(ctx context.Context, ok wanted, window, margin time.Duration) (*entry, func()) {
	noop := func() {}
	if !sh.usable() {
		return nil, noop
	}
	e, held, err := sh.look(ctx, ok, window, margin)
	if e != nil || err != nil {
		return e, noop
	}
	if sh.locker == nil {
		return nil, noop
	}
	if !held {
		release, locked, err := sh.lock(ctx)
		if err != nil {
			return nil, noop
		}
		if locked {
			// The previous holder may have saved its token just before
			// we took the lock.
			if e, _ := sh.load(ctx, ok, window, margin); e != nil {
				release()
				return e, noop
			}
			return nil, release
		}
	}

	// Another source is fetching: wait for its token, looking rarely and
	// ever more rarely, and try the lock again once the holder's lease
	// would have ended had it stopped renewing it. A lock that cannot be
	// renewed lives for a whole fetch, so its holder is waited for only
	// lockWait.
	start := time.Now()
	deadline := start.Add(sh.lockWait)
	if sh.renewer != nil {
		deadline = start.Add(sh.holdFor) // a live holder's fetch ends by then
	}
	recheck := start.Add(sh.lease)
	wait := sh.pollFirst
	timer := time.NewTimer(time.Hour) // reset before each wait
	defer timer.Stop()
	for {
		next := time.Now().Add(wait + jitter(wait/4))
		wait = min(2*wait, sh.pollMax)
		lookAtLock := sh.renewer != nil && !next.Before(recheck)
		if lookAtLock {
			next = recheck
		}
		if next.After(deadline) {
			next = deadline
		}
		timer.Reset(time.Until(next))
		select {
		case <-timer.C:
		case <-ctx.Done():
			return nil, noop
		}
		if e, err := sh.load(ctx, ok, window, margin); e != nil || err != nil {
			return e, noop
		}
		if !time.Now().Before(deadline) {
			sh.log.Info("forteauth: the token store's refresh lock is held but no new token arrived; fetching directly",
				"waited", time.Since(start).Round(time.Millisecond))
			return nil, noop
		}
		if !lookAtLock {
			continue
		}
		release, locked, err := sh.lock(ctx)
		if err != nil {
			return nil, noop
		}
		if !locked { // the holder is alive and renewing, or a new one took over
			recheck = time.Now().Add(sh.lease)
			continue
		}
		// The holder gave the lock up, or its lease ran out, with no
		// token we can use: it died, was cut off, or its fetch failed.
		if e, _ := sh.load(ctx, ok, window, margin); e != nil {
			release()
			return e, noop
		}
		sh.log.Info("forteauth: the token store's refresh lock was given up without a new token; fetching",
			"waited", time.Since(start).Round(time.Millisecond))
		return nil, release
	}
}

// lock tries to take the refresh lock. If it does, it renews the lock
// while the caller works, and release stops the renewal and releases it.
func (sh *sharing) lock(ctx context.Context) (release func(), locked bool, err error) {
	ttl := sh.holdFor
	if sh.renewer != nil {
		ttl = sh.lease
	}
	lctx, cancel := context.WithTimeout(ctx, sh.timeout())
	owner, locked, err := sh.locker.Lock(lctx, sh.lockKey, ttl)
	cancel()
	if err != nil {
		sh.fault("lock", err)
		return nil, false, err
	}
	sh.worked(true)
	if !locked {
		return nil, false, nil
	}
	stop := sh.renew(ctx, owner)
	return func() {
		stop()
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sh.timeout())
		defer cancel()
		if err := sh.locker.Unlock(uctx, sh.lockKey, owner); err != nil {
			sh.fault("unlock", err)
			return
		}
		sh.worked(true)
	}, true, nil
}

// renew extends the lease every third of its life until stop is called,
// and stop returns once the renewing goroutine has ended. A renewal that
// fails is tried again at the next tick, as the lease outlives two missed
// renewals; one that finds the lock lost ends the renewal. Failed
// renewals are not faults: pausing the Store now would keep the holder
// from saving the token it is fetching.
func (sh *sharing) renew(ctx context.Context, owner string) (stop func()) {
	if sh.renewer == nil {
		return func() {}
	}
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
			held, err := sh.renewer.Renew(rctx, sh.lockKey, owner, sh.lease)
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

// load returns the Store's token if ok accepts it. A value that does not
// open is treated as absent (the next save replaces it); a Store error is
// returned after being recorded.
func (sh *sharing) load(ctx context.Context, ok wanted, window, margin time.Duration) (*entry, error) {
	e, _, err := sh.read(ctx, false, ok, window, margin)
	return e, err
}

// look is load, and also says whether the lock is held if the Store can
// tell in the same call.
func (sh *sharing) look(ctx context.Context, ok wanted, window, margin time.Duration) (e *entry, locked bool, err error) {
	return sh.read(ctx, sh.reader != nil, ok, window, margin)
}

func (sh *sharing) read(ctx context.Context, withLock bool, ok wanted, window, margin time.Duration) (e *entry, locked bool, err error) {
	gctx, cancel := context.WithTimeout(ctx, sh.timeout())
	defer cancel()
	var v []byte
	if withLock {
		v, locked, err = sh.reader.GetLocked(gctx, sh.key, sh.lockKey)
	} else {
		v, err = sh.store.Get(gctx, sh.key)
	}
	if err != nil {
		sh.fault("get", err)
		return nil, false, err
	}
	sh.worked(false)
	if v == nil {
		return nil, locked, nil
	}
	tok, sent, err := sh.open(v)
	if err != nil {
		if sh.firstSight(v) {
			sh.log.Warn("forteauth: ignoring the token store's value; it will be replaced", "key", sh.key, "error", err)
		}
		return nil, locked, nil
	}
	e = newEntry(tok, sent, window, margin)
	if !ok(e, sh.clock.now()) {
		return nil, locked, nil
	}
	return e, locked, nil
}

// save stores e for the rest of its usable life.
func (sh *sharing) save(ctx context.Context, e *entry) {
	ttl := e.staleAfter - e.age(sh.clock.now())
	if ttl <= 0 || !sh.usable() {
		return
	}
	sctx, cancel := context.WithTimeout(ctx, sh.timeout())
	defer cancel()
	if err := sh.store.Set(sctx, sh.key, sh.seal(e), ttl); err != nil {
		sh.fault("set", err)
		return
	}
	sh.worked(true)
}

// firstSight reports whether v differs from the last bad value seen, so that
// a bad value read again (after taking the lock, or while waiting for it)
// is logged once.
func (sh *sharing) firstSight(v []byte) bool {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.bad == string(v) {
		return false
	}
	sh.bad = string(v)
	return true
}

func (sh *sharing) usable() bool {
	_, paused := sh.pausedUntil()
	return !paused
}

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
func (sh *sharing) fault(op string, err error) {
	sh.counts.storeFaults.Add(1)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.faults++
	pause := storeBackoff.after(sh.faults)
	sh.downUntil = sh.clock.now().Add(pause)
	sh.downWrite = sh.downWrite || op != "get"
	if !sh.down {
		sh.down = true
		sh.log.Warn("forteauth: token store failed; fetching tokens directly until it works again",
			"op", op, "error", err, "retry_in", pause.Round(time.Millisecond))
	}
}

// worked records a Store call that succeeded. An outage that began with a
// failed write ends only with a write that succeeds, so that a store that
// answers reads but refuses writes (a full Redis) is logged once.
func (sh *sharing) worked(write bool) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.answered = true
	if !sh.down || (sh.downWrite && !write) {
		return
	}
	sh.down, sh.downWrite, sh.faults = false, false, 0
	sh.log.Info("forteauth: token store works again")
}
