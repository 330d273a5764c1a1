package fortetest

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func post(t *testing.T, c *http.Client, url, contentType, body string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Post(url, contentType, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func credentials(s *Server) string {
	b, _ := json.Marshal(map[string]string{"client_id": s.ClientID, "client_secret": s.ClientSecret})
	return string(b)
}

func TestTokenEndpointSpeaksTheContract(t *testing.T) {
	s := NewServer()
	defer s.Close()
	resp, body := post(t, s.Client(), s.TokenURL, "application/json", credentials(s))
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, Content-Type %q; want 201 application/json", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var got struct {
		Data struct {
			AccessToken string `json:"access_token"`
			TokenType   string `json:"token_type"`
			ExpiresIn   int    `json:"expires_in"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	if got.Data.AccessToken == "" || got.Data.TokenType != "Bearer" || got.Data.ExpiresIn != 3600 {
		t.Fatalf("answer %+v, want a Bearer token for 3600s", got.Data)
	}
	if h := s.LastTokenRequestHeader(); h.Get("Content-Type") != "application/json" {
		t.Fatalf("LastTokenRequestHeader = %v", h)
	}
}

func TestTokenEndpointRejectsRequestsOutsideTheContract(t *testing.T) {
	s := NewServer()
	defer s.Close()
	cases := []struct {
		name, method, contentType, body string
		status                          int
	}{
		{"wrong secret", "POST", "application/json", `{"client_id":"fortetest-client","client_secret":"nope"}`, 401},
		{"form encoded", "POST", "application/x-www-form-urlencoded", "client_id=fortetest-client&client_secret=fortetest-secret", 400},
		{"missing secret", "POST", "application/json", `{"client_id":"fortetest-client"}`, 400},
		{"not JSON", "POST", "application/json", `client_id`, 400},
		{"GET", "GET", "", "", 405},
	}
	for _, c := range cases {
		req, _ := http.NewRequest(c.method, s.TokenURL, strings.NewReader(c.body))
		if c.contentType != "" {
			req.Header.Set("Content-Type", c.contentType)
		}
		resp, err := s.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var e struct {
			Error struct {
				Reason string `json:"reason"`
				Status int    `json:"status"`
			} `json:"error"`
		}
		json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != c.status || e.Error.Status != c.status || e.Error.Reason != http.StatusText(c.status) {
			t.Errorf("%s: status %d, body %+v; want %d with Forte's error body", c.name, resp.StatusCode, e, c.status)
		}
	}
	if st := s.Stats(); st.TokenRequests != len(cases) || st.TokensIssued != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func issue(t *testing.T, s *Server) string {
	t.Helper()
	_, body := post(t, s.Client(), s.TokenURL, "application/json", credentials(s))
	var got struct {
		Data struct {
			AccessToken string `json:"access_token"`
		} `json:"data"`
	}
	json.Unmarshal([]byte(body), &got)
	return got.Data.AccessToken
}

func call(t *testing.T, s *Server, token string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", s.URL+"/v3/anything", nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestAPIAcceptsOnlyLiveIssuedTokens(t *testing.T) {
	s := NewServer()
	defer s.Close()
	s.SetLifetime(time.Second)
	tok := issue(t, s)
	if code := call(t, s, tok); code != 200 {
		t.Fatalf("live token: %d", code)
	}
	if code := call(t, s, "made-up"); code != 401 {
		t.Fatalf("unknown token: %d", code)
	}
	if code := call(t, s, ""); code != 401 {
		t.Fatalf("no token: %d", code)
	}
	// Wait out the 1 s lifetime on the real clock: the server's expiry is real.
	deadline := time.Now().Add(10 * time.Second)
	for call(t, s, tok) == 200 {
		if time.Now().After(deadline) {
			t.Fatal("token never expired")
		}
		time.Sleep(50 * time.Millisecond)
	}
	st := s.Stats()
	if st.APIExpired < 1 || st.APIRejected != st.APIExpired+2 {
		t.Fatalf("stats %+v: want the expired token counted as such", st)
	}

	live := issue(t, s)
	s.Revoke(live)
	if code := call(t, s, live); code != 401 {
		t.Fatalf("revoked token: %d", code)
	}
	live = issue(t, s)
	s.Revoke()
	if code := call(t, s, live); code != 401 {
		t.Fatalf("token after Revoke(): %d", code)
	}
}

func TestSetLifetimeRoundsUpToWholeSeconds(t *testing.T) {
	s := NewServer()
	defer s.Close()
	for _, c := range []struct {
		set  time.Duration
		want string
	}{{1500 * time.Millisecond, `"expires_in":2`}, {0, `"expires_in":1`}, {2 * time.Hour, `"expires_in":7200`}} {
		s.SetLifetime(c.set)
		if _, body := post(t, s.Client(), s.TokenURL, "application/json", credentials(s)); !strings.Contains(body, c.want) {
			t.Errorf("SetLifetime(%v): body %s, want %s", c.set, body, c.want)
		}
	}
}

func TestFailNextAnswersInOrderThenRecovers(t *testing.T) {
	s := NewServer()
	defer s.Close()
	s.FailNext(
		Failure{Status: 503, RetryAfter: "7"},
		Failure{Status: 200, Body: "<html>bad gateway</html>", ContentType: "text/html"},
	)
	resp, body := post(t, s.Client(), s.TokenURL, "application/json", credentials(s))
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "7" || !strings.Contains(body, `"status":503`) {
		t.Fatalf("first: %d %q %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	resp, body = post(t, s.Client(), s.TokenURL, "application/json", credentials(s))
	if resp.StatusCode != 200 || body != "<html>bad gateway</html>" || resp.Header.Get("Content-Type") != "text/html" {
		t.Fatalf("second: %d %s", resp.StatusCode, body)
	}
	if resp, _ := post(t, s.Client(), s.TokenURL, "application/json", credentials(s)); resp.StatusCode != 201 {
		t.Fatalf("third: %d, want 201 once the failures are used up", resp.StatusCode)
	}
	if st := s.Stats(); st.TokenRequests != 3 || st.TokensIssued != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestHangupClosesTheConnection(t *testing.T) {
	s := NewServer()
	defer s.Close()
	s.FailNext(Failure{Hangup: true}, Failure{Hangup: true, Body: `{"data":{"access_token":"abcdefgh"}}`})
	if _, err := s.Client().Post(s.TokenURL, "application/json", strings.NewReader(credentials(s))); err == nil {
		t.Fatal("hangup before the answer: want a transport error")
	}
	resp, err := s.Client().Post(s.TokenURL, "application/json", strings.NewReader(credentials(s)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := io.ReadAll(resp.Body); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("hangup mid-body: read error %v, want unexpected EOF", err)
	}
}

func TestFailureRate(t *testing.T) {
	s := NewServer()
	defer s.Close()
	s.SetFailureRate(1, Failure{Status: 500})
	if resp, _ := post(t, s.Client(), s.TokenURL, "application/json", credentials(s)); resp.StatusCode != 500 {
		t.Fatalf("rate 1: %d", resp.StatusCode)
	}
	s.SetFailureRate(0, Failure{})
	if resp, _ := post(t, s.Client(), s.TokenURL, "application/json", credentials(s)); resp.StatusCode != 201 {
		t.Fatalf("rate 0: %d", resp.StatusCode)
	}
}

func TestHoldAndLatencyEndWhenTheClientGivesUp(t *testing.T) {
	s := NewServer()
	release := s.Hold()
	defer release()
	s.SetLatency(time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", s.TokenURL, strings.NewReader(credentials(s)))
	req.Header.Set("Content-Type", "application/json")
	if _, err := s.Client().Do(req); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the client's deadline", err)
	}
	closed := make(chan struct{})
	go func() {
		s.Close() // waits for handlers: it must not wait out the hold or the hour
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close blocked on a handler whose client had gone")
	}
}

func TestHoldDelaysAnswersUntilReleased(t *testing.T) {
	s := NewServer()
	defer s.Close()
	release := s.Hold()
	answered := make(chan int, 1)
	go func() {
		resp, err := s.Client().Post(s.TokenURL, "application/json", strings.NewReader(credentials(s)))
		if err != nil {
			answered <- 0
			return
		}
		resp.Body.Close()
		answered <- resp.StatusCode
	}()
	deadline := time.Now().Add(10 * time.Second)
	for s.Stats().TokenRequests == 0 { // the request is counted on arrival
		if time.Now().After(deadline) {
			t.Fatal("the request never arrived")
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case <-answered:
		t.Fatal("answered while held")
	default:
	}
	release()
	select {
	case code := <-answered:
		if code != 201 {
			t.Fatalf("status %d after release", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("not answered after release")
	}
}

func TestTLSServerIsTrustedOnlyThroughItsClient(t *testing.T) {
	s := NewTLSServer()
	defer s.Close()
	if !strings.HasPrefix(s.TokenURL, "https://") {
		t.Fatalf("TokenURL %q", s.TokenURL)
	}
	if resp, _ := post(t, s.Client(), s.TokenURL, "application/json", credentials(s)); resp.StatusCode != 201 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if _, err := http.Post(s.TokenURL, "application/json", strings.NewReader(credentials(s))); err == nil {
		t.Fatal("the default client trusted the test certificate")
	}
}

func TestUnstartedServerServesOnTheListenerGiven(t *testing.T) {
	for _, tls := range []bool{false, true} {
		s := NewUnstartedServer()
		if s.URL != "" || s.TokenURL != "" {
			t.Fatalf("unstarted server has URL %q, TokenURL %q; want both empty", s.URL, s.TokenURL)
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		replaced := s.Listener
		// Should Start leave it open, Accept fails by this deadline instead of hanging.
		replaced.(*net.TCPListener).SetDeadline(time.Now().Add(5 * time.Second))
		s.Listener = l
		if tls {
			s.StartTLS()
		} else {
			s.Start()
		}
		scheme := map[bool]string{false: "http", true: "https"}[tls]
		if want := scheme + "://" + l.Addr().String(); s.URL != want || s.TokenURL != want+TokenPath {
			t.Fatalf("URL %q, TokenURL %q; want the given listener's address %q", s.URL, s.TokenURL, want)
		}
		if resp, _ := post(t, s.Client(), s.TokenURL, "application/json", credentials(s)); resp.StatusCode != 201 {
			t.Fatalf("token request on the given listener: status %d", resp.StatusCode)
		}
		if _, err := replaced.Accept(); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("the listener that Start replaced: Accept = %v, want it closed", err)
		}
		s.Close()
	}
}

func TestStartingTwicePanics(t *testing.T) {
	s := NewServer()
	defer s.Close()
	defer func() {
		if recover() == nil {
			t.Fatal("second Start did not panic")
		}
	}()
	s.Start()
}

func TestUnstartedServerCanBeClosed(t *testing.T) {
	s := NewUnstartedServer()
	l := s.Listener
	s.Close()
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close = %v, want the listener closed", err)
	}
}

// timedToken sends one token request and returns how long its answer
// took. It may run on a goroutine of its own, so it reports with Errorf.
func timedToken(t *testing.T, s *Server) time.Duration {
	t.Helper()
	start := time.Now()
	resp, err := s.Client().Post(s.TokenURL, "application/json", strings.NewReader(credentials(s)))
	if err != nil {
		t.Error(err)
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Errorf("status %d, want 201", resp.StatusCode)
	}
	return time.Since(start)
}

func TestSetLatencyRangeDelaysEachAnswerByItsOwnAmount(t *testing.T) {
	s := NewServer()
	defer s.Close()
	const lo, hi = 10 * time.Millisecond, 110 * time.Millisecond
	s.SetLatencyRange(lo, hi)
	took := make([]time.Duration, 8)
	var wg sync.WaitGroup
	for i := range took {
		wg.Go(func() { took[i] = timedToken(t, s) })
	}
	wg.Wait()
	shortest, longest := slices.Min(took), slices.Max(took)
	if shortest < lo {
		t.Errorf("an answer took %v, less than the range's low end %v", shortest, lo)
	}
	// Eight draws from a 100 ms range all within 5 ms of each other
	// would happen about once in 10^8 runs.
	if longest-shortest < 5*time.Millisecond {
		t.Errorf("answers took %v: all about the same, want them spread over [%v, %v]", took, lo, hi)
	}
	if st := s.Stats(); st.TokensIssued != len(took) {
		t.Errorf("tokens issued = %d, want %d", st.TokensIssued, len(took))
	}
}

func TestSetLatencyRangeWithHighBelowLowIsFixed(t *testing.T) {
	s := NewServer()
	defer s.Close()
	s.SetLatencyRange(30*time.Millisecond, 0)
	if d := timedToken(t, s); d < 30*time.Millisecond {
		t.Errorf("answer took %v, want at least the 30ms low end", d)
	}
}
