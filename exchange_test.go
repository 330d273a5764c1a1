package forteauth

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/forteauth/forteauth/fortetest"
	"golang.org/x/oauth2"
)

// endpointFor is testEndpoint for tokenURL, its clock (f.clock.now and the
// recorder's) set to a fake one.
func endpointFor(t *testing.T, tokenURL string) (*boundEndpoint, *sleepRecorder, *fakeClock) {
	t.Helper()
	f, rec := testEndpoint(t, configFor(tokenURL))
	clock := newFakeClock()
	rec.clock = clock
	f.clock.now = clock.Now
	return f, rec, clock
}

func TestFetchSendsDocumentedRequest(t *testing.T) {
	type seen struct {
		method, path, rawQuery, contentType, accept, userAgent, authorization string
		basicAuth                                                             bool
		body                                                                  []byte
	}
	var (
		mu  sync.Mutex
		got []seen
	)
	stub := newStub(t, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		_, _, basic := r.BasicAuth()
		mu.Lock()
		got = append(got, seen{
			method: r.Method, path: r.URL.Path, rawQuery: r.URL.RawQuery,
			contentType: r.Header.Get("Content-Type"), accept: r.Header.Get("Accept"),
			userAgent: r.Header.Get("User-Agent"), authorization: r.Header.Get("Authorization"),
			basicAuth: basic, body: body,
		})
		mu.Unlock()
		respond(http.StatusCreated, "application/json", tokenBody(testAccessToken, "Bearer", 3600))(w, r)
	})
	const path = "/custom/auth/v1/oauth2/token"
	f, _, _ := endpointFor(t, stub.URL+path)

	if _, err := f.fetch(context.Background()); err != nil {
		t.Fatalf("fetch: %s", hide(err.Error()))
	}

	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 {
		t.Fatalf("server saw %d requests, want 1", len(got))
	}
	r := got[0]
	if r.method != http.MethodPost {
		t.Errorf("method = %q, want POST", r.method)
	}
	if r.path != path {
		t.Errorf("path = %q, want the TokenURL's path %q", r.path, path)
	}
	if r.rawQuery != "" {
		t.Errorf("query = %q, want none", hide(r.rawQuery))
	}
	if r.contentType != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", r.contentType)
	}
	if r.accept != "application/json" {
		t.Errorf("Accept = %q, want application/json", r.accept)
	}
	if !strings.HasPrefix(r.userAgent, "forteauth-go/") {
		t.Errorf("User-Agent = %q, want it to start with forteauth-go/", r.userAgent)
	}
	if r.authorization != "" || r.basicAuth {
		t.Errorf("request carries an Authorization header (%d bytes); credentials belong in the body only", len(r.authorization))
	}
	want := `{"client_id":"` + testClientID + `","client_secret":"` + testSecret + `"}`
	if string(r.body) != want {
		t.Errorf("body = %s, want %s", hide(string(r.body)), hide(want))
	}
}

func TestFetchAcceptsSuccessResponses(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
	}{
		{"201 as documented", http.StatusCreated, tokenBody(testAccessToken, "Bearer", 3600)},
		{"200", http.StatusOK, tokenBody(testAccessToken, "Bearer", 3600)},
		{"expires_in as a string", http.StatusCreated, tokenBody(testAccessToken, "Bearer", "3600")},
		{"token_type lower case", http.StatusCreated, tokenBody(testAccessToken, "bearer", 3600)},
		{"token_type upper case", http.StatusCreated, tokenBody(testAccessToken, "BEARER", 3600)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stub := newStub(t, respond(tt.status, "application/json", tt.body))
			f, _, clock := endpointFor(t, stub.URL+fortetest.TokenPath)
			clock.Advance(17 * time.Minute)
			sentAt := clock.Now()

			got, err := f.fetch(context.Background())
			tok, sent := got.tok, got.sent
			if err != nil {
				t.Fatalf("fetch: %s", hide(err.Error(), testAccessToken))
			}
			if tok.AccessToken != testAccessToken {
				t.Errorf("AccessToken is not the one served (%d bytes, want %d)", len(tok.AccessToken), len(testAccessToken))
			}
			if tok.TokenType != "Bearer" {
				t.Errorf("TokenType = %q, want Bearer", tok.TokenType)
			}
			if tok.ExpiresIn != 3600 {
				t.Errorf("ExpiresIn = %d, want 3600", tok.ExpiresIn)
			}
			if !sent.Equal(sentAt) {
				t.Errorf("sent = %v, want the clock's time when sent, %v", sent, sentAt)
			}
			if want := sentAt.Add(time.Hour); !tok.Expiry.Equal(want) {
				t.Errorf("Expiry = %v, want sent + expires_in = %v", tok.Expiry, want)
			}
			if stub.requests.Load() != 1 {
				t.Errorf("server saw %d requests, want 1", stub.requests.Load())
			}
		})
	}
}

