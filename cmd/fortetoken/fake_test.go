package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fake is a running fortetoken fake process.
type fake struct {
	cmd    *exec.Cmd
	stderr strings.Builder
	vars   map[string]string // from the export lines it printed
}

var exportLine = regexp.MustCompile(`^export ([A-Z_]+)=('[^']*'|[0-9]+)$`)

// startFake starts bin fake with args and reads what it prints. The
// process closes stdout once it serves, so reading to EOF is the wait.
func startFake(t *testing.T, bin string, args ...string) *fake {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel) // kills the process if a test fails before stopping it
	f := &fake{cmd: command(ctx, bin, nil, append([]string{"fake"}, args...)...), vars: map[string]string{}}
	f.cmd.Stderr = &f.stderr
	stdout, err := f.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := f.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(stdout)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSuffix(string(out), "\n"), "\n") {
		if strings.HasPrefix(line, "# ") {
			continue
		}
		m := exportLine.FindStringSubmatch(line)
		if m == nil {
			f.cmd.Wait()
			t.Fatalf("fake printed %q, not an export line; stderr: %s", line, f.stderr.String())
		}
		f.vars[m[1]] = strings.Trim(m[2], "'")
	}
	for _, name := range []string{"FORTE_BASE_URL", "FORTE_TOKEN_URL", clientIDEnv, secretEnv, "FORTE_FAKE_PID"} {
		if f.vars[name] == "" {
			t.Fatalf("fake printed no %s: %q", name, out)
		}
	}
	if pid := strconv.Itoa(f.cmd.Process.Pid); f.vars["FORTE_FAKE_PID"] != pid {
		t.Fatalf("FORTE_FAKE_PID=%s, but the process is %s", f.vars["FORTE_FAKE_PID"], pid)
	}
	return f
}

// env is the environment that gives fortetoken the fake's credentials.
func (f *fake) env() []string {
	return []string{clientIDEnv + "=" + f.vars[clientIDEnv], secretEnv + "=" + f.vars[secretEnv]}
}

// stop sends sig and waits for the process to end.
func (f *fake) stop(t *testing.T, sig os.Signal) result {
	t.Helper()
	if err := f.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	f.cmd.Wait()
	return result{stderr: f.stderr.String(), code: f.cmd.ProcessState.ExitCode()}
}

