package main

import (
	"flag"
	"fmt"
	"strings"
	"testing"
)

// TestUsageListsEveryFlag keeps the hand-written usage texts complete.
func TestUsageListsEveryFlag(t *testing.T) {
	tokenFS, _ := tokenFlags()
	fakeFS, _ := fakeFlags()
	for _, c := range []struct {
		fs    *flag.FlagSet
		usage string
	}{{tokenFS, tokenUsage}, {fakeFS, fakeUsage}} {
		c.fs.VisitAll(func(f *flag.Flag) {
			if !strings.Contains(c.usage, "\n  -"+f.Name+" ") {
				t.Errorf("the usage of %s does not list -%s", c.fs.Name(), f.Name)
			}
		})
	}
	for _, code := range []int{exitOK, exitOther, exitUsage, exitRejected, exitUnavailable} {
		if !strings.Contains(tokenUsage, fmt.Sprintf("\n  %d  ", code)) {
			t.Errorf("the usage does not explain exit code %d", code)
		}
	}
}