func TestFetchReturnsDistinctTokenEachTime(t *testing.T) {
	srv := newForteServer(t)
	f, _, _ := endpointFor(t, srv.TokenURL)
	f1, err1 := f.fetch(context.Background())
	f2, err2 := f.fetch(context.Background())
	t1, t2 := f1.tok, f2.tok
	if err1 != nil || err2 != nil {
		t.Fatalf("fetch failed: %s", hide(errors.Join(err1, err2).Error()))
	}
	if t1 == t2 {
		t.Fatal("two fetches returned the same *oauth2.Token pointer")
	}
	if t1.AccessToken == t2.AccessToken {
		t.Error("two fetches returned the same access token; want each to be a new one")
	}
	if n := srv.Stats().TokenRequests; n != 2 {
		t.Errorf("server saw %d token requests, want 2", n)
	}
}

func TestFetchRejectsInvalidTokenResponsesWithoutRetry(t *testing.T) {
	tests := malformedAnswers
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newForteServer(t)
			// Only the first request gets the bad body; a retry would get a
			// good token, so retrying shows up as success.
			srv.FailNext(fortetest.Failure{Status: tt.status, Body: tt.body, ContentType: tt.contentType})
			f, rec, _ := endpointFor(t, srv.TokenURL)

			got, err := f.fetch(context.Background())
			tok := got.tok
			if err == nil {
				t.Fatalf("fetch succeeded (token of %d bytes), want an error", len(tok.AccessToken))
			}
			msg := err.Error()
			assertAbsent(t, "error", msg, testSecret, tt.token)
			if !errors.Is(err, ErrInvalidResponse) {
				t.Errorf("error does not wrap ErrInvalidResponse: %s", hide(msg, tt.token))
			}
			if !strings.HasPrefix(msg, "forteauth: ") {
				t.Errorf("error %q does not start with \"forteauth: \"", hide(msg, tt.token))
			}
			if n := srv.Stats().TokenRequests; n != 1 {
				t.Errorf("server saw %d token requests, want exactly 1 (no retry)", n)
			}
			if w := rec.recorded(); len(w) != 0 {
				t.Errorf("fetch waited %v before retrying, want no retry", w)
			}
		})
	}
}

func TestFetchRejectsBodyOverOneMiB(t *testing.T) {
	var written atomic.Int64
	done := make(chan struct{})
	stub := newStub(t, func(w http.ResponseWriter, r *http.Request) {
		defer close(done)
		io.Copy(io.Discard, r.Body)
		// A valid token answer, padded past 1 MiB.
		body := `{"data":{"access_token":"` + testAccessToken + `","expires_in":3600,"token_type":"Bearer"},"padding":"` +
			strings.Repeat("x", 1<<20) + `"}`
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		for len(body) > 0 {
			chunk := body[:min(len(body), 32<<10)]
			n, err := io.WriteString(w, chunk)
			written.Add(int64(n))
			if err != nil {
				return
			}
			body = body[n:]
		}
	})
	f, rec, _ := endpointFor(t, stub.URL+fortetest.TokenPath)

	_, err := f.fetch(context.Background())
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("handler did not finish within 10s")
	}
	if n := written.Load(); n <= 1<<20 {
		t.Fatalf("server wrote only %d bytes; the test needs more than 1 MiB", n)
	}
	if err == nil {
		t.Fatal("fetch accepted a body over 1 MiB")
	}
	msg := err.Error()
	assertAbsent(t, "error", msg, testSecret, testAccessToken)
	if !errors.Is(err, ErrInvalidResponse) {
		t.Errorf("error does not wrap ErrInvalidResponse: %s", hide(msg, testAccessToken))
	}
	if !strings.Contains(msg, "1 MiB") {
		t.Errorf("error %q does not say the body exceeds 1 MiB", hide(msg, testAccessToken))
	}
	if n := stub.requests.Load(); n != 1 || len(rec.recorded()) != 0 {
		t.Errorf("server saw %d requests and fetch waited %v; want 1 request, no retry", n, rec.recorded())
	}
}

