package benchenv

import (
	"crypto/rand"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
)

// NewAnyClientServer starts a token endpoint that issues a new one-hour
// token to whatever credentials it is sent, for measuring many sources
// with distinct client IDs. It keeps no state, so it adds nothing to the
// process's heap between requests. Close it when done.
func NewAnyClientServer() *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		b := make([]byte, 24)
		rand.Read(b)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"data":{"access_token":"anyclient.`+hex.EncodeToString(b)+`","token_type":"Bearer","expires_in":3600}}`)
	}))
}
