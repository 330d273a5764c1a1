package main

import (
	"cmp"
	"net/http"
	"slices"
	"sync"
	"time"
)

// span is an interval of a storm, as offsets from its start.
type span struct{ begin, end time.Duration }

// timeline records spans from many goroutines.
type timeline struct {
	mu    sync.Mutex
	spans []span
}

func (t *timeline) add(s span) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.spans = append(t.spans, s)
}

func (t *timeline) all() []span {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.spans)
}

// timedTransport records when each request it sends starts and ends: the
// token requests, so that a burst of blocked calls can be matched with the
// fetch it waited for.
type timedTransport struct {
	next  http.RoundTripper
	start time.Time
	log   *timeline
}

func (t *timedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	begin := time.Since(t.start)
	resp, err := t.next.RoundTrip(r)
	t.log.add(span{begin, time.Since(t.start)})
	return resp, err
}

// Burst is a group of blocked calls that overlap in time: callers held up
// by one event, such as one slow fetch or one stall of the machine.
type Burst struct {
	Calls int           `json:"calls"`
	At    time.Duration `json:"at_ns"`   // the first call's start, from the storm's start
	Span  time.Duration `json:"span_ns"` // from the first call's start to the last one's end
	// Fetch is the longest token request that overlapped the burst, 0 if
	// none did: a burst during a fetch much slower than the endpoint's
	// latency is callers waiting for a fetch that the machine slowed down.
	Fetch time.Duration `json:"fetch_ns"`
}

// bursts groups blocked calls into bursts and matches each with the token
// requests that overlapped it.
func bursts(blocked, fetches []span) []Burst {
	slices.SortFunc(blocked, func(a, b span) int { return cmp.Compare(a.begin, b.begin) })
	var (
		out []Burst
		cur span
		n   int
	)
	flush := func() {
		if n == 0 {
			return
		}
		b := Burst{Calls: n, At: cur.begin, Span: cur.end - cur.begin}
		for _, f := range fetches {
			if f.begin < cur.end && f.end > cur.begin {
				b.Fetch = max(b.Fetch, f.end-f.begin)
			}
		}
		out = append(out, b)
	}
	for _, c := range blocked {
		if n > 0 && c.begin <= cur.end {
			cur.end = max(cur.end, c.end)
			n++
			continue
		}
		flush()
		cur, n = c, 1
	}
	flush()
	return out
}