func TestFetchReportsForteErrorAsRetrieveError(t *testing.T) {
	const body = `{"error":{"message":"invalid params","reason":"Unauthorized","status":401}}`
	srv := newForteServer(t)
	srv.FailNext(fortetest.Failure{Status: http.StatusUnauthorized, Body: body})
	f, rec, _ := endpointFor(t, srv.TokenURL)

	_, err := f.fetch(context.Background())
	if err == nil {
		t.Fatal("fetch succeeded after a 401")
	}
	msg := err.Error()
	assertAbsent(t, "error", msg, testSecret)
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		t.Fatalf("error does not unwrap to *oauth2.RetrieveError: %s", hide(msg))
	}
	if re.Response == nil || re.Response.StatusCode != http.StatusUnauthorized {
		t.Errorf("RetrieveError.Response = %v, want status 401", re.Response)
	}
	if string(re.Body) != body {
		t.Errorf("RetrieveError.Body = %s, want %s", hide(string(re.Body)), body)
	}
	if re.ErrorCode != "Unauthorized" {
		t.Errorf("ErrorCode = %q, want Unauthorized", hide(re.ErrorCode))
	}
	if re.ErrorDescription != "invalid params" {
		t.Errorf("ErrorDescription = %q, want invalid params", hide(re.ErrorDescription))
	}
	if !strings.HasPrefix(msg, "forteauth: ") {
		t.Errorf("error %q does not start with \"forteauth: \"", hide(msg))
	}
	if !strings.Contains(msg, "check ClientID and ClientSecret") {
		t.Errorf("error %q does not tell the user to check ClientID and ClientSecret", hide(msg))
	}
	if n := srv.Stats().TokenRequests; n != 1 || len(rec.recorded()) != 0 {
		t.Errorf("server saw %d token requests, waits %v; want 1 request and no retry", n, rec.recorded())
	}
}

func TestFetchScrubsSecretEchoedInErrorBody(t *testing.T) {
	forteBody := func(msg string) string {
		b, _ := json.Marshal(map[string]any{"error": map[string]any{"message": msg, "reason": "Unauthorized", "status": 401}})
		return string(b)
	}
	tests := []struct {
		name   string
		secret string
		body   func(request []byte, secret string) string
	}{
		{"request echoed as is", testSecret, func(req []byte, _ string) string {
			return "bad request: " + string(req)
		}},
		{"secret in Forte's error message", testSecret, func(_ []byte, s string) string {
			return forteBody("client_secret " + s + " is wrong")
		}},
		{"request with HTML-escaped secret echoed as is", `s3cr3t<&>"XYZ`, func(req []byte, _ string) string {
			return string(req)
		}},
		{"secret in error message with slashes escaped", "s3cr3t/value+XYZ/==", func(_ []byte, s string) string {
			// PHP's json_encode and some Java encoders write "/" as "\/".
			return strings.ReplaceAll(forteBody("client_secret "+s+" is wrong"), "/", `\/`)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stub := newStub(t, func(w http.ResponseWriter, r *http.Request) {
				req, _ := io.ReadAll(r.Body)
				respond(http.StatusUnauthorized, "application/json", tt.body(req, tt.secret))(w, r)
			})
			cfg := configFor(stub.URL + fortetest.TokenPath)
			cfg.ClientSecret = tt.secret
			f, _ := testEndpoint(t, cfg)

			_, err := f.fetch(context.Background())
			if err == nil {
				t.Fatal("fetch succeeded after a 401")
			}
			assertAbsent(t, "error string", err.Error(), tt.secret)
			var re *oauth2.RetrieveError
			if !errors.As(err, &re) {
				t.Fatalf("error does not unwrap to *oauth2.RetrieveError: %s", hide(err.Error(), tt.secret))
			}
			assertAbsent(t, "RetrieveError.Body", string(re.Body), tt.secret)
			assertAbsent(t, "RetrieveError.ErrorCode", re.ErrorCode, tt.secret)
			assertAbsent(t, "RetrieveError.ErrorDescription", re.ErrorDescription, tt.secret)
			assertAbsent(t, "RetrieveError.Error()", re.Error(), tt.secret)
		})
	}
}

func TestFetchDoesNotRetryClientErrors(t *testing.T) {
	for _, status := range []int{
		http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound,
		http.StatusMethodNotAllowed, http.StatusUnprocessableEntity,
		http.StatusNotImplemented, http.StatusHTTPVersionNotSupported,
	} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			srv := newForteServer(t)
			srv.FailNext(fortetest.Failure{Status: status})
			f, rec, _ := endpointFor(t, srv.TokenURL)

			_, err := f.fetch(context.Background())
			if err == nil {
				t.Fatalf("fetch succeeded; want the %d returned without retry", status)
			}
			var re *oauth2.RetrieveError
			if !errors.As(err, &re) || re.Response.StatusCode != status {
				t.Errorf("error %s does not unwrap to a RetrieveError with status %d", hide(err.Error()), status)
			}
			if n := srv.Stats().TokenRequests; n != 1 {
				t.Errorf("server saw %d token requests, want exactly 1", n)
			}
			if w := rec.recorded(); len(w) != 0 {
				t.Errorf("fetch waited %v, want no retry", w)
			}
		})
	}
}

