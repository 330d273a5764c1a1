// Command metrics publishes a TokenSource's Stats with expvar, scrapes them
// as a monitoring system would, and applies the one alert rule that warns
// of a token about to run out while nobody has seen an error yet:
//
//	remaining < 2 × RefreshWindow  and  background failures rising
//
// ("rising": an increase over the last 2 × RefreshWindow).
// It runs offline against the fake Forte server, with 4-second tokens and
// a 1.5-second refresh window so that a token's life fits in a few
// seconds, and one failed background refresh: the rule fires while the
// token is still usable, and clears once a new token is cached. It exits
// non-zero if the rule misbehaves or a request fails.
//
//	go run ./examples/metrics
//
// With OpenTelemetry, package github.com/forteauth/forteauth/forteotel
// exports the same figures; forteauth.Stats says what each means and
// which to alert on.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"expvar"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"sync"
	"time"

	"github.com/forteauth/forteauth"
	"github.com/forteauth/forteauth/fortetest"
)

const (
	lifetime      = 4 * time.Second
	refreshWindow = 1500 * time.Millisecond
	scrapeEvery   = 50 * time.Millisecond
	// lookback is how far back "rising" looks: long enough that one
	// failure keeps the alert up until a new token is cached or the
	// token has run out, which is at most RefreshWindow after it.
	lookback = 2 * refreshWindow
)

func main() {
	if err := run(); err != nil {
		log.Fatal("metrics: ", err)
	}
}

// published is what /debug/vars shows under "forteauth": the Stats, and
// the seconds left, which a dashboard would otherwise compute from Expiry.
type published struct {
	forteauth.Stats
	RemainingSeconds float64
}

func run() error {
	srv := fortetest.NewServer()
	defer srv.Close()
	srv.SetLifetime(lifetime)
	cfg := &forteauth.Config{
		ClientID:      srv.ClientID,
		ClientSecret:  srv.ClientSecret,
		TokenURL:      srv.TokenURL,
		RefreshWindow: refreshWindow,
		ExpiryMargin:  100 * time.Millisecond,
	}
	ts := cfg.TokenSource(context.Background())
	vars := serveVars(ts)
	defer vars.Close()

	client := &http.Client{Transport: &forteauth.Transport{Source: ts}}
	if err := call(client, srv.URL); err != nil {
		return err
	}
	// The endpoint fails the next token request, which will be the
	// background refresh: 503, and a Retry-After longer than a fetch
	// may wait, so that the source tries once and keeps its token.
	srv.FailNext(fortetest.Failure{Status: http.StatusServiceUnavailable, RetryAfter: "60"})
	apiErr, stop := work(client, srv.URL)
	defer stop()

	fmt.Printf("alert rule: remaining < 2 × RefreshWindow (%v) and background failures rising (over the last %v)\n",
		2*refreshWindow, lookback)
	return watch(&monitor{url: vars.URL}, apiErr)
}

// serveVars is the program's side: it publishes ts's figures. expvar
// serves every published variable as JSON at /debug/vars of
// http.DefaultServeMux; this example serves them on a test server instead.
func serveVars(ts *forteauth.TokenSource) *httptest.Server {
	expvar.Publish("forteauth", expvar.Func(func() any {
		st := ts.Stats()
		left := 0.0
		if !st.Expiry.IsZero() {
			left = max(time.Until(st.Expiry), 0).Seconds()
		}
		return published{st, left}
	}))
	return httptest.NewServer(expvar.Handler())
}

// work is the program at work: API calls every 20 ms until stop is
// called. The first failed call ends them and is sent on apiErr.
func work(client *http.Client, base string) (apiErr <-chan error, stop func()) {
	done := make(chan struct{})
	errc := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if err := call(client, base); err != nil {
					errc <- err
					return
				}
			}
		}
	})
	return errc, func() {
		close(done)
		wg.Wait()
	}
}

