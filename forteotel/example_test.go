package forteotel_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/forteauth/forteauth"
	"github.com/forteauth/forteauth/forteotel"
	"github.com/forteauth/forteauth/fortetest"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/stdout/stdoutmetric"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

func ExampleRegister() {
	srv := fortetest.NewServer() // in a program: the Config you already have
	defer srv.Close()
	cfg := &forteauth.Config{ClientID: srv.ClientID, ClientSecret: srv.ClientSecret, TokenURL: srv.TokenURL}
	ts := cfg.TokenSource(context.Background())

	// In a program the MeterProvider is the one set up with the SDK and
	// an exporter, usually otel.GetMeterProvider(); a ManualReader lets
	// this example collect by hand.
	reader := sdkmetric.NewManualReader()
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer provider.Shutdown(context.Background())

	reg, err := forteotel.Register(provider.Meter(forteotel.ScopeName), ts, attribute.String("forte.env", "sandbox"))
	if err != nil {
		log.Fatal(err)
	}
	defer reg.Unregister()

	if _, err := ts.Token(); err != nil { // the program at work
		log.Fatal(err)
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		log.Fatal(err)
	}
	for _, m := range rm.ScopeMetrics[0].Metrics {
		switch d := m.Data.(type) {
		case metricdata.Sum[int64]:
			if d.DataPoints[0].Value > 0 {
				fmt.Printf("%s %d %s\n", m.Name, d.DataPoints[0].Value, m.Unit)
			}
		case metricdata.Gauge[float64]:
			fmt.Printf("%s > 59m: %v\n", m.Name, d.DataPoints[0].Value > 59*60)
		}
	}
	// Output:
	// forteauth.token.requests 1 {request}
	// forteauth.token.fetches 1 {fetch}
	// forteauth.token.waits 1 {call}
	// forteauth.token.remaining > 59m: true
}

// A program's set-up, as the README gives it: an SDK MeterProvider that
// exports with a periodic reader, here to stdout, and Register. The
// figures are printed every minute, and once more when the program ends.
func ExampleRegister_stdout() {
	srv := fortetest.NewServer() // in a program: the Config you already have
	defer srv.Close()
	cfg := &forteauth.Config{ClientID: srv.ClientID, ClientSecret: srv.ClientSecret, TokenURL: srv.TokenURL}
	if err := exportToStdout(context.Background(), cfg.TokenSource(context.Background())); err != nil {
		log.Fatal(err)
	}
}

// exportToStdout is the README's Metrics snippet, then the program at
// work; its figures are printed as it returns.
func exportToStdout(ctx context.Context, ts *forteauth.TokenSource) error {
	exporter, err := stdoutmetric.New() // your OTLP exporter in production
	if err != nil {
		return err
	}
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exporter)))
	defer provider.Shutdown(ctx) // exports once more on the way out
	otel.SetMeterProvider(provider)

	if _, err := forteotel.Register(provider.Meter(forteotel.ScopeName), ts); err != nil {
		return err
	}
	_, err = ts.Token() // the program at work
	return err
}

// TestREADMEMetricsSnippetPrintsFigures runs the README's snippet, which
// must be exportToStdout's, and checks that it prints the figures.
func TestREADMEMetricsSnippetPrintsFigures(t *testing.T) {
	checkREADMESnippet(t, 1, "exportToStdout")

	srv := fortetest.NewServer()
	defer srv.Close()
	cfg := &forteauth.Config{ClientID: srv.ClientID, ClientSecret: srv.ClientSecret, TokenURL: srv.TokenURL}
	out := captureStdout(t, func() {
		if err := exportToStdout(context.Background(), cfg.TokenSource(context.Background())); err != nil {
			t.Fatal(err)
		}
	})
	for _, want := range []string{`"forteauth.token.requests"`, `"forteauth.token.remaining"`} {
		if !strings.Contains(out, want) {
			t.Errorf("the snippet printed no %s:\n%s", want, out)
		}
	}
}

// captureStdout returns what f writes to os.Stdout.
func captureStdout(t *testing.T, f func()) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout := os.Stdout
	os.Stdout = w
	defer func() { os.Stdout = stdout }()
	done := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(r)
		done <- b
	}()
	f()
	w.Close()
	return string(<-done)
}

// A program's tracing set-up, as the README gives it: an SDK
// TracerProvider that exports to stdout, and Config.Trace.
func ExampleNewTrace() {
	srv := fortetest.NewServer() // in a program: the Config you already have
	defer srv.Close()
	cfg := &forteauth.Config{ClientID: srv.ClientID, ClientSecret: srv.ClientSecret, TokenURL: srv.TokenURL}
	if err := traceToStdout(context.Background(), cfg); err != nil {
		log.Fatal(err)
	}
}

// traceToStdout is the README's tracing snippet, then the program at
// work: each span is printed as it ends.
func traceToStdout(ctx context.Context, cfg *forteauth.Config) error {
	exporter, err := stdouttrace.New() // your OTLP exporter in production
	if err != nil {
		return err
	}
	tracer := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exporter)) // WithBatcher in production
	defer tracer.Shutdown(ctx)
	otel.SetTracerProvider(tracer)

	cfg.Trace = forteotel.NewTrace(tracer)
	ts := cfg.TokenSource(ctx)
	_, err = ts.Token() // the program at work
	return err
}

// TestREADMETracingSnippetPrintsSpans runs the README's second snippet of
// "Metrics and traces", which must be traceToStdout's, and checks that it
// prints the fetch and the wait.
func TestREADMETracingSnippetPrintsSpans(t *testing.T) {
	checkREADMESnippet(t, 2, "traceToStdout")

	// stdouttrace takes os.Stdout when its package starts, so the
	// snippet runs in a child process of this test binary.
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), traceChildEnv+"=1")
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("the child running the snippet: %v", err)
	}
	out := string(b)
	for _, want := range []string{`"forteauth.token.fetch"`, `"forteauth.token.wait"`} {
		if !strings.Contains(out, want) {
			t.Errorf("the snippet printed no %s:\n%s", want, out)
		}
	}
}

// traceChild runs the README's tracing snippet in the child process that
// TestREADMETracingSnippetPrintsSpans starts; TestMain calls it.
func traceChild() int {
	srv := fortetest.NewServer()
	defer srv.Close()
	cfg := &forteauth.Config{ClientID: srv.ClientID, ClientSecret: srv.ClientSecret, TokenURL: srv.TokenURL}
	if err := traceToStdout(context.Background(), cfg); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// checkREADMESnippet fails unless the n-th Go block of the README's
// "Metrics and traces" section is code of fn in this file, unindented
// once, so that what a reader pastes is what the test runs.
func checkREADMESnippet(t *testing.T, n int, fn string) {
	t.Helper()
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile("example_test.go")
	if err != nil {
		t.Fatal(err)
	}
	_, section, _ := strings.Cut(string(readme), "## Metrics and traces")
	blocks := strings.Split(section, "```go\n")
	if len(blocks) <= n {
		t.Fatalf("the README's Metrics and traces section has fewer than %d Go blocks", n)
	}
	block, _, _ := strings.Cut(blocks[n], "```")
	var body strings.Builder
	for line := range strings.Lines(string(src)) {
		body.WriteString(strings.TrimPrefix(line, "\t"))
	}
	if !strings.Contains(body.String(), block) {
		t.Fatalf("the README's Go block %d of Metrics and traces is not %s's code; make them the same:\n%s", n, fn, block)
	}
}
