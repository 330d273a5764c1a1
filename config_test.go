package forteauth

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/forteauth/forteauth/fortetest"
)

// printedForms are the ways a leaked secret could show up in formatted
// output: as is, and hex-encoded by %x and %X.
func printedForms(secret string) []string {
	h := hex.EncodeToString([]byte(secret))
	return []string{secret, h, strings.ToUpper(h)}
}

func TestValidateRejectsInvalidConfig(t *testing.T) {
	srv := newForteServer(t)
	tests := []struct {
		name    string
		modify  func(c *Config)
		mention string // what the message must name
	}{
		{"empty ClientID", func(c *Config) { c.ClientID = "" }, "ClientID"},
		{"empty ClientSecret", func(c *Config) { c.ClientSecret = "" }, "ClientSecret"},
		{"empty TokenURL", func(c *Config) { c.TokenURL = "" }, "TokenURL"},
		{"plain http to a remote host", func(c *Config) { c.TokenURL = "http://example.com/auth/v1/oauth2/token" }, "https"},
		{"plain http to a name that starts like localhost", func(c *Config) { c.TokenURL = "http://localhost.example.com/auth/v1/oauth2/token" }, "https"},
		{"plain http to a private address", func(c *Config) { c.TokenURL = "http://10.0.0.1/auth/v1/oauth2/token" }, "https"},
		{"ftp scheme", func(c *Config) { c.TokenURL = "ftp://example.com/auth/v1/oauth2/token" }, "scheme"},
		{"user info in URL", func(c *Config) { c.TokenURL = "https://user:pass@example.com/auth/v1/oauth2/token" }, "user information"},
		{"relative URL", func(c *Config) { c.TokenURL = "/auth/v1/oauth2/token" }, "no host"},
		{"URL without scheme", func(c *Config) { c.TokenURL = "sandbox-api.sandbox.lemmax.com/auth/v1/oauth2/token" }, "no host"},
		{"unparseable URL", func(c *Config) { c.TokenURL = "https://example.com/%zz" }, "TokenURL"},
		{"negative RefreshWindow", func(c *Config) { c.RefreshWindow = -time.Minute }, "RefreshWindow"},
		{"negative ExpiryMargin", func(c *Config) { c.ExpiryMargin = -time.Second }, "ExpiryMargin"},
		{"RefreshWindow below ExpiryMargin", func(c *Config) { c.RefreshWindow, c.ExpiryMargin = 10*time.Second, 20*time.Second }, "RefreshWindow"},
		{"default RefreshWindow below ExpiryMargin", func(c *Config) { c.ExpiryMargin = 10 * time.Minute }, "RefreshWindow"},
		{"RefreshWindow equal to ExpiryMargin", func(c *Config) { c.RefreshWindow, c.ExpiryMargin = time.Minute, time.Minute }, "RefreshWindow"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			counter := &countingTransport{}
			cfg := configFor(srv.TokenURL)
			cfg.HTTPClient = &http.Client{Transport: counter}
			tt.modify(cfg)

			check := func(what string, err error) {
				t.Helper()
				if err == nil {
					t.Fatalf("%s accepted the Config", what)
				}
				msg := err.Error()
				assertAbsent(t, what+" error", msg, testSecret)
				if !errors.Is(err, ErrInvalidConfig) {
					t.Errorf("%s error does not wrap ErrInvalidConfig: %s", what, hide(msg))
				}
				if !strings.HasPrefix(msg, "forteauth: ") {
					t.Errorf("%s error %q does not start with \"forteauth: \"", what, hide(msg))
				}
				if !strings.Contains(msg, tt.mention) {
					t.Errorf("%s error %q does not mention %q", what, hide(msg), tt.mention)
				}
			}
			check("validate", cfg.validate())
			_, err := cfg.Token(context.Background())
			check("Config.Token", err)
			_, err = cfg.TokenSource(context.Background()).Token()
			check("TokenSource.Token", err)

			if n := counter.n.Load(); n != 0 {
				t.Errorf("%d requests were sent for an invalid Config, want 0", n)
			}
			if n := srv.Stats().TokenRequests; n != 0 {
				t.Errorf("token endpoint saw %d requests, want 0", n)
			}
		})
	}
}

