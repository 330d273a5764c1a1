package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/forteauth/forteauth/fortetest"
	"golang.org/x/oauth2"
)

// creds is the environment that gives the command srv's credentials.
func creds(srv *fortetest.Server) []string {
	return []string{clientIDEnv + "=" + srv.ClientID, secretEnv + "=" + srv.ClientSecret}
}

// apiStatus is the status srv's API answers to a request carrying authorization.
func apiStatus(t *testing.T, srv *fortetest.Server, authorization string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v3/payments", nil)
	req.Header.Set("Authorization", authorization)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// writeFile writes content to a new file and returns its path.
func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestToken(t *testing.T) {
	bin := build(t)

	t.Run("Formats", func(t *testing.T) {
		t.Parallel()
		srv := fortetest.NewServer()
		defer srv.Close()
		srv.SetLifetime(2 * time.Minute)

		for _, args := range [][]string{nil, {"-format", "raw"}} {
			r := execute(t, bin, creds(srv), append([]string{"-token-url", srv.TokenURL}, args...)...)
			tok, ok := strings.CutSuffix(r.stdout, "\n")
			if r.code != 0 || r.stderr != "" || !ok || strings.ContainsAny(tok, " \n") {
				t.Fatalf("raw %v: exit %d, stderr %q, stdout %d bytes; want the token and a newline", args, r.code, r.stderr, len(r.stdout))
			}
			if code := apiStatus(t, srv, "Bearer "+tok); code != http.StatusOK {
				t.Fatalf("raw %v: the API answered %d to the printed token", args, code)
			}
		}

		r := execute(t, bin, creds(srv), "-token-url", srv.TokenURL, "-format", "header")
		header, ok := strings.CutSuffix(r.stdout, "\n")
		if r.code != 0 || r.stderr != "" || !ok || !strings.HasPrefix(header, "Bearer ") {
			t.Fatalf("header: exit %d, stderr %q; want \"Bearer <token>\" and a newline", r.code, r.stderr)
		}
		if code := apiStatus(t, srv, header); code != http.StatusOK {
			t.Fatalf("header: the API answered %d to the printed header", code)
		}

		before := time.Now()
		r = execute(t, bin, creds(srv), "-token-url", srv.TokenURL, "-format", "json")
		after := time.Now()
		var got struct {
			AccessToken string `json:"access_token"`
			TokenType   string `json:"token_type"`
			ExpiresIn   int64  `json:"expires_in"`
			Expiry      string `json:"expiry"`
		}
		dec := json.NewDecoder(strings.NewReader(r.stdout))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&got); r.code != 0 || r.stderr != "" || err != nil {
			t.Fatalf("json: exit %d, stderr %q, decoding: %v", r.code, r.stderr, err)
		}
		expiry, err := time.Parse(time.RFC3339, got.Expiry)
		if err != nil {
			t.Fatalf("json: expiry %q is not RFC 3339: %v", got.Expiry, err)
		}
		lifetime := 2 * time.Minute
		if got.TokenType != "Bearer" || got.ExpiresIn != 120 ||
			expiry.Before(before.Add(lifetime-time.Second)) || expiry.After(after.Add(lifetime)) {
			t.Fatalf("json: token_type %q, expires_in %d, expiry %v; want Bearer, 120 and %v plus 2m",
				got.TokenType, got.ExpiresIn, expiry, before)
		}
		if code := apiStatus(t, srv, "Bearer "+got.AccessToken); code != http.StatusOK {
			t.Fatalf("json: the API answered %d to access_token", code)
		}
		var asOAuth2 oauth2.Token
		if err := json.Unmarshal([]byte(r.stdout), &asOAuth2); err != nil || asOAuth2.AccessToken != got.AccessToken || !asOAuth2.Valid() {
			t.Fatalf("json does not decode into a valid oauth2.Token: %v", err)
		}
	})

	t.Run("Credentials", func(t *testing.T) {
		t.Parallel()
		srv := fortetest.NewServer()
		defer srv.Close()
		wrongSecret := secretEnv + "=not-the-secret"
		for _, c := range []struct {
			name string
			env  []string
			args []string
			code int
		}{
			{"from the environment", creds(srv), nil, 0},
			{"-client-id over the environment", []string{clientIDEnv + "=someone-else", secretEnv + "=" + srv.ClientSecret}, []string{"-client-id", srv.ClientID}, 0},
			{"file with a newline", []string{clientIDEnv + "=" + srv.ClientID}, []string{"-client-secret-file", writeFile(t, srv.ClientSecret+"\n")}, 0},
			{"file with CRLF", []string{clientIDEnv + "=" + srv.ClientID}, []string{"-client-secret-file", writeFile(t, srv.ClientSecret+"\r\n")}, 0},
			{"file without a newline", []string{clientIDEnv + "=" + srv.ClientID}, []string{"-client-secret-file", writeFile(t, srv.ClientSecret)}, 0},
			{"file over the environment", []string{clientIDEnv + "=" + srv.ClientID, wrongSecret}, []string{"-client-secret-file", writeFile(t, srv.ClientSecret+"\n")}, 0},
			{"only one newline is dropped", []string{clientIDEnv + "=" + srv.ClientID}, []string{"-client-secret-file", writeFile(t, srv.ClientSecret+"\n\n")}, exitRejected},
		} {
			r := execute(t, bin, c.env, append([]string{"-token-url", srv.TokenURL}, c.args...)...)
			if r.code != c.code {
				t.Errorf("%s: exit %d, want %d; stderr: %s", c.name, r.code, c.code, r.stderr)
			}
		}
	})

	t.Run("CredentialsRejected", func(t *testing.T) {
		t.Parallel()
		srv := fortetest.NewServer()
		defer srv.Close()
		const secret = "wrong-secret-Zq9"
		env := []string{clientIDEnv + "=" + srv.ClientID, secretEnv + "=" + secret}
		execute(t, bin, env, "-token-url", srv.TokenURL).wantError(t, exitRejected, []string{secret}, "401")
		for _, status := range []int{http.StatusBadRequest, http.StatusForbidden} {
			srv.FailNext(fortetest.Failure{Status: status})
			execute(t, bin, creds(srv), "-token-url", srv.TokenURL).wantError(t, exitRejected, nil, fmt.Sprint(status))
		}

		// An endpoint that quotes the request, secret and all, in its answer.
		echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{
				"message": "bad credentials in " + string(body), "reason": "Unauthorized", "status": 401,
			}})
		}))
		defer echo.Close()
		execute(t, bin, env, "-token-url", echo.URL+fortetest.TokenPath).wantError(t, exitRejected, []string{secret}, "401")
	})

	t.Run("EndpointFailing", func(t *testing.T) {
		t.Parallel()
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		closed := "http://" + l.Addr().String() + fortetest.TokenPath
		l.Close()
		env := []string{clientIDEnv + "=id", secretEnv + "=secret-Xy7"}
		execute(t, bin, env, "-token-url", closed).wantError(t, exitUnavailable, []string{"secret-Xy7"}, "connection refused")

		srv := fortetest.NewServer()
		defer srv.Close()
		srv.FailNext(fortetest.Failure{Status: http.StatusNotFound})
		execute(t, bin, creds(srv), "-token-url", srv.TokenURL).wantError(t, exitUnavailable, nil, "404")
		srv.FailNext(fortetest.Failure{Body: `{"data":{}}`}) // a 201 without a token
		execute(t, bin, creds(srv), "-token-url", srv.TokenURL).wantError(t, exitUnavailable, nil, "invalid token response")
		srv.FailNext(slices.Repeat([]fortetest.Failure{{Status: http.StatusTooManyRequests}}, 4)...) // every attempt of one fetch
		execute(t, bin, creds(srv), "-token-url", srv.TokenURL).wantError(t, exitUnavailable, nil, "429")
		srv.SetFailureRate(1, fortetest.Failure{Status: http.StatusServiceUnavailable})
		execute(t, bin, creds(srv), "-token-url", srv.TokenURL).wantError(t, exitUnavailable, nil, "503")
		srv.SetFailureRate(0, fortetest.Failure{})

		release := srv.Hold()
		defer release()
		start := time.Now()
		execute(t, bin, creds(srv), "-token-url", srv.TokenURL, "-timeout", "300ms").wantError(t, exitUnavailable, nil, "deadline exceeded")
		if d := time.Since(start); d > 20*time.Second {
			t.Errorf("-timeout 300ms took %v", d)
		}
	})

	t.Run("Usage", func(t *testing.T) {
		t.Parallel()
		srv := fortetest.NewServer()
		defer srv.Close()
		const flagSecret = "hunter2-on-the-command-line"
		for _, c := range []struct {
			env     []string
			args    []string
			mention string
		}{
			{nil, []string{"-client-secret", flagSecret}, secretEnv},
			{nil, []string{"-client-secret=" + flagSecret}, secretEnv},
			{nil, []string{"--client-secret", flagSecret}, secretEnv},
			{creds(srv), []string{"-token-url", srv.TokenURL, flagSecret}, "unexpected argument"},
			{creds(srv), []string{"-token-url", srv.TokenURL, "fake"}, "fake must come first"},
			{creds(srv), []string{"-nope"}, "-nope"},
			{creds(srv), []string{"-format", "xml"}, "-format"},
			{creds(srv), []string{"-format"}, "-format"},
			{creds(srv), []string{"-env", "staging"}, "-env"},
			{creds(srv), []string{"-env", "sandbox", "-token-url", srv.TokenURL}, "not both"},
			{creds(srv), []string{"-token-url", ""}, "-token-url"},
			{creds(srv), []string{"-token-url", "http://example.com" + fortetest.TokenPath}, "https"},
			{creds(srv), []string{"-token-url", "ftp://example.com" + fortetest.TokenPath}, "https"},
			{creds(srv), []string{"-timeout", "0s"}, "-timeout"},
			{creds(srv), []string{"-timeout", "soon"}, "-timeout"},
			{[]string{secretEnv + "=" + srv.ClientSecret}, []string{"-token-url", srv.TokenURL}, clientIDEnv},
			{[]string{clientIDEnv + "=" + srv.ClientID}, []string{"-token-url", srv.TokenURL}, secretEnv},
			{[]string{clientIDEnv + "=" + srv.ClientID}, []string{"-token-url", srv.TokenURL, "-client-secret-file", filepath.Join(t.TempDir(), "missing")}, "-client-secret-file"},
			{[]string{clientIDEnv + "=" + srv.ClientID}, []string{"-token-url", srv.TokenURL, "-client-secret-file", writeFile(t, "\n")}, "-client-secret-file"},
		} {
			r := execute(t, bin, c.env, c.args...)
			t.Logf("%q: %s", c.args, strings.TrimSpace(strings.ReplaceAll(r.stderr, flagSecret, "[the flag's secret]")))
			r.wantError(t, exitUsage, []string{flagSecret, srv.ClientSecret}, c.mention)
		}
		if n := srv.Stats().TokenRequests; n != 0 {
			t.Fatalf("usage errors sent %d token requests, want none", n)
		}
	})

	t.Run("Help", func(t *testing.T) {
		t.Parallel()
		for _, args := range [][]string{{"-h"}, {"--help"}, {"help"}, {"fake", "-h"}} {
			r := execute(t, bin, nil, args...)
			if r.code != 0 || r.stderr != "" || !strings.HasPrefix(r.stdout, "Usage:\n") || !strings.Contains(r.stdout, "Exit status") {
				t.Errorf("%q: exit %d, stderr %q, stdout %q; want the usage on stdout and exit 0", args, r.code, r.stderr, r.stdout)
			}
		}
	})

	t.Run("StdoutNotWritable", func(t *testing.T) {
		t.Parallel()
		srv := fortetest.NewServer()
		defer srv.Close()
		readOnly, err := os.Open(os.DevNull)
		if err != nil {
			t.Fatal(err)
		}
		defer readOnly.Close()
		cmd := command(t.Context(), bin, creds(srv), "-token-url", srv.TokenURL)
		var stderr strings.Builder
		cmd.Stdout, cmd.Stderr = readOnly, &stderr
		cmd.Run()
		r := result{stderr: stderr.String(), code: cmd.ProcessState.ExitCode()}
		r.wantError(t, exitOther, []string{srv.ClientSecret, "fortetest."}, "stdout")
	})

	t.Run("EnvironmentChoosesTheHost", func(t *testing.T) {
		t.Parallel()
		// A proxy that records where each request was going and refuses
		// it: the hosts are seen without a packet leaving the machine.
		var mu sync.Mutex
		var hosts []string
		proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			hosts = append(hosts, r.Method+" "+r.Host)
			mu.Unlock()
			http.Error(w, "no", http.StatusForbidden)
		}))
		defer proxy.Close()
		env := []string{clientIDEnv + "=id", secretEnv + "=secret-Pr0xy", "HTTPS_PROXY=" + proxy.URL}
		for _, c := range []struct {
			args []string
			host string
		}{
			{nil, "sandbox-api.sandbox.lemmax.com:443"},
			{[]string{"-env", "sandbox"}, "sandbox-api.sandbox.lemmax.com:443"},
			{[]string{"-env", "production"}, "api.prod.lemmax.com:443"},
		} {
			mu.Lock()
			hosts = nil
			mu.Unlock()
			execute(t, bin, env, c.args...).wantError(t, exitUnavailable, []string{"secret-Pr0xy"})
			mu.Lock()
			got := slices.Clone(hosts)
			mu.Unlock()
			if len(got) == 0 || slices.ContainsFunc(got, func(h string) bool { return h != "CONNECT "+c.host }) {
				t.Errorf("%q: requests %q, want only CONNECT %s", c.args, got, c.host)
			}
		}
	})
}
