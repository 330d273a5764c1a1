// Package forteauth obtains, caches and attaches the Bearer tokens that the
// Forte Payments API requires.
//
// Forte's token endpoint (POST /auth/v1/oauth2/token) takes the client ID
// and secret as a JSON body and answers with the token wrapped in a "data"
// object, which golang.org/x/oauth2/clientcredentials cannot speak. This
// package speaks it and fits into the x/oauth2 ecosystem: a *TokenSource is
// an oauth2.TokenSource, and tokens are *oauth2.Token values.
//
// Most programs need only Config.Client:
//
//	cfg := &forteauth.Config{
//		ClientID:     os.Getenv("FORTE_CLIENT_ID"),
//		ClientSecret: os.Getenv("FORTE_CLIENT_SECRET"),
//		TokenURL:     forteauth.SandboxTokenURL,
//	}
//	client := cfg.Client(ctx) // share it; it refreshes tokens as needed
//	resp, err := client.Get("https://sandbox-api.sandbox.lemmax.com/...")
//
// A TokenSource hands out a cached token without locking while it is fresh,
// refreshes it in the background before it expires, makes concurrent
// callers share one fetch when they must wait, and lets each caller stop
// waiting when its context ends. Transport adds the token only to the API's
// host, never over plain http, and recovers once from a 401.
//
// The package fortetest provides a fake token endpoint and API for tests.
package forteauth
