package forteauth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/forteauth/forteauth/fortetest"
	"github.com/forteauth/forteauth/internal/leaktest"
	"golang.org/x/oauth2"
)

func TestReturnedTokensAreCopies(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	ts := newTestSource(t, withServer(srv)).ts

	a := mustToken(t, ts)
	want := a.AccessToken
	a.AccessToken, a.Expiry, a.TokenType = "mutated", time.Time{}, "MAC"
	b := mustToken(t, ts)
	if b.AccessToken != want || b.TokenType != "Bearer" || b.Expiry.IsZero() {
		t.Fatalf("a caller's change to its token reached the next caller: %q %q %v", b.AccessToken, b.TokenType, b.Expiry)
	}
	if e := ts.cache.Load(); e.tok.AccessToken != want || e.header != "Bearer "+want {
		t.Fatalf("cached entry was modified")
	}
}

func TestCallerWhoseContextEndsStopsWaitingOthersGetTheToken(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	ts := newTestSource(t, withServer(srv)).ts

	release := srv.Hold()
	defer release()
	ctx, cancel := context.WithCancel(context.Background())
	gaveUp := make(chan error, 1)
	go func() {
		_, err := ts.TokenContext(ctx)
		gaveUp <- err
	}()
	patient := make(chan *oauth2.Token, 1)
	go func() {
		tok, err := ts.Token()
		if err != nil {
			t.Errorf("patient caller: %v", err)
		}
		patient <- tok
	}()
	eventually(t, "the fetch to reach the server", func() bool { return tokenRequests(srv) == 1 })

	cancel()
	select {
	case err := <-gaveUp:
		if !errors.Is(err, context.Canceled) || !strings.HasPrefix(err.Error(), "forteauth: ") {
			t.Fatalf("cancelled caller got %v, want a forteauth error wrapping context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a caller whose context ended kept waiting for the fetch")
	}
	select {
	case <-patient:
		t.Fatal("the patient caller returned before the fetch completed")
	default:
	}

	release()
	select {
	case tok := <-patient:
		if tok == nil || tok.AccessToken == "" {
			t.Fatal("patient caller got no token")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the shared fetch did not complete after one waiter gave up")
	}
	mustToken(t, ts)
	if n := tokenRequests(srv); n != 1 {
		t.Fatalf("token requests = %d, want 1: the fetch must go on and fill the cache", n)
	}
}

func TestCallerWithEndedContextStartsNoFetch(t *testing.T) {
	leaktest.Quiesce(t)
	srv := fortetest.NewServer()
	defer srv.Close()
	release := srv.Hold() // a fetch, if started, stays in flight where it can be seen
	defer release()
	ts := newTestSource(t, withServer(srv)).ts
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := ts.TokenContext(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if n := leaktest.Count(leaktest.SharedFetch); n != 0 {
		t.Fatalf("a caller whose context had ended started a fetch (%d running)", n)
	}
}

func TestInvalidateDropsOnlyTheCachedToken(t *testing.T) {
	srv := fortetest.NewServer()
	defer srv.Close()
	ts := newTestSource(t, withServer(srv)).ts
	first := mustToken(t, ts)

	ts.Invalidate(&oauth2.Token{AccessToken: "some-other-token"})
	if mustToken(t, ts).AccessToken != first.AccessToken || tokenRequests(srv) != 1 {
		t.Fatal("invalidating a token that is not cached dropped the cached one")
	}
	ts.Invalidate(first) // a copy: compared by value
	second := mustToken(t, ts)
	if second.AccessToken == first.AccessToken || tokenRequests(srv) != 2 {
		t.Fatal("Invalidate(cached token) did not lead to a new fetch")
	}
	ts.Invalidate(first) // stale news: must not drop second
	if mustToken(t, ts).AccessToken != second.AccessToken || tokenRequests(srv) != 2 {
		t.Fatal("invalidating an old token dropped the new one")
	}
	ts.Invalidate(nil)
	if ts.cache.Load() != nil {
		t.Fatal("Invalidate(nil) kept the cached token")
	}
}

func TestTokenSourceFormattingHidesSecretAndToken(t *testing.T) {
	srv := newForteServer(t)
	empty := configFor(srv.TokenURL).TokenSource(context.Background())
	fetched, token := fetchedSource(t)
	for _, tc := range []struct {
		name string
		ts   *TokenSource
	}{{"before any fetch", empty}, {"holding a token", fetched}} {
		t.Run(tc.name, func(t *testing.T) {
			for how, s := range formatAll(tc.ts) {
				assertAbsent(t, how+" output", s, append(printedForms(testSecret), printedForms(token)...)...)
				if !strings.Contains(s, testClientID) {
					t.Errorf("%s output %q does not show ClientID", how, hide(s, token))
				}
			}
		})
	}
	if s := fmt.Sprint(fetched); !strings.Contains(s, token[:4]) || !strings.Contains(s, redacted) {
		t.Errorf("output %q does not identify the token by its prefix and mark the rest redacted", hide(s, token))
	}
	if s := fmt.Sprintf("%v", (*TokenSource)(nil)); s != "(*forteauth.TokenSource)(nil)" {
		t.Errorf("nil *TokenSource prints %q", s)
	}
}

func TestSkippedHostsStopBeingRememberedWhenFull(t *testing.T) {
	ts := newTestSource(t).ts
	for i := range maxSkippedHosts + 10 {
		ts.sentWithoutToken(context.Background(), fmt.Sprint("host-", i), nil)
	}
	n := 0
	ts.skipped.Range(func(any, any) bool { n++; return true })
	if n != maxSkippedHosts {
		t.Fatalf("%d hosts remembered, want at most %d", n, maxSkippedHosts)
	}
}
