// Package fortetest provides a fake Forte token endpoint and API, on a real
// loopback HTTP server or in memory, for tests of code that authenticates
// with forteauth.
//
// The server speaks the token endpoint's contract exactly: POST
// /auth/v1/oauth2/token with a JSON body holding client_id and
// client_secret, answered by 201 and {"data":{...}} or by Forte's error
// body. Every other path is a protected API resource that answers 200 to a
// live token it issued and 401 to anything else. Token lifetime, latency
// and failures are settable, and Stats counts what happened.
//
//	srv := fortetest.NewServer()
//	defer srv.Close()
//	cfg := &forteauth.Config{ClientID: srv.ClientID, ClientSecret: srv.ClientSecret, TokenURL: srv.TokenURL}
//
// For tests run in a testing/synctest bubble, NewMemoryServer serves the
// same fake without a network.
//
// The command fortetoken fake (cmd/fortetoken) runs a Server as a process
// of its own, for manual tests and for code in other languages.
package fortetest

import (
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"math/rand/v2"
	"mime"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"
)

// TokenPath is the path of the token endpoint.
const TokenPath = "/auth/v1/oauth2/token"

// The credentials a Server accepts unless its fields are changed before
// the first request.
const (
	DefaultClientID     = "fortetest-client"
	DefaultClientSecret = "fortetest-secret"
)

// Server is a fake Forte auth server and API. Its methods are safe for
// concurrent use, also while requests are being served.
type Server struct {
	URL      string // base URL, such as "http://127.0.0.1:43127"
	TokenURL string // URL + TokenPath: the value for forteauth.Config.TokenURL
	// ClientID and ClientSecret are the credentials the token endpoint
	// accepts, until AcceptCredentials says otherwise. Change them, if at
	// all, before the first request.
	ClientID     string
	ClientSecret string

	// Listener is what the server will accept connections on. A server
	// from NewUnstartedServer listens on a random loopback port until
	// Listener is replaced before Start or StartTLS; see NewUnstartedServer.
	// A server from NewMemoryServer has none: Listener is nil.
	Listener net.Listener

	hs  *httptest.Server // nil for a memory server
	mem *memoryTransport // nil for a network server

	mu          sync.Mutex
	lifetime    time.Duration
	latency     time.Duration // token answers wait latency plus up to latencySpan
	latencySpan time.Duration
	next        []Failure // answers for the next token requests, in order
	failRate    float64
	failWith    Failure
	accepted    []Credentials // nil: ClientID and ClientSecret
	tokens      map[string]issued
	held        chan struct{} // while non-nil, token requests wait for it to close
	stats       Stats
	lastRequest http.Header
}

// Failure is an answer the token endpoint gives instead of a token.
type Failure struct {
	// Status is the HTTP status; 0 means 201, for a malformed success.
	Status int
	// Body is sent as is. If empty, the body is Forte's error JSON for
	// Status, or for 201 an empty body.
	Body string
	// ContentType defaults to application/json.
	ContentType string
	// RetryAfter, if set, is sent as the Retry-After header.
	RetryAfter string
	// Delay holds the answer back, after any latency set with SetLatency.
	Delay time.Duration
	// Hangup closes the connection mid-answer: after the headers and half
	// of Body or, if Body is empty, before anything is sent.
	Hangup bool
}

// Stats counts what a Server has seen.
type Stats struct {
	TokenRequests int // requests to TokenPath, whatever their outcome
	TokensIssued  int // 201 answers carrying a new token
	APIRequests   int // requests to any other path
	APIRejected   int // of those, answered 401
	APIExpired    int // of those rejected, ones that carried an expired token

	// CredentialsRejected counts the token requests answered 401 because
	// the endpoint does not accept their credentials.
	CredentialsRejected int
}

// NewServer starts a Server on a loopback address over plain http, which
// forteauth allows for loopback hosts only. Tokens last one hour until
// SetLifetime says otherwise. Close it when done.
func NewServer() *Server {
	s := NewUnstartedServer()
	s.Start()
	return s
}

// NewTLSServer is NewServer over https, with a certificate that only the
// client from Server.Client trusts.
func NewTLSServer() *Server {
	s := NewUnstartedServer()
	s.StartTLS()
	return s
}

// NewUnstartedServer returns a Server that is not yet serving, as
// httptest.NewUnstartedServer does: its Listener is bound to a random
// loopback port, and URL and TokenURL are empty until Start or StartTLS.
// To serve on an address of your choice, replace Listener first:
//
//	s := fortetest.NewUnstartedServer()
//	l, err := net.Listen("tcp", "127.0.0.1:8080")
//	...
//	s.Listener = l // Start closes the listener it replaces
//	s.Start()
//
// The address should be a loopback one: forteauth sends a secret over
// plain http only to loopback hosts, and the fake's credentials are
// public.
func NewUnstartedServer() *Server {
	s := newServer()
	s.hs = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	s.Listener = s.hs.Listener
	return s
}

