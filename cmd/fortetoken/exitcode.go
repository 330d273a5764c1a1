package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/forteauth/forteauth"
	"golang.org/x/oauth2"
)

// Exit codes, as listed in the usage text and the README. Scripts can tell
// a mistake in the command (2) from credentials the endpoint rejected (3,
// retrying will not help) and from an endpoint that did not give a usable
// answer (4, retrying later may help).
const (
	exitOK          = 0
	exitOther       = 1 // anything else, such as stdout not writable
	exitUsage       = 2 // bad flags, missing credentials, invalid token URL
	exitRejected    = 3 // the endpoint answered 400, 401 or 403
	exitUnavailable = 4 // network error, timeout, any other status, malformed answer
)

// usageError is an error in the command line or the environment: the
// user can fix it without asking the endpoint anything.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg + " (see fortetoken -h)" }

func usagef(format string, args ...any) error {
	return &usageError{fmt.Sprintf(format, args...)}
}

// exitCode maps an error to the exit code the user sees.
func exitCode(err error) int {
	var (
		ue *usageError
		fe *fetchError
		re *oauth2.RetrieveError
	)
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ue), errors.Is(err, forteauth.ErrInvalidConfig):
		return exitUsage
	case !errors.As(err, &fe):
		return exitOther
	case errors.As(err, &re) && re.Response != nil:
		switch re.Response.StatusCode {
		case http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden:
			return exitRejected
		}
	case errors.Is(err, context.Canceled):
		return exitOther
	}
	// Whatever else kept the fetch from a token: network errors,
	// timeouts, other statuses, ErrInvalidResponse.
	return exitUnavailable
}

// fetchError is an error from fetching the token, with the secret hidden
// from its message as a last line of defence. It unwraps to the library's
// error, so that exitCode can tell what went wrong.
type fetchError struct {
	err    error
	secret string
}

func (e *fetchError) Error() string { return redact(e.err.Error(), e.secret) }
func (e *fetchError) Unwrap() error { return e.err }
