package forteauth

import (
	"context"
	"time"
)

// clock is how a TokenSource, and the endpoint and store sharing it made,
// tell time and wait. They share one, so that a test replaces it for all of
// them at once.
type clock struct {
	now   func() time.Time
	sleep func(context.Context, time.Duration) error
}

// systemClock returns the clock of the machine.
func systemClock() clock { return clock{now: time.Now, sleep: sleep} }

// sleep waits for d, or until ctx ends, whichever is first.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