func TestFake(t *testing.T) {
	bin := build(t)

	for name, sig := range map[string]os.Signal{"SIGTERM": syscall.SIGTERM, "SIGINT": os.Interrupt} {
		t.Run("ServesUntil"+name, func(t *testing.T) {
			t.Parallel()
			f := startFake(t, bin, "-lifetime", "90s")
			r := execute(t, bin, f.env(), "-token-url", f.vars["FORTE_TOKEN_URL"], "-format", "header")
			header := strings.TrimSuffix(r.stdout, "\n")
			if r.code != 0 || !strings.HasPrefix(header, "Bearer ") {
				t.Fatalf("fortetoken against the fake: exit %d, stderr %q", r.code, r.stderr)
			}
			req, _ := http.NewRequest(http.MethodGet, f.vars["FORTE_BASE_URL"]+"/v3/payments", nil)
			req.Header.Set("Authorization", header)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("the fake's API answered %s to its own token", resp.Status)
			}
			r = execute(t, bin, f.env(), "-token-url", f.vars["FORTE_TOKEN_URL"], "-format", "json")
			if !strings.Contains(r.stdout, `"expires_in":90,`) {
				t.Fatalf("with -lifetime 90s: %s", r.stdout)
			}
			http.DefaultClient.CloseIdleConnections()
			if r := f.stop(t, sig); r.code != 0 || r.stderr != "" {
				t.Fatalf("after %v: exit %d, stderr %q; want a clean exit 0", sig, r.code, r.stderr)
			}
		})
	}

	t.Run("EvalInAShell", func(t *testing.T) {
		t.Parallel()
		// The README's recipe. The fake inherits the shell's stderr, so Wait
		// returns only once the fake has exited too.
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "sh", "-c", `set -e
eval "$("$FORTETOKEN" fake &)"
"$FORTETOKEN" -token-url "$FORTE_TOKEN_URL" -format header
kill "$FORTE_FAKE_PID"`)
		cmd.Env = append(command(ctx, bin, nil).Env, "FORTETOKEN="+bin)
		cmd.WaitDelay = 10 * time.Second
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil || !strings.HasPrefix(string(out), "Bearer fortetest.") || stderr.Len() != 0 {
			t.Fatalf("eval recipe: %v, stdout %q, stderr %q", err, out, stderr.String())
		}
	})

	t.Run("FailureRateAndLatency", func(t *testing.T) {
		t.Parallel()
		f := startFake(t, bin, "-failure-rate", "1")
		execute(t, bin, f.env(), "-token-url", f.vars["FORTE_TOKEN_URL"]).wantError(t, exitUnavailable, []string{f.vars[secretEnv]}, "503")
		f.stop(t, syscall.SIGTERM)

		f = startFake(t, bin, "-latency", "300ms")
		start := time.Now()
		if r := execute(t, bin, f.env(), "-token-url", f.vars["FORTE_TOKEN_URL"]); r.code != 0 {
			t.Fatalf("with -latency: exit %d, stderr %q", r.code, r.stderr)
		}
		if d := time.Since(start); d < 300*time.Millisecond {
			t.Fatalf("with -latency 300ms the token came in %v", d)
		}
		f.stop(t, syscall.SIGTERM)
	})

	t.Run("SecretsFileReloadedOnSIGHUP", func(t *testing.T) {
		t.Parallel()
		secrets := filepath.Join(t.TempDir(), "secrets")
		os.WriteFile(secrets, []byte("first-secret\n"), 0o600)
		f := startFake(t, bin, "-secrets-file", secrets)
		if f.vars[secretEnv] != "first-secret" {
			t.Fatalf("FORTE_CLIENT_SECRET=%q, want the file's first-secret", f.vars[secretEnv])
		}
		token := func(secret string) (int, string) {
			return tokenFromFake(t, f.vars["FORTE_TOKEN_URL"], f.vars[clientIDEnv], secret)
		}
		_, old := token("first-secret")
		reload := func(list string) {
			os.WriteFile(secrets, []byte(list), 0o600)
			f.cmd.Process.Signal(syscall.SIGHUP)
		}
		reload("first-secret\nsecond-secret\n") // the overlap
		waitFor(t, "the second secret to be accepted", func() bool { code, _ := token("second-secret"); return code == http.StatusCreated })
		reload("second-secret\n") // the first retired
		waitFor(t, "the first secret to be refused", func() bool { code, _ := token("first-secret"); return code == http.StatusUnauthorized })
		req, _ := http.NewRequest(http.MethodGet, f.vars["FORTE_BASE_URL"]+"/v3/payments", nil)
		req.Header.Set("Authorization", "Bearer "+old)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("a token of the retired secret got %s from the API, want 401: revoked", resp.Status)
		}
		http.DefaultClient.CloseIdleConnections()
		if r := f.stop(t, syscall.SIGTERM); r.code != 0 || r.stderr != "" {
			t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
		}
	})

	t.Run("Addr", func(t *testing.T) {
		t.Parallel()
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		execute(t, bin, nil, "fake", "-addr", l.Addr().String()).wantError(t, exitOther, nil, "address already in use")

		f := startFake(t, bin, "-addr", "localhost:0")
		if u := f.vars["FORTE_BASE_URL"]; !strings.HasPrefix(u, "http://127.0.0.1:") && !strings.HasPrefix(u, "http://[::1]:") {
			t.Fatalf("-addr localhost:0 serves on %s", u)
		}
		f.stop(t, syscall.SIGTERM)
	})

	t.Run("Usage", func(t *testing.T) {
		t.Parallel()
		for _, c := range []struct {
			args    []string
			mention string
		}{
			{[]string{"-addr", "0.0.0.0:0"}, "loopback"},
			{[]string{"-addr", ":0"}, "loopback"},
			{[]string{"-addr", "192.0.2.1:8080"}, "loopback"},
			{[]string{"-addr", "127.0.0.1"}, "loopback"},
			{[]string{"-lifetime", "0s"}, "-lifetime"},
			{[]string{"-latency", "-1s"}, "-latency"},
			{[]string{"-failure-rate", "1.5"}, "-failure-rate"},
			{[]string{"-failure-rate", "NaN"}, "-failure-rate"},
			{[]string{"-failure-rate", "-0.1"}, "-failure-rate"},
			{[]string{"now"}, "flags only"},
			{[]string{"-nope"}, "-nope"},
		} {
			execute(t, bin, nil, append([]string{"fake"}, c.args...)...).wantError(t, exitUsage, nil, c.mention)
		}
	})
}

// tokenFromFake asks the fake at tokenURL for a token with id and secret,
// and returns the status and the token.
func tokenFromFake(t *testing.T, tokenURL, id, secret string) (int, string) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"client_id": id, "client_secret": secret})
	resp, err := http.Post(tokenURL, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got struct {
		Data struct {
			AccessToken string `json:"access_token"`
		} `json:"data"`
	}
	json.NewDecoder(resp.Body).Decode(&got)
	return resp.StatusCode, got.Data.AccessToken
}

// waitFor waits for cond, which a signal to another process makes true
// when that process gets to it; the bound only keeps a broken fake from
// hanging the test.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
