package fortetest

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if a server or one of its held requests outlives
// the tests.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
