package forteotel_test

import (
	"context"
	"fmt"
	"log"

	"github.com/forteauth/forteauth"
	"github.com/forteauth/forteauth/forteotel"
	"github.com/forteauth/forteauth/fortetest"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
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
