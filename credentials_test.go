package forteauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/forteauth/forteauth/fortetest"
)

// mountedCredentials lays out creds as a Kubernetes Secret volume under a
// new directory, and returns it and the Credentials func that reads it.
func mountedCredentials(t *testing.T, creds fortetest.Credentials) (*fortetest.SecretDir, func(context.Context) (Credentials, error)) {
	t.Helper()
	dir, err := fortetest.NewSecretDir(t.TempDir(), map[string]string{"client_id": creds.ClientID, "client_secret": creds.ClientSecret})
	if err != nil {
		t.Fatal(err)
	}
	return dir, CredentialsFromFiles(dir.Path("client_id"), dir.Path("client_secret"))
}

// update rewrites dir with creds, as the kubelet does after a change.
func update(t *testing.T, dir *fortetest.SecretDir, creds fortetest.Credentials) {
	t.Helper()
	if err := dir.Update(map[string]string{"client_id": creds.ClientID, "client_secret": creds.ClientSecret}); err != nil {
		t.Fatal(err)
	}
}

func TestCredentialsFromFilesReadsTheFilesAtEachCall(t *testing.T) {
	dir, read := mountedCredentials(t, fortetest.Credentials{ClientID: "id-1", ClientSecret: "secret-1\n"})
	got, err := read(context.Background())
	if err != nil || got != (Credentials{"id-1", "secret-1"}) {
		t.Fatalf("read = %v, %v; want id-1 and secret-1, one trailing newline dropped", got, err)
	}
	update(t, dir, fortetest.Credentials{ClientID: "id-2", ClientSecret: "secret-2\r\n"})
	if got, err := read(context.Background()); err != nil || got != (Credentials{"id-2", "secret-2"}) {
		t.Fatalf("after the swap, read = %v, %v; want id-2 and secret-2", got, err)
	}
	update(t, dir, fortetest.Credentials{ClientID: "id-2", ClientSecret: "secret-3\n\n"})
	if got, _ := read(context.Background()); got.ClientSecret != "secret-3\n" {
		t.Errorf("a secret ending in two newlines read as %q, want one dropped", got.ClientSecret)
	}
}

func TestCredentialsFromFilesErrorsNameTheFileNotItsContent(t *testing.T) {
	dir := t.TempDir()
	id, secret := filepath.Join(dir, "id"), filepath.Join(dir, "secret")
	os.WriteFile(id, []byte("client-id-123\n"), 0o600)
	for _, c := range []struct {
		name  string
		setup func()
		is    error
	}{
		{"missing", func() { os.Remove(secret) }, fs.ErrNotExist},
		{"empty", func() { os.WriteFile(secret, []byte("\n"), 0o600) }, nil},
		{"a directory", func() { os.Remove(secret); os.Mkdir(secret, 0o700) }, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.setup()
			defer os.RemoveAll(secret)
			_, err := CredentialsFromFiles(id, secret)(context.Background())
			if !errors.Is(err, ErrCredentials) || c.is != nil && !errors.Is(err, c.is) {
				t.Fatalf("err = %v; want ErrCredentials and %v", err, c.is)
			}
			if !strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "client-id-123") {
				t.Errorf("%q does not name the file %s, or quotes a file's content", err, secret)
			}
		})
	}
}

func TestConfigWithCredentialsValidates(t *testing.T) {
	fn := func(context.Context) (Credentials, error) { return Credentials{"id", "secret"}, nil }
	for _, c := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"Credentials alone", Config{Credentials: fn, TokenURL: SandboxTokenURL}, true},
		{"Credentials and ClientID", Config{Credentials: fn, ClientID: "id", TokenURL: SandboxTokenURL}, false},
		{"Credentials and ClientSecret", Config{Credentials: fn, ClientSecret: "secret", TokenURL: SandboxTokenURL}, false},
		{"neither", Config{TokenURL: SandboxTokenURL}, false},
	} {
		if err := c.cfg.validate(); (err == nil) != c.ok || err != nil && !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: validate = %v, want ok %v or ErrInvalidConfig", c.name, err, c.ok)
		}
	}
}

