package main

import (
	"cmp"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/forteauth/forteauth/internal/benchenv"
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

// bursts groups blocked calls into bursts and matches each with the token
// requests that overlapped it.
func bursts(blocked, fetches []span) []benchenv.Burst {
	slices.SortFunc(blocked, func(a, b span) int { return cmp.Compare(a.begin, b.begin) })
	var (
		out []benchenv.Burst
		cur span
		n   int
	)
	flush := func() {
		if n == 0 {
			return
		}
		b := benchenv.Burst{Calls: n, At: cur.begin, Span: cur.end - cur.begin}
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
