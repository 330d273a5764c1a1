package forteauth

import (
	"context"
	"time"
)

// Store is a token cache shared by TokenSources, usually in different
// processes, so that a fleet asks the token endpoint for about one token
// per lifetime instead of one per process. Set Config.Store to use one;
// package github.com/forteauth/forteauth/redisstore implements it on
// Redis.
//
// A TokenSource consults its Store only when its own cache cannot answer:
// at start, when a refresh is due, and after a token was rejected. A
// cached token never costs a Store call.
//
// What a Store holds is opaque: under a key that holds no secret (it is
// derived from TokenURL, ClientID and ClientSecret, so it changes with
// them), a value sealed with AES-256-GCM under a key derived from
// ClientSecret and bound to the key name. A source that cannot open a
// value, because it holds another secret or the value was tampered with,
// ignores it and replaces it. Values are stored for the usable life of
// their token.
//
// A Store never fails a token request, and never delays one by more than
// a second per call (2.5 s for a source's first, which may have to
// connect): when it fails or is slow the source fetches from the endpoint
// itself, logs the fault once per outage, and leaves the Store alone for
// a pause that starts at 100 ms and grows to 5 s while it keeps failing.
//
// A Store that is also a Locker lets one source of the fleet fetch while
// the others wait for its token. Without one, sources that find no token
// each fetch their own and store it.
//
// Implementations must be safe for concurrent use, and return when the
// context of a call ends.
type Store interface {
	// Get returns the value stored under key, or nil and no error if
	// there is none.
	Get(ctx context.Context, key string) ([]byte, error)
	// Set stores value under key, to be dropped after ttl.
	Set(ctx context.Context, key string, value []byte, ttl time.Duration) error
}

// Locker is implemented by a Store that keeps, beside each key's value, a
// lock for it, which one TokenSource at a time holds while it fetches the
// token for that key. The lock is a lease: its holder takes it for 3 s and
// renews it every second while it fetches, however slow the endpoint; a
// holder that dies or is cut off loses it within a lease. Sources that
// find the lock held wait for the holder's token, reading the Store a few
// times with growing pauses (250 ms, then doubling up to 1 s), and take
// the lock themselves if the lease runs out with no token stored.
//
// How the lock is named and kept is the Store's choice; it is a key of
// its own, not one given to Set.
type Locker interface {
	// GetLocked returns the value stored under key, as Get does, and
	// whether key's lock is held, both as of one instant: a source about
	// to fetch learns from one call that another is fetching already.
	GetLocked(ctx context.Context, key string) (value []byte, locked bool, err error)
	// Lock takes key's lock for ttl unless it is held. It returns a value
	// identifying this holder, and ok false (with no error) if another
	// holds the lock.
	Lock(ctx context.Context, key string, ttl time.Duration) (owner string, ok bool, err error)
	// Renew extends key's lock to ttl from now if owner still holds it.
	// It returns ok false (with no error) if the lock has expired or is
	// held by another.
	Renew(ctx context.Context, key, owner string, ttl time.Duration) (ok bool, err error)
	// Unlock releases key's lock if owner still holds it.
	Unlock(ctx context.Context, key, owner string) error
}