// TestCredentialsAreAskedOncePerFetch: the func is called by the fetch
// that every waiting caller shares, never on a cache hit; Config.Token
// calls it too.
func TestCredentialsAreAskedOncePerFetch(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	var calls atomic.Int64
	fn := func(context.Context) (Credentials, error) {
		calls.Add(1)
		return Credentials{srv.ClientID, srv.ClientSecret}, nil
	}
	cfg := &Config{Credentials: fn, TokenURL: srv.TokenURL}
	ts := cfg.TokenSource(context.Background())
	release := srv.Hold()
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() { ts.Token() })
	}
	eventually(t, "the shared fetch at the endpoint", func() bool { return tokenRequests(srv) == 1 })
	release()
	wg.Wait()
	for range 100_000 {
		mustToken(t, ts)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("Credentials was called %d times for 50 waiting callers and 100,000 cache hits, want once", n)
	}
	if _, err := cfg.Token(context.Background()); err != nil || calls.Load() != 2 {
		t.Errorf("Config.Token: %v, Credentials called %d times in all, want 2", err, calls.Load())
	}
}

// TestARotationUnderLoadFailsNoRequest: 200 callers through cfg.Client,
// on 1-minute tokens, for five lifetimes; in one run the secret changes as
// Forte's rotation goes: the endpoint adds the new secret, the mounted
// files are swapped, and two seconds later the endpoint retires the old
// secret and revokes its tokens. No API request may fail, and the
// rotation may cost at most 2 token requests more than the run without it.
func TestARotationUnderLoadFailsNoRequest(t *testing.T) {
	plain := rotationRun(t, false)
	rotated := rotationRun(t, true)
	t.Logf("without a rotation: %+v; with one: %+v", plain, rotated)
	if rotated.failed != 0 || plain.failed != 0 {
		t.Errorf("%d API requests failed with the rotation, %d without", rotated.failed, plain.failed)
	}
	if rotated.tokenRequests > plain.tokenRequests+2 {
		t.Errorf("the rotation cost %d token requests, against %d without: more than 2 extra", rotated.tokenRequests, plain.tokenRequests)
	}
	if rotated.changes != 1 {
		t.Errorf("the source took %d credential changes, want 1", rotated.changes)
	}
}

type rotationOutcome struct {
	calls, failed      int64
	tokenRequests      int
	revoked            int
	changes, fallbacks int64
}

func rotationRun(t *testing.T, rotate bool) (out rotationOutcome) {
	synctest.Test(t, func(t *testing.T) {
		const lifetime = time.Minute
		srv := fortetest.NewMemoryServer()
		srv.SetLifetime(lifetime)
		old := fortetest.Credentials{ClientID: srv.ClientID, ClientSecret: srv.ClientSecret}
		next := fortetest.Credentials{ClientID: srv.ClientID, ClientSecret: "the-new-secret-of-" + srv.ClientID}
		dir, fn := mountedCredentials(t, old)
		cfg := &Config{Credentials: fn, TokenURL: srv.TokenURL, HTTPClient: srv.Client()}
		ts := cfg.TokenSource(context.Background())
		client := &http.Client{Transport: &Transport{Source: ts, Base: srv.Client().Transport}}

		stop := time.Now().Add(5 * lifetime)
		var calls, failed atomic.Int64
		var wg sync.WaitGroup
		for range 200 {
			wg.Go(func() { failed.Add(callUntil(client, srv.URL, stop, &calls)) })
		}
		if rotate {
			time.Sleep(3 * lifetime / 2)
			srv.AcceptCredentials(old, next)
			update(t, dir, next)
			time.Sleep(2 * time.Second)
			srv.AcceptCredentials(next)
			out.revoked = srv.RevokeUnaccepted()
		}
		wg.Wait()
		st := ts.Stats()
		out.calls, out.failed = calls.Load(), failed.Load()
		out.tokenRequests, out.changes, out.fallbacks = srv.Stats().TokenRequests, st.CredentialChanges, st.CredentialFallbacks
	})
	return out
}

// callUntil calls the API through c, a request each second, until stop,
// and returns how many requests failed.
func callUntil(c *http.Client, base string, stop time.Time, calls *atomic.Int64) (failed int64) {
	for time.Now().Before(stop) {
		calls.Add(1)
		resp, err := c.Get(base + "/v3/payments")
		if err != nil {
			failed++
		} else {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				failed++
			}
		}
		time.Sleep(time.Second)
	}
	return failed
}

