package forteauth

import "sync/atomic"

// counters are the counts behind Stats. None is touched on the fresh
// path: an atomic add there would make every caller of a busy source
// contend for one cache line.
type counters struct {
	tokenRequests      atomic.Int64
	fetches            atomic.Int64
	fetchFailures      atomic.Int64
	backgroundFailures atomic.Int64
	waits              atomic.Int64
	coolDownErrors     atomic.Int64
	unauthorized       atomic.Int64
	replays            atomic.Int64
	storeHits          atomic.Int64
	storeFaults        atomic.Int64

	credentialFailures  atomic.Int64
	credentialChanges   atomic.Int64
	credentialFallbacks atomic.Int64
}
