package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/forteauth/forteauth/internal/benchenv"
)

// run runs name with args and extra environment, returning its standard
// output; its standard error goes to benchreport's.
func run(name string, env []string, args ...string) ([]byte, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("benchreport: %s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return out, nil
}

// benchLine matches a go test -benchmem result line, such as
// "BenchmarkTokenCacheHit/lib=forteauth-2   2514632   522.3 ns/op   112 B/op   1 allocs/op".
var benchLine = regexp.MustCompile(`^Benchmark(\S+?)(?:-\d+)?\s+\d+\s+([\d.]+) ns/op\s+(\d+) B/op\s+(\d+) allocs/op`)

// result is one benchmark's figures from one run.
type result struct{ ns, bytes, allocs float64 }

// parseBench returns the results in go test output, by benchmark name
// without the "Benchmark" prefix and the GOMAXPROCS suffix.
func parseBench(out []byte) map[string]result {
	m := map[string]result{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := benchLine.FindStringSubmatch(sc.Text())
		if f == nil {
			continue
		}
		ns, _ := strconv.ParseFloat(f[2], 64)
		b, _ := strconv.ParseFloat(f[3], 64)
		a, _ := strconv.ParseFloat(f[4], 64)
		m[f[1]] = result{ns, b, a}
	}
	return m
}

func runStorm(bin, lib string, d time.Duration) (benchenv.StormResult, error) {
	var r benchenv.StormResult
	out, err := run(bin, nil, "-json", "-lib", lib, "-d", d.String())
	if err == nil {
		err = json.Unmarshal(out, &r)
	}
	return r, err
}

func runMem(bin, lib string, n int) (benchenv.MemResult, error) {
	var r benchenv.MemResult
	out, err := run(bin, nil, "-json", "-lib", lib, "-n", strconv.Itoa(n))
	if err == nil {
		err = json.Unmarshal(out, &r)
	}
	return r, err
}
