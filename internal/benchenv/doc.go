// Package benchenv holds what the benchmarks, the storm and the memory
// measurement share: the x/oauth2 anchor that forteauth is compared with,
// a no-op base transport, and fake token endpoints reached through Forte's
// real production URL.
//
// It exists only so that bench_test.go in the root package and the
// programs under internal/cmd measure exactly the same things.
package benchenv
