//go:build race

package main

// raceEnabled makes the tests build the command with -race too, so that
// the race detector also watches the processes they start.
const raceEnabled = true
