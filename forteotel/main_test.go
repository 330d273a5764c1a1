package forteotel_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if any goroutine outlives the tests: a background
// refresh, a shared fetch or a connection that should have ended with them.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
