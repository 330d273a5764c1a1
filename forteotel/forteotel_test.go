package forteotel_test

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/forteauth/forteauth"
	"github.com/forteauth/forteauth/forteotel"
	"github.com/forteauth/forteauth/fortetest"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// memStore is a tiny in-memory forteauth.Store (not a Locker) that can be
// made to fail.
type memStore struct {
	mu   sync.Mutex
	vals map[string][]byte
	fail error
}

func (m *memStore) Get(_ context.Context, key string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return nil, m.fail
	}
	return bytes.Clone(m.vals[key]), nil
}

func (m *memStore) Set(_ context.Context, key string, v []byte, _ time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	m.vals[key] = bytes.Clone(v)
	return nil
}

func (m *memStore) setFail(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.fail = err
}

// plant puts token into the store as if another process had fetched it
// age ago, sealed as docs/design.md gives the format, so that the source
// under test can be handed an old token without waiting for one to age.
func (m *memStore) plant(t *testing.T, cfg *forteauth.Config, token string, age time.Duration) {
	t.Helper()
	salt := []byte(cfg.TokenURL + "\x00" + cfg.ClientID)
	id, err1 := hkdf.Key(sha256.New, []byte(cfg.ClientSecret), salt, "forteauth store key v1", 16)
	sealKey, err2 := hkdf.Key(sha256.New, []byte(cfg.ClientSecret), salt, "forteauth store seal v1", 32)
	if err := errors.Join(err1, err2); err != nil {
		t.Fatal(err)
	}
	key := "forteauth:v1:" + hex.EncodeToString(id)
	block, err := aes.NewCipher(sealKey)
	if err != nil {
		t.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := json.Marshal(map[string]any{"access_token": token, "expires_in": 3600, "sent": time.Now().Add(-age).UnixNano()})
	v := make([]byte, 1+aead.NonceSize())
	v[0] = 1
	rand.Read(v[1:])
	m.mu.Lock()
	defer m.mu.Unlock()
	m.vals[key] = aead.Seal(v, v[1:], plain, []byte(key))
}

// point is one instrument's single data point.
type point struct {
	value float64
	attrs attribute.Set
}

func collect(t *testing.T, reader *sdkmetric.ManualReader) map[string]point {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]point{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					got[m.Name] = point{float64(p.Value), p.Attributes}
				}
			case metricdata.Gauge[float64]:
				for _, p := range d.DataPoints {
					got[m.Name] = point{p.Value, p.Attributes}
				}
			}
		}
	}
	return got
}

func mustToken(t *testing.T, ts *forteauth.TokenSource) string {
	t.Helper()
	tok, err := ts.Token()
	if err != nil {
		t.Fatalf("Token: %v", err)
	}
	return tok.AccessToken
}

// eventually waits up to 10 s for cond, for background work a test cannot
// otherwise join; a pass returns as soon as cond holds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after 10s waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// refreshesRunning counts goroutines running a background refresh.
func refreshesRunning() int {
	buf := make([]byte, 8<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return strings.Count(string(buf), "forteauth.(*TokenSource).refreshInBackground.func")
}

// A scripted run against the fake server, through each path that moves a
// figure, checked as the SDK collects it.
func TestEveryInstrumentAfterAScriptedRun(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	store := &memStore{vals: map[string][]byte{}}
	cfg := &forteauth.Config{ClientID: srv.ClientID, ClientSecret: srv.ClientSecret, TokenURL: srv.TokenURL, Store: store}
	ctx := context.Background()
	ts := cfg.TokenSource(ctx)
	api := &http.Transport{}
	defer api.CloseIdleConnections()
	client := &http.Client{Transport: &forteauth.Transport{Source: ts, Base: api}}

	reader := sdkmetric.NewManualReader()
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer provider.Shutdown(ctx)
	attrs := []attribute.KeyValue{attribute.String("service.name", "payments"), attribute.String("forte.env", "test")}
	reg, err := forteotel.Register(provider.Meter(forteotel.ScopeName), ts, attrs...)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Unregister()

	if got := collect(t, reader); got["forteauth.token.remaining"].value != 0 || got["forteauth.token.requests"].value != 0 {
		t.Fatalf("before any call: %v; want remaining 0 and no requests", got)
	}

	// A success: the first call fetches (the Store is empty).
	mustToken(t, ts)
	if r := collect(t, reader)["forteauth.token.remaining"].value; r <= 3590 || r > 3600 {
		t.Fatalf("remaining = %v s just after fetching a 1 h token, want just under 3600", r)
	}

	// A Store hit: another process saved a 10-minute-old token.
	planted, err := cfg.Token(ctx) // an uncached fetch, counted by no source
	if err != nil {
		t.Fatal(err)
	}
	store.plant(t, cfg, planted.AccessToken, 10*time.Minute)
	ts.Invalidate(nil)
	if tok := mustToken(t, ts); tok != planted.AccessToken {
		t.Fatal("the source fetched instead of taking the Store's token")
	}

	// A 401 from the API through the Transport: the token is dropped, a
	// new one fetched (the Store still holds the rejected one) and the
	// request replayed.
	srv.Revoke(planted.AccessToken)
	resp, err := client.Get(srv.URL + "/v3/payments")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d after the 401, want 200 from the replay", resp.StatusCode)
	}

	// A failed background refresh: a token taken from the Store 57.5
	// minutes old is in its refresh window, and the endpoint answers 503
	// with a Retry-After beyond the fetch's budget, so the source gives up
	// after one request and keeps the token.
	due, err := cfg.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	store.plant(t, cfg, due.AccessToken, 57*time.Minute+30*time.Second)
	ts.Invalidate(nil)
	if tok := mustToken(t, ts); tok != due.AccessToken {
		t.Fatal("the source fetched instead of taking the Store's token")
	}
	srv.FailNext(fortetest.Failure{Status: http.StatusServiceUnavailable, RetryAfter: "300"})
	mustToken(t, ts) // starts the refresh
	eventually(t, "the background refresh to fail and end", func() bool {
		return ts.Stats().BackgroundFailures == 1 && refreshesRunning() == 0
	})

	// A 503 burst with the Store down: the Store call fails, the fetch
	// tries twice and fails, and the next call gets the cool-down error
	// (5 minutes, as the last Retry-After asked) without a request.
	store.setFail(errors.New("connection refused"))
	ts.Invalidate(nil)
	srv.FailNext(fortetest.Failure{Status: http.StatusServiceUnavailable}, fortetest.Failure{Status: http.StatusServiceUnavailable, RetryAfter: "300"})
	if _, err := ts.Token(); err == nil {
		t.Fatal("the 503 burst produced a token")
	}
	if _, err := ts.Token(); err == nil || !strings.Contains(err.Error(), "forteauth: no token") {
		t.Fatalf("err = %v, want the cool-down error", err)
	}

	want := map[string]float64{
		"forteauth.token.requests":            5, // first fetch, replay's fetch, background refresh, burst of 2
		"forteauth.token.fetches":             2,
		"forteauth.token.fetch_failures":      2,
		"forteauth.token.background_failures": 1,
		"forteauth.token.waits":               5, // first call, 2 Store hits, the replay, the burst
		"forteauth.token.cooldown_errors":     1,
		"forteauth.api.unauthorized":          1,
		"forteauth.api.replays":               1,
		"forteauth.store.hits":                2,
		"forteauth.store.faults":              1,
		"forteauth.credentials.failures":      0, // Config's fields: no Credentials func to fail, change or fall back
		"forteauth.credentials.changes":       0,
		"forteauth.credentials.fallbacks":     0,
		"forteauth.token.remaining":           0, // no token
	}
	got := collect(t, reader)
	wantSet := attribute.NewSet(attrs...)
	for name, v := range want {
		p, ok := got[name]
		switch {
		case !ok:
			t.Errorf("%s: not collected", name)
		case p.value != v:
			t.Errorf("%s = %v, want %v", name, p.value, v)
		case !p.attrs.Equals(&wantSet):
			t.Errorf("%s: attributes %v, want %v", name, p.attrs.ToSlice(), attrs)
		}
	}
	if len(got) != len(want) {
		t.Errorf("collected %d instruments, want %d", len(got), len(want))
	}
	if t.Failed() {
		t.Logf("Stats: %+v", ts.Stats())
	}
}

