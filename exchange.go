package forteauth

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// ErrInvalidResponse is wrapped by every error about a 2xx answer from the
// token endpoint that does not hold a usable token. Such answers are not
// retried and nothing from them is cached.
var ErrInvalidResponse = errors.New("forteauth: invalid token response")

const (
	version   = "0.1.0"
	userAgent = "forteauth-go/" + version + " (+https://github.com/forteauth/forteauth)"

	// maxBodySize bounds what is read of any token endpoint answer.
	maxBodySize = 1 << 20
)

// retryPolicy says how hard one fetch tries.
type retryPolicy struct {
	attempts   int           // requests per fetch, the first included
	backoff    backoff       // between attempts
	budget     time.Duration // one fetch, every attempt and wait included
	perAttempt time.Duration // one request, answer body included
}

var defaultRetry = retryPolicy{
	attempts:   4,
	backoff:    backoff{base: 250 * time.Millisecond, max: 4 * time.Second},
	budget:     30 * time.Second,
	perAttempt: 10 * time.Second,
}

// endpoint is the token endpoint as one Config talks to it: the request,
// the answer's parsing, retries and the errors they end with.
type endpoint struct {
	tokenURL string
	client   *http.Client // never follows redirects
	red      *redactor    // for everything built from an answer
	log      *slog.Logger
	retry    retryPolicy
	clock    *clock
	counts   *counters // a TokenSource's, or counts no one reads
}

func newEndpoint(c *Config, hc *http.Client, clk *clock, red *redactor, log *slog.Logger, counts *counters) *endpoint {
	noRedirects := *hc
	noRedirects.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &endpoint{
		tokenURL: c.TokenURL,
		client:   &noRedirects,
		red:      red,
		log:      log,
		retry:    defaultRetry,
		clock:    clk,
		counts:   counts,
	}
}

// fetched is a token from the endpoint and when the request for it was
// sent, the moment its age counts from.
type fetched struct {
	tok  *oauth2.Token
	sent time.Time
}

// retry is the verdict on a failed attempt: whether another may follow,
// and how long it must wait at least (what the answer's Retry-After asked).
type retry struct {
	again bool
	after time.Duration
}

// final is the verdict on an attempt that another would not fix.
var final = retry{}

// fetch obtains one new token with cr, retrying network errors, 408, 429
// and 5xx within the retry budget, or ctx's deadline if sooner: the
// fetches of one credentials recovery share the budget of their caller.
// It counts its requests, and the last status, in info.
func (p *endpoint) fetch(ctx context.Context, cr Credentials, info *FetchInfo) (fetched, error) {
	ctx, cancel := context.WithTimeout(ctx, p.retry.budget)
	defer cancel()
	for n := 1; ; n++ {
		info.Attempts++
		f, verdict, err := p.request(ctx, cr, &info.LastStatus)
		if err == nil {
			return f, nil
		}
		if !verdict.again || n == p.retry.attempts || ctx.Err() != nil {
			return fetched{}, err
		}
		wait := max(verdict.after, p.retry.backoff.after(n))
		if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < wait {
			p.log.WarnContext(ctx, "forteauth: not retrying token request: the wait before the next attempt is longer than the time left",
				"attempt", n, "wait", wait, "error", err)
			return fetched{}, err
		}
		p.log.InfoContext(ctx, "forteauth: retrying token request", "attempt", n, "wait", wait, "error", err)
		if p.clock.sleep(ctx, wait) != nil {
			return fetched{}, err
		}
	}
}

