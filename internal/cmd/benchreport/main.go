// Command benchreport runs every forteauth-versus-x/oauth2 measurement and
// prints the markdown table kept in docs/benchmarks.md: the go test
// benchmarks of bench_test.go, the storm (internal/cmd/storm) and the
// memory per source (internal/cmd/sourcemem). Run it from the module root,
// as .ci/bench does:
//
//	.ci/bench              # the full run, several minutes
//	.ci/bench -quick       # one short pass, to check that it all works
//
// Each measurement is repeated and the median taken. The two libraries
// alternate which goes first from one repetition to the next, so that
// neither always meets a warmer or a colder machine.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// options are the command's flags.
type options struct {
	count     int           // go test benchmark repetitions
	benchtime string        // -test.benchtime of each benchmark
	storms    int           // storm repetitions per library
	stormD    time.Duration // length of each storm
	mems      int           // memory repetitions per library
	sources   int           // sources held per memory run
}

func main() {
	var o options
	flag.IntVar(&o.count, "count", 10, "repetitions of the go test benchmarks")
	flag.StringVar(&o.benchtime, "benchtime", "1s", "go test -benchtime of each benchmark")
	flag.IntVar(&o.storms, "storms", 3, "storm repetitions per library")
	flag.DurationVar(&o.stormD, "storm-d", 10*time.Second, "length of each storm")
	flag.IntVar(&o.mems, "mems", 3, "memory repetitions per library")
	flag.IntVar(&o.sources, "n", 10000, "token sources held at once in the memory runs")
	quick := flag.Bool("quick", false, "one short pass of everything (for CI): -count 1 -benchtime 2000x -storms 1 -storm-d 2s -mems 1 -n 1000")
	flag.Parse()
	if *quick {
		o = options{count: 1, benchtime: "2000x", storms: 1, stormD: 2 * time.Second, mems: 1, sources: 1000}
	}
	args := strings.Join(os.Args[1:], " ")

	dir, err := os.MkdirTemp("", "benchreport")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	bins, err := build(dir)
	if err != nil {
		log.Fatal(err)
	}

	rep := report{opts: o, args: args, machine: describeMachine()}
	for i := range o.count {
		progress("go test benchmarks, run %d of %d", i+1, o.count)
		out, err := run(bins.test, order(i), "-test.run=^$", "-test.bench=.", "-test.benchmem", "-test.count=1", "-test.benchtime="+o.benchtime)
		if err != nil {
			log.Fatal(err)
		}
		rep.bench.add(parseBench(out))
	}
	for i := range o.storms {
		for _, lib := range libs(i) {
			progress("storm %s, run %d of %d", lib, i+1, o.storms)
			r, err := runStorm(bins.storm, lib, o.stormD)
			if err != nil {
				log.Fatal(err)
			}
			rep.storms = append(rep.storms, r)
		}
	}
	progress("storm oauth2 with its default early expiry, once")
	rep.unscaledD = min(o.stormD, 3*time.Second)
	if rep.unscaled, err = runStorm(bins.storm, "oauth2-unscaled", rep.unscaledD); err != nil {
		log.Fatal(err)
	}
	for i := range o.mems {
		for _, lib := range libs(i) {
			progress("memory %s, run %d of %d", lib, i+1, o.mems)
			r, err := runMem(bins.sourcemem, lib, o.sources)
			if err != nil {
				log.Fatal(err)
			}
			rep.mems = append(rep.mems, r)
		}
	}
	rep.machine.loadEnd = loadAverage()
	rep.write(os.Stdout)
}

// libs returns the libraries in the order of repetition i.
func libs(i int) []string {
	if i%2 == 1 {
		return []string{"oauth2", "forteauth"}
	}
	return []string{"forteauth", "oauth2"}
}

// order returns the environment that makes bench_test.go run the
// libraries in the order of repetition i.
func order(i int) []string {
	if i%2 == 1 {
		return []string{"FORTEAUTH_BENCH_ORDER=oauth2-first"}
	}
	return nil
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "benchreport: "+format+"\n", args...)
}

// binaries are the programs benchreport builds once and runs many times.
type binaries struct{ test, storm, sourcemem string }

func build(dir string) (binaries, error) {
	b := binaries{
		test:      filepath.Join(dir, "forteauth.test"),
		storm:     filepath.Join(dir, "storm"),
		sourcemem: filepath.Join(dir, "sourcemem"),
	}
	progress("building")
	for _, args := range [][]string{
		{"test", "-c", "-o", b.test, "."},
		{"build", "-o", b.storm, "./internal/cmd/storm"},
		{"build", "-o", b.sourcemem, "./internal/cmd/sourcemem"},
	} {
		if _, err := run("go", nil, args...); err != nil {
			return b, err
		}
	}
	return b, nil
}
