// Command redis-fleet shows several TokenSources, standing in for the
// processes of a fleet, sharing one Forte token through Redis. It starts
// the fake Forte server from fortetest, makes API calls from every
// "process", and reports how many token requests the whole fleet made:
// one, where processes that share nothing make one each.
//
//	REDIS_ADDR=127.0.0.1:6379 go run .    # from examples/redis-fleet
//
// It exits non-zero if Redis cannot be reached, an API call fails, or the
// fleet made more than one token request.
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/forteauth/forteauth"
	"github.com/forteauth/forteauth/fortetest"
	"github.com/forteauth/forteauth/redisstore"
	"github.com/redis/go-redis/v9"
)

const (
	processes = 5
	callsEach = 20
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "redis-fleet:", err)
		os.Exit(1)
	}
}

func run() error {
	addr := os.Getenv("REDIS_ADDR")
	if addr == "" {
		addr = "127.0.0.1:6379"
	}
	if err := ping(addr); err != nil {
		return fmt.Errorf("cannot reach Redis at %s (set REDIS_ADDR, or start one with: redis-server --save '' --appendonly no): %w", addr, err)
	}

	srv := fortetest.NewServer()
	defer srv.Close()
	// The store key derives from the token URL, the client ID and the
	// secret. A fresh client ID keeps this run from adopting a token that
	// an earlier run, whose fake server had the same port, left in Redis.
	srv.ClientID = "redis-fleet-" + rand.Text()

	clients, closeRedis := fleet(addr, srv)
	defer closeRedis()
	ok, errs := callAll(clients, srv.URL)

	st := srv.Stats()
	fmt.Printf("processes:      %d, sharing Redis at %s\n", processes, addr)
	fmt.Printf("API calls:      %d (%d answered 200 OK)\n", processes*callsEach, ok)
	fmt.Printf("token requests: %d\n", st.TokenRequests)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%d API calls failed: %w", len(errs), err)
	}
	if st.TokenRequests != 1 {
		return fmt.Errorf("the fleet made %d token requests, want 1: the processes did not share the token", st.TokenRequests)
	}
	return nil
}

// fleet returns the API client of each "process", all storing the token
// in the Redis at addr, and a function that closes their Redis clients.
func fleet(addr string, srv *fortetest.Server) ([]*http.Client, func()) {
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx := context.Background()
	var clients []*http.Client
	var rdbs []*redis.Client
	for range processes {
		// One Redis client per "process", as separate processes would have.
		rdb := redis.NewClient(&redis.Options{Addr: addr})
		rdbs = append(rdbs, rdb)
		cfg := &forteauth.Config{
			ClientID:     srv.ClientID,
			ClientSecret: srv.ClientSecret,
			TokenURL:     srv.TokenURL,
			Store:        redisstore.New(rdb),
			Logger:       logger,
		}
		clients = append(clients, cfg.Client(ctx))
	}
	return clients, func() {
		for _, rdb := range rdbs {
			rdb.Close()
		}
	}
}

// callAll makes callsEach API calls from every client at once, and
// returns how many succeeded and why the others failed.
func callAll(clients []*http.Client, base string) (ok int, errs []error) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	for p, client := range clients {
		for i := range callsEach {
			wg.Go(func() {
				err := call(client, fmt.Sprintf("%s/v3/payments/%d-%d", base, p, i))
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, err)
				} else {
					ok++
				}
			})
		}
	}
	wg.Wait()
	return ok, errs
}

func call(client *http.Client, url string) error {
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

func ping(addr string) error {
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return rdb.Ping(ctx).Err()
}
