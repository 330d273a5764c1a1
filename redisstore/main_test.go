package redisstore_test

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
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/forteauth/forteauth"
	"github.com/forteauth/forteauth/fortetest"
	"github.com/forteauth/forteauth/redisstore"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

// The tests run against a real redis-server:
//
//   - FORTEAUTH_REDIS_ADDR (host:port), if set, is the shared server that
//     most tests use (.ci/run starts one and sets it);
//   - else TestMain starts its own redis-server on a free loopback port,
//     without persistence, if the binary is on PATH, and stops it at the end;
//   - else the package fails when CI=true, and is skipped otherwise.
//
// Tests that stop, pause, fill or restart Redis start a private
// redis-server of their own, so they need the binary in any case.
const (
	envAddr  = "FORTEAUTH_REDIS_ADDR"
	envChild = "FORTEAUTH_REDISSTORE_CHILD" // selects a child mode; see child_test.go
)

// sharedAddr is the Redis most tests use.
var sharedAddr string

func TestMain(m *testing.M) {
	redis.SetLogger(quietLogger{}) // go-redis logs every failed dial; the tests look at forteauth's logs instead
	if mode := os.Getenv(envChild); mode != "" {
		os.Exit(childMain(mode))
	}
	sharedAddr = os.Getenv(envAddr)
	var stop func()
	if sharedAddr == "" {
		if _, err := exec.LookPath("redis-server"); err != nil {
			msg := "redisstore: tests need Redis: set " + envAddr + " to a Redis address, or install redis-server (apt-get install redis-server)"
			if os.Getenv("CI") == "true" {
				fmt.Fprintln(os.Stderr, "FAIL: "+msg)
				os.Exit(1)
			}
			fmt.Fprintln(os.Stderr, "SKIP: "+msg)
			os.Exit(0)
		}
		dir, err := os.MkdirTemp("", "redisstore-test-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		srv, err := launchRedis(dir, 0)
		if err != nil {
			fmt.Fprintln(os.Stderr, "redisstore: starting redis-server:", err)
			os.RemoveAll(dir)
			os.Exit(1)
		}
		sharedAddr = srv.addr
		stop = func() { srv.stop(); os.RemoveAll(dir) }
	} else if err := ping(sharedAddr); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: redisstore: %s=%s does not answer PING: %v\n", envAddr, sharedAddr, err)
		os.Exit(1)
	}
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		stopSharedTopologies()
		if stop != nil {
			stop()
		}
		os.Exit(code)
	}))
}

type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

// redisProcess is a redis-server this test binary started.
type redisProcess struct {
	addr string
	port int
	dir  string
	cmd  *exec.Cmd
	log  string   // its log file
	conf string   // a configuration file, given first if set
	args []string // given to redis-server after the defaults
}

// launchRedis starts redis-server on port (0: a free one) on the loopback
// interface, without persistence, and waits until it answers PING.
func launchRedis(dir string, port int, extra ...string) (*redisProcess, error) {
	return launchRedisOn(dir, port, "", extra)
}

// launchRedisConf is launchRedis on a free port with a configuration file,
// which a Sentinel needs (it rewrites the file with what it learns).
func launchRedisConf(dir, conf string, extra ...string) (*redisProcess, error) {
	return launchRedisOn(dir, 0, conf, extra)
}

func launchRedisOn(dir string, port int, conf string, extra []string) (*redisProcess, error) {
	var lastErr error
	for range 3 { // a free port can be taken by someone else before redis-server binds it
		p := port
		if p == 0 {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return nil, err
			}
			p = l.Addr().(*net.TCPAddr).Port
			l.Close()
		}
		r := &redisProcess{addr: "127.0.0.1:" + strconv.Itoa(p), port: p, dir: dir, log: filepath.Join(dir, fmt.Sprintf("redis-%d.log", p)), conf: conf, args: extra}
		if lastErr = r.start(); lastErr == nil {
			return r, nil
		}
		if port != 0 {
			break
		}
	}
	return nil, lastErr
}