func TestFetchDoesNotFollowRedirects(t *testing.T) {
	other := newStub(t, respond(http.StatusCreated, "application/json", tokenBody(testAccessToken, "Bearer", 3600)))
	redirector := newStub(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+fortetest.TokenPath, http.StatusFound)
	})

	var followCalls atomic.Int32
	follow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error {
		followCalls.Add(1)
		return nil
	}}
	for _, tc := range []struct {
		name   string
		client *http.Client
	}{
		{"default client", nil},
		{"client whose CheckRedirect follows", follow},
	} {
		t.Run(tc.name, func(t *testing.T) {
			other.requests.Store(0)
			redirector.requests.Store(0)
			cfg := configFor(redirector.URL + fortetest.TokenPath)
			cfg.HTTPClient = tc.client

			tok, err := cfg.Token(context.Background())
			if err == nil {
				t.Fatalf("Token succeeded (token of %d bytes) by following a redirect", len(tok.AccessToken))
			}
			assertAbsent(t, "error", err.Error(), testSecret)
			if n := other.requests.Load(); n != 0 {
				t.Errorf("redirect target got %d requests, want 0: the secret went to another host", n)
			}
			if n := redirector.requests.Load(); n != 1 {
				t.Errorf("token endpoint got %d requests, want 1", n)
			}
			var re *oauth2.RetrieveError
			if !errors.As(err, &re) || re.Response.StatusCode != http.StatusFound {
				t.Errorf("error %s does not unwrap to a RetrieveError with status 302", hide(err.Error()))
			}
		})
	}
	if n := followCalls.Load(); n != 0 {
		t.Errorf("the caller's CheckRedirect was consulted %d times, want 0", n)
	}
	if follow.CheckRedirect == nil || follow.CheckRedirect(nil, nil) != nil {
		t.Error("the caller's http.Client.CheckRedirect was modified")
	}
}

func TestFetchRetriesServerErrorsThenSucceeds(t *testing.T) {
	for _, status := range []int{
		http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable,
		http.StatusGatewayTimeout, http.StatusTooManyRequests, http.StatusRequestTimeout,
	} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			srv := newForteServer(t)
			const failures = 2
			srv.FailNext(fortetest.Failure{Status: status}, fortetest.Failure{Status: status})
			f, rec, _ := endpointFor(t, srv.TokenURL)

			got, err := f.fetch(context.Background())
			tok := got.tok
			if err != nil {
				t.Fatalf("fetch: %s", hide(err.Error()))
			}
			if tok.AccessToken == "" {
				t.Error("token is empty")
			}
			if n := srv.Stats().TokenRequests; n != failures+1 {
				t.Errorf("server saw %d token requests, want %d", n, failures+1)
			}
			if w := rec.recorded(); len(w) != failures {
				t.Errorf("fetch waited %v, want %d waits", w, failures)
			}
		})
	}
}

func TestFetchGivesUpAfterRetryAttempts(t *testing.T) {
	for _, status := range []int{http.StatusInternalServerError, http.StatusServiceUnavailable, http.StatusTooManyRequests} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			srv := newForteServer(t)
			f, rec, _ := endpointFor(t, srv.TokenURL)
			attempts := f.retry.attempts
			for i := 1; i <= attempts; i++ {
				srv.FailNext(fortetest.Failure{Status: status,
					Body: `{"error":{"message":"failure ` + strconv.Itoa(i) + `","reason":"Server Error","status":` + strconv.Itoa(status) + `}}`})
			}
			// The request after those would succeed.

			_, err := f.fetch(context.Background())
			if err == nil {
				t.Fatal("fetch succeeded after every attempt failed")
			}
			var re *oauth2.RetrieveError
			if !errors.As(err, &re) {
				t.Fatalf("error does not unwrap to a RetrieveError: %s", hide(err.Error()))
			}
			if want := "failure " + strconv.Itoa(attempts); re.ErrorDescription != want || re.Response.StatusCode != status {
				t.Errorf("got the error of %q (HTTP %d), want the last one, %q (HTTP %d)",
					re.ErrorDescription, re.Response.StatusCode, want, status)
			}
			if n := srv.Stats().TokenRequests; n != attempts {
				t.Errorf("server saw %d token requests, want retry.attempts = %d", n, attempts)
			}
			if w := rec.recorded(); len(w) != attempts-1 {
				t.Errorf("fetch waited %v, want %d waits", w, attempts-1)
			}
		})
	}
}

