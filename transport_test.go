package forteauth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/forteauth/forteauth/fortetest"
	"golang.org/x/oauth2"
)

// trackedBody is a request body that records whether it was closed.
type trackedBody struct {
	io.Reader
	closed atomic.Bool
}

func (b *trackedBody) Close() error {
	b.closed.Store(true)
	return nil
}

// sendLog is a base RoundTripper that records what reaches it.
type sendLog struct {
	base http.RoundTripper
	mu   sync.Mutex
	auth []string
	body []string
}

func (l *sendLog) RoundTrip(r *http.Request) (*http.Response, error) {
	var body []byte
	if r.Body != nil {
		body, _ = io.ReadAll(r.Body)
		r.Body.Close()
	}
	l.mu.Lock()
	l.auth = append(l.auth, r.Header.Get("Authorization"))
	l.body = append(l.body, string(body))
	l.mu.Unlock()
	r2 := r.Clone(r.Context())
	r2.Body = io.NopCloser(strings.NewReader(string(body)))
	return l.base.RoundTrip(r2)
}

func (l *sendLog) sends() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.auth)
}

func TestTransportSetsBearerOnACloneOnly(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	ts := newTestSource(t, withServer(srv)).ts
	var seen *http.Request
	tr := &Transport{Source: ts, Base: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		seen = r
		return &http.Response{StatusCode: 200, Body: http.NoBody, Request: r}, nil
	})}

	req, _ := http.NewRequest("GET", srv.URL+"/v3/x", nil)
	req.Header.Set("X-Caller", "kept")
	if _, err := tr.RoundTrip(req); err != nil {
		t.Fatal(err)
	}
	tok := mustToken(t, ts)
	if got := seen.Header.Get("Authorization"); got != "Bearer "+tok.AccessToken {
		t.Fatalf("sent Authorization %q, want the cached Bearer token", redact(got))
	}
	if seen == req || req.Header.Get("Authorization") != "" || seen.Header.Get("X-Caller") != "kept" {
		t.Fatal("the caller's request was modified, or its headers not carried over")
	}
}

func TestTransportClosesTheBodyOnEveryErrorPath(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		t.Errorf("base transport reached for %s", r.URL)
		return nil, errors.New("unreachable")
	})
	good := &Config{ClientID: srv.ClientID, ClientSecret: srv.ClientSecret, TokenURL: srv.TokenURL}
	bad := &Config{ClientID: srv.ClientID, ClientSecret: "not-the-secret", TokenURL: srv.TokenURL}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()

	cases := []struct {
		name string
		tr   *Transport
		url  string
		ctx  context.Context
	}{
		{"nil Source", &Transport{Base: base}, srv.URL, context.Background()},
		{"invalid Config", &Transport{Source: (&Config{TokenURL: srv.TokenURL}).TokenSource(context.Background()), Base: base}, srv.URL, context.Background()},
		{"token endpoint rejects credentials", &Transport{Source: bad.TokenSource(context.Background()), Base: base}, srv.URL, context.Background()},
		{"request context already ended", &Transport{Source: good.TokenSource(context.Background()), Base: base}, srv.URL, cancelled},
		{"plain http to a remote host", &Transport{Source: good.TokenSource(context.Background()), Base: base, Hosts: []string{"api.example.com"}}, "http://api.example.com/", context.Background()},
		{"other source fails", &Transport{Source: failingSource{}, Base: base}, srv.URL, context.Background()},
		{"other source returns nil", &Transport{Source: oauth2.StaticTokenSource(nil), Base: base}, srv.URL, context.Background()},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			body := &trackedBody{Reader: strings.NewReader("payload")}
			req, _ := http.NewRequestWithContext(c.ctx, "POST", c.url, body)
			resp, err := c.tr.RoundTrip(req)
			if err == nil || resp != nil {
				t.Fatalf("RoundTrip = %v, %v; want an error", resp, err)
			}
			if !strings.HasPrefix(err.Error(), "forteauth: ") && c.name != "other source fails" {
				t.Errorf("error %q lacks the forteauth: prefix", err)
			}
			if !body.closed.Load() {
				t.Fatal("request body not closed")
			}
		})
	}
}

type failingSource struct{}

func (failingSource) Token() (*oauth2.Token, error) { return nil, errors.New("no token today") }

