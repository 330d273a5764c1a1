package forteauth

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/forteauth/forteauth/fortetest"
	"golang.org/x/oauth2"
)

// awkwardSecrets are secrets with every character that some encoding of the
// secret changes.
var awkwardSecrets = []struct{ name, secret string }{
	{"plain", "s3cr3t-value-XYZ"},
	{"with a space", "s3cr3t value"},
	{`with "`, `s3cr3t"value`},
	{`with \`, `s3cr3t\value`},
	{"with <", "s3cr3t<value"},
	{"with >", "s3cr3t>value"},
	{"with &", "s3cr3t&value"},
	{"with a control character", "s3cr3t\x01value"},
	{"with U+2028", "s3cr3t\u2028value"},
	{"with U+2029", "s3cr3t\u2029value"},
	{"with U+2028 and \"", "s3cr3t\u2028\"value"},
	{"with % + /", "s3cr3t%2B+/value"},
	{"non-ASCII", "s3cr3t-välue-日本-😀"},
	{"non-ASCII with a control character", "s3cr3t-välue\x01"},
	{"100 bytes", strings.Repeat("Ab+/%é<&", 11) + "Z"},
}

// encodedForms are the forms of secret that must appear nowhere, by name,
// computed here with the standard library and by hand, independently of
// the redactor.
func encodedForms(clientID, secret string) map[string]string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.Encode(secret)
	noHTML := strings.TrimSuffix(b.String(), "\n")
	withHTML, _ := json.Marshal(secret)
	upperU := regexp.MustCompile(`\\u[0-9a-f]{4}`)
	lowerPct := regexp.MustCompile(`%[0-9A-F]{2}`)
	forms := map[string]string{
		"raw":                                   secret,
		"encoding/json":                         string(withHTML[1 : len(withHTML)-1]),
		"encoding/json without HTML escaping":   noHTML[1 : len(noHTML)-1],
		"encoding/json with upper-case hex":     upperU.ReplaceAllStringFunc(string(withHTML[1:len(withHTML)-1]), func(e string) string { return `\u` + strings.ToUpper(e[2:]) }),
		"PHP json_encode":                       jsonByHand(secret, true, true),
		"Python json.dumps":                     jsonByHand(secret, false, true),
		"JavaScript JSON.stringify":             jsonByHand(secret, false, false),
		"every character as upper-case \\uXXXX": everyCharEscaped(secret),
		"strconv.Quote":                         strconv.Quote(secret)[1 : len(strconv.Quote(secret))-1],
		"url.QueryEscape":                       url.QueryEscape(secret),
		"url.PathEscape":                        url.PathEscape(secret),
		"url.QueryEscape with lower-case hex":   lowerPct.ReplaceAllStringFunc(url.QueryEscape(secret), strings.ToLower),
		"url.PathEscape with lower-case hex":    lowerPct.ReplaceAllStringFunc(url.PathEscape(secret), strings.ToLower),
	}
	for name, enc := range map[string]*base64.Encoding{
		"base64 std": base64.StdEncoding, "base64 URL": base64.URLEncoding,
		"base64 raw std": base64.RawStdEncoding, "base64 raw URL": base64.RawURLEncoding,
	} {
		forms[name] = enc.EncodeToString([]byte(secret))
		forms[name+" of a Basic header"] = enc.EncodeToString([]byte(clientID + ":" + secret))
	}
	return forms
}

// jsonByHand writes s as a JSON string body the way other encoders do:
// slash escapes / as \/ (PHP), ascii writes everything outside ' '..'~'
// as \uXXXX (PHP, Python); without ascii, U+2028 stays raw (JavaScript).
func jsonByHand(s string, slash, ascii bool) string {
	var b strings.Builder
	for _, c := range s {
		switch {
		case c == '"':
			b.WriteString(`\"`)
		case c == '\\':
			b.WriteString(`\\`)
		case c == '/' && slash:
			b.WriteString(`\/`)
		case c < 0x20 || ascii && c > 0x7e:
			for _, u := range utf16.Encode([]rune{c}) {
				fmt.Fprintf(&b, "\\u%04x", u)
			}
		default:
			b.WriteRune(c)
		}
	}
	return b.String()
}

