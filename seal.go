package forteauth

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"time"

	"golang.org/x/oauth2"
)

// sealVersion is the first byte of every sealed value, so that a change
// of format is told apart from tampering.
const sealVersion = 1

// stored is a token as a Store holds it: the token, and when its request
// was sent, on the wall clock of the source that fetched it. The zero
// value is no token.
type stored struct {
	tok  *oauth2.Token
	sent time.Time
}

// same reports whether a and b hold one token, fetched at one time.
func (a stored) same(b stored) bool {
	if a.tok == nil || b.tok == nil {
		return a.tok == b.tok
	}
	return a.tok.AccessToken == b.tok.AccessToken && a.sent.Equal(b.sent)
}

// sealer names and seals the tokens of one set of credentials in a Store.
// Both its key name and its sealing key are derived from the client secret
// with HKDF, bound to the token URL and client ID, so that sources share a
// value only if they hold the same credentials for the same endpoint.
type sealer struct {
	key  string // holds no secret
	aead cipher.AEAD
}

func newSealer(tokenURL, clientID, secret string) (*sealer, error) {
	salt := []byte(tokenURL + "\x00" + clientID)
	id, err := hkdf.Key(sha256.New, []byte(secret), salt, "forteauth store key v1", 16)
	if err != nil {
		return nil, err
	}
	sealKey, err := hkdf.Key(sha256.New, []byte(secret), salt, "forteauth store seal v1", 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(sealKey)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &sealer{key: "forteauth:v1:" + hex.EncodeToString(id), aead: aead}, nil
}

// sealedToken is the plain text of a sealed value.
type sealedToken struct {
	AccessToken string `json:"access_token"`
	ExpiresIn   int64  `json:"expires_in"`
	Sent        int64  `json:"sent"` // Unix ns
}

// seal encrypts st for the Store, bound to the key name so that a value
// cannot be moved to another key.
func (s *sealer) seal(st stored) []byte {
	plain, _ := json.Marshal(sealedToken{st.tok.AccessToken, st.tok.ExpiresIn, st.sent.UnixNano()})
	out := make([]byte, 1+s.aead.NonceSize(), 1+s.aead.NonceSize()+len(plain)+s.aead.Overhead())
	out[0] = sealVersion
	rand.Read(out[1:]) // never fails since Go 1.24
	return s.aead.Seal(out, out[1:], plain, []byte(s.key))
}

// open reverses seal. Anything that was not sealed by a holder of the same
// credentials for the same key, or does not hold a valid token, is an
// error.
func (s *sealer) open(v []byte) (stored, error) {
	n := s.aead.NonceSize()
	if len(v) < 1+n || v[0] != sealVersion {
		return stored{}, errors.New("not a sealed token")
	}
	plain, err := s.aead.Open(nil, v[1:1+n], v[1+n:], []byte(s.key))
	if err != nil {
		return stored{}, errors.New("sealed value does not open: tampered with, or sealed under another secret")
	}
	var t sealedToken
	if err := json.Unmarshal(plain, &t); err != nil || !validHeaderToken(t.AccessToken) || t.ExpiresIn <= 0 || t.ExpiresIn > maxExpiresIn {
		return stored{}, errors.New("sealed value holds no valid token")
	}
	tok := &oauth2.Token{AccessToken: t.AccessToken, TokenType: "Bearer", ExpiresIn: t.ExpiresIn}
	// The Store keeps only the documented fields, so Extra has those.
	extra := map[string]any{"access_token": t.AccessToken, "token_type": "Bearer", "expires_in": float64(t.ExpiresIn)}
	return stored{tok.WithExtra(extra), time.Unix(0, t.Sent)}, nil
}
