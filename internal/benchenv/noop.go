package benchenv

import (
	"io"
	"net/http"
	"strings"
)

// Noop is a base http.RoundTripper that sends nothing and answers every
// request with the same preallocated response, so that a benchmark of a
// wrapping RoundTripper measures the wrapper alone.
type Noop struct{ resp *http.Response }

// NewNoop returns a Noop whose response is a 200 with an empty body.
func NewNoop() *Noop {
	return &Noop{resp: &http.Response{
		Status:     "200 OK",
		StatusCode: http.StatusOK,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     http.Header{},
		Body:       io.NopCloser(strings.NewReader("")),
	}}
}

// RoundTrip implements http.RoundTripper. It returns the preallocated
// response without reading the request; the request has no body in the
// benchmarks, so there is nothing to close.
func (n *Noop) RoundTrip(*http.Request) (*http.Response, error) { return n.resp, nil }