// watch scrapes the figures as a monitoring system would and reports
// each change of the alert, until it has fired and cleared; then it
// judges the run.
func watch(m *monitor, apiErr <-chan error) error {
	deadline := time.After(15 * time.Second)
	tick := time.NewTicker(scrapeEvery)
	defer tick.Stop()
	var firedAt *published
	for {
		select {
		case err := <-apiErr:
			return err
		case <-deadline:
			return fmt.Errorf("no alert fired and cleared within 15 s; last figures %+v", m.last)
		case <-tick.C:
		}
		p, firing, changed, err := m.scrape()
		if err != nil {
			return err
		}
		switch {
		case !changed:
		case firing:
			fmt.Printf("ALERT firing: %.1f s left, background failures %d: the token endpoint is failing and callers will soon wait\n",
				p.RemainingSeconds, p.BackgroundFailures)
			fmt.Printf("  /debug/vars had: %s\n", m.raw)
			firedAt = p
		default:
			fmt.Printf("alert cleared: a new token has %.1f s left\n", p.RemainingSeconds)
		}
		if firedAt != nil && !firing {
			return check(firedAt, p)
		}
	}
}

// call sends one API request and wants 200 OK.
func call(c *http.Client, base string) error {
	resp, err := c.Get(base + "/v3/payments")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("API answered %s", resp.Status)
	}
	return nil
}

// monitor scrapes /debug/vars and evaluates the rule, as Prometheus or a
// similar system would from its own copy of the figures.
type monitor struct {
	url     string
	history []sample // the scrapes of the last lookback
	last    *published
	raw     json.RawMessage // the last scrape's forteauth variable
	firing  bool
}

type sample struct {
	at                 time.Time
	backgroundFailures int64
}

func (m *monitor) scrape() (p *published, firing, changed bool, err error) {
	resp, err := http.Get(m.url)
	if err != nil {
		return nil, false, false, err
	}
	defer resp.Body.Close()
	var vars struct {
		Forteauth json.RawMessage `json:"forteauth"`
	}
	p = new(published)
	if err := json.NewDecoder(resp.Body).Decode(&vars); err != nil || json.Unmarshal(vars.Forteauth, p) != nil {
		return nil, false, false, fmt.Errorf("/debug/vars has no forteauth figures: %v", err)
	}
	m.raw = vars.Forteauth
	now := time.Now()
	for len(m.history) > 0 && now.Sub(m.history[0].at) > lookback {
		m.history = m.history[1:]
	}
	m.history = append(m.history, sample{now, p.BackgroundFailures})
	rising := p.BackgroundFailures > m.history[0].backgroundFailures

	// The rule.
	firing = p.RemainingSeconds < (2*refreshWindow).Seconds() && rising

	changed = firing != m.firing
	m.firing, m.last = firing, p
	return p, firing, changed, nil
}

// check judges the run from the figures when the alert fired and when it
// cleared.
func check(fired, cleared *published) error {
	var errs []error
	if fired.RemainingSeconds <= 0 {
		errs = append(errs, fmt.Errorf("the alert fired only once the token had run out"))
	}
	if fired.Waits != 1 || fired.CoolDownErrors != 0 {
		errs = append(errs, fmt.Errorf("when the alert fired, callers had waited %d times and got %d cool-down errors; want 1 wait (the first call) and none",
			fired.Waits, fired.CoolDownErrors))
	}
	if cleared.BackgroundFailures != 1 || cleared.FetchFailures != 1 || cleared.Fetches != 2 || cleared.RemainingSeconds < (2*refreshWindow).Seconds() {
		errs = append(errs, fmt.Errorf("when the alert cleared: %+v; want the one failure and a new token", *cleared))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	fmt.Printf("token requests %d, fetches %d, background failures %d, waits %d: no caller saw an error\n",
		cleared.TokenRequests, cleared.Fetches, cleared.BackgroundFailures, cleared.Waits)
	return nil
}
