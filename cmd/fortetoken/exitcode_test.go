package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"syscall"
	"testing"

	"github.com/forteauth/forteauth"
	"golang.org/x/oauth2"
)

func TestExitCode(t *testing.T) {
	status := func(code int) error {
		return &fetchError{err: fmt.Errorf("forteauth: token endpoint answered: %w", &oauth2.RetrieveError{Response: &http.Response{StatusCode: code}})}
	}
	for _, c := range []struct {
		name string
		err  error
		want int
	}{
		{"no error", nil, exitOK},
		{"usage", usagef("-format must be raw, header or json"), exitUsage},
		{"invalid Config", &fetchError{err: fmt.Errorf("%w: TokenURL is plain http", forteauth.ErrInvalidConfig)}, exitUsage},
		{"400", status(400), exitRejected},
		{"401", status(401), exitRejected},
		{"403", status(403), exitRejected},
		{"404", status(404), exitUnavailable},
		{"302", status(302), exitUnavailable},
		{"429", status(429), exitUnavailable},
		{"503", status(503), exitUnavailable},
		{"invalid response", &fetchError{err: fmt.Errorf("%w: no data", forteauth.ErrInvalidResponse)}, exitUnavailable},
		{"timeout", &fetchError{err: &url.Error{Op: "Post", URL: "u", Err: context.DeadlineExceeded}}, exitUnavailable},
		{"refused", &fetchError{err: &url.Error{Op: "Post", URL: "u", Err: syscall.ECONNREFUSED}}, exitUnavailable},
		{"canceled", &fetchError{err: &url.Error{Op: "Post", URL: "u", Err: context.Canceled}}, exitOther},
		{"not from the fetch", fmt.Errorf("writing the token to stdout: %w", syscall.EBADF), exitOther},
		{"other", errors.New("something"), exitOther},
	} {
		if got := exitCode(c.err); got != c.want {
			t.Errorf("%s: exitCode(%v) = %d, want %d", c.name, c.err, got, c.want)
		}
	}
}

func TestFetchErrorHidesTheSecret(t *testing.T) {
	inner := errors.New("the endpoint said: bad s3cret-value")
	err := &fetchError{err: inner, secret: "s3cret-value"}
	if got := err.Error(); got != "the endpoint said: bad [REDACTED]" || !errors.Is(err, inner) {
		t.Fatalf("Error() = %q; want the secret redacted and the cause kept", got)
	}
}
