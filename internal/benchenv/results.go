package benchenv

import "time"

// StormResult is one library's storm, as internal/cmd/storm prints it
// with -json and internal/cmd/benchreport reads it.
type StormResult struct {
	Lib        string        `json:"lib"`
	Goroutines int           `json:"goroutines"`
	Duration   time.Duration `json:"duration_ns"`
	Lifetime   time.Duration `json:"lifetime_ns"`
	Latency    time.Duration `json:"latency_ns"`
	Requests   int           `json:"endpoint_requests"`
	Calls      int64         `json:"calls"`       // every call
	After      int64         `json:"calls_after"` // calls that started after the first token arrived
	Blocked    int64         `json:"blocked"`     // of those, calls slower than the threshold
	Threshold  time.Duration `json:"blocked_threshold_ns"`
	P99        time.Duration `json:"p99_ns"` // of the calls after the first token
	Max        time.Duration `json:"max_ns"` // of the calls after the first token
	Errors     int64         `json:"errors"`
	// Stalls counts control calls slower than the threshold: after each
	// call, the same request is cloned, given a header and sent through
	// the no-op base, which takes about as long as a cached call and
	// waits for nothing. A control call that slow means the machine
	// stalled the process (another process, the hypervisor), and calls
	// of the library were as likely to be caught.
	Stalls int64 `json:"stalls"`
	// Bursts groups the blocked calls by the event that held them up.
	Bursts []Burst `json:"bursts"`
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

// MemResult is one library's heap per token source, as
// internal/cmd/sourcemem prints it with -json and internal/cmd/benchreport
// reads it.
type MemResult struct {
	Lib            string  `json:"lib"`
	Sources        int     `json:"sources"`
	HeapBefore     uint64  `json:"heap_before"`
	HeapAfter      uint64  `json:"heap_after"`
	BytesPerSource float64 `json:"bytes_per_source"`
}
