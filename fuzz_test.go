package forteauth

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The fuzz targets' seeds are in testdata/fuzz/<FuzzName>/. CI runs each
// target for 15 s; run one longer with, for example,
//
//	go test -run '^$' -fuzz '^FuzzParseToken$' -fuzztime 5m .

// parseTokenVocabulary holds every fixed part of parseToken's messages.
// An access token found in it is not a leak: the message would contain it
// whatever the token.
const parseTokenVocabulary = `no "data" object; data.access_token is empty; ` +
	`data.access_token holds characters that cannot be sent in an Authorization header; ` +
	`data.token_type is ""; only Bearer is supported; data.expires_in is missing; ` +
	`data.expires_in is ; it must be a positive number of seconds; implausibly large; ` +
	`data.expires_in is not a whole number of seconds; body is not valid JSON (at byte ); ` +
	`data.access_token data.token_type data.expires_in data body is a JSON string number bool array object, which is not what the API documents`

// accessTokenInBody finds the access_token string as written in a body,
// valid JSON or not.
var accessTokenInBody = regexp.MustCompile(`"access_token"\s*:\s*"([^"\\]*)"`)

// numberLike reports whether s could be a number that a message shows for
// another reason: an offset, expires_in, a JSON number's value.
func numberLike(s string) bool { return strings.Trim(s, "0123456789+-.eE") == "" }

func FuzzParseToken(f *testing.F) {
	f.Add([]byte(tokenBody(testAccessToken, "Bearer", 3600)))
	f.Fuzz(func(t *testing.T, body []byte) {
		tok, err := parseToken(body, newRedactor("fuzz-client", "fuzz-secret"))
		if err == nil {
			switch {
			case tok == nil:
				t.Fatal("no token and no error")
			case tok.AccessToken == "" || !validHeaderToken(tok.AccessToken):
				t.Fatalf("accepted an access token of %d bytes that cannot be sent", len(tok.AccessToken))
			case tok.ExpiresIn <= 0 || tok.ExpiresIn > maxExpiresIn:
				t.Fatalf("accepted expires_in %d", tok.ExpiresIn)
			case tok.TokenType != "Bearer":
				t.Fatalf("accepted token_type %q", tok.TokenType)
			}
			return
		}
		if tok != nil {
			t.Fatal("both a token and an error")
		}
		m := accessTokenInBody.FindSubmatch(body)
		if m == nil {
			return
		}
		secret := string(m[1])
		if len(secret) < 8 || numberLike(secret) || strings.Contains(parseTokenVocabulary, secret) {
			return // too short or too plain to tell a leak from a coincidence
		}
		msg := err.Error()
		// The one message that quotes the body: the token_type it names.
		var r struct {
			Data struct {
				TokenType string `json:"token_type"`
			} `json:"data"`
		}
		if json.Unmarshal(body, &r) == nil {
			msg = strings.ReplaceAll(msg, fmt.Sprintf("%q", r.Data.TokenType), `""`)
		}
		if strings.Contains(msg, secret) {
			t.Fatalf("error shows the body's access_token (%d bytes): %s", len(secret), strings.ReplaceAll(msg, secret, "<TOKEN>"))
		}
	})
}

func FuzzRetryAfter(f *testing.F) {
	f.Add("120", int64(1795867200))
	f.Fuzz(func(t *testing.T, v string, nowUnix int64) {
		// Any second from year 0 to 9999, where HTTP dates live.
		now := time.Unix(nowUnix%253402300800, 0).UTC()
		if d := retryAfter(v, now); d < 0 {
			t.Fatalf("retryAfter(%q, %v) = %v, negative", v, now, d)
		}
		resp := &http.Response{StatusCode: http.StatusServiceUnavailable, Header: http.Header{"Retry-After": {v}}}
		if d := statusRetry(resp, now); !d.again || d.after < 0 {
			t.Fatalf("a 503 with Retry-After %q is final (%+v); it should be retried", v, d)
		}
	})
}

// FuzzMatchHost checks Transport's host allow-list against a reference
// built on net.SplitHostPort. host is a URL's host as url.Parse accepts
// it; https picks the scheme, and so the default port.
func FuzzMatchHost(f *testing.F) {
	f.Add("api.prod.lemmax.com", "API.Prod.Lemmax.com.", true)
	f.Fuzz(func(t *testing.T, pattern, host string, https bool) {
		scheme := "http"
		if https {
			scheme = "https"
		}
		u, err := url.Parse(scheme + "://" + host + "/")
		if err != nil || u.Host != host {
			return // not a host that a request can carry
		}
		got := matchHost(pattern, u)
		if wellFormedHost.MatchString(pattern) && wellFormedHost.MatchString(host) {
			if want := refMatchHost(pattern, u); got != want {
				t.Fatalf("matchHost(%q, %s://%s) = %v, reference says %v", pattern, scheme, host, got, want)
			}
		}
		if got && !strings.EqualFold(strings.TrimSuffix(refHostOnly(pattern), "."), strings.TrimSuffix(refHostOnly(host), ".")) {
			t.Fatalf("matchHost(%q, %s://%s) = true, but the hosts differ in more than case, a trailing dot and the port", pattern, scheme, host)
		}
	})
}

// wellFormedHost matches a DNS name (with an optional trailing dot) or a
// bracketed IPv6 address, with an optional port.
var wellFormedHost = regexp.MustCompile(`^(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.?|\[[0-9A-Fa-f:]+\])(?::[0-9]{1,5})?$`)

// refMatchHost is matchHost as its documentation states it, the simple
// way, for well-formed input.
func refMatchHost(pattern string, u *url.URL) bool {
	split := func(s string) (host, port string) {
		if h, p, err := net.SplitHostPort(s); err == nil {
			return h, p
		}
		return strings.TrimSuffix(strings.TrimPrefix(s, "["), "]"), ""
	}
	ph, pp := split(pattern)
	h, p := split(u.Host)
	if !strings.EqualFold(strings.TrimSuffix(ph, "."), strings.TrimSuffix(h, ".")) {
		return false
	}
	if pp == "" {
		return true
	}
	if p == "" {
		p = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	return pp == p
}

// refHostOnly is s without a port (a colon and digits at the end, after a
// name without colons or a bracketed address) and without brackets.
func refHostOnly(s string) string {
	if i := strings.LastIndexByte(s, ':'); i >= 0 && strings.Trim(s[i+1:], "0123456789") == "" &&
		(strings.HasSuffix(s[:i], "]") || !strings.Contains(s[:i], ":")) {
		s = s[:i]
	}
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		s = s[1 : len(s)-1]
	}
	return s
}
