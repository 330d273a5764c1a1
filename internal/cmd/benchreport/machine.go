package main

import (
	"os"
	"runtime"
	"strings"
	"time"
)

// machine describes where the figures were measured.
type machine struct {
	cpus               int
	model, goVersion   string
	date               time.Time
	loadStart, loadEnd string // /proc/loadavg's 1-minute figure
}

func describeMachine() machine {
	return machine{
		cpus:      runtime.NumCPU(),
		model:     cpuModel(),
		goVersion: runtime.Version(),
		date:      time.Now().UTC(),
		loadStart: loadAverage(),
	}
}

// cpuModel returns the first "model name" in /proc/cpuinfo.
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// loadAverage returns the 1-minute load average: other work on the machine
// makes every figure noisier, so the report says how busy it was.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	if f := strings.Fields(string(b)); len(f) > 0 {
		return f[0]
	}
	return "unknown"
}