// everyCharEscaped writes every character of s as \uXXXX, upper case.
func everyCharEscaped(s string) string {
	var b strings.Builder
	for _, u := range utf16.Encode([]rune(s)) {
		fmt.Fprintf(&b, "\\u%04X", u)
	}
	return b.String()
}

// assertNoForm fails if any form in forms occurs in s, naming the form
// but not printing s.
func assertNoForm(t *testing.T, what, s string, forms map[string]string) {
	t.Helper()
	for name, f := range forms {
		if strings.Contains(s, f) {
			t.Errorf("%s holds the secret as %s (%d-byte output)", what, name, len(s))
		}
	}
}

func TestRedactorWithholdsEveryForm(t *testing.T) {
	for _, sc := range awkwardSecrets {
		t.Run(sc.name, func(t *testing.T) {
			r := newRedactor(testClientID, sc.secret)
			forms := encodedForms(testClientID, sc.secret)
			var all []string
			for name, f := range forms {
				if got := r.withhold("before " + f + " after"); got != withheld {
					assertNoForm(t, "withheld "+name, got, forms)
					t.Errorf("%s: got %d bytes %q, want the marker alone", name, len(got), stripForms(got, forms))
				}
				all = append(all, f)
			}
			slices.Sort(all)
			if got := r.withhold(strings.Join(all, "|")); got != withheld {
				t.Errorf("every form, joined: got %q, want the marker alone", stripForms(got, forms))
			}
		})
	}
}

// stripForms replaces the forms in s, for a failure message.
func stripForms(s string, forms map[string]string) string {
	for _, f := range forms {
		s = strings.ReplaceAll(s, f, "<FORM>")
	}
	return s
}

func TestRedactorLeavesOtherTextAlone(t *testing.T) {
	r := newRedactor(testClientID, testSecret)
	for _, s := range []string{
		"", "forteauth: token endpoint answered 401 Unauthorized", `{"error":{"message":"invalid params"}}`,
		"%41%42 \\u0041 \\x41 a+b", "s3cr3t-value", "S3CR3T-VALUE-XYZ", "s3cr3t-value-XY", `{"b":1,"a":"x"}`,
	} {
		if got := r.withhold(s); got != s {
			t.Errorf("withhold(%q) = %q, want it unchanged", s, got)
		}
	}
}

func TestRedactorLooksForShortSecretsOnlyAsWholeValues(t *testing.T) {
	r := newRedactor(testClientID, "cab")
	if got := r.withhold("grab a cab"); got != "grab a cab" {
		t.Errorf("a 3-byte secret withheld ordinary text: %q", got)
	}
	if got := r.withhold("cab"); got != withheld {
		t.Errorf("text that is exactly the 3-byte secret became %q, want %q", got, withheld)
	}
	if got := r.withhold(`{"error":{"client_secret":"cab","note":"a cab"}}`); got != withheld {
		t.Errorf("a JSON string equal to a 3-byte secret: %q, want %q", got, withheld)
	}
	if got := r.withhold(`{"note":"a cab"}`); got != `{"note":"a cab"}` {
		t.Errorf("JSON that holds a 3-byte secret only inside a string: %q, want it unchanged", got)
	}
	if got := newRedactor(testClientID, "abcd").withhold("xabcdx"); got != withheld {
		t.Errorf("a 4-byte secret inside text: %q, want it withheld", got)
	}
}

func TestRedactorSeesThroughNestedJSON(t *testing.T) {
	secret := `s3cr3t"value`
	r := newRedactor(testClientID, secret)
	req, _ := json.Marshal(map[string]string{"client_secret": secret})
	inner, _ := json.Marshal(map[string]string{"echo": string(req)})
	body, _ := json.Marshal(map[string]any{"error": map[string]any{"message": string(inner)}})
	if got := r.withhold(string(body)); got != withheld {
		t.Errorf("the secret JSON-escaped three times over was not seen: %d bytes left", len(got))
	}
}

