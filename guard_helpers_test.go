package forteauth

import "time"

// guardState returns the rounds of ts's 401 flood guard and the end of
// its cool-down. It is the only test code that reads the guard itself.
func guardState(ts *TokenSource) (rounds int, until time.Time) {
	g := &ts.unauthorized
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.rounds, g.until
}