func TestMatchHost(t *testing.T) {
	cases := []struct {
		pattern, url string
		want         bool
	}{
		{"api.prod.lemmax.com", "https://api.prod.lemmax.com/v3", true},
		{"api.prod.lemmax.com", "https://API.Prod.Lemmax.com./v3", true},
		{"api.prod.lemmax.com", "https://api.prod.lemmax.com:8443/v3", true},
		{"api.prod.lemmax.com:443", "https://api.prod.lemmax.com/v3", true},
		{"api.prod.lemmax.com:443", "http://api.prod.lemmax.com/v3", false},
		{"api.prod.lemmax.com:8443", "https://api.prod.lemmax.com/v3", false},
		{"127.0.0.1:4000", "http://127.0.0.1:4000/", true},
		{"127.0.0.1:4000", "http://127.0.0.1:4001/", false},
		{"127.0.0.1:4000", "http://localhost:4000/", false},
		{"[::1]:4000", "http://[::1]:4000/", true},
		{"[::1]", "http://[::1]:4000/", true},
		{"::1", "http://[::1]:4000/", true},
		{"lemmax.com", "https://api.lemmax.com/", false},
		{"api.prod.lemmax.com", "https://api.prod.lemmax.com.evil.example/", false},
		{"api.prod.lemmax.com", "https://evil.example/api.prod.lemmax.com", false},
		{"", "https://api.prod.lemmax.com/", false},
		{"[::1", "http://[::1]/", false},
		{"[::1]junk", "http://[::1]/", false},
	}
	for _, c := range cases {
		u, err := url.Parse(c.url)
		if err != nil {
			t.Fatal(err)
		}
		if got := matchHost(c.pattern, u); got != c.want {
			t.Errorf("matchHost(%q, %q) = %v, want %v", c.pattern, c.url, got, c.want)
		}
	}
}

func TestTransportSendsTheTokenOnlyToAllowedHosts(t *testing.T) {
	srv := fortetest.NewServer() // 127.0.0.1:port
	defer srv.Close()
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer other.Close()
	otherURL := strings.Replace(other.URL, "127.0.0.1", "localhost", 1) // another host name

	ts := newTestSource(t, withServer(srv)).ts
	log := &sendLog{base: http.DefaultTransport}
	c := &http.Client{Transport: &Transport{Source: ts, Base: log}}
	get(t, c, srv.URL+"/v3/a")
	get(t, c, otherURL+"/v3/b")
	if log.auth[0] == "" || log.auth[1] != "" {
		t.Fatalf("default hosts: token host got %q, other host got %q; want only the token host", redact(log.auth[0]), redact(log.auth[1]))
	}

	log2 := &sendLog{base: http.DefaultTransport}
	c2 := &http.Client{Transport: &Transport{Source: ts, Base: log2, Hosts: []string{"localhost"}}}
	get(t, c2, srv.URL+"/v3/a")
	get(t, c2, otherURL+"/v3/b")
	if log2.auth[0] != "" || log2.auth[1] == "" {
		t.Fatalf("Hosts [localhost]: 127.0.0.1 got %q, localhost got %q", redact(log2.auth[0]), redact(log2.auth[1]))
	}
}

// TestConfigAPIHostsSetsWhereClientSendsTheToken: Config.APIHosts names
// the API under another host than TokenURL's, and Client sends the token
// there and only there.
func TestConfigAPIHostsSetsWhereClientSendsTheToken(t *testing.T) {
	srv := fortetest.NewServer() // 127.0.0.1:port
	defer srv.Close()
	asLocalhost := strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)
	log := &sendLog{base: http.DefaultTransport}
	cfg := &Config{ClientID: srv.ClientID, ClientSecret: srv.ClientSecret, TokenURL: srv.TokenURL,
		APIHosts: []string{"localhost"}, HTTPClient: &http.Client{Transport: log}}
	c := cfg.Client(context.Background())
	if code := get(t, c, asLocalhost+"/v3/a"); code != 200 {
		t.Fatalf("the API under APIHosts answered %d, want 200", code)
	}
	get(t, c, srv.URL+"/v3/b")
	if n := len(log.auth); n != 3 || log.auth[1] == "" || log.auth[2] != "" { // the token request, then the two
		t.Fatalf("APIHosts [localhost]: %d requests, localhost got a token: %v, 127.0.0.1 got one: %v; want only localhost",
			n, n > 1 && log.auth[1] != "", n > 2 && log.auth[2] != "")
	}
}

