package forteauth

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"golang.org/x/oauth2"
)

// Transport is an http.RoundTripper that sends each request to an allowed
// host with "Authorization: Bearer <token>" from Source, and other requests
// unchanged. It never modifies the caller's request, and never sends a
// token over plain http except to a loopback host.
//
// With a *TokenSource as Source, Transport waits for a token no longer
// than the request's context allows, and recovers from a 401: it
// invalidates the token the API rejected, whatever its age, and sends the
// request once more with a new token, if the request's body can be sent
// again (it is empty or GetBody is set). Otherwise the 401 is returned as
// is, and the next request gets a new token. If the API rejects the new
// token too before accepting it once, 401s are returned as they are for a
// cool-down (up to 1 s at first, doubling to at most 30 s while rejections
// go on) instead of each costing a token request; any other answer ends it.
type Transport struct {
	// Source supplies tokens. Any oauth2.TokenSource works; a *TokenSource
	// adds the context-aware wait and 401 recovery.
	Source oauth2.TokenSource

	// Base sends the requests. If nil, http.DefaultTransport is used.
	Base http.RoundTripper

	// Hosts lists the hosts that get the token, as "host" (any port) or
	// "host:port", compared case-insensitively. If empty, a *TokenSource's
	// token goes only to its Config's APIHosts, by default the token
	// endpoint's host, Forte's API host, and a request to another host is
	// sent without it and logged (once per host) to the Config's Logger.
	// For any other Source every host gets the token, as with
	// oauth2.Transport, except that a redirect to another host does not
	// carry it.
	Hosts []string
}

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.Source == nil || req.URL == nil {
		closeBody(req)
		return nil, errors.New("forteauth: Transport needs a Source and a request with a URL")
	}
	// A *TokenSource is used only through apiHosts, authorize, answered,
	// reauthorize and sentWithoutToken.
	ts, _ := t.Source.(*TokenSource)
	hosts := t.Hosts
	if ts != nil {
		apiHosts, err := ts.apiHosts()
		if err != nil {
			closeBody(req)
			return nil, err
		}
		if len(hosts) == 0 {
			hosts = apiHosts
		}
	}
	if !t.allowed(req, hosts) {
		if ts != nil {
			ts.sentWithoutToken(req.Context(), req.URL.Host, hosts)
		}
		return t.base().RoundTrip(req)
	}
	if req.URL.Scheme != "https" && !isLoopback(req.URL.Hostname()) {
		closeBody(req)
		return nil, fmt.Errorf("forteauth: refusing to send a token over %s to %s; use https", req.URL.Scheme, req.URL.Host)
	}
	if ts != nil {
		return t.roundTripCached(ts, req)
	}
	tok, err := t.Source.Token()
	if err == nil && (tok == nil || tok.AccessToken == "") {
		err = errors.New("forteauth: Transport.Source returned no token")
	}
	if err != nil {
		closeBody(req)
		return nil, err
	}
	return t.send(req, req.Body, tok.Type()+" "+tok.AccessToken)
}

// roundTripCached sends req with a token from ts, and once more with a new
// token if ts says so after a 401 and the body can be sent again.
func (t *Transport) roundTripCached(ts *TokenSource, req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	a, err := ts.authorize(ctx)
	if err != nil {
		closeBody(req)
		return nil, err
	}
	resp, err := t.send(req, req.Body, a.header)
	if err != nil || !ts.answered(ctx, a, resp.StatusCode) {
		return resp, err
	}
	body := req.Body
	if body != nil && body != http.NoBody {
		if req.GetBody == nil {
			return resp, nil
		}
		if body, err = req.GetBody(); err != nil {
			return resp, nil
		}
	}
	next, ok := ts.reauthorize(ctx, a)
	if !ok {
		if body != nil {
			body.Close()
		}
		return resp, nil
	}
	ts.replayed(ctx, resp.StatusCode)
	// Drain a little so that the connection can be reused.
	io.CopyN(io.Discard, resp.Body, 4<<10)
	resp.Body.Close()
	resp, err = t.send(req, body, next.header)
	if err == nil {
		ts.answered(ctx, next, resp.StatusCode) // never a second replay
	}
	return resp, err
}