func (r *redisProcess) start() error {
	logf, err := os.OpenFile(r.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	args := append([]string{"--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", r.dir}, r.args...)
	if r.conf != "" {
		args = append([]string{r.conf}, args...)
	}
	r.cmd = exec.Command("redis-server", args...)
	r.cmd.Stdout, r.cmd.Stderr = logf, logf
	if err := r.cmd.Start(); err != nil {
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := ping(r.addr)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			r.stop()
			out, _ := os.ReadFile(r.log)
			return fmt.Errorf("redis-server on %s did not answer PING within 10s (%v); its log:\n%s", r.addr, err, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop kills the server, as a crash would.
func (r *redisProcess) stop() {
	r.cmd.Process.Signal(syscall.SIGCONT) // in case it was paused
	r.cmd.Process.Kill()
	r.cmd.Wait()
}

func ping(addr string) error {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second, DialerRetries: 1})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return c.Ping(ctx).Err()
}

// needRedisServer fails (under CI=true) or skips a test that must run a
// redis-server of its own when there is no binary.
func needRedisServer(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("this test starts its own redis-server, and there is none on PATH")
		}
		t.Skip("this test starts its own redis-server; install redis-server to run it")
	}
}

// privateRedis starts a redis-server for t alone, stopped at its end.
func privateRedis(t testing.TB, extra ...string) *redisProcess {
	t.Helper()
	needRedisServer(t)
	r, err := launchRedis(t.TempDir(), 0, extra...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.stop)
	return r
}

// pause stops the server from answering, as a hung or overloaded Redis
// would; its port still accepts connections.
func (r *redisProcess) pause() { r.cmd.Process.Signal(syscall.SIGSTOP) }

// resume undoes pause.
func (r *redisProcess) resume() { r.cmd.Process.Signal(syscall.SIGCONT) }

// restart starts the server again on the same port, empty.
func (r *redisProcess) restart(t testing.TB) {
	t.Helper()
	if err := r.start(); err != nil {
		t.Fatal(err)
	}
}

// newClient returns a go-redis client for addr with the default options,
// closed at the end of t.
func newClient(t testing.TB, addr string, mod ...func(*redis.Options)) *redis.Client {
	t.Helper()
	o := &redis.Options{Addr: addr}
	for _, f := range mod {
		f(o)
	}
	c := redis.NewClient(o)
	t.Cleanup(func() { c.Close() })
	return c
}

// newServer returns a fortetest server whose tokens last lifetime, with a
// client ID of its own, so that its store key is new even on a Redis that
// outlives this test (the key derives from the token URL, the client ID
// and the secret, and a later server may get the same port).
func newServer(t testing.TB, lifetime time.Duration) *fortetest.Server {
	t.Helper()
	srv := fortetest.NewServer()
	t.Cleanup(srv.Close)
	srv.ClientID = "redisstore-test-" + randomHex(8)
	srv.SetLifetime(lifetime)
	return srv
}