func TestUnregisterStopsObserving(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	ts := (&forteauth.Config{ClientID: srv.ClientID, ClientSecret: srv.ClientSecret, TokenURL: srv.TokenURL}).TokenSource(context.Background())
	mustToken(t, ts)
	reader := sdkmetric.NewManualReader()
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer provider.Shutdown(context.Background())
	reg, err := forteotel.Register(provider.Meter(forteotel.ScopeName), ts)
	if err != nil {
		t.Fatal(err)
	}
	if got := collect(t, reader); got["forteauth.token.requests"].value != 1 {
		t.Fatalf("registered: %v; want 1 token request", got)
	}
	if err := reg.Unregister(); err != nil {
		t.Fatal(err)
	}
	if got := collect(t, reader); len(got) != 0 {
		t.Fatalf("after Unregister the instruments still report %v", got)
	}
}

// Two sources on one Meter are told apart by their attributes.
func TestTwoSourcesOnOneMeter(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	cfg := &forteauth.Config{ClientID: srv.ClientID, ClientSecret: srv.ClientSecret, TokenURL: srv.TokenURL}
	a, b := cfg.TokenSource(context.Background()), cfg.TokenSource(context.Background())
	mustToken(t, a)
	b.Invalidate(nil)
	mustToken(t, b)
	b.Invalidate(nil)
	mustToken(t, b)

	reader := sdkmetric.NewManualReader()
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer provider.Shutdown(context.Background())
	meter := provider.Meter(forteotel.ScopeName)
	for name, ts := range map[string]*forteauth.TokenSource{"a": a, "b": b} {
		reg, err := forteotel.Register(meter, ts, attribute.String("source", name))
		if err != nil {
			t.Fatal(err)
		}
		defer reg.Unregister()
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "forteauth.token.fetches" {
				continue
			}
			for _, p := range m.Data.(metricdata.Sum[int64]).DataPoints {
				v, _ := p.Attributes.Value("source")
				got[v.AsString()] = p.Value
			}
		}
	}
	if got["a"] != 1 || got["b"] != 2 || len(got) != 2 {
		t.Fatalf("fetches by source = %v, want a:1 b:2", got)
	}
}

func TestRegisterRejectsNil(t *testing.T) {
	provider := sdkmetric.NewMeterProvider()
	defer provider.Shutdown(context.Background())
	if _, err := forteotel.Register(provider.Meter("test"), nil); err == nil || !strings.HasPrefix(err.Error(), "forteotel: ") {
		t.Fatalf("Register with a nil source: %v, want an error", err)
	}
	ts := (&forteauth.Config{}).TokenSource(context.Background())
	if _, err := forteotel.Register(nil, ts); err == nil {
		t.Fatal("Register with a nil Meter succeeded")
	}
}
