package fortetest

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
)

// memoryHost is where a memory server is found. The .invalid top-level
// domain never resolves, so a request that misses the in-memory client
// fails fast instead of reaching some other server; and being https, it is
// a URL forteauth sends credentials to.
const memoryHost = "fortetest.invalid"

// NewMemoryServer returns a started Server reached without a network, for
// tests run inside synctest.Test (see testing/synctest).
//
// The *http.Client from its Client method hands each request to the
// server's handler directly, in the calling goroutine: no sockets and no
// goroutines. Everything a request waits on (SetLatency, Failure.Delay,
// Hold, the request's context) is then a timer or a channel that a
// synctest bubble's fake clock drives, so a test waits out an hour's
// latency in no real time. Create the server, and call Hold, inside the
// bubble: the waits and the tokens' expiry are then the bubble's.
//
// Its URL is "https://fortetest.invalid", which never resolves: only the
// client from Client reaches the server, so use it, as
// forteauth.Config.HTTPClient for instance, as with NewTLSServer. That
// client fails a request for any other scheme or host, and every request
// once the server is closed, with an error naming URL.
//
// Otherwise the server works as one on the network. Its handler sees a
// request as a server would, with RequestURI, Host, RemoteAddr and TLS
// set, the header the caller set (without those net/http's Transport
// adds) and the caller's context, so that a caller that gives up ends the
// request's waits, and Do returns the context's error. A Failure with
// Hangup and no Body makes Do fail; with a Body, reading the response's
// body ends in io.ErrUnexpectedEOF. As from any client, the caller must
// close the response's body.
//
// The server has no Listener; Start and StartTLS panic, as it is started.
// Close does not wait for requests in progress, which run in their
// callers' goroutines; it is safe to call more than once.
func NewMemoryServer() *Server {
	s := newServer()
	s.URL = "https://" + memoryHost
	s.TokenURL = s.URL + TokenPath
	s.mem = &memoryTransport{s: s}
	s.mem.client = &http.Client{Transport: s.mem}
	return s
}

// memoryTransport is the RoundTripper of a memory server's client.
type memoryTransport struct {
	s      *Server
	client *http.Client
	closed atomic.Bool
}

func (t *memoryTransport) close() { t.closed.Store(true) }

// RoundTrip serves req in the calling goroutine. A hangup before the
// headers were flushed is an error, as the network client sees it.
func (t *memoryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		defer req.Body.Close() // RoundTrip must, whatever the outcome
	}
	if err := t.reaches(req); err != nil {
		return nil, err
	}
	ctx := req.Context()
	if ctx.Err() != nil {
		return nil, context.Cause(ctx)
	}
	rec := httptest.NewRecorder()
	hungUp := t.serve(rec, serverRequest(req))
	switch {
	case ctx.Err() != nil:
		// The handler stops waiting when the caller gives up, and leaves
		// nothing written that would do for an answer.
		return nil, context.Cause(ctx)
	case hungUp && !rec.Flushed:
		return nil, fmt.Errorf("fortetest: the in-memory server at %s hung up before answering: %w", t.s.URL, io.EOF)
	}
	return response(rec, req, hungUp), nil
}

// reaches returns why req cannot reach the server, or nil.
func (t *memoryTransport) reaches(req *http.Request) error {
	if t.closed.Load() {
		return fmt.Errorf("fortetest: the in-memory server at %s is closed", t.s.URL)
	}
	host := strings.TrimSuffix(req.URL.Host, ":443")
	if req.URL.Scheme != "https" || !strings.EqualFold(host, memoryHost) {
		return fmt.Errorf("fortetest: the in-memory server's client reaches only %s, not %s://%s",
			t.s.URL, req.URL.Scheme, req.URL.Host)
	}
	return nil
}

// serve runs the handler and reports whether it hung up, which a handler
// on the network does by panicking with http.ErrAbortHandler.
func (t *memoryTransport) serve(w http.ResponseWriter, r *http.Request) (hungUp bool) {
	defer func() {
		if v := recover(); v != nil {
			if v != http.ErrAbortHandler {
				panic(v)
			}
			hungUp = true
		}
	}()
	t.s.serve(w, r)
	return false
}

// serverRequest is req as a handler on the network would see it.
func serverRequest(req *http.Request) *http.Request {
	r := req.Clone(req.Context())
	r.URL = &url.URL{Path: req.URL.Path, RawPath: req.URL.RawPath, RawQuery: req.URL.RawQuery}
	r.RequestURI = req.URL.RequestURI()
	r.Host = req.Host
	if r.Host == "" {
		r.Host = req.URL.Host
	}
	r.RemoteAddr = "192.0.2.1:1234" // TEST-NET-1, as from httptest.NewRequest
	r.TLS = connectionState(req)
	r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/1.1", 1, 1
	r.Close = false
	if r.Body == nil {
		r.Body = http.NoBody
	}
	// Fields only a client sets.
	r.GetBody, r.Response = nil, nil
	return r
}

// connectionState is the TLS connection a memory server pretends to have,
// so that code checking Request.TLS or Response.TLS sees https.
func connectionState(req *http.Request) *tls.ConnectionState {
	return &tls.ConnectionState{
		Version:           tls.VersionTLS13,
		HandshakeComplete: true,
		ServerName:        req.URL.Hostname(),
	}
}

// response is the caller's view of what the handler wrote to rec.
func response(rec *httptest.ResponseRecorder, req *http.Request, hungUp bool) *http.Response {
	resp := rec.Result()
	resp.Request = req
	resp.TLS = connectionState(req)
	body := &memoryBody{r: bytes.NewReader(rec.Body.Bytes()), end: io.EOF}
	if req.Method == http.MethodHead {
		body.r.Reset(nil) // a network server sends no body for HEAD
	}
	if hungUp {
		body.end = io.ErrUnexpectedEOF
	}
	resp.Body = body
	return resp
}

// memoryBody is a response body that acts as a network one where a caller
// can tell: reads after Close fail, and a body cut short by a hangup ends
// in io.ErrUnexpectedEOF instead of io.EOF.
type memoryBody struct {
	r      *bytes.Reader
	end    error
	closed atomic.Bool // set by Close, which may run during a Read
}

var errBodyClosed = errors.New("fortetest: read on closed response body")

func (b *memoryBody) Read(p []byte) (int, error) {
	if b.closed.Load() {
		return 0, errBodyClosed
	}
	n, err := b.r.Read(p)
	if err == io.EOF {
		err = b.end
	}
	return n, err
}

func (b *memoryBody) Close() error {
	b.closed.Store(true)
	return nil
}
