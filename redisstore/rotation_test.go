package redisstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/forteauth/forteauth"
	"github.com/forteauth/forteauth/fortetest"
)

// TestTwoSecretsShareTwoTokensThroughOneRedis: during a rotation, the
// processes on the new secret and those still on the old one share one
// Redis; each group shares a token of its own, under its own key, for at
// most one token request per lifetime, and none takes the other's.
func TestTwoSecretsShareTwoTokensThroughOneRedis(t *testing.T) {
	const n = 10
	srv := newServer(t, shortLifetime)
	one := fortetest.Credentials{ClientID: srv.ClientID, ClientSecret: srv.ClientSecret}
	two := fortetest.Credentials{ClientID: srv.ClientID, ClientSecret: "the-new-secret-" + randomHex(8)}
	srv.AcceptCredentials(one, two)
	logger, logs := newLogger()
	group := func(c fortetest.Credentials) []*forteauth.TokenSource {
		var sources []*forteauth.TokenSource
		for range n {
			cfg := shortConfig(srv, newStore(t, sharedAddr), logger)
			cfg.ClientID, cfg.ClientSecret = c.ClientID, c.ClientSecret
			sources = append(sources, cfg.TokenSource(context.Background()))
		}
		return sources
	}
	groups := [][]*forteauth.TokenSource{group(one), group(two)}

	run := callContinuously(t, callerPace, append(groups[0], groups[1]...)...)
	time.Sleep(time.Duration(fleetLifetimes()) * shortLifetime)
	run.end()
	run.check(t)

	l := lifetimesIn(run.elapsed, shortLifetime)
	var last [2]string
	for i, g := range groups {
		var requests int64
		for _, ts := range g {
			requests += ts.Stats().TokenRequests
			tok, err := ts.Token()
			if err != nil {
				t.Fatal(err)
			}
			last[i] = tok.AccessToken
		}
		t.Logf("group %d: %d sources, %d token requests over %d lifetimes (target <= L+1 = %d)", i+1, n, requests, l, l+1)
		if requests > int64(l+1) {
			t.Errorf("group %d made %d token requests over %d lifetimes, want at most %d", i+1, requests, l, l+1)
		}
	}
	if last[0] == last[1] {
		t.Error("the two groups ended on one token: a group took the other's")
	}
	if logs.count(logStoreFailed) > 0 {
		t.Errorf("store faults:\n%s", logs)
	}
}
