package forteotel_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if any goroutine outlives the tests: a background
// refresh, a shared fetch or a connection that should have ended with them.
func TestMain(m *testing.M) {
	if os.Getenv(traceChildEnv) == "1" {
		os.Exit(traceChild())
	}
	goleak.VerifyTestMain(m)
}

// traceChildEnv, set to 1, makes the test binary run traceChild instead
// of the tests.
const traceChildEnv = "FORTEOTEL_TRACE_CHILD"