func TestFetchBackoffWaitsDoubleWithinBounds(t *testing.T) {
	tests := []struct {
		name   string
		policy func(*retryPolicy)
	}{
		{"default policy", func(*retryPolicy) {}},
		{"capped", func(p *retryPolicy) { p.attempts, p.backoff = 6, backoff{base: time.Second, max: 3 * time.Second} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newForteServer(t)
			srv.SetFailureRate(1, fortetest.Failure{Status: http.StatusServiceUnavailable})
			for range 5 { // jitter differs each time
				f, rec, _ := endpointFor(t, srv.TokenURL)
				tt.policy(&f.retry)
				if _, err := f.fetch(context.Background()); err == nil {
					t.Fatal("fetch succeeded against a server that always fails")
				}
				waits := rec.recorded()
				if len(waits) != f.retry.attempts-1 {
					t.Fatalf("fetch waited %v, want %d waits", waits, f.retry.attempts-1)
				}
				for i, w := range waits {
					n := i + 1
					hi := min(f.retry.backoff.base<<(n-1), f.retry.backoff.max)
					lo := hi / 2
					if w < lo || w > hi {
						t.Errorf("wait %d = %v, want within [%v, %v]", n, w, lo, hi)
					}
				}
			}
		})
	}
}

func TestFetchHonoursRetryAfterSeconds(t *testing.T) {
	for _, status := range []int{http.StatusServiceUnavailable, http.StatusTooManyRequests} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			srv := newForteServer(t)
			srv.FailNext(fortetest.Failure{Status: status, RetryAfter: "2"})
			f, rec, _ := endpointFor(t, srv.TokenURL)

			if _, err := f.fetch(context.Background()); err != nil {
				t.Fatalf("fetch: %s", hide(err.Error()))
			}
			waits := rec.recorded()
			if len(waits) != 1 || waits[0] < 2*time.Second {
				t.Errorf("fetch waited %v, want one wait of at least the 2s Retry-After asks", waits)
			}
			if n := srv.Stats().TokenRequests; n != 2 {
				t.Errorf("server saw %d token requests, want 2", n)
			}
		})
	}
}

func TestFetchHonoursRetryAfterDate(t *testing.T) {
	srv := newForteServer(t)
	f, rec, clock := endpointFor(t, srv.TokenURL)
	srv.FailNext(fortetest.Failure{Status: http.StatusServiceUnavailable,
		RetryAfter: clock.Now().Add(3 * time.Second).Format(http.TimeFormat)})

	if _, err := f.fetch(context.Background()); err != nil {
		t.Fatalf("fetch: %s", hide(err.Error()))
	}
	waits := rec.recorded()
	if len(waits) != 1 || waits[0] < 2500*time.Millisecond || waits[0] > 3500*time.Millisecond {
		t.Errorf("fetch waited %v, want one wait of about 3s, as the Retry-After date asks", waits)
	}
}

func TestFetchDoesNotRetryWhenRetryAfterExceedsBudget(t *testing.T) {
	srv := newForteServer(t)
	clock := newFakeClock()
	tests := []struct{ name, retryAfter string }{
		{"seconds", "3600"},
		{"date", clock.Now().Add(2 * time.Hour).Format(http.TimeFormat)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := srv.Stats().TokenRequests
			srv.FailNext(fortetest.Failure{Status: http.StatusServiceUnavailable, RetryAfter: tt.retryAfter})
			f, rec, _ := endpointFor(t, srv.TokenURL)
			f.clock.now = clock.Now
			logger, logs := newTestLogger()
			f.log = logger

			_, err := f.fetch(context.Background())
			if err == nil {
				t.Fatal("fetch succeeded; want the 503 returned at once")
			}
			var re *oauth2.RetrieveError
			if !errors.As(err, &re) || re.Response.StatusCode != http.StatusServiceUnavailable {
				t.Errorf("error %s does not unwrap to the 503", hide(err.Error()))
			}
			if n := srv.Stats().TokenRequests - before; n != 1 {
				t.Errorf("server saw %d token requests, want 1", n)
			}
			if w := rec.recorded(); len(w) != 0 {
				t.Errorf("fetch waited %v, want no wait", w)
			}
			assertAbsent(t, "log", logs.String(), testSecret)
		})
	}
}

