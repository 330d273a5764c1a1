// Package forteotel exports what a forteauth.TokenSource has done, and how
// long its cached token has left, as OpenTelemetry metrics, and records
// its token fetches and the calls that wait for them as spans.
//
// For traces, NewTrace makes the value of forteauth.Config.Trace:
//
//	cfg.Trace = forteotel.NewTrace(otel.GetTracerProvider())
//
// For metrics:
//
// Register adds observable instruments to a Meter. They read
// TokenSource.Stats when the SDK collects, so nothing is recorded on the
// path of a token request or an API call:
//
//	reg, err := forteotel.Register(otel.GetMeterProvider().Meter(forteotel.ScopeName), ts)
//	if err != nil {
//		return err
//	}
//	defer reg.Unregister()
//
// The instruments, each counting since the source was made (the fields of
// forteauth.Stats say exactly what each counts):
//
//	forteauth.token.requests             counter {request}  HTTP requests to the token endpoint, retries included
//	forteauth.token.fetches              counter {fetch}    fetches that got a token
//	forteauth.token.fetch_failures       counter {fetch}    fetches that failed after their retries
//	forteauth.token.background_failures  counter {fetch}    of those, background refreshes, which no caller saw
//	forteauth.token.waits                counter {call}     calls that waited for a fetch
//	forteauth.token.cooldown_errors      counter {call}     calls answered with the cool-down error, without a request
//	forteauth.api.unauthorized           counter {response} 401s from the API that invalidated the token
//	forteauth.api.replays                counter {request}  requests sent again after a 401
//	forteauth.store.hits                 counter {token}    tokens taken from Config.Store
//	forteauth.store.faults               counter {call}     Store calls that failed
//	forteauth.credentials.failures       counter {call}     calls of Config.Credentials that failed
//	forteauth.credentials.changes        counter {change}   credential changes the source took (rotations)
//	forteauth.credentials.fallbacks      counter {fetch}    fetches that fell back to the credentials last accepted
//	forteauth.token.remaining            gauge   s          seconds until the cached token expires
//
// forteauth.token.remaining is 0 when no token is cached (before the first
// call, after a 401 dropped it, or once it has expired), so that it is
// always present and an alert on a low value also fires when there is no
// token at all. An idle source lets its token run out too: alert on
// remaining below twice the RefreshWindow together with rising background
// failures; forteauth.Stats says what else to alert on.
//
// The attributes given to Register are attached to every observation, to
// tell apart several sources registered on one Meter.
package forteotel

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/forteauth/forteauth"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// ScopeName is the instrumentation scope name to get a Meter for Register
// under, as OpenTelemetry's instrumentation libraries name theirs, and the
// name of NewTrace's tracer.
const ScopeName = "github.com/forteauth/forteauth/forteotel"

// counter describes one counter instrument and the Stats field it reports.
type counter struct {
	name, unit, description string
	value                   func(*forteauth.Stats) int64
}