// TestANewSecretNotYetAcceptedFallsBackToThePrevious: the files say the
// new secret before Forte accepts it. The fetch tries it, is rejected,
// asks the source again (same answer), and tries the secret the endpoint
// last accepted, once, with one Warn line; once Forte accepts the new
// secret, the next fetch moves to it.
func TestANewSecretNotYetAcceptedFallsBackToThePrevious(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fortetest.NewMemoryServer()
		old := fortetest.Credentials{ClientID: srv.ClientID, ClientSecret: srv.ClientSecret}
		next := fortetest.Credentials{ClientID: srv.ClientID, ClientSecret: "the-new-secret-not-yet-active"}
		dir, fn := mountedCredentials(t, old)
		logger, logs := newTestLogger()
		ts := (&Config{Credentials: fn, TokenURL: srv.TokenURL, HTTPClient: srv.Client(), Logger: logger}).TokenSource(context.Background())
		mustToken(t, ts)

		update(t, dir, next) // rolled out before Forte accepts it
		ts.Invalidate(nil)
		mustToken(t, ts)
		if st := srv.Stats(); st.TokenRequests != 3 || st.CredentialsRejected != 1 || ts.Stats().CredentialFallbacks != 1 {
			t.Fatalf("%d token requests, %d rejected, %d fallbacks; want 3 (the old, the new rejected, the old again), 1 and 1",
				st.TokenRequests, st.CredentialsRejected, ts.Stats().CredentialFallbacks)
		}
		if n := strings.Count(logs.String(), "trying the ones it last accepted"); n != 1 {
			t.Errorf("the fallback was logged %d times, want once:\n%s", n, logs)
		}

		srv.AcceptCredentials(next) // Forte now holds the new secret only
		srv.RevokeUnaccepted()
		ts.Invalidate(nil)
		mustToken(t, ts)
		if st := srv.Stats(); st.TokenRequests != 4 || st.CredentialsRejected != 1 || ts.Stats().CredentialFallbacks != 1 {
			t.Errorf("once the new secret is accepted: %d token requests, %d rejected, %d fallbacks; want 4, 1 and 1",
				st.TokenRequests, st.CredentialsRejected, ts.Stats().CredentialFallbacks)
		}
		assertAbsent(t, "log", logs.String(), old.ClientSecret, next.ClientSecret)
	})
}

// TestASourceThatChangesAfterARejectionIsAskedAgainAtOnce: rejected, the
// fetch asks the source again, and tries what it now returns, within the
// same fetch.
func TestASourceThatChangesAfterARejectionIsAskedAgainAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fortetest.NewMemoryServer()
		var calls atomic.Int64
		fn := func(context.Context) (Credentials, error) {
			if calls.Add(1) == 1 {
				return Credentials{srv.ClientID, "a-secret-forte-never-had"}, nil
			}
			return Credentials{srv.ClientID, srv.ClientSecret}, nil
		}
		ts := (&Config{Credentials: fn, TokenURL: srv.TokenURL, HTTPClient: srv.Client()}).TokenSource(context.Background())
		start := time.Now()
		mustToken(t, ts)
		if n, took := tokenRequests(srv), time.Since(start); n != 2 || calls.Load() != 2 || took != 0 {
			t.Errorf("%d token requests and %d calls of Credentials, in %v; want 2 and 2 at once", n, calls.Load(), took)
		}
	})
}

// TestAMissingFileKeepsTheTokenUntilStaleThenFailsThenRecovers: with the
// secret's file gone, the background refresh fails and the token is kept;
// once it is stale, callers get an error that wraps ErrCredentials and
// fs.ErrNotExist and names the file; when the file is back, the next
// fetch recovers.
func TestAMissingFileKeepsTheTokenUntilStaleThenFailsThenRecovers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fortetest.NewMemoryServer()
		dir, fn := mountedCredentials(t, fortetest.Credentials{ClientID: srv.ClientID, ClientSecret: srv.ClientSecret})
		ts := (&Config{Credentials: fn, TokenURL: srv.TokenURL, HTTPClient: srv.Client()}).TokenSource(context.Background())
		first := mustToken(t, ts)
		secretFile := dir.Path("client_secret")
		link, _ := os.Readlink(secretFile)
		os.Remove(secretFile)

		time.Sleep(time.Hour - 5*time.Minute + 3*time.Minute) // in the refresh window
		if tok := mustToken(t, ts); tok.AccessToken != first.AccessToken {
			t.Fatal("the usable token was not handed out")
		}
		synctest.Wait() // the background refresh fails
		if st := ts.Stats(); st.CredentialFailures == 0 || st.BackgroundFailures == 0 || tokenRequests(srv) != 1 {
			t.Fatalf("Stats %+v, %d token requests: want a failed background refresh and no request", st, tokenRequests(srv))
		}
		time.Sleep(2 * time.Minute) // past the stale point
		_, err := ts.Token()
		if !errors.Is(err, ErrCredentials) || !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), secretFile) {
			t.Fatalf("with a stale token and no secret file: %v; want ErrCredentials and fs.ErrNotExist, naming %s", err, secretFile)
		}
		assertAbsent(t, "error", err.Error(), srv.ClientSecret)

		os.Symlink(link, secretFile)
		time.Sleep(failureBackoff.max) // the cool-down
		if tok, err := ts.Token(); err != nil || tok.AccessToken == first.AccessToken {
			t.Fatalf("with the file back: %v, want a new token", err)
		}
	})
}