func TestFetchRetriesConnectionClosedMidAnswer(t *testing.T) {
	tests := []struct {
		name string
		fail fortetest.Failure
	}{
		{"closed mid-body", fortetest.Failure{Hangup: true, Body: tokenBody(testAccessToken, "Bearer", 3600)}},
		{"closed mid-body of a 503", fortetest.Failure{Status: http.StatusServiceUnavailable, Hangup: true, Body: `{"error":{"message":"down","reason":"Service Unavailable","status":503}}`}},
		{"closed before answering", fortetest.Failure{Hangup: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newForteServer(t)
			srv.FailNext(tt.fail)
			f, rec, _ := endpointFor(t, srv.TokenURL)

			got, err := f.fetch(context.Background())
			tok := got.tok
			if err != nil {
				t.Fatalf("fetch: %s", hide(err.Error()))
			}
			if tok.AccessToken == testAccessToken {
				t.Error("fetch returned the token from the truncated answer")
			}
			if n := srv.Stats().TokenRequests; n != 2 {
				t.Errorf("server saw %d token requests, want 2", n)
			}
			if w := rec.recorded(); len(w) != 1 {
				t.Errorf("fetch waited %v, want one wait", w)
			}
		})
	}
}

func TestFetchRetriesConnectionRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	counter := &countingTransport{}
	cfg := configFor("http://" + addr + fortetest.TokenPath)
	cfg.HTTPClient = &http.Client{Transport: counter}
	f, rec := testEndpoint(t, cfg)

	_, err = f.fetch(context.Background())
	if err == nil {
		t.Fatal("fetch succeeded against a closed port")
	}
	assertAbsent(t, "error", err.Error(), testSecret)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("error %s is not a refused connection", hide(err.Error()))
	}
	if n := counter.n.Load(); int(n) != f.retry.attempts {
		t.Errorf("sent %d requests, want retry.attempts = %d", n, f.retry.attempts)
	}
	if w := rec.recorded(); len(w) != f.retry.attempts-1 {
		t.Errorf("fetch waited %v, want %d waits", w, f.retry.attempts-1)
	}
}

func TestFetchDoesNotRetryUntrustedCertificate(t *testing.T) {
	srv := fortetest.NewTLSServer()
	t.Cleanup(srv.Close)
	cfg := configFor(srv.TokenURL)
	cfg.HTTPClient = &http.Client{Transport: &http.Transport{}} // does not trust srv's certificate
	f, rec := testEndpoint(t, cfg)

	_, err := f.fetch(context.Background())
	if err == nil {
		t.Fatal("fetch succeeded over an untrusted certificate")
	}
	assertAbsent(t, "error", err.Error(), testSecret)
	if !errors.As(err, new(*tls.CertificateVerificationError)) {
		t.Errorf("error %s is not a certificate verification error", hide(err.Error()))
	}
	if w := rec.recorded(); len(w) != 0 {
		t.Errorf("fetch waited %v, want no retry", w)
	}
	if n := srv.Stats().TokenRequests; n != 0 {
		t.Errorf("token endpoint handled %d requests, want 0", n)
	}
}

func TestRetryAfterParsesSecondsAndDates(t *testing.T) {
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name, value string
		want        time.Duration
	}{
		{"absent", "", 0},
		{"zero seconds", "0", 0},
		{"seconds", "5", 5 * time.Second},
		{"minutes of seconds", "120", 2 * time.Minute},
		{"surrounding whitespace", " \t7 ", 7 * time.Second},
		{"IMF-fixdate", now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{"RFC 850 date", now.Add(time.Hour).Format("Monday, 02-Jan-06 15:04:05 GMT"), time.Hour},
		{"ANSI C date", now.Add(time.Minute).Format(time.ANSIC), time.Minute},
		{"date now", now.Format(http.TimeFormat), 0},
		{"past date", now.Add(-time.Hour).Format(http.TimeFormat), 0},
		{"garbage", "soon", 0},
		{"negative", "-5", 0},
		{"fraction", "1.5", 0},
		{"with unit", "5s", 0},
		{"huge", "9999999999999", math.MaxInt32 * time.Second},
		{"largest int64", "9223372036854775807", math.MaxInt32 * time.Second},
		// delay-seconds is 1*DIGIT with no upper limit (RFC 9110 §10.2.3):
		// a value too long for 64 bits still asks for a very long wait.
		{"longer than 64 bits", "99999999999999999999", math.MaxInt32 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := retryAfter(tt.value, now); got != tt.want {
				t.Errorf("retryAfter(%q) = %v, want %v", tt.value, got, tt.want)
			}
		})
	}
}