func TestRedactorFieldsWithholdsOnlyTheFieldsThatHoldTheSecret(t *testing.T) {
	r := newRedactor(testClientID, testSecret)
	m := map[string]any{"access_token": "t", "echo": map[string]any{"secret": testSecret}, "note": "ok " + url.QueryEscape(testSecret), testSecret: 1}
	got := r.fields(m)
	want := map[string]any{"access_token": "t", "echo": withheld, "note": withheld}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("fields = %v, want %v", hide(fmt.Sprint(got)), want)
	}
	if _, ok := m["echo"].(map[string]any); !ok {
		t.Error("fields changed the map it was given")
	}
	clean := map[string]any{"access_token": "t"}
	if got := r.fields(clean); fmt.Sprintf("%p", got) != fmt.Sprintf("%p", clean) {
		t.Error("fields copied a map that holds no secret")
	}
}

// echoServer is a token endpoint on a raw TCP listener. It answers each
// request with what answer writes, from the request's path, body and
// credentials, so that an answer can hold what net/http would not write:
// any reason phrase, header or status line.
type echoServer struct {
	ln     net.Listener
	wg     sync.WaitGroup
	answer func(path string, body []byte, id, secret string) string
}

func newEchoServer(t *testing.T, answer func(path string, body []byte, id, secret string) string) *echoServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &echoServer{ln: ln, answer: answer}
	s.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Go(func() { s.serve(c) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		s.wg.Wait()
	})
	return s
}

func (s *echoServer) serve(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	req, err := http.ReadRequest(bufio.NewReader(c))
	if err != nil {
		return
	}
	body, _ := io.ReadAll(req.Body)
	var creds struct {
		ID     string `json:"client_id"`
		Secret string `json:"client_secret"`
	}
	json.Unmarshal(body, &creds)
	io.WriteString(c, s.answer(req.URL.Path, body, creds.ID, creds.Secret))
}

func (s *echoServer) url(path string) string { return "http://" + s.ln.Addr().String() + path }