// TestARequestSentWithoutATokenIsLoggedOncePerHost: a request that
// Transport sends without a token because of its host is logged, once for
// each host, naming the hosts that get the token and where to add one.
func TestARequestSentWithoutATokenIsLoggedOncePerHost(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	logger, logs := newTestLogger()
	ts := newTestSource(t, withServer(srv), withConfig(func(c *Config) { c.Logger = logger })).ts
	c := &http.Client{Transport: &Transport{Source: ts}}
	asLocalhost := strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)
	for range 3 {
		if code := get(t, c, asLocalhost+"/v3/x"); code != http.StatusUnauthorized {
			t.Fatalf("the API, reached under another name, answered %d; want 401 to a request without a token", code)
		}
	}
	get(t, c, srv.URL+"/v3/x")
	out := logs.String()
	if n := strings.Count(out, "sent a request without a token"); n != 1 {
		t.Fatalf("logged %d times for three requests to one host, want once:\n%s", n, out)
	}
	host := strings.TrimPrefix(srv.URL, "http://")
	for _, want := range []string{"host=localhost:", "token_hosts=[" + host + "]", "Config.APIHosts"} {
		if !strings.Contains(out, want) {
			t.Errorf("the log line does not say %q:\n%s", want, out)
		}
	}
}

func TestRedirectToAnotherHostCarriesNoToken(t *testing.T) {
	var gotB atomic.Value
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotB.Store(r.Header.Get("Authorization"))
	}))
	defer b.Close()
	bURL := strings.Replace(b.URL, "127.0.0.1", "localhost", 1)
	var gotA []string
	var muA sync.Mutex
	a := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		muA.Lock()
		gotA = append(gotA, r.Header.Get("Authorization"))
		muA.Unlock()
		switch r.URL.Path {
		case "/away":
			http.Redirect(w, r, bURL+"/landed", http.StatusFound)
		case "/here":
			http.Redirect(w, r, "/landed", http.StatusFound)
		}
	}))
	defer a.Close()

	static := oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "static-token-value"})
	for _, tr := range []*Transport{
		{Source: static}, // any host, but not across a redirect
		{Source: static, Hosts: []string{a.Listener.Addr().String()}}, // an explicit list
	} {
		gotA, gotB = nil, atomic.Value{}
		c := &http.Client{Transport: tr}
		get(t, c, a.URL+"/away")
		if got, _ := gotB.Load().(string); got != "" {
			t.Fatalf("Hosts %v: the redirect to another host carried %q", tr.Hosts, redact(got))
		}
		get(t, c, a.URL+"/here")
		if len(gotA) != 3 || gotA[0] == "" || gotA[1] == "" || gotA[2] == "" {
			t.Fatalf("Hosts %v: requests to the original host should carry the token: %d sent", tr.Hosts, len(gotA))
		}
	}
}

func TestTransportRefusesPlainHTTPToARemoteHost(t *testing.T) {
	static := oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "static-token-value"})
	tr := &Transport{Source: static, Base: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		t.Fatalf("request with token sent over plain http: %s", r.URL)
		return nil, nil
	})}
	req, _ := http.NewRequest("GET", "http://api.example.com/v3", nil)
	_, err := tr.RoundTrip(req)
	if err == nil || !strings.Contains(err.Error(), "use https") {
		t.Fatalf("err = %v, want a refusal", err)
	}
}

// revokedSetup returns a client whose token the API has just revoked, 0 s
// after it was issued: a 401 invalidates a token whatever its age.
func revokedSetup(t *testing.T) (*fortetest.Server, *TokenSource, *sendLog, *http.Client) {
	t.Helper()
	src := newTestSource(t)
	srv, ts := src.srv, src.ts
	log := &sendLog{base: http.DefaultTransport}
	c := &http.Client{Transport: &Transport{Source: ts, Base: log}}
	if code := get(t, c, srv.URL+"/v3/warm-up"); code != 200 {
		t.Fatalf("warm-up: %d", code)
	}
	srv.Revoke()
	return srv, ts, log, c
}

