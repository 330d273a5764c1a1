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
// tries the Store again a few seconds later.
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
// a short, bounded time for the holder's new token and then fetch one
// themselves, so a holder that dies costs at most that wait.
type Locker interface {
	// Lock takes the lock named key for ttl unless another holder has
	// it. It returns a value identifying this holder, and ok false (with
	// no error) if the lock is held.
	Lock(ctx context.Context, key string, ttl time.Duration) (owner string, ok bool, err error)
	// Unlock releases the lock named key if owner still holds it.
	Unlock(ctx context.Context, key, owner string) error
}

const (
	// storeTimeout bounds each Store call, so that a slow store delays a
	// fetch by no more than this.
	storeTimeout = time.Second
	// storeRetry is how long a TokenSource leaves its Store alone after
	// the Store failed.
	storeRetry = 5 * time.Second
	// lockWait bounds how long a source that finds the refresh lock held
	// waits for the holder's token before fetching one itself; lockPoll is
	// how often it looks meanwhile.
	lockWait = 2 * time.Second
	lockPoll = 50 * time.Millisecond

	sealVersion = 1
)

// sharing is a TokenSource's use of its Config.Store.
type sharing struct {
	store   Store
	locker  Locker // the Store, if it implements Locker
	key     string // holds no secret; changes with the token URL, client ID and secret
	lockKey string
	aead    cipher.AEAD // seals values under a key derived from the secret
	log     *slog.Logger
	clock   *clock
	counts  *counters     // the TokenSource's
	holdFor time.Duration // how long a lock holder may take: one fetch, and a Store call

	lockWait, lockPoll time.Duration

	mu        sync.Mutex
	downUntil time.Time // the Store failed; leave it alone until then
	down      bool      // the failure has been logged
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
		store:    c.Store,
		key:      "forteauth:v1:" + hex.EncodeToString(id),
		aead:     aead,
		log:      log,
		clock:    clk,
		counts:   counts,
		holdFor:  fetchBudget + storeTimeout,
		lockWait: lockWait,
		lockPoll: lockPoll,
	}
	sh.lockKey = sh.key + ":lock"
	sh.locker, _ = c.Store.(Locker)
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
	if e, err := sh.load(ctx, ok, window, margin); e != nil || err != nil {
		return e, noop
	}
	if sh.locker == nil {
		return nil, noop
	}
	lctx, cancel := context.WithTimeout(ctx, storeTimeout)
	owner, locked, err := sh.locker.Lock(lctx, sh.lockKey, sh.holdFor)
	cancel()
	if err != nil {
		sh.fault("lock", err)
		return nil, noop
	}
	if locked {
		release := func() {
			uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
			defer cancel()
			if err := sh.locker.Unlock(uctx, sh.lockKey, owner); err != nil {
				sh.fault("unlock", err)
			}
		}
		// The previous holder may have saved its token just before we
		// took the lock.
		if e, _ := sh.load(ctx, ok, window, margin); e != nil {
			release()
			return e, noop
		}
		return nil, release
	}
	// Another source is fetching: wait a little for its token.
	t := time.NewTicker(sh.lockPoll)
	defer t.Stop()
	deadline := time.NewTimer(sh.lockWait)
	defer deadline.Stop()
	for {
		select {
		case <-t.C:
			if e, err := sh.load(ctx, ok, window, margin); e != nil || err != nil {
				return e, noop
			}
		case <-deadline.C:
			sh.log.Info("forteauth: the token store's refresh lock is held but no new token arrived; fetching directly", "waited", sh.lockWait)
			return nil, noop
		case <-ctx.Done():
			return nil, noop
		}
	}
}

// load returns the Store's token if ok accepts it. A value that does not
// open is treated as absent (the next save replaces it); a Store error is
// returned after being recorded.
func (sh *sharing) load(ctx context.Context, ok wanted, window, margin time.Duration) (*entry, error) {
	gctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	v, err := sh.store.Get(gctx, sh.key)
	if err != nil {
		sh.fault("get", err)
		return nil, err
	}
	sh.recovered()
	if v == nil {
		return nil, nil
	}
	tok, sent, err := sh.open(v)
	if err != nil {
		if sh.firstSight(v) {
			sh.log.Warn("forteauth: ignoring the token store's value; it will be replaced", "key", sh.key, "error", err)
		}
		return nil, nil
	}
	e := newEntry(tok, sent, window, margin)
	if !ok(e, sh.clock.now()) {
		return nil, nil
	}
	return e, nil
}

// save stores e for the rest of its usable life.
func (sh *sharing) save(ctx context.Context, e *entry) {
	ttl := e.staleAfter - e.age(sh.clock.now())
	if ttl <= 0 || !sh.usable() {
		return
	}
	sctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	if err := sh.store.Set(sctx, sh.key, sh.seal(e), ttl); err != nil {
		sh.fault("set", err)
	}
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
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return !sh.clock.now().Before(sh.downUntil)
}

// fault records a Store failure: the Store is left alone for storeRetry,
// and the first failure of a run is logged.
func (sh *sharing) fault(op string, err error) {
	sh.counts.storeFaults.Add(1)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.downUntil = sh.clock.now().Add(storeRetry)
	if !sh.down {
		sh.down = true
		sh.log.Warn("forteauth: token store failed; fetching tokens directly until it works again",
			"op", op, "error", err, "retry_in", storeRetry)
	}
}

func (sh *sharing) recovered() {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.down {
		sh.down = false
		sh.log.Info("forteauth: token store works again")
	}
}
