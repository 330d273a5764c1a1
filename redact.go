package forteauth

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// redacted stands in for the secret, a password or a token wherever the
// library prints one of its own: a Config, a TokenSource, a token.
const redacted = "[REDACTED]"

// withheld replaces, whole, any value a server sent that holds the
// client secret: a body, a header, a status line, an error's text.
const withheld = "[WITHHELD: it held the client secret]"

// unparseableURL is how a TokenURL that does not parse is printed: no part
// of it can be told safe to show.
const unparseableURL = redacted + " (does not parse as a URL)"

// minSecretLen is the shortest secret looked for inside other text: a
// shorter one would match ordinary words, so it is looked for only as a
// whole value or a whole JSON string.
const minSecretLen = 4

// maxUnescapes bounds the layers of escaping holds takes off a value: a
// JSON string inside a JSON string, a URL-escaped value inside JSON.
const maxUnescapes = 3

// maxRemembered bounds the secrets a redactor keeps out of what it
// checks: the one in use and those used before it, of which a rotation
// makes one more each time. The oldest is forgotten first.
const maxRemembered = 8

// redactor keeps the client secrets a source has used out of everything
// the library returns or logs that a server sent. It withholds rather
// than rewrites: a value that holds a secret in any form the library or a
// server could plausibly produce is replaced whole by withheld, and every
// other value passes unchanged. One is made per Config, by newTokenSource
// and by Config.Token; everything built from an answer, and everything
// logged, goes through it.
type redactor struct {
	mu      sync.Mutex
	secrets []Credentials // newest first; replaced, never changed
}

func newRedactor(clientID, secret string) *redactor {
	r := new(redactor)
	if secret != "" {
		r.remember(Credentials{clientID, secret})
	}
	return r
}

// remember adds cr's secret to those withheld, unless it is there.
func (r *redactor) remember(cr Credentials) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !slices.Contains(r.secrets, cr) {
		r.secrets = append([]Credentials{cr}, r.secrets[:min(len(r.secrets), maxRemembered-1)]...)
	}
}

// holds reports whether s holds a secret r remembers.
func (r *redactor) holds(s string) bool {
	r.mu.Lock()
	secrets := r.secrets
	r.mu.Unlock()
	for _, cr := range secrets {
		if holdsSecret(s, cr.ClientID, cr.ClientSecret) {
			return true
		}
	}
	return false
}

// holdsSecret reports whether s holds secret: as it is, under up to
// maxUnescapes layers of JSON, Go (%q) or URL escapes with hex digits in
// either case, or in base64, alone or as a Basic header's user-pass.
func holdsSecret(s, clientID, secret string) bool {
	needle := secret
	switch {
	case s == needle:
		return true
	case len(needle) < minSecretLen:
		needle = `"` + needle + `"`
	}
	level := []string{s}
	for range maxUnescapes + 1 {
		var next []string
		for _, v := range level {
			if strings.Contains(v, needle) {
				return true
			}
			for _, un := range [...]func(string) string{unBackslash, unPercent, unForm} {
				if w := un(v); w != v {
					next = append(next, w)
				}
			}
		}
		level = next
	}
	return len(secret) >= minSecretLen && slices.ContainsFunc(base64Forms(clientID, secret), func(f string) bool {
		return strings.Contains(s, f)
	})
}

// withhold returns s, or withheld if s holds the secret.
func (r *redactor) withhold(s string) string {
	if r.holds(s) {
		return withheld
	}
	return s
}

// base64Forms are the base64 encodings of secret, alone and as the
// user-pass of a Basic header (RFC 7617, and RFC 6749's form-encoded one).
func base64Forms(clientID, secret string) []string {
	var forms []string
	for _, enc := range [...]*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		forms = append(forms,
			enc.EncodeToString([]byte(secret)),
			enc.EncodeToString([]byte(clientID+":"+secret)),
			enc.EncodeToString([]byte(url.QueryEscape(clientID)+":"+url.QueryEscape(secret))))
	}
	return forms
}

var (
	// backslashEscapes are those of JSON and Go string literals, a UTF-16
	// surrogate pair as one.
	backslashEscapes = regexp.MustCompile(`\\(u[0-9a-fA-F]{4}(\\u[0-9a-fA-F]{4})?|U[0-9a-fA-F]{8}|x[0-9a-fA-F]{2}|["\\/abfnrtv])`)
	percentEscapes   = regexp.MustCompile(`%[0-9a-fA-F]{2}`)
)

// unBackslash returns s with its JSON and Go backslash escapes decoded.
func unBackslash(s string) string {
	return backslashEscapes.ReplaceAllStringFunc(s, func(e string) string {
		var v string
		if json.Unmarshal([]byte(`"`+e+`"`), &v) == nil {
			return v
		}
		if v, err := strconv.Unquote(`"` + e + `"`); err == nil {
			return v
		}
		return e
	})
}

// unPercent returns s with its %HH escapes decoded; unForm does so and
// also takes + for a space, as a form or a query string writes it.
func unPercent(s string) string {
	return percentEscapes.ReplaceAllStringFunc(s, func(e string) string {
		b, _ := hex.DecodeString(e[1:])
		return string(b)
	})
}

func unForm(s string) string {
	return unPercent(strings.ReplaceAll(s, "+", " "))
}

// header withholds, in place, every value of h that holds the secret, and
// drops every header whose name holds it.
func (r *redactor) header(h http.Header) {
	for k, vs := range h {
		if r.holds(k) {
			delete(h, k)
			continue
		}
		for i, v := range vs {
			vs[i] = r.withhold(v)
		}
	}
}

// fields returns m, the decoded fields of a token answer's "data" object,
// with every field whose value holds the secret withheld and every field
// whose name holds it dropped; m itself if none does.
func (r *redactor) fields(m map[string]any) map[string]any {
	var out map[string]any
	for k, v := range m {
		b, _ := json.Marshal(v) // m came from JSON
		keyHolds := r.holds(k)
		if !keyHolds && !r.holds(string(b)) {
			continue
		}
		if out == nil {
			out = maps.Clone(m)
		}
		delete(out, k)
		if !keyHolds {
			out[k] = withheld
		}
	}
	if out == nil {
		return m
	}
	return out
}

// wrap returns err after prefix and ": ". If err's text holds the secret
// (net/http's errors quote a malformed answer), the result says so in
// its place, and does not unwrap, since err would print the secret.
func (r *redactor) wrap(prefix string, err error) error {
	if r.holds(err.Error()) {
		return errors.New(prefix + ": " + withheld)
	}
	return fmt.Errorf("%s: %w", prefix, err)
}

// url returns raw as it may be printed: withheld if it holds the secret,
// with its password masked as url.URL.Redacted masks it, and not at all
// if it does not parse.
func (r *redactor) url(raw string) string {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return unparseableURL
	case r.holds(raw):
		return withheld
	}
	if _, ok := u.User.Password(); ok {
		return u.Redacted()
	}
	return raw
}

// parseError describes TokenURL's url.Parse failure without the URL, which
// *url.Error quotes whole, password and all.
func (r *redactor) parseError(err error) string {
	if ue := (*url.Error)(nil); errors.As(err, &ue) {
		err = ue.Err
	}
	return "TokenURL does not parse as a URL: " + r.withhold(err.Error())
}
