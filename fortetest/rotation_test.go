package fortetest

import (
	"encoding/json"
	"net/http"
	"testing"
)

// issueFor returns the status of a token request with creds, and its token.
func issueFor(t *testing.T, s *Server, creds Credentials) (int, string) {
	t.Helper()
	b, _ := json.Marshal(map[string]string{"client_id": creds.ClientID, "client_secret": creds.ClientSecret})
	resp, body := post(t, s.Client(), s.TokenURL, "application/json", string(b))
	var got struct {
		Data struct {
			AccessToken string `json:"access_token"`
		} `json:"data"`
	}
	json.Unmarshal([]byte(body), &got)
	return resp.StatusCode, got.Data.AccessToken
}

func TestARotationAsForteRunsIt(t *testing.T) {
	s := NewMemoryServer()
	defer s.Close()
	old := Credentials{s.ClientID, s.ClientSecret}
	next := Credentials{s.ClientID, "the-new-secret"}
	if code, _ := issueFor(t, s, next); code != http.StatusUnauthorized {
		t.Fatalf("a secret not yet added: %d, want 401", code)
	}
	_, oldTok := issueFor(t, s, old)

	s.AcceptCredentials(old, next) // the overlap
	for _, c := range []Credentials{old, next} {
		if code, _ := issueFor(t, s, c); code != http.StatusCreated {
			t.Fatalf("during the overlap, %s's secret got %d, want 201", c.ClientSecret, code)
		}
	}
	_, newTok := issueFor(t, s, next)

	s.AcceptCredentials(next) // the old secret retired
	if code, _ := issueFor(t, s, old); code != http.StatusUnauthorized {
		t.Fatalf("a retired secret: %d, want 401", code)
	}
	if code := call(t, s, oldTok); code != http.StatusOK {
		t.Fatalf("before RevokeUnaccepted, a token of the retired secret got %d, want 200", code)
	}
	if n := s.RevokeUnaccepted(); n != 2 {
		t.Fatalf("RevokeUnaccepted revoked %d tokens, want the 2 issued to the retired secret", n)
	}
	if code := call(t, s, oldTok); code != http.StatusUnauthorized {
		t.Errorf("a token of the retired secret got %d after RevokeUnaccepted, want 401", code)
	}
	if code := call(t, s, newTok); code != http.StatusOK {
		t.Errorf("a token of the new secret got %d, want 200", code)
	}
	if st := s.Stats(); st.CredentialsRejected != 2 || st.TokensIssued != 4 {
		t.Errorf("Stats: %d requests rejected for their credentials and %d tokens issued, want 2 and 4", st.CredentialsRejected, st.TokensIssued)
	}
}

func TestAcceptingNoCredentialsRejectsEveryTokenRequest(t *testing.T) {
	s := NewMemoryServer()
	defer s.Close()
	s.AcceptCredentials()
	if code, _ := issueFor(t, s, Credentials{s.ClientID, s.ClientSecret}); code != http.StatusUnauthorized {
		t.Errorf("with no credentials accepted, the default ones got %d, want 401", code)
	}
}