func TestRetryableStatusClassifiesStatuses(t *testing.T) {
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		status     int
		retryAfter string
		want       time.Duration // -1: final
	}{
		{http.StatusRequestTimeout, "", 0},
		{http.StatusTooManyRequests, "", 0},
		{http.StatusTooManyRequests, "7", 7 * time.Second},
		{http.StatusInternalServerError, "", 0},
		{http.StatusBadGateway, "", 0},
		{http.StatusServiceUnavailable, "", 0},
		{http.StatusServiceUnavailable, now.Add(time.Minute).Format(http.TimeFormat), time.Minute},
		{http.StatusGatewayTimeout, "", 0},
		{599, "", 0},
		{http.StatusNotImplemented, "", -1},
		{http.StatusHTTPVersionNotSupported, "", -1},
		{http.StatusBadRequest, "", -1},
		{http.StatusUnauthorized, "", -1},
		{http.StatusUnauthorized, "5", -1},
		{http.StatusForbidden, "", -1},
		{http.StatusNotFound, "", -1},
		{http.StatusConflict, "", -1},
		{http.StatusFound, "", -1},
		{http.StatusNotModified, "", -1},
	}
	for _, tt := range tests {
		resp := &http.Response{StatusCode: tt.status, Header: http.Header{}}
		if tt.retryAfter != "" {
			resp.Header.Set("Retry-After", tt.retryAfter)
		}
		// want < 0: final; else retried after at least want.
		if got := statusRetry(resp, now); (tt.want < 0) == got.again || got.again && got.after != tt.want {
			t.Errorf("statusRetry(%d, Retry-After %q) = %+v, want %v", tt.status, tt.retryAfter, got, tt.want)
		}
	}
}

// bubbleEndpoint is the endpoint of a source of srv, a memory server in
// the current bubble, with instant retry waits: a fetch's time in the
// bubble is its attempts' alone.
func bubbleEndpoint(t *testing.T, srv *fortetest.Server) (*boundEndpoint, *sleepRecorder) {
	t.Helper()
	return testEndpoint(t, &Config{ClientID: srv.ClientID, ClientSecret: srv.ClientSecret, TokenURL: srv.TokenURL, HTTPClient: srv.Client()})
}

func TestFetchPerAttemptTimeoutStopsHungRequest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fortetest.NewMemoryServer()
		srv.SetLatency(2 * time.Second)
		f, _ := bubbleEndpoint(t, srv)
		f.retry.perAttempt = 50 * time.Millisecond

		start := time.Now()
		_, err := f.fetch(context.Background())
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("fetch of answers slower than the per-attempt timeout: %v, want a timeout", err)
		}
		n := tokenRequests(srv)
		if took := time.Since(start); n != f.retry.attempts || took != time.Duration(n)*f.retry.perAttempt {
			t.Errorf("%d attempts took %v; want %d, each ended by the per-attempt timeout (%v)", n, took, f.retry.attempts, f.retry.perAttempt)
		}
	})
}

// An attempt cut off by the per-attempt timeout is a network failure like
// any other: with most of the fetch budget left, fetch should try again.
func TestFetchRetriesAttemptThatTimedOut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fortetest.NewMemoryServer()
		srv.FailNext(fortetest.Failure{Status: http.StatusServiceUnavailable, Delay: 10 * time.Second}) // the first request hangs
		f, rec := bubbleEndpoint(t, srv)
		f.retry.perAttempt = 500 * time.Millisecond

		start := time.Now()
		if _, err := f.fetch(context.Background()); err != nil {
			t.Fatalf("fetch gave up after one timed-out attempt (server saw %d requests, waits %v) with most of its budget left: %v",
				tokenRequests(srv), rec.recorded(), err)
		}
		if n, took := tokenRequests(srv), time.Since(start); n != 2 || took != f.retry.perAttempt {
			t.Errorf("%d requests in %v, want 2: one cut off after %v, then one answered at once", n, took, f.retry.perAttempt)
		}
	})
}

func TestFetchBudgetBoundsWholeFetch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fortetest.NewMemoryServer()
		srv.SetLatency(2 * time.Second)
		f, rec := bubbleEndpoint(t, srv)
		f.retry.budget = 100 * time.Millisecond

		start := time.Now()
		_, err := f.fetch(context.Background())
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("fetch of an answer slower than the budget: %v, want a timeout", err)
		}
		if took := time.Since(start); took != f.retry.budget || len(rec.recorded()) != 0 {
			t.Errorf("fetch took %v and waited %v, want exactly its budget (%v) and no wait after it", took, rec.recorded(), f.retry.budget)
		}
	})
}

