package main

import (
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestBucketBoundsHoldTheirValues(t *testing.T) {
	for _, d := range []time.Duration{0, 1, 15, 16, 17, 31, 32, 33, 1000, 123456, time.Millisecond, 50 * time.Millisecond, time.Hour} {
		i := bucket(d)
		if up := upper(i); up < d || float64(up) > float64(d)*1.07+1 {
			t.Errorf("bucket(%v) = %d with upper bound %v; want a bound at most ~6%% above", d, i, up)
		}
		if i > 0 && upper(i-1) >= d {
			t.Errorf("%v also fits the bucket below (%v)", d, upper(i-1))
		}
	}
}

func TestQuantile(t *testing.T) {
	var h histogram
	for range 990 {
		h.add(100 * time.Nanosecond)
	}
	for range 10 {
		h.add(50 * time.Millisecond)
	}
	if p := h.quantile(0.99); p < 100*time.Nanosecond || p > 110*time.Nanosecond {
		t.Errorf("p99 of 990 fast and 10 slow calls = %v, want about 100ns", p)
	}
	h.add(50 * time.Millisecond)
	if p := h.quantile(0.99); p < 50*time.Millisecond || p > 54*time.Millisecond {
		t.Errorf("p99 with 11 of 1001 slow = %v, want about 50ms", p)
	}
	var empty histogram
	if p := empty.quantile(0.99); p != 0 {
		t.Errorf("p99 of nothing = %v, want 0", p)
	}
}

func TestChartDrawsForteauthLastWithOneColourEach(t *testing.T) {
	ms := time.Millisecond
	results := []*result{
		{lib: "forteauth", slowest: []time.Duration{50 * ms, 600 * time.Microsecond, 2 * ms}},
		{lib: "oauth2", slowest: []time.Duration{51 * ms, 300 * time.Microsecond, 53 * ms}},
	}
	got := string(chart(results, 300*ms, 64, time.Second, 50*ms))
	want := `%%{init: {"theme": "base", "themeVariables": {"xyChart": {"plotColorPalette": "#d62728, #1f77b4"}}}}%%
xychart-beta
    title "Slowest call per 100ms, 64 callers, 1s tokens, 50ms endpoint: x/oauth2 (red), forteauth (blue)"
    x-axis "seconds into the storm" 0 --> 0.3
    y-axis "slowest call (ms)" 0 --> 60
    line [51.0, 0.3, 53.0]
    line [50.0, 0.6, 2.0]
`
	if got != want {
		t.Errorf("chart:\n%s\nwant:\n%s", got, want)
	}
	if results[0].lib != "forteauth" {
		t.Errorf("chart reordered its caller's results")
	}
}

func TestSlotsCoverTheStorm(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		want int
	}{{10 * time.Second, 100}, {1050 * time.Millisecond, 11}, {0, 1}} {
		if got := slots(c.d); got != c.want {
			t.Errorf("slots(%v) = %d, want %d", c.d, got, c.want)
		}
	}
}
