package leaktest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/singleflight"
)

// parkedInLeaktestTest blocks until release is closed, under a name that
// only the goroutines of this test have in their stacks.
func parkedInLeaktestTest(release <-chan struct{}) { <-release }

func TestCountSeesExactlyTheGoroutinesInAFunction(t *testing.T) {
	const fn = "leaktest.parkedInLeaktestTest"
	if n := Count(fn); n != 0 {
		t.Fatalf("Count = %d before any goroutine started, want 0", n)
	}
	release := make(chan struct{})
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() { parkedInLeaktestTest(release) })
	}
	deadline := time.Now().Add(10 * time.Second)
	for Count(fn) != 3 {
		if time.Now().After(deadline) {
			t.Fatalf("Count = %d with 3 goroutines parked, want 3", Count(fn))
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	if n := Count(fn); n != 0 {
		t.Fatalf("Count = %d after the goroutines returned, want 0", n)
	}
}

func TestQuiesceWaitsForASharedFetch(t *testing.T) {
	var g singleflight.Group
	release := make(chan struct{})
	done := g.DoChan("k", func() (any, error) { <-release; return nil, nil })
	if n := Count(SharedFetch); n != 1 {
		t.Fatalf("Count(SharedFetch) = %d with one fetch in flight, want 1", n)
	}
	go func() {
		time.Sleep(50 * time.Millisecond) // Quiesce must be waiting by then
		close(release)
	}()
	Quiesce(t)
	if n := Count(SharedFetch); n != 0 {
		t.Fatalf("Quiesce returned with %d shared fetches running", n)
	}
	<-done
}

// failRecorder is a testing.TB whose Fatalf records the failure instead
// of ending the test.
type failRecorder struct {
	testing.TB
	failed string
}

func (r *failRecorder) Fatalf(format string, args ...any) { r.failed = fmt.Sprintf(format, args...) }

func TestQuiesceFailsWhileWorkKeepsRunning(t *testing.T) {
	var g singleflight.Group
	release := make(chan struct{})
	done := g.DoChan("k", func() (any, error) { <-release; return nil, nil })
	defer func() { close(release); <-done }()

	r := &failRecorder{TB: t}
	waitQuiet(r, 20*time.Millisecond)
	if r.failed == "" {
		t.Fatal("waitQuiet returned quietly while a shared fetch was running")
	}
	t.Log(r.failed)
}
