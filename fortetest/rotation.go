package fortetest

import "slices"

// Credentials are a client ID and secret that the token endpoint accepts.
type Credentials struct {
	ClientID     string
	ClientSecret string
}

// AcceptCredentials makes the token endpoint accept exactly creds from now
// on, in place of ClientID and ClientSecret: one pair, or two while a
// rotation overlaps, as Forte holds an old and a new secret. Requests with
// other credentials are answered 401, and counted in
// Stats.CredentialsRejected. Tokens issued already stay valid until
// RevokeUnaccepted.
//
// A rotation, as a test drives it: AcceptCredentials(old, new), then move
// the code under test to new, then AcceptCredentials(new) and
// RevokeUnaccepted.
func (s *Server) AcceptCredentials(creds ...Credentials) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.accepted = append([]Credentials{}, creds...) // not nil: none accepted is accepting none
}

// RevokeUnaccepted makes the API reject, from now on, every token issued
// to credentials the endpoint no longer accepts, as Forte does when a
// secret is retired, and returns how many it revoked.
func (s *Server) RevokeUnaccepted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for tok, t := range s.tokens {
		if !s.acceptsLocked(t.to) {
			delete(s.tokens, tok)
			n++
		}
	}
	return n
}

// accepts reports whether the endpoint accepts creds.
func (s *Server) accepts(creds Credentials) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.acceptsLocked(creds)
}

func (s *Server) acceptsLocked(creds Credentials) bool {
	if s.accepted == nil {
		return creds == Credentials{s.ClientID, s.ClientSecret}
	}
	return slices.Contains(s.accepted, creds)
}