func TestValidateAcceptsHTTPSAndLoopbackHTTP(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"sandbox", Config{TokenURL: SandboxTokenURL}},
		{"production", Config{TokenURL: ProductionTokenURL}},
		{"https with port", Config{TokenURL: "https://forte.example.com:8443/auth/v1/oauth2/token"}},
		{"http to 127.0.0.1", Config{TokenURL: "http://127.0.0.1:8080/auth/v1/oauth2/token"}},
		{"http to another 127/8 address", Config{TokenURL: "http://127.0.0.2/auth/v1/oauth2/token"}},
		{"http to [::1]", Config{TokenURL: "http://[::1]:8080/auth/v1/oauth2/token"}},
		{"http to localhost", Config{TokenURL: "http://localhost:8080/auth/v1/oauth2/token"}},
		{"http to LOCALHOST", Config{TokenURL: "http://LOCALHOST/auth/v1/oauth2/token"}},
		{"RefreshWindow set, default ExpiryMargin", Config{TokenURL: SandboxTokenURL, RefreshWindow: time.Minute}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.ClientID, cfg.ClientSecret = testClientID, testSecret
			if err := cfg.validate(); err != nil {
				t.Errorf("validate rejected %q: %s", cfg.TokenURL, hide(err.Error()))
			}
		})
	}

	// End to end, with the host spelled as localhost.
	srv := newForteServer(t)
	cfg := configFor(strings.Replace(srv.TokenURL, "127.0.0.1", "localhost", 1))
	if !strings.Contains(cfg.TokenURL, "localhost") {
		t.Fatalf("fake server is not on 127.0.0.1: %s", srv.TokenURL)
	}
	if _, err := cfg.Token(context.Background()); err != nil {
		t.Errorf("Token via http://localhost: %s", hide(err.Error()))
	}
}

// printVerbs are the formats every printable value is checked under.
var printVerbs = []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%20v", "%-40s"}

// formatAll prints v under every verb and with fmt.Sprint and Sprintln,
// also inside a slice and a map.
func formatAll(v any) map[string]string {
	out := make(map[string]string)
	for _, verb := range printVerbs {
		out[verb] = fmt.Sprintf(verb, v)
	}
	out["Sprint"] = fmt.Sprint(v)
	out["Sprintln"] = fmt.Sprintln(v)
	out["in a slice"] = fmt.Sprintf("%+v", []any{v})
	out["in a map"] = fmt.Sprintf("%#v", map[string]any{"cfg": v})
	return out
}

func TestConfigFormattingHidesSecret(t *testing.T) {
	cfg := configFor(SandboxTokenURL)
	cfg.HTTPClient = http.DefaultClient
	for _, tc := range []struct {
		name string
		v    any
	}{{"value", *cfg}, {"pointer", cfg}} {
		t.Run(tc.name, func(t *testing.T) {
			for how, s := range formatAll(tc.v) {
				assertAbsent(t, how+" output", s, printedForms(testSecret)...)
				if how == "%x" || how == "%X" {
					if !strings.Contains(strings.ToLower(s), hex.EncodeToString([]byte(testClientID))) {
						t.Errorf("%s output %q does not show ClientID", how, hide(s))
					}
					continue
				}
				if !strings.Contains(s, testClientID) {
					t.Errorf("%s output %q does not show ClientID", how, hide(s))
				}
				if !strings.Contains(s, redacted) {
					t.Errorf("%s output %q does not show that a secret is set", how, hide(s))
				}
			}
		})
	}

	goSyntax := fmt.Sprintf("%#v", *cfg)
	if !strings.HasPrefix(goSyntax, "forteauth.Config{") {
		t.Errorf("%%#v = %q, want it to start with forteauth.Config{", hide(goSyntax))
	}
	if !strings.Contains(goSyntax, `ClientSecret:"[REDACTED]"`) {
		t.Errorf("%%#v = %q, want ClientSecret:\"[REDACTED]\"", hide(goSyntax))
	}
	if cfg.ClientSecret != testSecret {
		t.Error("formatting changed the Config's ClientSecret")
	}
}

func TestConfigFormattingShowsEmptySecretAsEmpty(t *testing.T) {
	cfg := Config{ClientID: testClientID, TokenURL: SandboxTokenURL}
	for how, s := range formatAll(cfg) {
		if strings.Contains(s, redacted) || strings.Contains(s, hex.EncodeToString([]byte(redacted))) {
			t.Errorf("%s output %q claims a secret is set", how, s)
		}
	}
	if s := fmt.Sprintf("%#v", cfg); !strings.Contains(s, `ClientSecret:""`) {
		t.Errorf("%%#v = %q, want ClientSecret:\"\"", s)
	}
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("cfg", "cfg", cfg)
	if s := buf.String(); strings.Contains(s, redacted) || !strings.Contains(s, "cfg.client_secret=\"\"") {
		t.Errorf("slog output %q, want an empty client_secret", s)
	}
}

// fetchedSource returns a TokenSource for the fake server that holds a
// token, and that token.
func fetchedSource(t *testing.T) (*TokenSource, string) {
	t.Helper()
	ts := newTestSource(t, withServer(newForteServer(t))).ts
	tok, err := ts.Token()
	if err != nil {
		t.Fatalf("Token: %s", hide(err.Error()))
	}
	if len(tok.AccessToken) < 24 {
		t.Fatalf("fake server issued a short token (%d bytes)", len(tok.AccessToken))
	}
	return ts, tok.AccessToken
}

