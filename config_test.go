package forteauth

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/forteauth/forteauth/fortetest"
	"golang.org/x/oauth2"
)

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
		{"APIHosts with a scheme", func(c *Config) { c.APIHosts = []string{"https://api.prod.lemmax.com"} }, "APIHosts"},
		{"APIHosts with a path", func(c *Config) { c.APIHosts = []string{"api.prod.lemmax.com/v3"} }, "APIHosts"},
		{"APIHosts with an empty name", func(c *Config) { c.APIHosts = []string{""} }, "APIHosts"},
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

func TestInvalidConfigFailsEveryCallWithoutRequests(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	ts := (&Config{ClientID: srv.ClientID, TokenURL: srv.TokenURL}).TokenSource(context.Background())
	for range 3 {
		if _, err := ts.Token(); !errors.Is(err, ErrInvalidConfig) {
			t.Fatalf("err = %v, want ErrInvalidConfig", err)
		}
	}
	if n := tokenRequests(srv); n != 0 {
		t.Fatalf("token requests = %d, want 0", n)
	}
}

func TestNilContextIsBackground(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	cfg := &Config{ClientID: srv.ClientID, ClientSecret: srv.ClientSecret, TokenURL: srv.TokenURL}
	//lint:ignore SA1012 a nil context must not panic
	if _, err := cfg.TokenSource(nil).Token(); err != nil {
		t.Fatal(err)
	}
	//lint:ignore SA1012 a nil context must not panic
	if _, err := cfg.Token(nil); err != nil {
		t.Fatal(err)
	}
}

func TestConfigChangesAfterTokenSourceHaveNoEffect(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	cfg := &Config{ClientID: srv.ClientID, ClientSecret: srv.ClientSecret, TokenURL: srv.TokenURL}
	ts := cfg.TokenSource(context.Background())
	cfg.ClientSecret = "changed"
	cfg.TokenURL = "http://example.com/"
	mustToken(t, ts)
}

func TestSourceContextSuppliesValuesOnly(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	var viaCtxClient atomic.Int64
	hc := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		viaCtxClient.Add(1)
		return http.DefaultTransport.RoundTrip(r)
	})}
	ctx, cancel := context.WithCancel(context.WithValue(context.Background(), oauth2.HTTPClient, hc))
	cfg := &Config{ClientID: srv.ClientID, ClientSecret: srv.ClientSecret, TokenURL: srv.TokenURL}
	ts := cfg.TokenSource(ctx)
	cancel() // a request-scoped context ending must not break later refreshes

	mustToken(t, ts)
	if viaCtxClient.Load() != 1 {
		t.Fatalf("the oauth2.HTTPClient of the source's context sent %d token requests, want 1", viaCtxClient.Load())
	}
}

func TestConfigTokenStopsWhenCallerCancels(t *testing.T) {
	t.Run("while the request is in flight", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			srv := fortetest.NewMemoryServer()
			release := srv.Hold() // the request hangs until the client goes away
			defer release()
			ctx, cancel := context.WithCancel(context.Background())
			go func() {
				synctest.Wait() // the request is at the endpoint
				cancel()
			}()
			cfg := &Config{ClientID: srv.ClientID, ClientSecret: srv.ClientSecret, TokenURL: srv.TokenURL, HTTPClient: srv.Client()}
			tok, err := cfg.Token(ctx)
			if err == nil {
				t.Fatalf("Token succeeded (token of %d bytes) after the caller cancelled", len(tok.AccessToken))
			}
			if !errors.Is(err, context.Canceled) {
				t.Errorf("errors.Is(err, context.Canceled) is false for %s", hide(err.Error()))
			}
			if n := tokenRequests(srv); n != 1 {
				t.Errorf("server saw %d requests, want 1 (no retry after cancellation)", n)
			}
		})
	})
	t.Run("before the call", func(t *testing.T) {
		srv := newForteServer(t)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := configFor(srv.TokenURL).Token(ctx)
		if !errors.Is(err, context.Canceled) {
			msg := "<nil>"
			if err != nil {
				msg = hide(err.Error())
			}
			t.Errorf("errors.Is(err, context.Canceled) is false for %s", msg)
		}
		if n := srv.Stats().TokenRequests; n != 0 {
			t.Errorf("server saw %d token requests, want 0", n)
		}
	})
}

func TestConfigTokenAgainstFakeServer(t *testing.T) {
	srv := newForteServer(t)
	before := time.Now()
	tok, err := configFor(srv.TokenURL).Token(context.Background())
	after := time.Now()
	if err != nil {
		t.Fatalf("Token: %s", hide(err.Error()))
	}
	if tok.TokenType != "Bearer" || tok.ExpiresIn != 3600 || !tok.Valid() {
		t.Errorf("token type %q, expires_in %d, valid %v; want a valid Bearer token for 3600s", tok.TokenType, tok.ExpiresIn, tok.Valid())
	}
	if tok.Expiry.Before(before.Add(time.Hour).Truncate(time.Second)) || tok.Expiry.After(after.Add(time.Hour)) {
		t.Errorf("Expiry = %v, want about an hour from %v", tok.Expiry, before)
	}
	// The token works against the fake API.
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v3/payments", nil)
	tok.SetAuthHeader(req)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("API answered %d to the fetched token, want 200", resp.StatusCode)
	}
	if h := srv.LastTokenRequestHeader(); !strings.HasPrefix(h.Get("User-Agent"), "forteauth-go/") {
		t.Errorf("User-Agent = %q", h.Get("User-Agent"))
	}
}