// newServer returns a Server with its defaults and nothing to serve on.
func newServer() *Server {
	return &Server{
		ClientID:     DefaultClientID,
		ClientSecret: DefaultClientSecret,
		lifetime:     time.Hour,
		tokens:       make(map[string]issued),
	}
}

// Start starts serving plain http on Listener. It panics if the server
// has already been started.
func (s *Server) Start() {
	s.useListener()
	s.hs.Start()
	s.started()
}

// StartTLS starts serving https on Listener, with a certificate that only
// the client from Server.Client trusts. It panics if the server has
// already been started.
func (s *Server) StartTLS() {
	s.useListener()
	s.hs.StartTLS()
	s.started()
}

// useListener hands a replaced Listener to the httptest server, closing
// the one it had bound, which nothing else would close.
func (s *Server) useListener() {
	if s.URL != "" {
		panic("fortetest: Server already started")
	}
	if s.Listener != s.hs.Listener {
		s.hs.Listener.Close()
		s.hs.Listener = s.Listener
	}
}

func (s *Server) started() {
	s.URL = s.hs.URL
	s.TokenURL = s.hs.URL + TokenPath
}

// Close shuts the server down, waiting for requests in progress. A memory
// server does not wait: see NewMemoryServer.
func (s *Server) Close() {
	if s.mem != nil {
		s.mem.close()
		return
	}
	s.hs.Close()
}

// Client returns an *http.Client for the server: for a TLS server, one
// that trusts its certificate; for a memory server, the only one that
// reaches it. Use it as forteauth.Config.HTTPClient.
func (s *Server) Client() *http.Client {
	if s.mem != nil {
		return s.mem.client
	}
	return s.hs.Client()
}

// SetLifetime sets the lifetime of tokens issued from now on. It is sent as
// whole seconds (expires_in), rounded up, at least one.
func (s *Server) SetLifetime(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lifetime = max(time.Second, (d + time.Second - 1).Truncate(time.Second))
}

// SetLatency delays every token answer by d.
func (s *Server) SetLatency(d time.Duration) {
	s.SetLatencyRange(d, d)
}

// SetLatencyRange delays each token answer by its own random duration,
// from lo to hi, as a real endpoint varies. A hi below lo counts as lo.
func (s *Server) SetLatencyRange(lo, hi time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latency, s.latencySpan = lo, max(hi-lo, 0)
}

// FailNext makes the next len(fs) token requests get fs, in order,
// regardless of their credentials.
func (s *Server) FailNext(fs ...Failure) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.next = append(s.next, fs...)
}

// SetFailureRate makes each token request not already covered by FailNext
// get f with probability p. A p of 0 turns this off.
func (s *Server) SetFailureRate(p float64, f Failure) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failRate, s.failWith = p, f
}

// Hold makes token requests that arrive from now on wait, as a hung
// endpoint would, until release is called (or their client gives up). It
// lets a test act while a fetch is in flight. They are counted in Stats on
// arrival.
func (s *Server) Hold() (release func()) {
	ch := make(chan struct{})
	s.mu.Lock()
	s.held = ch
	s.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			if s.held == ch {
				s.held = nil
			}
			s.mu.Unlock()
			close(ch)
		})
	}
}

// Revoke makes the API reject token from now on; with no arguments it
// revokes every token issued so far.
func (s *Server) Revoke(tokens ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(tokens) == 0 {
		clear(s.tokens)
	}
	for _, t := range tokens {
		delete(s.tokens, t)
	}
}

// Stats returns the counts so far.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// LastTokenRequestHeader returns the headers of the latest token request.
func (s *Server) LastTokenRequestHeader() http.Header {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastRequest.Clone()
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == TokenPath {
		s.serveToken(w, r)
		return
	}
	s.serveAPI(w, r)
}

func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	// Read the body first: only then does net/http notice a client that
	// gives up during the pauses below.
	body, readErr := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
	a := s.chooseTokenAnswer(r)
	if !a.wait(r) {
		return
	}
	if a.fail != nil {
		writeFailure(w, a.fail)
		return
	}
	creds, status, msg := s.checkTokenRequest(r, body, readErr)
	if status != 0 {
		writeError(w, status, msg)
		return
	}
	s.issueToken(w, a.lifetime, creds)
}

// tokenAnswer is how the token endpoint answers one request, settled
// when the request arrives so that settings changed while it waits
// apply only to later ones.
type tokenAnswer struct {
	held     chan struct{} // if non-nil, wait for it to close first
	latency  time.Duration // then wait this long, any Failure.Delay included
	fail     *Failure      // then answer this, or else a token if the request is valid
	lifetime time.Duration // of that token
}

