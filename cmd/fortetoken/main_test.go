package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// build compiles the command into a temporary directory and returns its path.
func build(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "fortetoken")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	out, err := exec.Command("go", append(args, ".")...).CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// result is what one run of the command did.
type result struct {
	stdout, stderr string
	code           int
}

// command returns an exec.Cmd for bin with args, in an environment holding
// none of the FORTE_ variables or proxy settings of the test's own, plus env.
func command(ctx context.Context, bin string, env []string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, bin, args...)
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch strings.ToUpper(name) {
		case "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", clientIDEnv, secretEnv:
			continue
		}
		cmd.Env = append(cmd.Env, kv)
	}
	// A -race binary otherwise sleeps a second at exit, in case a race
	// report is still being written; a twentieth of that is plenty here.
	// A race makes the binary exit 66, which fails the test that ran it.
	cmd.Env = append(cmd.Env, "GORACE=atexit_sleep_ms=50")
	cmd.Env = append(cmd.Env, env...)
	return cmd
}

// execute runs bin to completion, within a minute.
func execute(t *testing.T, bin string, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := command(ctx, bin, env, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		t.Fatalf("running %s: %v", bin, err)
	}
	return result{stdout.String(), stderr.String(), cmd.ProcessState.ExitCode()}
}

// wantError checks that r failed with code and one line on stderr that
// starts with "fortetoken: ", mentions each of mention and holds none of
// secrets.
func (r result) wantError(t *testing.T, code int, secrets []string, mention ...string) {
	t.Helper()
	for _, s := range secrets {
		if strings.Contains(r.stderr, s) || strings.Contains(r.stdout, s) {
			t.Fatalf("the secret appears in the output (exit %d); not showing it", r.code)
		}
	}
	if r.code != code {
		t.Errorf("exit code %d, want %d; stderr: %s", r.code, code, r.stderr)
	}
	if r.stdout != "" {
		t.Errorf("stdout %q, want nothing on failure", r.stdout)
	}
	if !strings.HasPrefix(r.stderr, "fortetoken: ") || strings.Count(r.stderr, "\n") != 1 || !strings.HasSuffix(r.stderr, "\n") {
		t.Errorf("stderr %q, want one line starting with \"fortetoken: \"", r.stderr)
	}
	for _, m := range mention {
		if !strings.Contains(r.stderr, m) {
			t.Errorf("stderr %q does not mention %q", r.stderr, m)
		}
	}
}