// rawAnswer is a raw HTTP/1.1 answer.
func rawAnswer(statusLine string, header []string, body string) string {
	var b strings.Builder
	b.WriteString(statusLine + "\r\n")
	for i := 0; i+1 < len(header); i += 2 {
		b.WriteString(header[i] + ": " + header[i+1] + "\r\n")
	}
	fmt.Fprintf(&b, "Content-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
	return b.String()
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func forteError(status int, message string, extra map[string]any) string {
	e := map[string]any{"message": message, "reason": http.StatusText(status), "status": status}
	for k, v := range extra {
		e[k] = v
	}
	return mustJSON(map[string]any{"error": e})
}

// echoWays are the ways a token endpoint (or a proxy) can echo the
// secret it received; status is the answer's, 0 for an answer net/http
// rejects.
var echoWays = []struct {
	name   string
	status int
	answer func(body []byte, id, secret string) string
}{
	{"raw body", 400, func(body []byte, _, _ string) string {
		return rawAnswer("HTTP/1.1 400 Bad Request", []string{"Content-Type", "text/plain"}, "cannot parse "+string(body))
	}},
	{"JSON string in error.message", 401, func(_ []byte, _, secret string) string {
		return rawAnswer("HTTP/1.1 401 Unauthorized", []string{"Content-Type", "application/json"},
			forteError(401, "client_secret "+secret+" is wrong", nil))
	}},
	{"JSON key", 400, func(_ []byte, _, secret string) string {
		return rawAnswer("HTTP/1.1 400 Bad Request", []string{"Content-Type", "application/json"},
			forteError(400, "unknown field", map[string]any{secret: "unknown"}))
	}},
	{"nested JSON", 422, func(body []byte, _, secret string) string {
		return rawAnswer("HTTP/1.1 422 Unprocessable Entity", []string{"Content-Type", "application/json"},
			forteError(422, "invalid", map[string]any{
				"details": []any{map[string]any{"request": map[string]any{"body": map[string]any{"client_secret": secret}}}},
				"raw":     string(body), // JSON inside a JSON string
			}))
	}},
	{"text/plain 500 with every form", 500, func(_ []byte, id, secret string) string {
		var forms []string
		for name, f := range encodedForms(id, secret) {
			forms = append(forms, name+"="+f)
		}
		slices.Sort(forms)
		return rawAnswer("HTTP/1.1 500 Internal Server Error", []string{"Content-Type", "text/plain"}, strings.Join(forms, "\n"))
	}},
	{"JSON 403 quoting the request", 403, func(body []byte, _, _ string) string {
		return rawAnswer("HTTP/1.1 403 Forbidden", []string{"Content-Type", "application/json"},
			forteError(403, "rejected "+string(body), nil))
	}},
	{"JSON as PHP writes it", 401, func(_ []byte, _, secret string) string {
		return rawAnswer("HTTP/1.1 401 Unauthorized", []string{"Content-Type", "application/json"},
			`{"error":{"message":"client_secret `+jsonByHand(secret, true, true)+` is wrong","reason":"Unauthorized","status":401}}`)
	}},
	{"JSON with every character escaped", 401, func(_ []byte, _, secret string) string {
		return rawAnswer("HTTP/1.1 401 Unauthorized", []string{"Content-Type", "application/json"},
			`{"error":{"message":"`+everyCharEscaped(secret)+`","reason":"Unauthorized","status":401}}`)
	}},
	{"307 Location", 307, func(_ []byte, _, secret string) string {
		return rawAnswer("HTTP/1.1 307 Temporary Redirect", []string{"Location", "https://elsewhere.example/token?client_secret=" + url.QueryEscape(secret)}, "")
	}},
	{"307 Location with lower-case escapes", 307, func(_ []byte, _, secret string) string {
		loc := regexp.MustCompile(`%[0-9A-F]{2}`).ReplaceAllStringFunc(url.QueryEscape(secret), strings.ToLower)
		return rawAnswer("HTTP/1.1 307 Temporary Redirect", []string{"Location", "https://elsewhere.example/token?client_secret=" + loc}, "")
	}},
	{"reason phrase", 400, func(_ []byte, _, secret string) string {
		return rawAnswer("HTTP/1.1 400 Bad client_secret "+secret, nil, "")
	}},
	{"response headers", 400, func(_ []byte, id, secret string) string {
		f := encodedForms(id, secret)
		return rawAnswer("HTTP/1.1 400 Bad Request", []string{
			"X-Echo", secret,
			"X-Echo-Json", f["encoding/json"],
			"X-Echo-Query", f["url.QueryEscape"],
			"X-Echo-Auth", "Basic " + f["base64 std of a Basic header"],
		}, "")
	}},
	{"response trailer", 400, func(_ []byte, _, secret string) string {
		return "HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\nTrailer: X-Echo\r\nConnection: close\r\n\r\n" +
			"5\r\nhello\r\n0\r\nX-Echo: " + secret + "\r\n\r\n"
	}},
	{"status line that does not parse", 0, func(_ []byte, _, secret string) string {
		return secret + "\r\n\r\n"
	}},
	{"201 with the secret as token_type", 0, func(_ []byte, id, secret string) string {
		return rawAnswer("HTTP/1.1 201 Created", []string{"Content-Type", "application/json; x=" + encodedForms(id, secret)["url.QueryEscape"]},
			mustJSON(map[string]any{"data": map[string]any{"access_token": testAccessToken, "expires_in": 3600, "token_type": secret}}))
	}},
}

func TestNoFormOfTheSecretInAnythingBuiltFromAnAnswer(t *testing.T) {
	srv := newEchoServer(t, func(path string, body []byte, id, secret string) string {
		for _, w := range echoWays {
			if path == "/"+w.name {
				return w.answer(body, id, secret)
			}
		}
		return rawAnswer("HTTP/1.1 404 Not Found", nil, "")
	})
	for _, way := range echoWays {
		for _, sc := range awkwardSecrets {
			t.Run(way.name+"/"+sc.name, func(t *testing.T) {
				forms := encodedForms(testClientID, sc.secret)
				status := way.status // 0: no RetrieveError
				if (way.name == "response headers" || way.name == "response trailer") && strings.Contains(sc.secret, "\x01") {
					status = 0 // net/http rejects the header line, quoting it
				}

				logs := &logCapture{}
				tr := &http.Transport{}
				t.Cleanup(tr.CloseIdleConnections)
				ts := newTestSource(t, withTokenURL(srv.url("/"+url.PathEscape(way.name))), withHTTPClient(&http.Client{Transport: tr}),
					withConfig(func(c *Config) { c.ClientSecret, c.Logger = sc.secret, slog.New(logs) })).ts

				_, err := ts.Token()
				if err == nil {
					t.Fatal("Token succeeded against an endpoint that only fails")
				}
				_, again := ts.Token() // in the cool-down
				if again == nil {
					t.Fatal("the second Token succeeded")
				}
				for _, e := range []error{err, again} {
					for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q"} {
						assertNoForm(t, "error printed with "+verb, fmt.Sprintf(verb, e), forms)
					}
				}
				if !strings.HasPrefix(err.Error(), "forteauth: ") || !strings.Contains(err.Error(), "before the next attempt") {
					t.Errorf("error %q is not the cool-down error", stripForms(err.Error(), forms))
				}

				var re *oauth2.RetrieveError
				switch {
				case status == 0:
					if errors.As(err, &re) {
						t.Errorf("a malformed answer gave a RetrieveError with status %d", re.Response.StatusCode)
					}
					re = nil
				case !errors.As(err, &re):
					t.Errorf("error does not unwrap to *oauth2.RetrieveError: %s", stripForms(err.Error(), forms))
				default:
					if re.Response.StatusCode != status {
						t.Errorf("RetrieveError has status %d, want %d", re.Response.StatusCode, status)
					}
					assertNoForm(t, "RetrieveError.Body", string(re.Body), forms)
					assertNoForm(t, "RetrieveError.ErrorCode", re.ErrorCode, forms)
					assertNoForm(t, "RetrieveError.ErrorDescription", re.ErrorDescription, forms)
					assertNoForm(t, "RetrieveError.Error()", re.Error(), forms)
					assertNoForm(t, "RetrieveError printed with %+v", fmt.Sprintf("%+v", *re), forms)
					assertNoForm(t, "RetrieveError.Response.Status", re.Response.Status, forms)
					assertNoForm(t, "RetrieveError.Response printed with %+v", fmt.Sprintf("%+v", *re.Response), forms)
					for what, h := range map[string]http.Header{"Header": re.Response.Header, "Trailer": re.Response.Trailer} {
						for k, vs := range h {
							assertNoForm(t, "RetrieveError.Response."+what+" key", k, forms)
							for _, v := range vs {
								assertNoForm(t, "RetrieveError.Response."+what+"["+k+"]", v, forms)
							}
						}
					}
				}
				checkWhatIsLeft(t, way.name, status, err, re, forms)

				recs, seen := logs.snapshot()
				if recs == 0 {
					t.Fatal("nothing was logged for a failed fetch")
				}
				for _, s := range seen {
					assertNoForm(t, "a logged string", s, forms)
				}
			})
		}
	}
}

// checkWhatIsLeft checks that redaction kept what the error is for.
func checkWhatIsLeft(t *testing.T, way string, status int, err error, re *oauth2.RetrieveError, forms map[string]string) {
	t.Helper()
	msg := err.Error()
	want := ""
	switch way {
	case "307 Location", "307 Location with lower-case escapes":
		want = `to "` + withheld + `"; set TokenURL`
	case "reason phrase":
		want = "answered " + withheld
	case "JSON string in error.message", "JSON as PHP writes it":
		want = `(Unauthorized: "` + withheld + `")`
	case "JSON with every character escaped":
		want = `(Unauthorized: "` + withheld + `")`
	case "201 with the secret as token_type":
		want = `data.token_type is "` + withheld + `"; only Bearer is supported (HTTP 201, `
		if !errors.Is(err, ErrInvalidResponse) {
			t.Errorf("error %q does not wrap ErrInvalidResponse", stripForms(msg, forms))
		}
	case "response trailer":
		if status != 0 {
			if got := re.Response.Trailer.Get("X-Echo"); got != withheld {
				t.Errorf("trailer X-Echo is %q, want %q", stripForms(got, forms), withheld)
			}
		}
	case "response headers":
		if status != 0 {
			for _, k := range []string{"X-Echo", "X-Echo-Json", "X-Echo-Query", "X-Echo-Auth"} {
				if got := re.Response.Header.Get(k); got != withheld {
					t.Errorf("header %s is %q, want %q", k, stripForms(got, forms), withheld)
				}
			}
			if got := re.Response.Header.Get("Content-Length"); got != "0" {
				t.Errorf("header Content-Length is %q, want it unchanged, \"0\"", got)
			}
		}
	}
	if !strings.Contains(msg, want) {
		t.Errorf("error %q does not contain %q", stripForms(msg, forms), want)
	}
}

const urlPassword = "hunter2-pa55word"

// passwordForms are the forms of a password pasted into TokenURL.
func passwordForms() map[string]string {
	return map[string]string{"raw password": urlPassword, "escaped password": url.QueryEscape(urlPassword)}
}

func TestValidationErrorsNeverQuoteUserInfo(t *testing.T) {
	srv := newForteServer(t)
	tests := []struct {
		name, tokenURL, want string
	}{
		{"URL that does not parse", "https://user:" + urlPassword + "@example.com/%zz", `TokenURL does not parse as a URL: invalid URL escape "%zz"`},
		{"URL that does not parse, the secret as password", "https://user:" + testSecret + "@example.com/%zz", "TokenURL does not parse as a URL"},
		{"no host", "https://user:" + urlPassword + "@/auth/v1/oauth2/token", `TokenURL "https://user:xxxxx@/auth/v1/oauth2/token" has no host`},
		{"no scheme, the secret as password", "user:" + testSecret + "@example.com/auth/v1/oauth2/token", `TokenURL "` + withheld + `" has no host`},
		{"the secret as user name, no host", "https://" + testSecret + "@/auth/v1/oauth2/token", `TokenURL "` + withheld + `" has no host`},
		{"plain http with the secret in the query", "http://example.com/token?client_secret=" + testSecret, `TokenURL "` + withheld + `" is plain http`},
	}
	forms := passwordForms()
	for k, v := range encodedForms(testClientID, testSecret) {
		forms[k] = v
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := configFor(tt.tokenURL)
			cfg.HTTPClient = &http.Client{Transport: &countingTransport{}}
			_, tokenErr := cfg.Token(context.Background())
			_, sourceErr := cfg.TokenSource(context.Background()).Token()
			for what, err := range map[string]error{"validate": cfg.validate(), "Config.Token": tokenErr, "TokenSource.Token": sourceErr} {
				if err == nil || !errors.Is(err, ErrInvalidConfig) {
					t.Fatalf("%s: %v, want an error wrapping ErrInvalidConfig", what, err != nil)
				}
				assertNoForm(t, what+" error", err.Error(), forms)
				assertNoForm(t, what+" error printed with %+v", fmt.Sprintf("%+v", err), forms)
				if !strings.Contains(err.Error(), tt.want) {
					t.Errorf("%s error %q does not contain %q", what, stripForms(err.Error(), forms), tt.want)
				}
			}
			if n := srv.Stats().TokenRequests; n != 0 {
				t.Errorf("%d token requests sent for an invalid Config", n)
			}
		})
	}
}

