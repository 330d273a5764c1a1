package forteauth

import (
	"math/rand/v2"
	"time"
)

// backoff is a schedule of waits after failures in a row: base after the
// first, doubling to at most max, each jittered down by up to half so that
// many clients that failed together do not try again together.
type backoff struct {
	base, max time.Duration
}

// failureBackoff spaces a TokenSource's attempts after failures: the
// background refreshes of a token that is still usable, the cool-down after
// a failed blocking fetch, and the cool-down after the API rejected a new
// token.
var failureBackoff = backoff{base: time.Second, max: 30 * time.Second}

// after returns the wait after n failures in a row (n ≥ 1).
func (b backoff) after(n int) time.Duration {
	d := b.max
	if n < 32 {
		d = min(d, b.base<<(n-1))
	}
	return d/2 + jitter(d/2)
}

// jitter returns a random duration in [0, d).
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return rand.N(d)
}
