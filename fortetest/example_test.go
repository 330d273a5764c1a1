package fortetest_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/forteauth/forteauth"
	"github.com/forteauth/forteauth/fortetest"
)

// A test points its code at the fake server, makes the token endpoint
// fail, and checks what happened with Stats.
func Example() {
	srv := fortetest.NewServer()
	defer srv.Close()
	cfg := &forteauth.Config{ClientID: srv.ClientID, ClientSecret: srv.ClientSecret, TokenURL: srv.TokenURL}

	srv.FailNext(fortetest.Failure{Status: http.StatusServiceUnavailable}) // forteauth retries it

	resp, err := cfg.Client(context.Background()).Get(srv.URL + "/v3/payments")
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	fmt.Println(resp.Status)

	st := srv.Stats()
	fmt.Printf("token requests %d, tokens issued %d, API requests %d, rejected %d\n",
		st.TokenRequests, st.TokensIssued, st.APIRequests, st.APIRejected)
	// Output:
	// 200 OK
	// token requests 2, tokens issued 1, API requests 1, rejected 0
}

// NewUnstartedServer serves on a listener of your choice, such as a fixed
// port that another process knows.
func ExampleNewUnstartedServer() {
	l, err := net.Listen("tcp", "127.0.0.1:0") // for instance "127.0.0.1:8080"
	if err != nil {
		fmt.Println(err)
		return
	}
	srv := fortetest.NewUnstartedServer()
	srv.Listener = l
	srv.SetLifetime(2 * time.Minute)
	srv.Start()
	defer srv.Close()
	fmt.Println("serving on l:", srv.URL == "http://"+l.Addr().String())

	cfg := &forteauth.Config{ClientID: srv.ClientID, ClientSecret: srv.ClientSecret, TokenURL: srv.TokenURL}
	tok, err := cfg.Token(context.Background())
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("expires_in:", tok.ExpiresIn)
	// Output:
	// serving on l: true
	// expires_in: 120
}

// NewMemoryServer serves without a network, for tests that run in a
// testing/synctest bubble, where its latency, delays and holds pass on the
// bubble's fake clock:
//
//	synctest.Test(t, func(t *testing.T) {
//		srv := fortetest.NewMemoryServer()
//		defer srv.Close()
//		srv.SetLatency(5 * time.Second) // takes no real time
//		...
//	})
//
// Only its own client reaches it, so give that to forteauth as HTTPClient.
func ExampleNewMemoryServer() {
	srv := fortetest.NewMemoryServer()
	defer srv.Close()
	srv.SetLifetime(10 * time.Minute)
	cfg := &forteauth.Config{
		ClientID:     srv.ClientID,
		ClientSecret: srv.ClientSecret,
		TokenURL:     srv.TokenURL,
		HTTPClient:   srv.Client(),
	}
	fmt.Println("token URL:", cfg.TokenURL)

	tok, err := cfg.Token(context.Background())
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("expires_in:", tok.ExpiresIn)

	// cfg.Client sends API requests through srv.Client too.
	resp, err := cfg.Client(context.Background()).Get(srv.URL + "/v3/payments")
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	fmt.Println(resp.Status)
	// Output:
	// token URL: https://fortetest.invalid/auth/v1/oauth2/token
	// expires_in: 600
	// 200 OK
}