// chooseTokenAnswer counts a token request and settles its answer,
// using up one of the failures FailNext queued if there is one.
func (s *Server) chooseTokenAnswer(r *http.Request) tokenAnswer {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.TokenRequests++
	s.lastRequest = r.Header.Clone()
	a := tokenAnswer{held: s.held, latency: s.latency, lifetime: s.lifetime}
	if s.latencySpan > 0 {
		a.latency += rand.N(s.latencySpan + 1)
	}
	switch {
	case len(s.next) > 0:
		a.fail = &s.next[0]
		s.next = s.next[1:]
	case s.failRate > 0 && rand.Float64() < s.failRate:
		f := s.failWith
		a.fail = &f
	}
	if a.fail != nil {
		a.latency += a.fail.Delay
	}
	return a
}

// wait waits out the hold and the latency, or until the client goes away;
// it reports whether to answer.
func (a tokenAnswer) wait(r *http.Request) bool {
	if a.held != nil {
		select {
		case <-a.held:
		case <-r.Context().Done():
			return false
		}
	}
	return pause(r, a.latency)
}

// issued is a token the endpoint issued: when it expires, and to whom.
type issued struct {
	expiry time.Time
	to     Credentials
}

// issueToken records a new token for creds that lasts lifetime and
// answers with it.
func (s *Server) issueToken(w http.ResponseWriter, lifetime time.Duration, creds Credentials) {
	tok := newToken()
	s.mu.Lock()
	s.tokens[tok] = issued{time.Now().Add(lifetime), creds}
	s.stats.TokensIssued++
	s.mu.Unlock()
	writeJSON(w, http.StatusCreated, map[string]any{"data": map[string]any{
		"access_token": tok,
		"token_type":   "Bearer",
		"expires_in":   int64(lifetime / time.Second),
	}})
}

// checkTokenRequest returns the credentials of a request, or the status
// and message for one that breaks the contract or that the endpoint does
// not accept.
func (s *Server) checkTokenRequest(r *http.Request, b []byte, readErr error) (Credentials, int, string) {
	if r.Method != http.MethodPost {
		return Credentials{}, http.StatusMethodNotAllowed, "use POST"
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		return Credentials{}, http.StatusBadRequest, "Content-Type must be application/json"
	}
	var body struct {
		ClientID     *string `json:"client_id"`
		ClientSecret *string `json:"client_secret"`
	}
	if readErr != nil || json.Unmarshal(b, &body) != nil || body.ClientID == nil || body.ClientSecret == nil {
		return Credentials{}, http.StatusBadRequest, "body must be a JSON object with client_id and client_secret"
	}
	creds := Credentials{*body.ClientID, *body.ClientSecret}
	if !s.accepts(creds) {
		s.mu.Lock()
		s.stats.CredentialsRejected++
		s.mu.Unlock()
		return Credentials{}, http.StatusUnauthorized, "invalid params"
	}
	return creds, 0, ""
}

func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	s.mu.Lock()
	s.stats.APIRequests++
	t, known := s.tokens[tok]
	expired := known && !time.Now().Before(t.expiry)
	if !ok || !known || expired {
		s.stats.APIRejected++
		if expired {
			s.stats.APIExpired++
		}
		s.mu.Unlock()
		writeError(w, http.StatusUnauthorized, "missing, unknown or expired token")
		return
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"data": map[string]any{"path": r.URL.Path}})
}

// pause waits d, or until the client goes away; it reports whether to answer.
func pause(r *http.Request, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	}
}

func writeFailure(w http.ResponseWriter, f *Failure) {
	status := f.Status
	if status == 0 {
		status = http.StatusCreated
	}
	if f.RetryAfter != "" {
		w.Header().Set("Retry-After", f.RetryAfter)
	}
	if f.Hangup && f.Body == "" {
		panic(http.ErrAbortHandler) // net/http closes the connection without answering
	}
	body := f.Body
	if body == "" && status != http.StatusCreated {
		body = errorBody(status, "injected failure")
	}
	ct := f.ContentType
	if ct == "" {
		ct = "application/json"
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	if f.Hangup {
		w.Write([]byte(body[:len(body)/2]))
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}
	w.Write([]byte(body))
}

func writeError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write([]byte(errorBody(status, msg)))
}

// errorBody is Forte's JsonErrorResponse.
func errorBody(status int, msg string) string {
	b, _ := json.Marshal(map[string]any{"error": map[string]any{
		"message": msg,
		"reason":  http.StatusText(status),
		"status":  status,
	}})
	return string(b)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func newToken() string {
	b := make([]byte, 24)
	crand.Read(b) // never fails since Go 1.24
	return "fortetest." + hex.EncodeToString(b)
}
