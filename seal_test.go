package forteauth

import (
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

func mustSealer(t *testing.T, tokenURL, clientID, secret string) *sealer {
	t.Helper()
	sl, err := newSealer(tokenURL, clientID, secret)
	if err != nil {
		t.Fatal(err)
	}
	return sl
}

func TestSealerKeyDependsOnURLClientAndSecret(t *testing.T) {
	k := mustSealer(t, SandboxTokenURL, "id", "secret-one").key
	if strings.Contains(k, "secret-one") || mustSealer(t, SandboxTokenURL, "id", "secret-one").key != k {
		t.Fatalf("key %q holds the secret or is not stable", k)
	}
	if strings.ContainsAny(k, "{}") {
		t.Errorf("key %q has braces: naming for a Redis Cluster is redisstore's business", k)
	}
	for _, other := range []*sealer{
		mustSealer(t, SandboxTokenURL, "id", "secret-two"),
		mustSealer(t, SandboxTokenURL, "id2", "secret-one"),
		mustSealer(t, ProductionTokenURL, "id", "secret-one"),
	} {
		if other.key == k {
			t.Fatalf("the key %q did not change with the credentials or the token URL", k)
		}
	}
}

func TestSealedValueOpensOnlyUnderItsKeyAndSecret(t *testing.T) {
	sl := mustSealer(t, SandboxTokenURL, "id", "secret")
	sent := time.Unix(1_800_000_000, 123)
	v := sl.seal(stored{&oauth2.Token{AccessToken: "token-value", ExpiresIn: 3600}, sent})
	st, err := sl.open(v)
	if err != nil || st.tok.AccessToken != "token-value" || st.tok.ExpiresIn != 3600 || !st.sent.Equal(sent) {
		t.Fatalf("open(seal) = %+v, %v", st, err)
	}
	if st.tok.Extra("expires_in") != float64(3600) {
		t.Errorf("Extra(expires_in) = %#v, want float64(3600) as from the endpoint", st.tok.Extra("expires_in"))
	}
	moved := *sl // same sealing key
	moved.key = sl.key + "-elsewhere"
	if _, err := moved.open(v); err == nil {
		t.Error("a value moved to another key opened")
	}
	other := mustSealer(t, SandboxTokenURL, "id", "another-secret")
	other.key = sl.key // at the same key, under another secret
	if _, err := other.open(v); err == nil {
		t.Error("a value opened under another secret")
	}
	for _, bad := range [][]byte{nil, {sealVersion}, append([]byte{sealVersion + 1}, v[1:]...), append(v[:len(v)-1:len(v)-1], v[len(v)-1]^1)} {
		if st, err := sl.open(bad); err == nil || st.tok != nil {
			t.Errorf("open of %d bad bytes = %+v, %v; want an error and no token", len(bad), st, err)
		}
	}
}

func TestSealedValuesAreOpaque(t *testing.T) {
	sl := mustSealer(t, SandboxTokenURL, "client-id-123", testSecret)
	v := string(sl.seal(stored{&oauth2.Token{AccessToken: testAccessToken, ExpiresIn: 3600}, time.Now()}))
	for _, s := range []string{testSecret, "client-id-123", testAccessToken} {
		if strings.Contains(v, s) || strings.Contains(sl.key, s) {
			t.Fatalf("the key or the sealed value holds a secret, the client ID or the token in clear")
		}
	}
	if w := string(sl.seal(stored{&oauth2.Token{AccessToken: testAccessToken, ExpiresIn: 3600}, time.Now()})); w == v {
		t.Error("two seals of one token are equal: the nonce is not random")
	}
}
