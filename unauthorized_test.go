package forteauth

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/forteauth/forteauth/fortetest"
)

// floodSetup returns a client whose API requests go to srv's API unless
// reject is set; then the API answers 401 to every token.
func floodSetup(t *testing.T) (srv *fortetest.Server, ts *TokenSource, clock *fakeClock, c *http.Client, reject *atomic.Bool) {
	t.Helper()
	src := newTestSource(t)
	srv, ts, clock = src.srv, src.ts, src.clock
	reject = new(atomic.Bool)
	c = &http.Client{Transport: &Transport{Source: ts, Base: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if reject.Load() {
			closeBody(r)
			return unauthorizedResponse(r), nil
		}
		return http.DefaultTransport.RoundTrip(r)
	})}}
	return srv, ts, clock, c, reject
}

func unauthorizedResponse(r *http.Request) *http.Response {
	return &http.Response{StatusCode: http.StatusUnauthorized, Header: http.Header{},
		Body: io.NopCloser(strings.NewReader(`{"error":"rejected"}`)), Request: r}
}

func TestTransport401ToATokenRevokedAtIssueIsRecovered(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	ts := newTestSource(t, withServer(srv)).ts
	c := &http.Client{Transport: &Transport{Source: ts}}
	mustToken(t, ts) // issued now, and the fake clock does not move
	srv.Revoke()
	if code := get(t, c, srv.URL+"/v3/x"); code != 200 {
		t.Fatalf("status %d, want 200: a token revoked 0 s after issue must be recovered", code)
	}
	if n := tokenRequests(srv); n != 2 {
		t.Fatalf("token requests = %d, want 2: the revoked token and one replacement", n)
	}
	if code := get(t, c, srv.URL+"/v3/x"); code != 200 || tokenRequests(srv) != 2 {
		t.Fatalf("next request: status %d, token requests %d; want 200 with the replacement", code, tokenRequests(srv))
	}
}

// maxCoolDowns is the most 401 cool-downs that can start within d: each
// lasts at least half of 1 s doubling to 30 s.
func maxCoolDowns(d time.Duration) int {
	n, spent := 1, time.Duration(0)
	for {
		spent += min(failureBackoff.base<<(n-1), failureBackoff.max) / 2
		if spent > d {
			return n
		}
		n++
	}
}

func TestTransport401FloodCostsOneTokenRequestPerCoolDown(t *testing.T) {
	srv, ts, clock, c, reject := floodSetup(t)
	reject.Store(true)
	const requests, step = 1200, 100 * time.Millisecond // 120 s
	for i := range requests {
		if code := get(t, c, srv.URL+"/v3/x"); code != 401 {
			t.Fatalf("request %d: status %d, want the API's 401", i, code)
		}
		clock.Advance(step)
	}
	rounds, _ := guardState(ts)
	n := tokenRequests(srv)
	if limit := maxCoolDowns(requests * step); rounds < 1 || rounds > limit {
		t.Fatalf("%d cool-downs in %v, want 1 to %d", rounds, requests*step, limit)
	}
	t.Logf("%d requests over %v: %d token requests, %d cool-downs (at most %d possible)",
		requests, requests*step, n, rounds, maxCoolDowns(requests*step))
	if n < 2 || n > 1+rounds {
		t.Fatalf("%d requests over %v cost %d token requests with %d cool-downs; want 2 to %d",
			requests, requests*step, n, rounds, 1+rounds)
	}
}