// request sends one token request with cr and reads its answer, whose
// status it writes to status.
func (p *endpoint) request(ctx context.Context, cr Credentials, status *int) (fetched, retry, error) {
	ctx, cancel := context.WithTimeout(ctx, p.retry.perAttempt)
	defer cancel()
	body, err := json.Marshal(struct {
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
	}{cr.ClientID, cr.ClientSecret})
	if err != nil {
		return fetched{}, final, fmt.Errorf("forteauth: encoding token request: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.tokenURL, bytes.NewReader(body))
	if err != nil {
		return fetched{}, final, fmt.Errorf("%w: %s", ErrInvalidConfig, p.red.parseError(err))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", userAgent+" Go/"+runtime.Version())

	sent := p.clock.now()
	p.counts.tokenRequests.Add(1)
	resp, err := p.client.Do(req)
	if err != nil {
		return fetched{}, netErrorRetry(err), p.red.wrap("forteauth: token request failed", err)
	}
	defer resp.Body.Close()
	*status = resp.StatusCode
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBodySize+1))
	if err != nil {
		return fetched{}, netErrorRetry(err), p.red.wrap(fmt.Sprintf("forteauth: reading token response (HTTP %d)", resp.StatusCode), err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		verdict := statusRetry(resp, p.clock.now()) // before statusError scrubs the headers
		return fetched{}, verdict, p.statusError(resp, data)
	}
	if len(data) > maxBodySize {
		return fetched{}, final, fmt.Errorf("%w: body exceeds 1 MiB (HTTP %d)", ErrInvalidResponse, resp.StatusCode)
	}
	tok, err := parseToken(data, p.red)
	if err != nil {
		// The message quotes token_type and Content-Type, which the server chose.
		return fetched{}, final, fmt.Errorf("%w: %v (HTTP %d, %d bytes, Content-Type %q)",
			ErrInvalidResponse, err, resp.StatusCode, len(data), p.red.withhold(resp.Header.Get("Content-Type")))
	}
	tok.Expiry = sent.Add(time.Duration(tok.ExpiresIn) * time.Second).Round(0)
	return fetched{tok, sent}, final, nil
}

// netErrorRetry judges a transport error: a certificate or a host name
// that does not exist will not fix itself in the next second. An attempt
// that timed out is retried; fetch stops when its own context ends.
func netErrorRetry(err error) retry {
	var (
		dnsErr   *net.DNSError
		certErr  *tls.CertificateVerificationError
		unknownA x509.UnknownAuthorityError
		hostErr  x509.HostnameError
	)
	switch {
	case errors.Is(err, context.Canceled):
		return final
	case errors.As(err, &dnsErr) && dnsErr.IsNotFound,
		errors.As(err, &certErr), errors.As(err, &unknownA), errors.As(err, &hostErr):
		return final
	}
	return retry{again: true}
}

// statusRetry judges a non-2xx answer: whether it is worth another
// attempt, and how long it asks to wait.
func statusRetry(resp *http.Response, now time.Time) retry {
	switch c := resp.StatusCode; {
	case c == http.StatusRequestTimeout, c == http.StatusTooManyRequests,
		c >= 500 && c != http.StatusNotImplemented && c != http.StatusHTTPVersionNotSupported:
		return retry{again: true, after: retryAfter(resp.Header.Get("Retry-After"), now)}
	}
	return final
}

// retryAfterMax bounds how long a Retry-After keeps a TokenSource from
// asking again after a fetch has failed.
const retryAfterMax = 5 * time.Minute

// serverWait returns how long the endpoint asked (with Retry-After) to be
// left alone after the answer that caused err, at most retryAfterMax.
func serverWait(err error) time.Duration {
	var se *statusError
	if !errors.As(err, &se) {
		return 0
	}
	return min(se.retryAfter, retryAfterMax)
}

// retryAfter parses a Retry-After value (delay-seconds or an HTTP-date)
// into a wait; anything unparseable or in the past means no wait.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseUint(v, 10, 63); err == nil || errors.Is(err, strconv.ErrRange) {
		return time.Duration(min(s, maxExpiresIn)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// statusError is the error for a non-2xx answer. It unwraps to the
// *oauth2.RetrieveError that x/oauth2 users already handle.
type statusError struct {
	re         *oauth2.RetrieveError
	retryAfter time.Duration // from the Retry-After header, 0 if none
}

func (e *statusError) Unwrap() error { return e.re }

func (e *statusError) Error() string {
	resp := e.re.Response
	var b strings.Builder
	fmt.Fprintf(&b, "forteauth: token endpoint answered %s", resp.Status)
	if e.re.ErrorCode != "" || e.re.ErrorDescription != "" {
		fmt.Fprintf(&b, " (%s", e.re.ErrorCode)
		if e.re.ErrorDescription != "" {
			if e.re.ErrorCode != "" {
				b.WriteString(": ")
			}
			fmt.Fprintf(&b, "%q", e.re.ErrorDescription)
		}
		b.WriteString(")")
	}
	switch c := resp.StatusCode; {
	case c == http.StatusUnauthorized || c == http.StatusForbidden:
		b.WriteString("; check ClientID and ClientSecret, and that they belong to TokenURL's environment")
	case c == http.StatusBadRequest:
		b.WriteString("; check ClientID and ClientSecret")
	case c == http.StatusNotFound || c == http.StatusMethodNotAllowed:
		b.WriteString("; check TokenURL")
	case c >= 300 && c < 400:
		if loc := resp.Header.Get("Location"); loc != "" {
			fmt.Fprintf(&b, " to %q", loc)
		}
		b.WriteString("; set TokenURL to the final URL (token requests do not follow redirects)")
	case c == http.StatusNotImplemented || c == http.StatusHTTPVersionNotSupported:
		b.WriteString("; something between here and Forte does not support this request; check proxies and TokenURL")
	case c == http.StatusRequestTimeout || c == http.StatusTooManyRequests || c >= 500:
		b.WriteString("; the token endpoint is overloaded or down")
	}
	return b.String()
}

// statusError builds the error for a non-2xx answer. A misbehaving server
// (or a proxy) could echo the request anywhere in its answer, so every
// value kept that holds the secret is withheld: the body, the error code
// and description decoded from it, and, in place, the status line and the
// headers of resp, which the error holds and %+v of it could print.
func (p *endpoint) statusError(resp *http.Response, body []byte) error {
	wait := retryAfter(resp.Header.Get("Retry-After"), p.clock.now())
	body = body[:min(len(body), maxBodySize)]
	code, desc := errorFields(body)
	resp.Status = p.red.withhold(resp.Status)
	p.red.header(resp.Header)
	p.red.header(resp.Trailer)
	re := &oauth2.RetrieveError{
		Response:         resp,
		Body:             []byte(p.red.withhold(string(body))),
		ErrorCode:        p.red.withhold(code),
		ErrorDescription: p.red.withhold(desc),
	}
	return &statusError{re, wait}
}

// errorFields returns the code and description of an error body: Forte's
// {"error": {"reason", "message"}}, or RFC 6749's {"error": "code"}.
func errorFields(body []byte) (code, desc string) {
	var forte struct {
		Error json.RawMessage `json:"error"`
	}
	if json.Unmarshal(body, &forte) != nil || len(forte.Error) == 0 {
		return "", ""
	}
	var detail struct {
		Reason  string `json:"reason"`
		Message string `json:"message"`
	}
	if json.Unmarshal(forte.Error, &detail) == nil {
		return detail.Reason, detail.Message
	}
	json.Unmarshal(forte.Error, &code)
	return code, ""
}

// tokenResponse is the 2xx body of POST /auth/v1/oauth2/token.
type tokenResponse struct {
	Data *struct {
		AccessToken string  `json:"access_token"`
		TokenType   string  `json:"token_type"`
		ExpiresIn   seconds `json:"expires_in"`
	} `json:"data"`
}

// seconds accepts expires_in as a JSON number or a numeric string.
type seconds struct {
	n   int64
	set bool
}

func (s *seconds) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	v := string(b)
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		v = v[1 : len(v)-1]
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		f, ferr := strconv.ParseFloat(v, 64)
		if ferr != nil || f != math.Trunc(f) || math.Abs(f) > maxExpiresIn {
			return errors.New("data.expires_in is not a whole number of seconds")
		}
		n = int64(f)
	}
	s.n, s.set = n, true
	return nil
}

// parseToken extracts and checks the token in a 2xx body. Its errors never
// quote the body, which may hold the token.
func parseToken(body []byte, red *redactor) (*oauth2.Token, error) {
	var r tokenResponse
	if err := json.Unmarshal(body, &r); err != nil {
		var typeErr *json.UnmarshalTypeError
		switch {
		case errors.As(err, &typeErr):
			field := typeErr.Field
			if field == "" {
				field = "body"
			}
			return nil, fmt.Errorf("%s is a JSON %s, which is not what the API documents", field, typeErr.Value)
		}
		if syn := (*json.SyntaxError)(nil); errors.As(err, &syn) {
			return nil, fmt.Errorf("body is not valid JSON (at byte %d)", syn.Offset)
		}
		return nil, err // from seconds.UnmarshalJSON
	}
	d := r.Data
	switch {
	case d == nil:
		return nil, errors.New(`no "data" object`)
	case d.AccessToken == "":
		return nil, errors.New("data.access_token is empty")
	case !validHeaderToken(d.AccessToken):
		return nil, errors.New("data.access_token holds characters that cannot be sent in an Authorization header")
	case !strings.EqualFold(d.TokenType, "Bearer"):
		return nil, fmt.Errorf("data.token_type is %q; only Bearer is supported", red.withhold(d.TokenType))
	case !d.ExpiresIn.set:
		return nil, errors.New("data.expires_in is missing")
	case d.ExpiresIn.n <= 0:
		return nil, fmt.Errorf("data.expires_in is %d; it must be a positive number of seconds", d.ExpiresIn.n)
	case d.ExpiresIn.n > maxExpiresIn:
		return nil, fmt.Errorf("data.expires_in is %d, implausibly large", d.ExpiresIn.n)
	}
	tok := &oauth2.Token{AccessToken: d.AccessToken, TokenType: "Bearer", ExpiresIn: d.ExpiresIn.n}
	return tok.WithExtra(red.fields(dataFields(body))), nil
}

// dataFields returns the fields of body's "data" object as encoding/json
// decodes them into an any, for Token.Extra, as x/oauth2 keeps a token
// answer's fields. Every token handed out shares the one map, so it must
// not be modified; red.fields withholds the secret from it first.
func dataFields(body []byte) map[string]any {
	var r struct {
		Data map[string]any `json:"data"`
	}
	json.Unmarshal(body, &r) // parseToken has decoded body already
	return r.Data
}