func configFor(srv *fortetest.Server, store forteauth.Store, logger *slog.Logger) *forteauth.Config {
	return &forteauth.Config{
		ClientID:     srv.ClientID,
		ClientSecret: srv.ClientSecret,
		TokenURL:     srv.TokenURL,
		Store:        store,
		Logger:       logger,
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// The store format, as docs/design.md gives it. The tests derive keys and
// seal values independently of the core, so that a change of format
// breaks them and not only the documentation.

func storeKey(cfg *forteauth.Config) string {
	id, err := hkdf.Key(sha256.New, []byte(cfg.ClientSecret), []byte(cfg.TokenURL+"\x00"+cfg.ClientID), "forteauth store key v1", 16)
	if err != nil {
		panic(err)
	}
	return "forteauth:v1:" + hex.EncodeToString(id)
}

// lockKey is the name of the lock of cfg's key.
func lockKey(cfg *forteauth.Config) string { return lockOf(storeKey(cfg)) }

// lockOf is the name of key's lock, as the package doc gives it.
func lockOf(key string) string { return key + ":lock{" + key + "}" }

func sealer(cfg *forteauth.Config) cipher.AEAD {
	k, err := hkdf.Key(sha256.New, []byte(cfg.ClientSecret), []byte(cfg.TokenURL+"\x00"+cfg.ClientID), "forteauth store seal v1", 32)
	if err != nil {
		panic(err)
	}
	block, _ := aes.NewCipher(k)
	aead, _ := cipher.NewGCM(block)
	return aead
}

// storedToken is the sealed JSON.
type storedToken struct {
	AccessToken string `json:"access_token"`
	ExpiresIn   int64  `json:"expires_in"`
	Sent        int64  `json:"sent"`
}

// seal seals st for key with cfg's secret: version 1, a 12-byte nonce,
// then AES-256-GCM ciphertext and tag, with key as additional data.
func seal(cfg *forteauth.Config, key string, st storedToken) []byte {
	aead := sealer(cfg)
	plain, _ := json.Marshal(st)
	out := make([]byte, 1+aead.NonceSize())
	out[0] = 1
	rand.Read(out[1:])
	return aead.Seal(out, out[1:], plain, []byte(key))
}

func open(cfg *forteauth.Config, key string, v []byte) (storedToken, error) {
	aead := sealer(cfg)
	var st storedToken
	if len(v) < 1+aead.NonceSize() || v[0] != 1 {
		return st, errors.New("not a version 1 sealed value")
	}
	plain, err := aead.Open(nil, v[1:1+aead.NonceSize()], v[1+aead.NonceSize():], []byte(key))
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(plain, &st)
}

// storedAccessToken opens the value under cfg's key in Redis.
func storedAccessToken(t testing.TB, c redis.Cmdable, cfg *forteauth.Config) (string, error) {
	t.Helper()
	key := storeKey(cfg)
	v, err := c.Get(context.Background(), key).Bytes()
	if err != nil {
		return "", err
	}
	st, err := open(cfg, key, v)
	return st.AccessToken, err
}

// eventually polls cond every 10 ms for up to limit, for outcomes of
// background work that a test cannot otherwise join.
func eventually(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// logBuffer collects a TokenSource's log lines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) count(s string) int { return strings.Count(b.String(), s) }

func newLogger() (*slog.Logger, *logBuffer) {
	b := &logBuffer{}
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})), b
}

// What forteauth logs; see store.go in the core.
const (
	logStoreFailed   = "token store failed"
	logStoreWorks    = "token store works again"
	logIgnoringValue = "ignoring the token store's value"
	logLockGivenUp   = "refresh lock was given up without a new token"
)

// newStore returns a Store on a client of its own for addr.
func newStore(t testing.TB, addr string, mod ...func(*redis.Options)) *redisstore.Store {
	return redisstore.New(newClient(t, addr, mod...))
}

// stallWatch measures how late a 5 ms sleep wakes up in this process,
// which is how long the process went without CPU. The fleet tests report
// it: a 2 s token handed out with its 100 ms margin left expires on the
// way to the API if the process then gets no CPU for longer than that.
type stallWatch struct {
	stop  chan struct{}
	done  chan struct{}
	worst time.Duration
}

func watchStalls() *stallWatch {
	w := &stallWatch{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			select {
			case <-w.stop:
				return
			default:
			}
			start := time.Now()
			time.Sleep(5 * time.Millisecond)
			w.worst = max(w.worst, time.Since(start)-5*time.Millisecond)
		}
	}()
	return w
}

// end stops the watch and returns the longest stall seen.
func (w *stallWatch) end() time.Duration {
	close(w.stop)
	<-w.done
	return w.worst
}
