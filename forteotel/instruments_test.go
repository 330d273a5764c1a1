package forteotel

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/forteauth/forteauth"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// Each instrument reports its own field: every field gets a different
// value, so that two instruments wired to one field, or swapped, show.
func TestEachInstrumentReportsItsField(t *testing.T) {
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	st := forteauth.Stats{
		TokenRequests: 1, Fetches: 2, FetchFailures: 3, BackgroundFailures: 4, Waits: 5,
		CoolDownErrors: 6, Unauthorized: 7, Replays: 8, StoreHits: 9, StoreFaults: 10,
		CredentialFailures: 11, CredentialChanges: 12, CredentialFallbacks: 13,
		Expiry: now.Add(90*time.Second + 500*time.Millisecond), RefreshAt: now,
	}
	want := map[string]float64{
		"forteauth.token.requests":            1,
		"forteauth.token.fetches":             2,
		"forteauth.token.fetch_failures":      3,
		"forteauth.token.background_failures": 4,
		"forteauth.token.waits":               5,
		"forteauth.token.cooldown_errors":     6,
		"forteauth.api.unauthorized":          7,
		"forteauth.api.replays":               8,
		"forteauth.store.hits":                9,
		"forteauth.store.faults":              10,
		"forteauth.credentials.failures":      11,
		"forteauth.credentials.changes":       12,
		"forteauth.credentials.fallbacks":     13,
		"forteauth.token.remaining":           90.5,
	}
	reader := sdkmetric.NewManualReader()
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer provider.Shutdown(context.Background())
	if _, err := register(provider.Meter("test"), func() forteauth.Stats { return st }, func() time.Time { return now }, nil); err != nil {
		t.Fatal(err)
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				if !d.IsMonotonic || d.Temporality != metricdata.CumulativeTemporality || len(d.DataPoints) != 1 {
					t.Errorf("%s: monotonic %v, temporality %v, %d points; want a cumulative counter with one point", m.Name, d.IsMonotonic, d.Temporality, len(d.DataPoints))
					continue
				}
				got[m.Name] = float64(d.DataPoints[0].Value)
			case metricdata.Gauge[float64]:
				if len(d.DataPoints) != 1 {
					t.Errorf("%s: %d points, want 1", m.Name, len(d.DataPoints))
					continue
				}
				got[m.Name] = d.DataPoints[0].Value
			default:
				t.Errorf("%s: unexpected data %T", m.Name, m.Data)
			}
			if m.Unit == "" || m.Description == "" {
				t.Errorf("%s: unit %q, description %q; want both", m.Name, m.Unit, m.Description)
			}
		}
	}
	if len(got) != len(want) {
		t.Errorf("collected %d instruments, want %d: %v", len(got), len(want), got)
	}
	for name, v := range want {
		if got[name] != v {
			t.Errorf("%s = %v, want %v", name, got[name], v)
		}
	}
}

func TestRemainingSeconds(t *testing.T) {
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		expiry time.Time
		want   float64
	}{
		{time.Time{}, 0},           // no token
		{now.Add(-time.Minute), 0}, // expired while nothing asked
		{now, 0},                   // expiring now
		{now.Add(1500 * time.Millisecond), 1.5},
		{now.Add(time.Hour), 3600},
	} {
		if got := remainingSeconds(c.expiry, now); got != c.want {
			t.Errorf("remainingSeconds(now%+v) = %v, want %v", c.expiry.Sub(now), got, c.want)
		}
	}
}

// failingMeter fails to create one kind of instrument.
type failingMeter struct {
	noop.Meter
}

func (failingMeter) Float64ObservableGauge(string, ...metric.Float64ObservableGaugeOption) (metric.Float64ObservableGauge, error) {
	return nil, errors.New("instrument rejected")
}

func TestRegisterReportsAnInstrumentItCouldNotCreate(t *testing.T) {
	reg, err := register(failingMeter{}, func() forteauth.Stats { return forteauth.Stats{} }, time.Now, nil)
	if err == nil || reg != nil {
		t.Fatalf("register = %v, %v; want an error and no Registration", reg, err)
	}
	if msg := err.Error(); msg != "forteotel: creating the instruments: instrument rejected" {
		t.Fatalf("err = %q", msg)
	}
}
