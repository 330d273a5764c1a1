// Command httpmock shows how to test code that uses forteauth with
// github.com/jarcoal/httpmock, which answers HTTP requests from inside the
// process: nothing is sent to Forte, or anywhere. It registers a responder
// for the token endpoint that speaks Forte's contract (a JSON body with
// client_id and client_secret, answered by 201 and {"data":{...}}) and one
// for the API that checks the Bearer token.
//
//	go run ./examples/httpmock
//
// In a test, put the setup in the test function and use t.Cleanup(
// httpmock.DeactivateAndReset). fortetest, a real server on loopback, is the
// alternative when you want token lifetimes, latency and failures.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"time"

	"github.com/forteauth/forteauth"
	"github.com/jarcoal/httpmock"
	"golang.org/x/oauth2"
)

const (
	clientID     = "test-client"
	clientSecret = "test-secret"
	mockToken    = "mock-access-token"
	paymentURL   = "https://sandbox-api.sandbox.lemmax.com/v3/payments/42"
)

func main() {
	if err := run(); err != nil {
		log.Fatal("httpmock: ", err)
	}
}

func run() error {
	// Activate httpmock on the client that forteauth will use, before the
	// client or TokenSource is made: they copy its transport.
	hc := &http.Client{Timeout: 10 * time.Second}
	httpmock.ActivateNonDefault(hc)
	defer httpmock.DeactivateAndReset()

	httpmock.RegisterResponder(http.MethodPost, forteauth.SandboxTokenURL, tokenEndpoint)
	var seen string
	httpmock.RegisterResponder(http.MethodGet, paymentURL, func(req *http.Request) (*http.Response, error) {
		seen = req.Header.Get("Authorization")
		if seen != "Bearer "+mockToken {
			return httpmock.NewJsonResponse(http.StatusUnauthorized, forteError(http.StatusUnauthorized, "missing or unknown token"))
		}
		return httpmock.NewJsonResponse(http.StatusOK, map[string]any{"data": map[string]any{"payment_id": "42", "status": "settled"}})
	})

	cfg := &forteauth.Config{
		ClientID:     clientID,
		ClientSecret: clientSecret,
		TokenURL:     forteauth.SandboxTokenURL,
		HTTPClient:   hc, // token requests go through httpmock
	}
	client := cfg.Client(context.Background()) // and so do API requests

	status, err := paymentStatus(client, paymentURL) // the code under test
	if err != nil {
		return err
	}
	calls := httpmock.GetCallCountInfo()
	fmt.Printf("payment status: %s\n", status)
	fmt.Printf("token endpoint calls: %d\n", calls["POST "+forteauth.SandboxTokenURL])
	fmt.Printf("API calls: %d\n", calls["GET "+paymentURL])
	fmt.Printf("API received the token from the token endpoint: %v\n", seen == "Bearer "+mockToken)
	if status != "settled" || seen != "Bearer "+mockToken || calls["POST "+forteauth.SandboxTokenURL] != 1 {
		return errors.New("the API did not get the mock token")
	}

	// Error paths are tested the same way: here the token endpoint
	// rejects a wrong secret, and the error says so.
	bad := &forteauth.Config{ClientID: clientID, ClientSecret: "wrong", TokenURL: forteauth.SandboxTokenURL, HTTPClient: hc}
	_, err = paymentStatus(bad.Client(context.Background()), paymentURL)
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.Response.StatusCode != http.StatusUnauthorized {
		return fmt.Errorf("with a wrong secret: %v; want a 401 from the token endpoint", err)
	}
	fmt.Printf("with a wrong secret: the token endpoint answered %d\n", re.Response.StatusCode)
	return nil
}

// tokenEndpoint answers as Forte's token endpoint does.
func tokenEndpoint(req *http.Request) (*http.Response, error) {
	var body struct {
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
	}
	if req.Header.Get("Content-Type") != "application/json" || json.NewDecoder(req.Body).Decode(&body) != nil {
		return httpmock.NewJsonResponse(http.StatusBadRequest, forteError(http.StatusBadRequest, "invalid body"))
	}
	if body.ClientID != clientID || body.ClientSecret != clientSecret {
		return httpmock.NewJsonResponse(http.StatusUnauthorized, forteError(http.StatusUnauthorized, "invalid params"))
	}
	return httpmock.NewJsonResponse(http.StatusCreated, map[string]any{"data": map[string]any{
		"access_token": mockToken,
		"token_type":   "Bearer",
		"expires_in":   3600,
	}})
}

// forteError is Forte's error body.
func forteError(status int, msg string) any {
	return map[string]any{"error": map[string]any{"message": msg, "reason": http.StatusText(status), "status": status}}
}

// paymentStatus stands for the code you test: it knows nothing of tokens.
func paymentStatus(client *http.Client, url string) (string, error) {
	resp, err := client.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("payment: %s", resp.Status)
	}
	var p struct {
		Data struct {
			Status string `json:"status"`
		} `json:"data"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&p); err != nil {
		return "", err
	}
	return p.Data.Status, nil
}
