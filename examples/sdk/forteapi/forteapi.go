// Package forteapi is a tiny client for the Forte Payments API, written the
// way an SDK built on forteauth should be: its users decide how requests
// are authenticated, and can share one token between this client and the
// rest of their program.
//
// It offers three constructors, from the most to the least control left
// to the user:
//
//   - New takes an *http.Client that already adds the token, such as one
//     from forteauth.Config.Client; the user keeps the transport, the
//     timeouts and the secret handling.
//   - NewFromTokenSource takes an oauth2.TokenSource, such as a
//     *forteauth.TokenSource that the user shares with other clients.
//   - NewFromConfig takes a *forteauth.Config, for users who have nothing
//     else.
//
// See "In an SDK" in the forteauth package documentation.
package forteapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/forteauth/forteauth"
	"golang.org/x/oauth2"
)

// Client calls the API at one base URL. It is safe for concurrent use.
type Client struct {
	base string
	hc   *http.Client
}

// New returns a Client that sends requests for baseURL, such as
// "https://sandbox-api.sandbox.lemmax.com", through hc. hc must add the
// token itself: forteapi never sees credentials.
func New(baseURL string, hc *http.Client) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("forteapi: base URL %q is not an absolute URL", baseURL)
	}
	if hc == nil {
		return nil, errors.New("forteapi: New needs an *http.Client")
	}
	return &Client{base: strings.TrimSuffix(baseURL, "/"), hc: hc}, nil
}

// NewFromTokenSource returns a Client that adds tokens from ts, and sends
// them only to baseURL's host. A *forteauth.TokenSource keeps its
// context-aware wait and its 401 recovery; any other source should cache
// (wrap it in oauth2.ReuseTokenSource), since it is asked on every request.
func NewFromTokenSource(baseURL string, ts oauth2.TokenSource) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("forteapi: base URL %q is not an absolute URL", baseURL)
	}
	return New(baseURL, &http.Client{
		Transport: &forteauth.Transport{Source: ts, Hosts: []string{u.Host}},
		Timeout:   30 * time.Second,
	})
}

// NewFromConfig returns a Client whose tokens come from cfg, as
// cfg.Client(ctx) makes them; ctx supplies values only (see
// forteauth.Config.TokenSource). The token goes only to the host of
// cfg.TokenURL, which for Forte is the API's host too.
func NewFromConfig(ctx context.Context, baseURL string, cfg *forteauth.Config) (*Client, error) {
	return New(baseURL, cfg.Client(ctx))
}

// Get sends GET baseURL+path and decodes the "data" member of the answer
// into v. ctx bounds the request, including any wait for a token.
func (c *Client) Get(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return fmt.Errorf("forteapi: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("forteapi: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("forteapi: reading %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		e := &APIError{Status: resp.StatusCode}
		var forte struct {
			Error struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if json.Unmarshal(body, &forte) == nil {
			e.Message = forte.Error.Message
		}
		return e
	}
	var answer struct {
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(body, &answer); err != nil {
		return fmt.Errorf("forteapi: decoding %s: %w", path, err)
	}
	if err := json.Unmarshal(answer.Data, v); err != nil {
		return fmt.Errorf("forteapi: decoding %s: %w", path, err)
	}
	return nil
}

// APIError is an answer other than 200 OK.
type APIError struct {
	Status  int    // the HTTP status
	Message string // Forte's error.message, if any; not for programs to act on
}

func (e *APIError) Error() string {
	return fmt.Sprintf("forteapi: the API answered %d %s: %s", e.Status, http.StatusText(e.Status), e.Message)
}
