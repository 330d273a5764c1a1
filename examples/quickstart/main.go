// Command quickstart shows forteauth end to end, offline: it starts the fake
// Forte server from fortetest, sends 100 concurrent API requests through
// cfg.Client, and reports how many token requests that took.
//
//	go run ./examples/quickstart
//
// Against Forte itself, set TokenURL to forteauth.SandboxTokenURL and read
// the credentials from your secret store; the rest is the same.
package main

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"sync"

	"github.com/forteauth/forteauth"
	"github.com/forteauth/forteauth/fortetest"
)

func main() {
	srv := fortetest.NewServer()
	defer srv.Close()

	cfg := &forteauth.Config{
		ClientID:     srv.ClientID,
		ClientSecret: srv.ClientSecret,
		TokenURL:     srv.TokenURL,
	}
	ctx := context.Background()
	client := cfg.Client(ctx) // make one and share it

	var wg sync.WaitGroup
	var mu sync.Mutex
	statuses := map[int]int{}
	for i := range 100 {
		wg.Go(func() {
			resp, err := client.Get(fmt.Sprintf("%s/v3/payments/%d", srv.URL, i))
			if err != nil {
				log.Fatal(err)
			}
			resp.Body.Close()
			mu.Lock()
			statuses[resp.StatusCode]++
			mu.Unlock()
		})
	}
	wg.Wait()

	st := srv.Stats()
	fmt.Printf("API requests:   %d (%d answered 200 OK)\n", st.APIRequests, statuses[http.StatusOK])
	fmt.Printf("token requests: %d\n", st.TokenRequests)
	// Printing the source or the Config never shows the secret or a whole token.
	fmt.Printf("token source:   %v\n", client.Transport.(*forteauth.Transport).Source)
	fmt.Printf("config:         %+v\n", cfg)
}