var counters = [...]counter{
	{"forteauth.token.requests", "{request}",
		"HTTP requests sent to the token endpoint, retries included.",
		func(s *forteauth.Stats) int64 { return s.TokenRequests }},
	{"forteauth.token.fetches", "{fetch}",
		"Token fetches from the token endpoint that got a usable token.",
		func(s *forteauth.Stats) int64 { return s.Fetches }},
	{"forteauth.token.fetch_failures", "{fetch}",
		"Token fetches that got no usable token after their retries.",
		func(s *forteauth.Stats) int64 { return s.FetchFailures }},
	{"forteauth.token.background_failures", "{fetch}",
		"Failed token fetches that were background refreshes: the current token was kept and no caller saw the error.",
		func(s *forteauth.Stats) int64 { return s.BackgroundFailures }},
	{"forteauth.token.waits", "{call}",
		"Calls that found no usable token cached and waited for a fetch.",
		func(s *forteauth.Stats) int64 { return s.Waits }},
	{"forteauth.token.cooldown_errors", "{call}",
		"Calls answered at once with the error of a failed fetch, during its cool-down, without a request.",
		func(s *forteauth.Stats) int64 { return s.CoolDownErrors }},
	{"forteauth.api.unauthorized", "{response}",
		"401 answers from the API that invalidated the cached token.",
		func(s *forteauth.Stats) int64 { return s.Unauthorized }},
	{"forteauth.api.replays", "{request}",
		"API requests sent again with a new token after a 401.",
		func(s *forteauth.Stats) int64 { return s.Replays }},
	{"forteauth.store.hits", "{token}",
		"Tokens taken from the shared token Store instead of fetched.",
		func(s *forteauth.Stats) int64 { return s.StoreHits }},
	{"forteauth.store.faults", "{call}",
		"Calls of the shared token Store that failed or timed out.",
		func(s *forteauth.Stats) int64 { return s.StoreFaults }},
	{"forteauth.credentials.failures", "{call}",
		"Calls of Config.Credentials that failed: an error, an empty value, or a file missing, unreadable or empty.",
		func(s *forteauth.Stats) int64 { return s.CredentialFailures }},
	{"forteauth.credentials.changes", "{change}",
		"Times Config.Credentials returned other credentials than before: the rotations the source took.",
		func(s *forteauth.Stats) int64 { return s.CredentialChanges }},
	{"forteauth.credentials.fallbacks", "{fetch}",
		"Fetches that, the newest credentials rejected, tried those the endpoint last accepted.",
		func(s *forteauth.Stats) int64 { return s.CredentialFallbacks }},
}

const (
	remainingName        = "forteauth.token.remaining"
	remainingDescription = "Seconds until the cached token expires; 0 when no token is cached."
)

// Register registers, on meter, the instruments listed in the package
// documentation, observed from ts.Stats with attrs at each collection,
// all by one callback. Unregister the returned Registration to stop
// observing ts; the instruments stay on the Meter but report nothing for
// ts.
func Register(meter metric.Meter, ts *forteauth.TokenSource, attrs ...attribute.KeyValue) (metric.Registration, error) {
	if meter == nil || ts == nil {
		return nil, errors.New("forteotel: Register needs a Meter and a *forteauth.TokenSource; got nil")
	}
	return register(meter, ts.Stats, time.Now, attrs)
}

// register is Register with the source of Stats and the clock as
// parameters, for tests.
func register(meter metric.Meter, stats func() forteauth.Stats, now func() time.Time, attrs []attribute.KeyValue) (metric.Registration, error) {
	var (
		observables = make([]metric.Observable, 0, len(counters)+1)
		ints        [len(counters)]metric.Int64ObservableCounter
		errs        []error
	)
	for i, c := range counters {
		inst, err := meter.Int64ObservableCounter(c.name, metric.WithUnit(c.unit), metric.WithDescription(c.description))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ints[i] = inst
		observables = append(observables, inst)
	}
	remaining, err := meter.Float64ObservableGauge(remainingName, metric.WithUnit("s"), metric.WithDescription(remainingDescription))
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("forteotel: creating the instruments: %w", errors.Join(errs...))
	}
	observables = append(observables, remaining)

	// One attribute set for every observation, built once.
	set := metric.WithAttributeSet(attribute.NewSet(attrs...))
	reg, err := meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		st := stats()
		for i, c := range counters {
			o.ObserveInt64(ints[i], c.value(&st), set)
		}
		o.ObserveFloat64(remaining, remainingSeconds(st.Expiry, now()), set)
		return nil
	}, observables...)
	if err != nil {
		return nil, fmt.Errorf("forteotel: registering the callback: %w", err)
	}
	return reg, nil
}

// remainingSeconds is how long a token expiring at expiry has left at now,
// in seconds: 0 for no token (the zero expiry) or an expired one.
func remainingSeconds(expiry, now time.Time) float64 {
	if expiry.IsZero() {
		return 0
	}
	return max(expiry.Sub(now), 0).Seconds()
}
