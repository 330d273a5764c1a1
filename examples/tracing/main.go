// Command tracing shows a request that waited for a token in its trace:
// the request's span, the wait under it, linked to the token fetch it
// waited for, and that fetch, a trace of its own with the token request's
// HTTP span (otelhttp) under it. It exports with the OpenTelemetry SDK's
// stdout exporter, then prints the spans as a tree; it exits non-zero if
// the wait is not linked to the fetch.
//
//	cd examples/tracing && go run .
package main

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/forteauth/forteauth"
	"github.com/forteauth/forteauth/forteotel"
	"github.com/forteauth/forteauth/fortetest"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

func main() {
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

func run() error {
	srv := fortetest.NewServer() // Forte
	defer srv.Close()
	srv.SetLatency(200 * time.Millisecond)

	exporter, err := stdouttrace.New(stdouttrace.WithWriter(os.Stdout))
	if err != nil {
		return err
	}
	spans := tracetest.NewSpanRecorder() // for the tree below
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exporter), sdktrace.WithSpanProcessor(spans))
	defer tp.Shutdown(context.Background())

	cfg := &forteauth.Config{
		ClientID:     srv.ClientID,
		ClientSecret: srv.ClientSecret,
		TokenURL:     srv.TokenURL,
		HTTPClient:   &http.Client{Transport: otelhttp.NewTransport(http.DefaultTransport, otelhttp.WithTracerProvider(tp))},
		Trace:        forteotel.NewTrace(tp),
	}
	client := cfg.Client(context.Background())

	// The program's own span for one payment request, which waits for the
	// first token.
	ctx, span := tp.Tracer("example").Start(context.Background(), "GET /v3/payments")
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/v3/payments", nil)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	span.End()

	fmt.Println()
	return printTree(spans.Ended())
}

// printTree prints spans as a tree per trace, with each span's duration,
// its forteauth attributes, and the spans it links to; and fails unless a
// wait span links to a fetch span.
func printTree(spans []sdktrace.ReadOnlySpan) error {
	byID := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range spans {
		byID[s.SpanContext().SpanID().String()] = s
	}
	linked := false
	for _, root := range spans {
		if root.Parent().IsValid() {
			continue
		}
		fmt.Printf("trace %s\n", root.SpanContext().TraceID().String()[:8])
		linked = printSpan(root, spans, byID, 1) || linked
	}
	if !linked {
		return fmt.Errorf("no %s span is linked to a %s span", forteotel.WaitSpanName, forteotel.FetchSpanName)
	}
	return nil
}

// printSpan prints s at depth and its children below it, and reports
// whether a wait span among them links to a fetch span.
func printSpan(s sdktrace.ReadOnlySpan, spans []sdktrace.ReadOnlySpan, byID map[string]sdktrace.ReadOnlySpan, depth int) bool {
	var notes []string
	for _, a := range s.Attributes() {
		if strings.HasPrefix(string(a.Key), "forteauth.") {
			notes = append(notes, fmt.Sprintf("%s=%s", strings.TrimPrefix(string(a.Key), "forteauth.fetch."), a.Value.String()))
		}
	}
	linked := false
	for _, l := range s.Links() {
		if to, ok := byID[l.SpanContext.SpanID().String()]; ok {
			notes = append(notes, fmt.Sprintf("linked to %s in trace %s", to.Name(), l.SpanContext.TraceID().String()[:8]))
			linked = linked || s.Name() == forteotel.WaitSpanName && to.Name() == forteotel.FetchSpanName
		}
	}
	slices.Sort(notes)
	fmt.Printf("%s%s %v %s\n", strings.Repeat("  ", depth), s.Name(), s.EndTime().Sub(s.StartTime()).Round(time.Millisecond), strings.Join(notes, " "))
	for _, c := range spans {
		if c.Parent().SpanID() == s.SpanContext().SpanID() && c.Parent().IsValid() {
			linked = printSpan(c, spans, byID, depth+1) || linked
		}
	}
	return linked
}