// TestEverySecretUsedIsWithheld: a source rotated from one secret to
// another, against an endpoint that echoes whatever secret it is sent in
// its error bodies, reason phrases and headers, shows neither secret in
// any error, log line or printed value.
func TestEverySecretUsedIsWithheld(t *testing.T) {
	secrets := []string{"first-s3cr3t-of-the-rotation", "second-s3cr3t-of-the-rotation"}
	srv := newEchoServer(t, func(path string, body []byte, id, secret string) string {
		return rawAnswer("HTTP/1.1 401 Unauthorized "+secret, []string{"Content-Type", "application/json", "X-Echo", secret},
			forteError(401, "client_secret "+secret+" is wrong", map[string]any{"raw": string(body)}))
	})
	var n atomic.Int64
	fn := func(context.Context) (Credentials, error) {
		return Credentials{testClientID, secrets[min(n.Add(1)-1, 1)]}, nil
	}
	capture := &logCapture{}
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	cfg := &Config{Credentials: fn, TokenURL: srv.url(fortetest.TokenPath), HTTPClient: &http.Client{Transport: tr}, Logger: slog.New(capture)}
	ts := cfg.TokenSource(context.Background())
	_, err := ts.Token()
	if err == nil || n.Load() != 2 {
		t.Fatalf("Token: %v after %d calls of Credentials; want an error after two, one per secret", err != nil, n.Load())
	}
	_, tokenErr := cfg.Token(context.Background())
	var out []string
	for _, e := range []error{err, tokenErr} {
		out = append(out, fmt.Sprintf("%v %+v %#v", e, e, e))
	}
	for _, v := range []any{cfg, *cfg, ts, Credentials{testClientID, secrets[1]}} {
		for _, s := range formatAll(v) {
			out = append(out, s)
		}
		b, _ := json.Marshal(v)
		out = append(out, string(b))
	}
	_, logged := capture.snapshot()
	out = append(out, logged...)
	for _, secret := range secrets {
		forms := encodedForms(testClientID, secret)
		for _, s := range out {
			assertNoForm(t, "an error, a log line or a printed value", s, forms)
		}
	}
}

// TestCredentialsFromFilesDuringSwaps: read while the mounted Secret is
// swapped again and again between two pairs, the func never fails and
// never pairs one's client ID with the other's secret.
func TestCredentialsFromFilesDuringSwaps(t *testing.T) {
	one := fortetest.Credentials{ClientID: "id-one", ClientSecret: "secret-one"}
	two := fortetest.Credentials{ClientID: "id-two", ClientSecret: "secret-two"}
	dir, read := mountedCredentials(t, one)
	var stop atomic.Bool
	var wg sync.WaitGroup
	var reads, failures, mixed atomic.Int64
	wg.Go(func() {
		for !stop.Load() {
			cr, err := read(context.Background())
			reads.Add(1)
			switch {
			case err != nil:
				failures.Add(1)
			case cr != Credentials(one) && cr != Credentials(two):
				mixed.Add(1)
			}
		}
	})
	for i := range 300 {
		update(t, dir, [2]fortetest.Credentials{one, two}[i%2])
	}
	stop.Store(true)
	wg.Wait()
	// A read may fail if every try meets a swap, as back-to-back swaps
	// make likely; a mixed pair is a fault however often they come.
	t.Logf("%d reads during 300 swaps: %d failed after their tries", reads.Load(), failures.Load())
	if mixed.Load() != 0 || failures.Load() == reads.Load() {
		t.Errorf("%d reads during 300 swaps: %d paired one's ID with the other's secret, %d failed; want no pair mixed", reads.Load(), mixed.Load(), failures.Load())
	}
}