func TestFetchNewRequestErrorDoesNotQuoteTheURL(t *testing.T) {
	f, _ := testEndpoint(t, configFor(SandboxTokenURL))
	f.tokenURL = "https://user:" + urlPassword + "@example.com/%zz" // past validation
	_, err := f.fetch(context.Background())
	if err == nil || !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("fetch of a URL that does not parse: %v, want ErrInvalidConfig", err != nil)
	}
	assertNoForm(t, "error", err.Error(), passwordForms())
	if !strings.Contains(err.Error(), "TokenURL does not parse as a URL") {
		t.Errorf("error %q does not say TokenURL does not parse", stripForms(err.Error(), passwordForms()))
	}
}

func TestPrintingNeverShowsTokenURLPassword(t *testing.T) {
	forms := passwordForms()
	for k, v := range encodedForms(testClientID, testSecret) {
		forms[k] = v
	}
	tests := []struct {
		name, tokenURL, want string
	}{
		{"password", "https://user:" + urlPassword + "@example.com/auth/v1/oauth2/token", "https://user:xxxxx@example.com/auth/v1/oauth2/token"},
		{"secret as user name", "https://" + testSecret + "@example.com/auth/v1/oauth2/token", withheld},
		{"does not parse", "https://user:" + urlPassword + "@example.com/%zz", "[REDACTED] (does not parse as a URL)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := configFor(tt.tokenURL)
			ts := cfg.TokenSource(context.Background())
			for vname, v := range map[string]any{"Config": *cfg, "*Config": cfg, "*TokenSource": ts} {
				out := map[string]string{}
				for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
					out[verb] = fmt.Sprintf(verb, v)
				}
				var text, js bytes.Buffer
				slog.New(slog.NewTextHandler(&text, nil)).Info("v", "v", v)
				slog.New(slog.NewJSONHandler(&js, nil)).Info("v", "v", v)
				out["slog text"], out["slog JSON"] = text.String(), js.String()
				enc, err := json.Marshal(v)
				if err != nil {
					t.Fatalf("json.Marshal(%s): %v", vname, err)
				}
				out["json.Marshal"] = string(enc)
				for how, s := range out {
					assertNoForm(t, vname+" "+how, s, forms)
					if how != "json.Marshal" || vname != "*TokenSource" { // *TokenSource has no exported fields: {}
						if !strings.Contains(s, tt.want) {
							t.Errorf("%s %s = %q, want it to show TokenURL as %q", vname, how, stripForms(s, forms), tt.want)
						}
					}
				}
			}
		})
	}
	// A URL without user information prints as it is.
	if s := fmt.Sprint(configFor(SandboxTokenURL)); !strings.Contains(s, SandboxTokenURL) {
		t.Errorf("Config prints %q, want TokenURL %q as it is", hide(s), SandboxTokenURL)
	}
	if s := fmt.Sprint(configFor(SandboxTokenURL + "?a=%41")); !strings.Contains(s, SandboxTokenURL+"?a=%41") {
		t.Errorf("Config prints %q, want TokenURL's escapes unchanged", hide(s))
	}
}

// The fake server's path works with the redactor: a sanity check that the
// echo table above does not pass only because every fetch fails early.
func TestEchoServerAnswersTokens(t *testing.T) {
	srv := newEchoServer(t, func(path string, _ []byte, _, secret string) string {
		if path != fortetest.TokenPath || secret != testSecret {
			return rawAnswer("HTTP/1.1 401 Unauthorized", nil, "")
		}
		return rawAnswer("HTTP/1.1 201 Created", []string{"Content-Type", "application/json"}, tokenBody(testAccessToken, "Bearer", 3600))
	})
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	cfg := configFor(srv.url(fortetest.TokenPath))
	cfg.HTTPClient = &http.Client{Transport: tr}
	tok, err := cfg.Token(context.Background())
	if err != nil || tok.AccessToken != testAccessToken {
		t.Fatalf("Token from the echo server: %v", err)
	}
}