func TestConfigTokenUsesContextHTTPClient(t *testing.T) {
	srv := newForteServer(t)
	ctxTransport := &countingTransport{}
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, &http.Client{Transport: ctxTransport})

	if _, err := configFor(srv.TokenURL).Token(ctx); err != nil {
		t.Fatalf("Token: %s", hide(err.Error()))
	}
	if n := ctxTransport.n.Load(); n != 1 {
		t.Errorf("the context's client sent %d requests, want 1", n)
	}
}

func TestConfigTokenPrefersConfigHTTPClientOverContext(t *testing.T) {
	srv := newForteServer(t)
	ctxTransport, cfgTransport := &countingTransport{}, &countingTransport{}
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, &http.Client{Transport: ctxTransport})
	cfg := configFor(srv.TokenURL)
	cfg.HTTPClient = &http.Client{Transport: cfgTransport}

	if _, err := cfg.Token(ctx); err != nil {
		t.Fatalf("Token: %s", hide(err.Error()))
	}
	if n := cfgTransport.n.Load(); n != 1 {
		t.Errorf("Config.HTTPClient sent %d requests, want 1", n)
	}
	if n := ctxTransport.n.Load(); n != 0 {
		t.Errorf("the context's client sent %d requests, want 0", n)
	}
}

func TestClientReturnsConfigErrorsWithoutSendingAnything(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	c := (&Config{ClientID: srv.ClientID, TokenURL: srv.TokenURL}).Client(context.Background())
	_, err := c.Get(srv.URL + "/v3/x")
	if !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("err = %v, want ErrInvalidConfig", err)
	}
	if st := srv.Stats(); st.TokenRequests+st.APIRequests != 0 {
		t.Fatalf("requests reached the server: %+v", st)
	}
}

func TestClientKeepsTheBaseClientsSettings(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	var viaBase atomic.Int64
	redirects := func(*http.Request, []*http.Request) error { return errors.New("stop") }
	base := &http.Client{
		Timeout:       7 * time.Second,
		CheckRedirect: redirects,
		Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			viaBase.Add(1)
			return http.DefaultTransport.RoundTrip(r)
		}),
	}
	cfg := &Config{ClientID: srv.ClientID, ClientSecret: srv.ClientSecret, TokenURL: srv.TokenURL, HTTPClient: base}
	c := cfg.Client(context.Background())
	if c.Timeout != 7*time.Second || c.CheckRedirect == nil {
		t.Fatal("Client dropped HTTPClient's Timeout or CheckRedirect")
	}
	if code := get(t, c, srv.URL+"/v3/x"); code != 200 || viaBase.Load() != 2 {
		t.Fatalf("status %d; %d requests went through HTTPClient's transport, want 2 (token and API)", code, viaBase.Load())
	}

	ctxClient := &http.Client{Timeout: 9 * time.Second, Transport: base.Transport}
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, ctxClient)
	c = (&Config{ClientID: srv.ClientID, ClientSecret: srv.ClientSecret, TokenURL: srv.TokenURL}).Client(ctx)
	if c.Timeout != 9*time.Second {
		t.Fatal("Client ignored the context's oauth2.HTTPClient")
	}
	if code := get(t, c, srv.URL+"/v3/x"); code != 200 || viaBase.Load() != 4 {
		t.Fatalf("status %d; %d requests through the context client's transport, want 4", code, viaBase.Load())
	}
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

func TestConfigLogValueKeysFollowTheFields(t *testing.T) {
	cfg := Config{ClientID: "id", ClientSecret: "a-secret-value", TokenURL: SandboxTokenURL}
	keys := func(c Config) []string {
		var ks []string
		for _, a := range c.LogValue().Group() {
			ks = append(ks, a.Key)
		}
		return ks
	}
	if got, want := keys(cfg), []string{"client_id", "client_secret", "token_url", "refresh_window", "expiry_margin"}; !slices.Equal(got, want) {
		t.Fatalf("keys = %v, want %v: unset pointer and interface fields left out", got, want)
	}
	cfg.HTTPClient = &http.Client{}
	if got := keys(cfg); !slices.Contains(got, "http_client") {
		t.Fatalf("keys = %v, want http_client once HTTPClient is set", got)
	}
	for _, a := range cfg.LogValue().Group() {
		if a.Key == "client_secret" && a.Value.String() != redacted {
			t.Fatalf("client_secret logged as %q", a.Value.String())
		}
	}
}
