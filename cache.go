package forteauth

import (
	"math"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"
)

// state is where a cached token is in its life.
//
//	sent                 refresh opens      stale (margin)    expiry
//	 |------- fresh -------|---- refreshDue ----|---- stale ------|
//
// fresh: hand it out. refreshDue: hand it out and start one background
// refresh. stale: do not hand it out; callers wait for a new token.
type state uint8

const (
	fresh state = iota
	refreshDue
	stale
)

const (
	// oauth2Delta is the early expiry x/oauth2's ReuseTokenSource (and so
	// oauth2.NewClient) applies to every token; see entry.token.
	oauth2Delta = 10 * time.Second
	// dueRecheck is how soon a wrapper should ask again for a token in
	// its refresh window; see entry.token.
	dueRecheck = time.Second

	// maxExpiresIn is the longest lifetime, in seconds, a cached token may
	// have: it keeps expires_in*time.Second far from overflow (68 years).
	maxExpiresIn = math.MaxInt32
)

// entry is one cached token and the ages at which its state changes.
// An entry is never modified once stored; a change stores a new one.
type entry struct {
	tok      *oauth2.Token // as fetched; callers get copies
	header   string        // Authorization value, built once for Transport
	sent     time.Time     // when the request for tok was sent
	sentWall int64         // sent on the wall clock, in Unix ns; see age
	lifetime time.Duration // expires_in

	refreshAfter time.Duration // age at which a background refresh starts
	staleAfter   time.Duration // age from which tok is not handed out
	failures     int           // background refreshes failed in a row

	// accepted is nil but for a token on trial (see unauthorized), and
	// then set once the API has answered it with anything but 401. It is
	// a pointer so that the copies refreshAt makes share it.
	accepted *atomic.Bool
}

// newEntry caches tok, fetched by a request sent at sent. window and
// margin are clamped to the token's lifetime. The refresh start is spread
// at random over the first half of the time between the window opening and
// the token going stale, so that a fleet started together does not refresh
// together, and every refresh has at least that half to finish before
// anyone waits.
func newEntry(tok *oauth2.Token, sent time.Time, window, margin time.Duration) *entry {
	life := time.Duration(tok.ExpiresIn) * time.Second
	window = min(window, life/2)
	margin = min(margin, life/4)
	return &entry{
		tok:          tok,
		header:       "Bearer " + tok.AccessToken,
		sent:         sent,
		sentWall:     sent.UnixNano(),
		lifetime:     life,
		refreshAfter: life - window + jitter((window-margin)/2),
		staleAfter:   life - margin,
	}
}

// age is how long ago the token was requested. Both clocks are read and
// the larger wins: the monotonic clock is immune to wall-clock steps
// backwards, but stops while the machine is suspended, when only the wall
// clock sees that the token has aged.
func (e *entry) age(now time.Time) time.Duration {
	return max(now.Sub(e.sent), time.Duration(now.UnixNano()-e.sentWall))
}

func (e *entry) state(now time.Time) state {
	switch age := e.age(now); {
	case age >= e.staleAfter:
		return stale
	case age >= e.refreshAfter:
		return refreshDue
	}
	return fresh
}

// token returns a copy of the cached token for a caller at time now.
//
// Its Expiry is not the token's own but the time this source wants to be
// asked again, plus oauth2Delta, and never later than the real expiry.
// x/oauth2's ReuseTokenSource, which oauth2.NewClient wraps around every
// source, asks its source again only oauth2Delta before Expiry; with the
// real expiry it would keep the token through the refresh window (so no
// background refresh would start) and then make every request wait for a
// fetch. With this Expiry it comes back when the window opens, and then
// every dueRecheck until the token goes stale, so that it picks up the
// refreshed token, and a failed refresh is retried, while its token is
// still usable.
//
// Expiry is stable: calls in the same state (fresh, or one dueRecheck step
// of the refresh window) get Equal values, counted from sentWall. Only a
// wall clock set back since the fetch, by the margin or more, moves it,
// earlier by the step (see wallStep): x/oauth2 compares Expiry with
// time.Now, and an Expiry counted from sentWall alone would then fall
// after the real expiry.
func (e *entry) token(now time.Time) *oauth2.Token {
	mono, wall := now.Sub(e.sent), time.Duration(now.UnixNano()-e.sentWall)
	next := e.refreshAfter
	if age := max(mono, wall); age >= e.refreshAfter {
		steps := (age - e.refreshAfter) / dueRecheck
		next = min(e.refreshAfter+(steps+1)*dueRecheck, e.staleAfter)
	}
	t := *e.tok
	t.Expiry = e.wallTime(min(next+oauth2Delta, e.lifetime), wall-mono)
	return &t
}

// skew is the token's wall-clock age less its monotonic age at now; see
// wallStep.
func (e *entry) skew(now time.Time) time.Duration {
	return time.Duration(now.UnixNano()-e.sentWall) - now.Sub(e.sent)
}

// wallTime returns the time on the wall clock at which the token is age
// old, given its skew: counted from sentWall, and moved earlier by a step
// of the wall clock back since the token's request.
func (e *entry) wallTime(age, skew time.Duration) time.Time {
	return time.Unix(0, e.sentWall+int64(age+wallStep(skew, e.lifetime-e.staleAfter)))
}

// wallStepGrain is the grid a correction for a wall clock set back is
// rounded down onto, so that the noise of each reading (the wall and
// monotonic readings of one time.Now are taken apart, by microseconds, or
// by milliseconds on a loaded machine) does not make Expiry flicker.
const wallStepGrain = time.Second

// wallStep returns how far to move an Expiry counted from sentWall, given
// skew, the wall-clock age less the monotonic age, and the token's margin.
//
// A step back smaller than the margin needs no correction: x/oauth2 stops
// using a token oauth2Delta before its Expiry, and Expiry is at most
// oauth2Delta after the stale point, so it drops the token at least the
// margin before its real expiry; a step back takes that much off, no more.
// So noise, and a suspend or a step forward (where the wall-clock age is
// the token's age), give 0. A larger step back gives skew rounded down
// onto a grid offset by half a grain: never later than skew, and stable
// under the noise around it.
func wallStep(skew, margin time.Duration) time.Duration {
	if skew > -margin {
		return 0
	}
	const half = wallStepGrain / 2
	x := skew + half // < 0
	q := x / wallStepGrain
	if x%wallStepGrain != 0 {
		q-- // round towards minus infinity
	}
	return q*wallStepGrain - half
}

// refreshAt returns e with its next background refresh put off to age
// after, but never past the stale point.
func (e *entry) refreshAt(after time.Duration) *entry {
	e2 := *e
	e2.refreshAfter = min(after, e.staleAfter)
	return &e2
}

// validHeaderToken reports whether s is visible ASCII, which covers RFC
// 6750's b64token and rules out header injection and mangled encodings:
// what a cached access token must be, wherever it came from.
func validHeaderToken(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}