func TestStatusErrorSaysWhatToDo(t *testing.T) {
	cases := []struct {
		status   int
		location string
		want     string
		not      string
	}{
		{401, "", "check ClientID and ClientSecret", ""},
		{404, "", "check TokenURL", ""},
		{302, "https://elsewhere.example/token", `to "https://elsewhere.example/token"; set TokenURL`, ""},
		{302, "", "302 Found; set TokenURL to the final URL", `to ""`},
		{408, "", "overloaded or down", ""},
		{503, "", "overloaded or down", ""},
		{501, "", "does not support this request", "overloaded"},
	}
	clk := systemClock()
	f := &endpoint{red: newRedactor(testClientID, "s3cr3t-value-XYZ"), clock: &clk}
	for _, c := range cases {
		resp := &http.Response{StatusCode: c.status, Status: fmt.Sprintf("%d %s", c.status, http.StatusText(c.status)), Header: http.Header{}}
		if c.location != "" {
			resp.Header.Set("Location", c.location)
		}
		msg := f.statusError(resp, nil).Error()
		if !strings.HasPrefix(msg, "forteauth: ") || !strings.Contains(msg, c.want) || c.not != "" && strings.Contains(msg, c.not) {
			t.Errorf("%d: %q, want it to contain %q", c.status, msg, c.want)
		}
	}
}

func TestTokenCarriesTheDataFieldsAsExtra(t *testing.T) {
	body := `{"data":{"access_token":"` + testAccessToken + `","token_type":"Bearer","expires_in":3600,` +
		`"scope":"payments:write","limits":{"per_minute":600}}}`
	stub := newStub(t, respond(http.StatusCreated, "application/json", body))
	cfg := configFor(stub.URL + fortetest.TokenPath)

	direct, err := cfg.Token(context.Background())
	if err != nil {
		t.Fatalf("Config.Token: %s", hide(err.Error(), testAccessToken))
	}
	ts := cfg.TokenSource(context.Background())
	cached := mustToken(t, ts)
	for name, tok := range map[string]*oauth2.Token{"Config.Token": direct, "TokenSource.Token": cached} {
		if got := tok.Extra("expires_in"); got != float64(3600) {
			t.Errorf("%s: Extra(expires_in) = %#v, want the JSON number as decoded, float64(3600)", name, got)
		}
		if got := tok.Extra("scope"); got != "payments:write" {
			t.Errorf("%s: Extra(scope) = %#v, want an unknown field to come through", name, got)
		}
		if got, ok := tok.Extra("limits").(map[string]any); !ok || got["per_minute"] != float64(600) {
			t.Errorf("%s: Extra(limits) = %#v, want the nested object", name, tok.Extra("limits"))
		}
		if got := tok.Extra("token_type"); got != "Bearer" {
			t.Errorf("%s: Extra(token_type) = %#v", name, got)
		}
	}
	if again := mustToken(t, ts); again.Extra("scope") != "payments:write" {
		t.Errorf("a second copy of the cached token lost its Extra: %#v", again.Extra("scope"))
	}
	if n := testing.AllocsPerRun(100, func() { ts.Token() }); n > 1 {
		t.Errorf("Token() on a fresh token costs %v allocations, want the one copy", n)
	}
}

func TestExtraNeverHoldsTheSecret(t *testing.T) {
	var secret string
	stub := newStub(t, func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			ClientSecret string `json:"client_secret"`
		}
		json.NewDecoder(r.Body).Decode(&req)
		// A server that echoes the request in its answer, escaped as
		// encoding/json escapes it.
		echo, _ := json.Marshal(map[string]any{"client_secret": req.ClientSecret, "nested": []any{"x " + req.ClientSecret}})
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"data":{"access_token":%q,"token_type":"Bearer","expires_in":3600,"echo":%s,%q:1}}`, testAccessToken, echo, req.ClientSecret)
	})
	cfg := configFor(stub.URL + fortetest.TokenPath)
	secret = `s3cr"et<&>/` + cfg.ClientSecret
	cfg.ClientSecret = secret
	tok, err := cfg.TokenSource(context.Background()).Token()
	if err != nil {
		t.Fatalf("Token: %s", hide(err.Error(), secret, testAccessToken))
	}
	if tok.Extra("access_token") != testAccessToken {
		t.Error("redaction changed the other fields")
	}
	if tok.Extra(secret) != nil {
		t.Error("Extra kept a field whose name is the secret")
	}
	if got := tok.Extra("echo"); got != withheld {
		t.Errorf("Extra(echo), which held the secret, is %s; want it withheld", hide(fmt.Sprint(got), secret))
	}
}
