package forteauth

import (
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf16"
	"unicode/utf8"
)

// redacted stands in for the secret, a password or a token wherever one
// would otherwise be printed.
const redacted = "[REDACTED]"

// unparseableURL is how a TokenURL that does not parse is printed: no part
// of it can be told safe to show.
const unparseableURL = redacted + " (does not parse as a URL)"

// minRedactLen is the shortest secret that is removed from inside other
// text: a shorter one would match ordinary words. Text that is exactly the
// secret is replaced whatever its length.
const minRedactLen = 4

// redactor removes one client secret from text, in every form the library
// produces or a server could plausibly echo. One is made per Config, by
// newTokenSource (so one per TokenSource) and by Config.Token, and
// everything built from what a server sent and everything logged goes
// through it; validating or printing a Config makes one of its own. It is for error and log paths only, and builds
// its tables on first use, so that a TokenSource that never fails carries
// only its two strings.
type redactor struct {
	clientID, secret string

	once   sync.Once
	exact  *strings.Replacer // every form, as produced; nil if the secret is too short
	folded []string          // the forms holding %XX or \uXXXX escapes, as normEscapes writes them
}

func newRedactor(clientID, secret string) *redactor {
	return &redactor{clientID: clientID, secret: secret}
}

func (r *redactor) build() {
	if len(r.secret) < minRedactLen {
		return
	}
	forms := secretForms(r.clientID, r.secret)
	pairs := make([]string, 0, 2*len(forms))
	for _, f := range forms {
		pairs = append(pairs, f, redacted)
		if strings.ContainsAny(f, `%\`) {
			r.folded = append(r.folded, normEscapes(f))
		}
	}
	r.exact = strings.NewReplacer(pairs...)
	slices.Sort(r.folded)
	r.folded = slices.Compact(r.folded)
}

// secretForms lists the forms of secret to remove, longest first, so that
// where two start at one place (a padded base64 and its unpadded prefix)
// the longer is replaced.
func secretForms(clientID, secret string) []string {
	forms := []string{
		secret,
		// The request body, as encoding/json writes it; a server echoing
		// it keeps these escapes.
		goJSON(secret, true),
		goJSON(secret, false),
		// fmt's %q, which net/http uses to quote a malformed answer.
		unquote(strconv.Quote(secret)),
		url.QueryEscape(secret),
		url.PathEscape(secret),
	}
	// What other JSON encoders write, down to the strictest, which escapes
	// every character (the decode-and-rescan of JSON bodies in
	// redactor.body catches any other mix of escapes).
	for st := range jsonStyles {
		forms = append(forms, jsonString(secret, st))
	}
	var every strings.Builder
	for _, u := range utf16.Encode([]rune(secret)) {
		fmt.Fprintf(&every, `\u%04x`, u)
	}
	forms = append(forms, every.String())
	// A Basic header, with and without RFC 6749's form-encoding first.
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		forms = append(forms,
			enc.EncodeToString([]byte(secret)),
			enc.EncodeToString([]byte(clientID+":"+secret)),
			enc.EncodeToString([]byte(url.QueryEscape(clientID)+":"+url.QueryEscape(secret))))
	}
	slices.SortFunc(forms, func(a, b string) int {
		return cmp.Or(cmp.Compare(len(b), len(a)), strings.Compare(a, b))
	})
	return slices.Compact(forms)
}

func unquote(q string) string { return q[1 : len(q)-1] }

// goJSON is s as encoding/json writes it inside a string, without the quotes.
func goJSON(s string, escapeHTML bool) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(escapeHTML)
	enc.Encode(s) // a string always encodes
	return unquote(strings.TrimSuffix(b.String(), "\n"))
}

// jsonStyle is a set of the choices JSON encoders make differently when
// they write a string.
type jsonStyle uint8

const (
	jsonHTML    jsonStyle = 1 << iota // < > & as \u003c \u003e \u0026 (encoding/json)
	jsonLineSep                       // U+2028, U+2029 as \u2028, \u2029 (encoding/json)
	jsonASCII                         // everything outside ' '..'~' as \uXXXX (Python, PHP)
	jsonSlash                         // / as \/ (PHP, some Java encoders)

	jsonStyles jsonStyle = 1 << iota // the number of combinations
)

// jsonString is s written by an encoder of style st, without the quotes.
// The hex digits are lower case; normEscapes makes matching ignore that.
func jsonString(s string, st jsonStyle) string {
	var b strings.Builder
	u := func(c rune) { fmt.Fprintf(&b, `\u%04x`, c) }
	for _, c := range s {
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteRune(c)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\r':
			b.WriteString(`\r`)
		case c == '\t':
			b.WriteString(`\t`)
		case c == '\b':
			b.WriteString(`\b`)
		case c == '\f':
			b.WriteString(`\f`)
		case c < ' ':
			u(c)
		case st&jsonHTML != 0 && (c == '<' || c == '>' || c == '&'):
			u(c)
		case st&jsonSlash != 0 && c == '/':
			b.WriteString(`\/`)
		case st&jsonLineSep != 0 && (c == '\u2028' || c == '\u2029'):
			u(c)
		case st&jsonASCII != 0 && c > '~':
			if r1, r2 := utf16.EncodeRune(c); r1 != utf8.RuneError {
				u(r1)
				u(r2)
			} else {
				u(c)
			}
		default:
			b.WriteRune(c) // an invalid byte becomes U+FFFD, as encoding/json writes it
		}
	}
	return b.String()
}

// normEscapes returns s with the hex digits of every %XX escape in upper
// case and of every \uXXXX escape in lower case, so that a form matches
// whichever case an encoder chose. The result has the length of s, byte
// for byte, so a match in it is a match at the same place in s.
func normEscapes(s string) string {
	b := []byte(s)
	for i := 0; i < len(b); i++ {
		switch {
		case b[i] == '%' && i+2 < len(b) && isHex(b[i+1]) && isHex(b[i+2]):
			b[i+1], b[i+2] = upperHex(b[i+1]), upperHex(b[i+2])
			i += 2
		case b[i] == '\\' && i+5 < len(b) && b[i+1] == 'u' && isHex(b[i+2]) && isHex(b[i+3]) && isHex(b[i+4]) && isHex(b[i+5]):
			for j := i + 2; j < i+6; j++ {
				b[j] = lowerHex(b[j])
			}
			i += 5
		}
	}
	return string(b)
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func upperHex(c byte) byte {
	if 'a' <= c && c <= 'f' {
		return c - 'a' + 'A'
	}
	return c
}

func lowerHex(c byte) byte {
	if 'A' <= c && c <= 'F' {
		return c - 'A' + 'a'
	}
	return c
}

// String returns s with every form of the secret replaced by "[REDACTED]".
func (r *redactor) String(s string) string {
	if r.secret != "" && s == r.secret {
		return redacted
	}
	if s == "" {
		return s
	}
	r.once.Do(r.build)
	if r.exact == nil {
		return s
	}
	// A replacement can join what is left around it into a new match (a
	// secret that repeats itself), so go again while anything changes; the
	// bound keeps a secret that contains "[REDACTED]" from looping.
	for range 3 {
		out := r.foldedPass(r.exact.Replace(s))
		if out == s {
			break
		}
		s = out
	}
	return s
}

// foldedPass replaces the forms holding escapes where they appear with
// their hex digits in another case than the one the form has.
func (r *redactor) foldedPass(s string) string {
	if len(r.folded) == 0 || !strings.ContainsAny(s, `%\`) {
		return s
	}
	n := normEscapes(s)
	var spans [][2]int
	for _, f := range r.folded {
		for i := 0; ; {
			j := strings.Index(n[i:], f)
			if j < 0 {
				break
			}
			spans = append(spans, [2]int{i + j, i + j + len(f)})
			i += j + len(f)
		}
	}
	if len(spans) == 0 {
		return s
	}
	slices.SortFunc(spans, func(a, b [2]int) int { return cmp.Compare(a[0], b[0]) })
	var b strings.Builder
	done := 0 // s[:done] is written or redacted
	for _, sp := range spans {
		switch {
		case sp[1] <= done:
		case sp[0] < done: // overlaps the span just redacted: widen it
			done = sp[1]
		default:
			b.WriteString(s[done:sp[0]])
			b.WriteString(redacted)
			done = sp[1]
		}
	}
	b.WriteString(s[done:])
	return b.String()
}

// maxJSONDepth bounds how many levels of JSON inside JSON strings body
// decodes.
const maxJSONDepth = 3

// body returns an answer's body with the secret removed: from the raw
// bytes and, if the body is JSON, from every decoded string and key, where
// an escape such as \/ or \u0073 could hide it (the body is then encoded
// again). A string that is itself JSON is decoded in turn.
func (r *redactor) body(b []byte) []byte {
	s := r.String(string(b))
	if v, ok := r.jsonText(s, 0); ok {
		return []byte(v)
	}
	return []byte(s)
}

// jsonText returns s, if it is a JSON document, with the secret removed
// from its decoded strings and re-encoded, and whether anything changed.
func (r *redactor) jsonText(s string, depth int) (string, bool) {
	var v any
	if json.Unmarshal([]byte(s), &v) != nil {
		return s, false
	}
	v, changed := r.jsonValue(v, depth)
	if !changed {
		return s, false
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if enc.Encode(v) != nil {
		return s, false
	}
	return strings.TrimSuffix(b.String(), "\n"), true
}

func (r *redactor) jsonValue(v any, depth int) (any, bool) {
	changed := false
	switch v := v.(type) {
	case string:
		s := r.String(v)
		if t := strings.TrimSpace(s); depth < maxJSONDepth && t != "" && (t[0] == '{' || t[0] == '[') {
			s, _ = r.jsonText(s, depth+1)
		}
		return s, s != v
	case []any:
		for i := range v {
			var c bool
			v[i], c = r.jsonValue(v[i], depth)
			changed = changed || c
		}
	case map[string]any:
		renamed := make(map[string]string)
		for k, x := range v {
			var c bool
			v[k], c = r.jsonValue(x, depth)
			changed = changed || c
			if rk := r.String(k); rk != k {
				renamed[k] = rk
			}
		}
		for k, rk := range renamed {
			v[rk] = v[k]
			delete(v, k)
			changed = true
		}
	}
	return v, changed
}

// fields returns m, the decoded fields of a token answer's "data" object,
// with the secret removed. The check is on the decoded strings, which hold
// the secret as sent whatever escapes the server used, so that a token
// answer that does not echo it costs no tables.
func (r *redactor) fields(m map[string]any) map[string]any {
	if r.secret == "" || !holds(m, r.secret) {
		return m
	}
	v, _ := r.jsonValue(m, 0)
	return v.(map[string]any)
}

// holds reports whether a decoded JSON value has s in a string or a key.
func holds(v any, s string) bool {
	switch v := v.(type) {
	case string:
		return strings.Contains(v, s)
	case []any:
		for _, x := range v {
			if holds(x, s) {
				return true
			}
		}
	case map[string]any:
		for k, x := range v {
			if strings.Contains(k, s) || holds(x, s) {
				return true
			}
		}
	}
	return false
}

// header removes the secret from the keys and values of h, in place.
func (r *redactor) header(h http.Header) {
	renamed := make(map[string]string)
	for k, vs := range h {
		for i, v := range vs {
			vs[i] = r.String(v)
		}
		if rk := r.String(k); rk != k {
			renamed[k] = rk
		}
	}
	for k, rk := range renamed {
		h[rk] = append(h[rk], h[k]...)
		delete(h, k)
	}
}

// wrap returns err after prefix and ": ". If err's text holds the secret
// (net/http's errors quote a malformed answer), the result carries only
// the redacted text and does not unwrap, since err would print the secret.
func (r *redactor) wrap(prefix string, err error) error {
	msg := err.Error()
	if clean := r.String(msg); clean != msg {
		return errors.New(prefix + ": " + clean)
	}
	return fmt.Errorf("%s: %w", prefix, err)
}

// url returns raw as it may be printed: with the password of its user
// information, and a user name that holds the secret, replaced by
// "[REDACTED]", and the secret removed from the rest. A URL that does not
// parse is not shown at all.
func (r *redactor) url(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return unparseableURL
	}
	if u.User == nil {
		return r.String(raw)
	}
	user := url.User(u.User.Username()).String() // escaped as in the URL
	if r.String(u.User.Username()) != u.User.Username() {
		user = redacted
	}
	if _, ok := u.User.Password(); ok {
		user += ":" + redacted
	}
	rest := *u
	rest.User = nil
	s, prefix := rest.String(), "//"
	if u.Scheme != "" {
		prefix = u.Scheme + "://"
	}
	if !strings.HasPrefix(s, prefix) {
		return unparseableURL // user information comes with an authority, so this does not happen
	}
	return prefix + user + "@" + r.String(s[len(prefix):])
}

// parseError describes TokenURL's url.Parse failure without the URL, which
// *url.Error quotes whole, password and all.
func (r *redactor) parseError(err error) string {
	if ue := (*url.Error)(nil); errors.As(err, &ue) {
		err = ue.Err
	}
	return "TokenURL does not parse as a URL: " + r.String(err.Error())
}

// redactingHandler hands records to h with the secret removed from the
// message and from every attribute: strings, errors (logged as their
// redacted text), whatever a LogValuer returns, and groups at any depth.
// A value of any other kind is logged as its redacted %+v text, since a
// handler would print it by reflection.
type redactingHandler struct {
	h slog.Handler
	r *redactor
}

func (h *redactingHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.h.Enabled(ctx, level)
}

func (h *redactingHandler) Handle(ctx context.Context, rec slog.Record) error {
	out := slog.NewRecord(rec.Time, rec.Level, h.r.String(rec.Message), rec.PC)
	rec.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(h.attr(a))
		return true
	})
	return h.h.Handle(ctx, out)
}

func (h *redactingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &redactingHandler{h.h.WithAttrs(h.attrs(as)), h.r}
}

func (h *redactingHandler) WithGroup(name string) slog.Handler {
	return &redactingHandler{h.h.WithGroup(h.r.String(name)), h.r}
}

func (h *redactingHandler) attrs(as []slog.Attr) []slog.Attr {
	out := make([]slog.Attr, len(as))
	for i, a := range as {
		out[i] = h.attr(a)
	}
	return out
}

func (h *redactingHandler) attr(a slog.Attr) slog.Attr {
	a.Key = h.r.String(a.Key)
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		v = slog.StringValue(h.r.String(v.String()))
	case slog.KindGroup:
		v = slog.GroupValue(h.attrs(v.Group())...)
	case slog.KindAny:
		if err, ok := v.Any().(error); ok {
			v = slog.StringValue(h.r.String(err.Error()))
		} else {
			v = slog.StringValue(h.r.String(fmt.Sprintf("%+v", v.Any())))
		}
	}
	a.Value = v
	return a
}