func TestTransport401InvalidatesAndReplaysOnce(t *testing.T) {
	srv, _, log, c := revokedSetup(t)
	resp, err := c.Post(srv.URL+"/v3/payments", "application/json", strings.NewReader(`{"amount":100}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d, want 200 after the replay", resp.StatusCode)
	}
	if n := tokenRequests(srv); n != 2 {
		t.Fatalf("token requests = %d, want 2", n)
	}
	if log.sends() != 3 || log.body[1] != `{"amount":100}` || log.body[2] != `{"amount":100}` || log.auth[1] == log.auth[2] {
		t.Fatalf("want the POST sent twice with the same body and a new token; sent bodies %q", log.body)
	}
}

func TestTransport401WithABodyThatCannotBeReplayedIsReturned(t *testing.T) {
	srv, ts, log, c := revokedSetup(t)
	req, _ := http.NewRequest("POST", srv.URL+"/v3/payments", io.NopCloser(strings.NewReader(`{"amount":100}`)))
	if req.GetBody != nil {
		t.Fatal("test needs a body without GetBody")
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || log.sends() != 2 {
		t.Fatalf("status %d after %d sends, want the 401 as is after 2", resp.StatusCode, log.sends())
	}
	if ts.cache.Load() != nil {
		t.Fatal("the rejected token is still cached")
	}
	if code := get(t, c, srv.URL+"/v3/next"); code != 200 || tokenRequests(srv) != 2 {
		t.Fatalf("next request: status %d, token requests %d; want 200 with a new token", code, tokenRequests(srv))
	}
}

func TestTransport401IsReplayedAtMostOnce(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	ts := newTestSource(t, withServer(srv)).ts
	var sends atomic.Int64
	c := &http.Client{Transport: &Transport{Source: ts, Base: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		sends.Add(1)
		return &http.Response{StatusCode: 401, Body: io.NopCloser(strings.NewReader("no")), Request: r}, nil
	})}}
	mustToken(t, ts)
	if code := get(t, c, srv.URL+"/v3/x"); code != 401 || sends.Load() != 2 || tokenRequests(srv) != 2 {
		t.Fatalf("status %d, sends %d, token requests %d; want 401 after one replay with one new token",
			code, sends.Load(), tokenRequests(srv))
	}
}

func TestTransportWaitsForATokenOnlyAsLongAsTheRequestContext(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	release := srv.Hold()
	defer release()
	ts := newTestSource(t, withServer(srv)).ts
	c := &http.Client{Transport: &Transport{Source: ts}}

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/v3/x", nil)
	within(t, "a request whose context times out", func() {
		if _, err := c.Do(req); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err = %v, want context.DeadlineExceeded", err)
		}
	})
}

func TestTransportAcceptsARequestWithoutHeaders(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	ts := newTestSource(t, withServer(srv)).ts
	u, _ := url.Parse(srv.URL + "/v3/x")
	resp, err := (&Transport{Source: ts}).RoundTrip(&http.Request{Method: "GET", URL: u})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
}

func TestTransportCopiesEveryHeaderAndReplacesAuthorization(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	ts := newTestSource(t, withServer(srv)).ts
	var seen http.Header
	tr := &Transport{Source: ts, Base: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		seen = r.Header
		return &http.Response{StatusCode: 200, Body: http.NoBody, Request: r}, nil
	})}
	for _, n := range []int{0, 1, 3, 20} { // within each size of inline room, and beyond it
		req, _ := http.NewRequest("GET", srv.URL+"/v3/x", nil)
		req.Header.Set("Authorization", "Basic caller-value")
		for i := range n {
			req.Header.Add("X-Multi", strings.Repeat("v", i+1))
			req.Header.Add(fmt.Sprintf("X-H%d", i), "one")
		}
		want := req.Header.Clone()
		if _, err := tr.RoundTrip(req); err != nil {
			t.Fatal(err)
		}
		tok := mustToken(t, ts)
		if got := seen.Values("Authorization"); len(got) != 1 || got[0] != "Bearer "+tok.AccessToken {
			t.Fatalf("%d headers: Authorization sent as %d values, want only the token", n, len(got))
		}
		for k, vv := range want {
			if k != "Authorization" && !slices.Equal(seen[k], vv) {
				t.Fatalf("%d headers: %s sent as %q, want %q", n, k, seen[k], vv)
			}
		}
		if len(seen) != len(want) {
			t.Fatalf("%d headers: sent %d keys, want %d", n, len(seen), len(want))
		}
		if !reflect.DeepEqual(req.Header, want) {
			t.Fatalf("%d headers: the caller's header changed", n)
		}
		seen["X-Multi"] = append(seen["X-Multi"], "appended downstream")
		if len(req.Header["X-Multi"]) != n {
			t.Fatalf("%d headers: a change to the sent header reached the caller's", n)
		}
	}
}

func TestTransportCopiesARequestInThreeAllocations(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	ts := newTestSource(t, withServer(srv)).ts
	resp := &http.Response{StatusCode: 200, Body: http.NoBody}
	tr := &Transport{Source: ts, Base: roundTripFunc(func(*http.Request) (*http.Response, error) { return resp, nil })}
	req, _ := http.NewRequest("GET", srv.URL+"/v3/x", nil)
	req.Header.Set("Accept", "application/json")
	if _, err := tr.RoundTrip(req); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { tr.RoundTrip(req) }); n > 3 {
		t.Fatalf("RoundTrip costs %v allocations of its own, want 3: the request with its header values, and the header map", n)
	}
}
