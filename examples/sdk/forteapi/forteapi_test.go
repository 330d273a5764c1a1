package forteapi_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/forteauth/forteauth"
	"github.com/forteauth/forteauth/examples/sdk/forteapi"
	"github.com/forteauth/forteauth/fortetest"
	"go.uber.org/goleak"
	"golang.org/x/oauth2"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// An SDK's tests can run against fortetest as they would against Forte.
func TestEveryConstructorAuthenticates(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	ctx := context.Background()
	cfg := &forteauth.Config{ClientID: srv.ClientID, ClientSecret: srv.ClientSecret, TokenURL: srv.TokenURL}

	ts := cfg.TokenSource(ctx)
	fromTS1, err1 := forteapi.NewFromTokenSource(srv.URL, ts)
	fromTS2, err2 := forteapi.NewFromTokenSource(srv.URL+"/", ts)
	fromClient, err3 := forteapi.New(srv.URL, cfg.Client(ctx))
	fromConfig, err4 := forteapi.NewFromConfig(ctx, srv.URL, cfg)
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		t.Fatal(err)
	}
	for i, c := range []*forteapi.Client{fromTS1, fromTS2, fromClient, fromConfig} {
		var got struct {
			Path string `json:"path"`
		}
		if err := c.Get(ctx, "/v3/payments", &got); err != nil || got.Path != "/v3/payments" {
			t.Fatalf("client %d: %v, path %q", i, err, got.Path)
		}
	}
	if n := srv.Stats().TokenRequests; n != 3 {
		t.Fatalf("token requests = %d; want 3, the two clients sharing a TokenSource sharing one token", n)
	}
}

func TestRejectedTokenIsAnAPIError(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	c, err := forteapi.NewFromTokenSource(srv.URL, oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "not-issued"}))
	if err != nil {
		t.Fatal(err)
	}
	var apiErr *forteapi.APIError
	if err := c.Get(context.Background(), "/v3/payments", new(any)); !errors.As(err, &apiErr) || apiErr.Status != http.StatusUnauthorized || apiErr.Message == "" {
		t.Fatalf("err = %v; want an APIError for 401 with Forte's message", err)
	}
}

// A *forteauth.TokenSource sends its token only to its token endpoint's
// host unless told otherwise; NewFromTokenSource tells it the base URL's.
func TestTokenGoesToTheBaseURLsHost(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	got := make(chan string, 1)
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Get("Authorization")
		w.Write([]byte(`{"data":{}}`))
	}))
	defer api.Close()
	cfg := &forteauth.Config{ClientID: srv.ClientID, ClientSecret: srv.ClientSecret, TokenURL: srv.TokenURL}
	c, err := forteapi.NewFromTokenSource(api.URL, cfg.TokenSource(context.Background()))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Get(context.Background(), "/v3/x", new(any)); err != nil {
		t.Fatal(err)
	}
	if auth := <-got; !strings.HasPrefix(auth, "Bearer ") {
		t.Fatalf("the API on another host than the token endpoint got Authorization %q; want the token", auth)
	}
}

func TestNewRejectsBadArguments(t *testing.T) {
	if _, err := forteapi.New("sandbox-api.sandbox.lemmax.com", http.DefaultClient); err == nil {
		t.Error("New accepted a base URL without a scheme")
	}
	if _, err := forteapi.New("https://sandbox-api.sandbox.lemmax.com", nil); err == nil {
		t.Error("New accepted a nil client")
	}
}
