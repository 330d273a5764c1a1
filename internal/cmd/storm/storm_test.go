package main

import (
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/forteauth/forteauth/internal/benchenv"
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

func TestBurstsGroupOverlappingCallsAndFindTheirFetch(t *testing.T) {
	ms := time.Millisecond
	blocked := []span{{120 * ms, 140 * ms}, {100 * ms, 130 * ms}, {135 * ms, 150 * ms}, {500 * ms, 512 * ms}}
	fetches := []span{{50 * ms, 145 * ms}, {90 * ms, 110 * ms}, {700 * ms, 750 * ms}}
	got := bursts(blocked, fetches)
	want := []benchenv.Burst{
		{Calls: 3, At: 100 * ms, Span: 50 * ms, Fetch: 95 * ms},
		{Calls: 1, At: 500 * ms, Span: 12 * ms, Fetch: 0},
	}
	if len(got) != len(want) {
		t.Fatalf("bursts = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("burst %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if b := bursts(nil, fetches); len(b) != 0 {
		t.Errorf("bursts of no calls = %+v", b)
	}
}
