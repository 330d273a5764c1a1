package main

import (
	"math/bits"
	"time"
)

// histogram counts latencies in buckets 1/16 of a power of two wide, so a
// quantile read from it is at most about 6% above the true value, in a
// fixed 8 KiB however many calls a storm makes.
type histogram [64 * 16]int64

// bucket returns the index of d's bucket: below 16 ns, one per
// nanosecond; above, 16 per power of two.
func bucket(d time.Duration) int {
	v := uint64(max(d, 0))
	if v < 16 {
		return int(v)
	}
	e := bits.Len64(v) - 5
	return 16 + e*16 + int(v>>e&15)
}

// upper returns the largest duration in bucket i.
func upper(i int) time.Duration {
	if i < 16 {
		return time.Duration(i)
	}
	e, m := (i-16)/16, uint64((i-16)%16+16)
	return time.Duration((m+1)<<e - 1)
}

func (h *histogram) add(d time.Duration) { h[bucket(d)]++ }

func (h *histogram) merge(o *histogram) {
	for i := range h {
		h[i] += o[i]
	}
}

// quantile returns the upper bound of the bucket that holds quantile q.
func (h *histogram) quantile(q float64) time.Duration {
	var n int64
	for _, c := range h {
		n += c
	}
	if n == 0 {
		return 0
	}
	rank := int64(q*float64(n-1)) + 1
	for i, c := range h {
		if rank -= c; rank <= 0 {
			return upper(i)
		}
	}
	return upper(len(h) - 1)
}