// send sends a copy of req with body and the Authorization header.
//
// The copy is shallow but for its Header, as x/oauth2's Transport made it
// before req.Clone existed: a RoundTripper may not modify the request it is
// given, so sharing URL and the rest with the caller's request is safe. It
// is the path every API request takes, so it is built in three
// allocations, where req.Clone and Header.Set take five: the request and
// its header values in one object sized to them (see newRequestCopy), and
// the header map.
func (t *Transport) send(req *http.Request, body io.ReadCloser, authorization string) (*http.Response, error) {
	n := 1
	for _, vv := range req.Header {
		n += len(vv)
	}
	c, values := newRequestCopy(n)
	*c = *req
	c.Body = body
	values[0] = authorization
	h := make(http.Header, len(req.Header)+1)
	h["Authorization"] = values[:1:1]
	values = values[1:]
	for k, vv := range req.Header {
		if k != "Authorization" {
			n := copy(values, vv)
			h[k] = values[:n:n]
			values = values[n:]
		}
	}
	c.Header = h
	return t.base().RoundTrip(c)
}

// newRequestCopy returns a request and room for n header values in one
// allocation, in one of a few sizes, so that a request with few header
// values does not carry room for many.
func newRequestCopy(n int) (*http.Request, []string) {
	switch {
	case n <= 2:
		a := new(struct {
			req    http.Request
			values [2]string
		})
		return &a.req, a.values[:]
	case n <= 4:
		a := new(struct {
			req    http.Request
			values [4]string
		})
		return &a.req, a.values[:]
	case n <= 8:
		a := new(struct {
			req    http.Request
			values [8]string
		})
		return &a.req, a.values[:]
	}
	return new(http.Request), make([]string, n)
}

func (t *Transport) base() http.RoundTripper {
	if t.Base != nil {
		return t.Base
	}
	return http.DefaultTransport
}

// allowed reports whether req's host may get the token: one of hosts if
// any are given, else (for a Source that is not a *TokenSource) any host
// but one a redirect led to from another.
func (t *Transport) allowed(req *http.Request, hosts []string) bool {
	if len(hosts) > 0 {
		for _, h := range hosts {
			if matchHost(h, req.URL) {
				return true
			}
		}
		return false
	}
	first := req
	for first.Response != nil && first.Response.Request != nil {
		first = first.Response.Request
	}
	return first == req || first.URL != nil && matchHost(first.URL.Host, req.URL)
}

// matchHost reports whether u is on the host pattern names: "host" or
// "[ipv6]" for any port, "host:port" for that port only, a URL without a
// port having its scheme's default. Names compare case-insensitively and
// without a trailing dot.
func matchHost(pattern string, u *url.URL) bool {
	if pattern != "" && strings.EqualFold(pattern, u.Host) {
		return true // the usual case, and the cheap one
	}
	phost, pport := splitHostPort(pattern)
	host, port := splitHostPort(u.Host)
	if phost == "" || !strings.EqualFold(strings.TrimSuffix(phost, "."), strings.TrimSuffix(host, ".")) {
		return false
	}
	if pport == "" {
		return true
	}
	if port == "" {
		switch u.Scheme {
		case "https":
			port = "443"
		case "http":
			port = "80"
		}
	}
	return pport == port
}

// splitHostPort is net.SplitHostPort for well-formed input, without its
// allocation for a missing port, and taking a bare IPv6 address as a host.
func splitHostPort(s string) (host, port string) {
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", ""
		}
		host, rest := s[1:end], s[end+1:]
		if p, ok := strings.CutPrefix(rest, ":"); ok {
			return host, p
		}
		if rest != "" {
			return "", ""
		}
		return host, ""
	}
	if i := strings.LastIndexByte(s, ':'); i >= 0 && strings.Count(s, ":") == 1 {
		return s[:i], s[i+1:]
	}
	return s, ""
}

// closeBody closes req's body: RoundTrip's duty on every path that does
// not hand req to the base transport.
func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}
