package forteotel

import (
	"context"
	"errors"
	"net/http"

	"github.com/forteauth/forteauth"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/oauth2"
)

// Span and event names, and the attributes they carry. Status codes
// follow OpenTelemetry's HTTP conventions, error kinds its error.type.
const (
	FetchSpanName   = "forteauth.token.fetch"
	WaitSpanName    = "forteauth.token.wait"
	ReplayEventName = "forteauth.replay"

	ReasonKey    = attribute.Key("forteauth.fetch.reason")     // forteauth.FetchReason: no_token, refresh_due, token_rejected
	AttemptsKey  = attribute.Key("forteauth.fetch.attempts")   // HTTP requests to the token endpoint
	FromStoreKey = attribute.Key("forteauth.fetch.from_store") // the token came from Config.Store
	StatusKey    = attribute.Key("http.response.status_code")  // of the last answer, or of the 401 a replay followed
	ErrorTypeKey = attribute.Key("error.type")                 // why a fetch failed; see NewTrace
)

// NewTrace returns the value for Config.Trace that records token fetches
// and waits as spans of tp's tracer named ScopeName:
//
//   - FetchSpanName, one per fetch from the token endpoint or the Store,
//     the root of a trace of its own, as a fetch serves many callers. It
//     carries ReasonKey, AttemptsKey, FromStoreKey, StatusKey (if an
//     answer came) and, if the fetch failed, an Error status and
//     ErrorTypeKey: "credentials" (Config.Credentials failed),
//     "rejected" (400, 401 or 403), "status" (another error status),
//     "invalid_response", "timeout" or "network". The fetch's HTTP
//     requests, Store calls and log records get its context, so that
//     otelhttp's and redisotel's spans nest under it, and an otelslog
//     bridge puts the records in its trace.
//   - WaitSpanName, a child of the caller's span, for each call that
//     waited for a fetch, linked to the fetch span it waited for, and
//     ended when the call got its token, its error, or gave up.
//   - ReplayEventName, an event on the span of a request Transport sends
//     again after a 401, with StatusKey.
//
// No span, attribute or event holds the secret, a token, an error's text
// or anything from the token endpoint's answer but its status.
func NewTrace(tp trace.TracerProvider) *forteauth.Trace {
	t := tp.Tracer(ScopeName)
	return &forteauth.Trace{
		FetchStart: func(ctx context.Context, reason forteauth.FetchReason) context.Context {
			ctx, _ = t.Start(ctx, FetchSpanName, trace.WithNewRoot(), trace.WithAttributes(ReasonKey.String(string(reason))))
			return ctx
		},
		FetchDone: fetchDone,
		WaitStart: func(ctx context.Context) context.Context {
			ctx, _ = t.Start(ctx, WaitSpanName)
			return ctx
		},
		WaitDone: waitDone,
		Replayed: func(ctx context.Context, status int) {
			trace.SpanFromContext(ctx).AddEvent(ReplayEventName, trace.WithAttributes(StatusKey.Int(status)))
		},
	}
}

func fetchDone(ctx context.Context, info forteauth.FetchInfo) {
	span := trace.SpanFromContext(ctx)
	span.SetAttributes(AttemptsKey.Int(info.Attempts), FromStoreKey.Bool(info.FromStore))
	if info.LastStatus != 0 {
		span.SetAttributes(StatusKey.Int(info.LastStatus))
	}
	if info.Err != nil {
		kind := errorType(info)
		span.SetAttributes(ErrorTypeKey.String(kind))
		span.SetStatus(codes.Error, "forteauth: the token fetch failed: "+kind)
	}
	span.End()
}

func waitDone(ctx, fetch context.Context, err error) {
	span := trace.SpanFromContext(ctx)
	if fetch != nil {
		if sc := trace.SpanContextFromContext(fetch); sc.IsValid() {
			span.AddLink(trace.Link{SpanContext: sc})
		}
	}
	if err != nil {
		span.SetStatus(codes.Error, "forteauth: no token")
	}
	span.End()
}

// errorType is the kind of a fetch's failure, told from the error's type
// and the last status, never from its text, which a server chose.
func errorType(info forteauth.FetchInfo) string {
	var re *oauth2.RetrieveError
	switch {
	case errors.Is(info.Err, forteauth.ErrCredentials):
		return "credentials"
	case errors.Is(info.Err, forteauth.ErrInvalidResponse):
		return "invalid_response"
	case errors.As(info.Err, &re):
		switch re.Response.StatusCode {
		case http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden:
			return "rejected"
		}
		return "status"
	case errors.Is(info.Err, context.DeadlineExceeded):
		return "timeout"
	}
	return "network"
}