func TestConcurrent401sFetchOneNewToken(t *testing.T) {
	for _, tt := range []struct {
		name      string
		rejectAll bool
		want      int
	}{
		{"the new token is accepted", false, 200},
		{"the API rejects every token", true, 401},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := fortetest.NewServer()
			defer srv.Close()
			ts := newTestSource(t, withServer(srv)).ts
			first := "Bearer " + mustToken(t, ts).AccessToken
			srv.Revoke()
			const callers = 50
			var (
				atAPI sync.WaitGroup // the callers holding the first token
				mu    sync.Mutex
				sends = map[string]int{}
			)
			atAPI.Add(callers)
			c := &http.Client{Transport: &Transport{Source: ts, Base: roundTripFunc(func(r *http.Request) (*http.Response, error) {
				mu.Lock()
				sends[r.Header.Get("X-Caller")]++
				mu.Unlock()
				if r.Header.Get("Authorization") == first {
					atAPI.Done()
					atAPI.Wait() // all 50 are answered 401 for the first token together
				}
				if tt.rejectAll {
					return unauthorizedResponse(r), nil
				}
				return http.DefaultTransport.RoundTrip(r)
			})}}
			var wg sync.WaitGroup
			for i := range callers {
				wg.Go(func() {
					req, _ := http.NewRequest("GET", srv.URL+"/v3/x", nil)
					req.Header.Set("X-Caller", fmt.Sprint(i))
					resp, err := c.Do(req)
					if err != nil {
						t.Error(err)
						return
					}
					resp.Body.Close()
					if resp.StatusCode != tt.want {
						t.Errorf("status %d, want %d", resp.StatusCode, tt.want)
					}
				})
			}
			within(t, "50 concurrent requests", wg.Wait)
			if n := tokenRequests(srv); n != 2 {
				t.Fatalf("token requests = %d, want 2: the rejected token and one replacement", n)
			}
			for i := range callers {
				if n := sends[fmt.Sprint(i)]; n < 1 || n > 2 || !tt.rejectAll && n != 2 {
					t.Fatalf("caller %d was sent %d times; want once and at most one replay (a replay with the new token if it is accepted)", i, n)
				}
			}
		})
	}
}

func TestTransport401GuardEndsOnAnyOtherAnswer(t *testing.T) {
	srv, _, clock, c, reject := floodSetup(t)
	reject.Store(true)
	if code := get(t, c, srv.URL+"/v3/x"); code != 401 || tokenRequests(srv) != 2 {
		t.Fatalf("status %d, token requests %d; want 401 after one recovery attempt (2)", code, tokenRequests(srv))
	}
	if code := get(t, c, srv.URL+"/v3/x"); code != 401 || tokenRequests(srv) != 2 {
		t.Fatalf("status %d, token requests %d; want 401 as is during the cool-down (2)", code, tokenRequests(srv))
	}
	reject.Store(false)
	if code := get(t, c, srv.URL+"/v3/x"); code != 200 {
		t.Fatalf("status %d, want 200 once the API accepts the token", code)
	}
	// That answer ended the guard: a rejection of the accepted token,
	// within what was the cool-down, is recovered at once.
	srv.Revoke()
	if code := get(t, c, srv.URL+"/v3/x"); code != 200 || tokenRequests(srv) != 3 {
		t.Fatalf("status %d, token requests %d; want 200 with a new token (3)", code, tokenRequests(srv))
	}
	// The rounds start over: the next cool-down is a first one, at most 1 s.
	reject.Store(true)
	if code := get(t, c, srv.URL+"/v3/x"); code != 401 || tokenRequests(srv) != 4 {
		t.Fatalf("status %d, token requests %d; want 401 after one recovery attempt (4)", code, tokenRequests(srv))
	}
	clock.Advance(failureBackoff.base)
	if code := get(t, c, srv.URL+"/v3/x"); code != 401 || tokenRequests(srv) != 5 {
		t.Fatalf("status %d, token requests %d; want 401 after one more attempt (5) once a first cool-down has passed",
			code, tokenRequests(srv))
	}
}

func TestTransport401CoolDownGrowsAndCapsAt30s(t *testing.T) {
	srv, ts, clock, c, reject := floodSetup(t)
	mustToken(t, ts)
	reject.Store(true)
	for round := 1; round <= 8; round++ {
		before := tokenRequests(srv)
		if code := get(t, c, srv.URL+"/v3/x"); code != 401 || tokenRequests(srv) != before+1 {
			t.Fatalf("round %d: status %d, token requests %d; want 401 after one new token (%d)",
				round, code, tokenRequests(srv), before+1)
		}
		rounds, until := guardState(ts)
		d := until.Sub(clock.Now())
		want := min(time.Second<<(round-1), 30*time.Second)
		if rounds != round || d < want/2 || d > want {
			t.Fatalf("after round %d: %d rounds, cool-down %v; want %d rounds and %v to %v", round, rounds, d, round, want/2, want)
		}
		clock.Advance(d - time.Millisecond)
		if code := get(t, c, srv.URL+"/v3/x"); code != 401 || tokenRequests(srv) != before+1 {
			t.Fatalf("round %d, 1 ms before the cool-down ends: status %d, token requests %d; want 401 as is (%d)",
				round, code, tokenRequests(srv), before+1)
		}
		clock.Advance(time.Millisecond)
	}
}
