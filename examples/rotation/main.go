// Command rotation rotates the client secret under load, as a team does
// with a Kubernetes Secret, and exits non-zero if any API request failed.
//
//	go run ./examples/rotation
//
// The credentials are read with forteauth.CredentialsFromFiles from a
// directory laid out as Kubernetes mounts a Secret (two files behind a
// "..data" symlink, swapped atomically). While 50 callers use the API
// through one client, the rotation goes as Forte's does: Forte accepts the
// new secret beside the old, the Secret is updated, then Forte retires the
// old secret and revokes its tokens. No restart, no failed request.
package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/forteauth/forteauth"
	"github.com/forteauth/forteauth/fortetest"
)

const lifetime = 3 * time.Second

func main() {
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

func run() error {
	srv := fortetest.NewServer() // Forte
	defer srv.Close()
	srv.SetLifetime(lifetime)
	old := fortetest.Credentials{ClientID: srv.ClientID, ClientSecret: srv.ClientSecret}
	next := fortetest.Credentials{ClientID: srv.ClientID, ClientSecret: "the-rotated-secret"}

	mount, err := os.MkdirTemp("", "forteauth-rotation-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(mount)
	secret, err := fortetest.NewSecretDir(mount, values(old)) // the mounted Secret
	if err != nil {
		return err
	}
	cfg := &forteauth.Config{
		Credentials: forteauth.CredentialsFromFiles(secret.Path("client_id"), secret.Path("client_secret")),
		TokenURL:    srv.TokenURL,
	}
	ts := cfg.TokenSource(context.Background())
	load := startLoad(&http.Client{Transport: &forteauth.Transport{Source: ts}}, srv.URL+"/v3/payments")

	if err := rotate(srv, secret, old, next); err != nil {
		return err
	}
	time.Sleep(2 * lifetime)
	calls, failed := load.stop()

	st := ts.Stats()
	fmt.Printf("API requests:       %d, %d failed\n", calls, failed)
	fmt.Printf("token requests:     %d\n", srv.Stats().TokenRequests)
	fmt.Printf("credential changes: %d\n", st.CredentialChanges)
	if failed > 0 || st.CredentialChanges != 1 {
		return fmt.Errorf("the rotation failed %d requests and took %d credential changes, want 0 and 1", failed, st.CredentialChanges)
	}
	return nil
}

// rotate runs the rotation as Forte and Kubernetes do it, one step a line.
func rotate(srv *fortetest.Server, secret *fortetest.SecretDir, old, next fortetest.Credentials) error {
	time.Sleep(lifetime)
	fmt.Println("1. Forte accepts the new secret beside the old one")
	srv.AcceptCredentials(old, next)
	time.Sleep(lifetime / 2)
	fmt.Println("2. the Secret is updated: ..data now points at the new files")
	if err := secret.Update(values(next)); err != nil {
		return err
	}
	time.Sleep(lifetime / 6)
	fmt.Println("3. Forte retires the old secret and revokes its tokens")
	srv.AcceptCredentials(next)
	fmt.Printf("   %d tokens revoked\n", srv.RevokeUnaccepted())
	return nil
}

func values(c fortetest.Credentials) map[string]string {
	return map[string]string{"client_id": c.ClientID, "client_secret": c.ClientSecret}
}

// load is callers using the API until stopped.
type load struct {
	stopped       atomic.Bool
	wg            sync.WaitGroup
	calls, failed atomic.Int64
}

// startLoad starts 50 callers, each making a request every 20 ms.
func startLoad(c *http.Client, url string) *load {
	l := &load{}
	for range 50 {
		l.wg.Go(func() {
			for !l.stopped.Load() {
				l.calls.Add(1)
				resp, err := c.Get(url)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if err != nil || resp.StatusCode != http.StatusOK {
					l.failed.Add(1)
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
	return l
}

// stop stops the callers and returns their requests and failures.
func (l *load) stop() (calls, failed int64) {
	l.stopped.Store(true)
	l.wg.Wait()
	return l.calls.Load(), l.failed.Load()
}