func TestTokenSourceFormattingHidesSecretAndToken(t *testing.T) {
	srv := newForteServer(t)
	empty := configFor(srv.TokenURL).TokenSource(context.Background())
	fetched, token := fetchedSource(t)
	for _, tc := range []struct {
		name string
		ts   *TokenSource
	}{{"before any fetch", empty}, {"holding a token", fetched}} {
		t.Run(tc.name, func(t *testing.T) {
			for how, s := range formatAll(tc.ts) {
				assertAbsent(t, how+" output", s, append(printedForms(testSecret), printedForms(token)...)...)
				if !strings.Contains(s, testClientID) {
					t.Errorf("%s output %q does not show ClientID", how, hide(s, token))
				}
			}
		})
	}
	if s := fmt.Sprint(fetched); !strings.Contains(s, token[:4]) || !strings.Contains(s, redacted) {
		t.Errorf("output %q does not identify the token by its prefix and mark the rest redacted", hide(s, token))
	}
	if s := fmt.Sprintf("%v", (*TokenSource)(nil)); s != "(*forteauth.TokenSource)(nil)" {
		t.Errorf("nil *TokenSource prints %q", s)
	}
}

func TestSlogHidesSecretAndToken(t *testing.T) {
	cfg := configFor(SandboxTokenURL)
	ts, token := fetchedSource(t)
	handlers := map[string]func(*bytes.Buffer) slog.Handler{
		"text": func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
		"json": func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
	}
	values := map[string]any{"Config": *cfg, "*Config": cfg, "*TokenSource": ts}
	for hname, newHandler := range handlers {
		for vname, v := range values {
			t.Run(hname+"/"+vname, func(t *testing.T) {
				var buf bytes.Buffer
				logger := slog.New(newHandler(&buf))
				logger.Info("as attribute", "v", v)
				logger.Info("as slog.Any", slog.Any("v", v))
				logger.With("v", v).Info("as With")
				logger.Info("in a group", slog.Group("g", "v", v))
				s := buf.String()
				assertAbsent(t, "log", s, testSecret, token)
				if strings.Count(s, testClientID) < 4 {
					t.Errorf("log %q does not show client_id on every line", hide(s, token))
				}
				if !strings.Contains(s, "client_id") {
					t.Errorf("log %q has no client_id key", hide(s, token))
				}
			})
		}
	}
}

// A Config logged inside a larger value, such as a program's own settings,
// must not leak either. The text handler formats such values with fmt; the
// JSON handler uses encoding/json.
func TestSlogHidesSecretOfConfigInsideLoggedStruct(t *testing.T) {
	type settings struct {
		Name  string
		Forte Config
	}
	v := settings{Name: "payments", Forte: *configFor(SandboxTokenURL)}
	for hname, h := range map[string]func(*bytes.Buffer) slog.Handler{
		"text": func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
		"json": func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
	} {
		t.Run(hname, func(t *testing.T) {
			var buf bytes.Buffer
			slog.New(h(&buf)).Info("settings", "settings", v)
			s := buf.String()
			assertAbsent(t, "log", s, testSecret)
			if !strings.Contains(s, testClientID) {
				t.Errorf("log %q does not show the client ID", hide(s))
			}
		})
	}
}

func TestConfigLoggerNeverReceivesSecret(t *testing.T) {
	echo := `{"error":{"message":"bad client_secret ` + testSecret + `","reason":"%s","status":%d}}`
	fail := func(status int) fortetest.Failure {
		return fortetest.Failure{Status: status, Body: fmt.Sprintf(echo, http.StatusText(status), status)}
	}

	t.Run("fetch retrying 500s", func(t *testing.T) {
		srv := newForteServer(t)
		srv.SetFailureRate(1, fail(http.StatusInternalServerError))
		logger, logs := newTestLogger()
		cfg := configFor(srv.TokenURL)
		cfg.Logger = logger
		f, _ := testEndpoint(t, cfg)
		if _, err := f.fetch(context.Background()); err == nil {
			t.Fatal("fetch succeeded against a failing server")
		}
		s := logs.String()
		if !strings.Contains(s, "retrying token request") {
			t.Fatalf("no retry was logged: %q", hide(s))
		}
		assertAbsent(t, "log", s, testSecret)
	})

	t.Run("TokenSource failing with 500s then 401", func(t *testing.T) {
		srv := newForteServer(t)
		logger, logs := newTestLogger()
		src := newTestSource(t, withTokenURL(srv.TokenURL), withConfig(func(c *Config) { c.Logger = logger }))
		ts, clock := src.ts, src.clock

		srv.FailNext(fail(500), fail(502), fail(503), fail(504))
		if _, err := ts.Token(); err == nil {
			t.Fatal("Token succeeded though every attempt failed")
		} else {
			assertAbsent(t, "error", err.Error(), testSecret)
		}
		clock.Advance(time.Minute) // past the cool-down
		srv.FailNext(fail(http.StatusUnauthorized))
		if _, err := ts.Token(); err == nil {
			t.Fatal("Token succeeded after a 401")
		} else {
			assertAbsent(t, "error", err.Error(), testSecret)
		}

		s := logs.String()
		if n := srv.Stats().TokenRequests; n != 5 {
			t.Errorf("server saw %d token requests, want 5", n)
		}
		if !strings.Contains(s, "retrying token request") || !strings.Contains(s, "401") {
			t.Fatalf("log does not show the retries and the 401: %q", hide(s))
		}
		assertAbsent(t, "log", s, testSecret)
	})
}
