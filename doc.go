// Package forteauth obtains, caches and attaches the Bearer tokens that the
// Forte Payments API requires.
//
// Forte's token endpoint (POST /auth/v1/oauth2/token) takes the client ID
// and secret as a JSON body and answers with the token wrapped in a "data"
// object, which golang.org/x/oauth2/clientcredentials cannot speak. This
// package speaks it and fits into the x/oauth2 ecosystem: a *TokenSource is
// an oauth2.TokenSource, and tokens are *oauth2.Token values.
//
// # Three ways to plug in
//
// An *http.Client that adds the token, from Config.Client; most programs
// need only this:
//
//	cfg := &forteauth.Config{
//		ClientID:     os.Getenv("FORTE_CLIENT_ID"),
//		ClientSecret: os.Getenv("FORTE_CLIENT_SECRET"),
//		TokenURL:     forteauth.SandboxTokenURL,
//	}
//	client := cfg.Client(ctx) // make one and share it
//	resp, err := client.Get("https://sandbox-api.sandbox.lemmax.com/...")
//
// A Transport around a client you already have, keeping its transport,
// proxy and timeouts:
//
//	client := &http.Client{
//		Transport: &forteauth.Transport{Source: cfg.TokenSource(ctx), Base: existing.Transport},
//		Timeout:   existing.Timeout,
//	}
//
// A TokenSource, for oauth2.NewClient or anything else that takes an
// oauth2.TokenSource, or to take tokens yourself:
//
//	ts := cfg.TokenSource(ctx)
//	client := oauth2.NewClient(ctx, ts) // oauth2.Transport: no 401 recovery, the token to every host
//	tok, err := ts.Token()
//
// Config.Client and Transport send the token only to the API's hosts
// (Config.APIHosts, by default the token endpoint's host, which is also
// the API's), never over plain http but to a loopback host, and never
// across a redirect to another host; they recover once from a 401. A
// TokenSource's guarantees are in its documentation: callers never wait
// while a usable token is cached, and wait for one shared fetch when none
// is.
//
// # In an SDK
//
// An SDK built on this package should accept an *http.Client, or an
// oauth2.TokenSource, rather than credentials: its users keep their own
// transport, timeouts and secret handling, and can share one
// *TokenSource between clients (one per set of credentials and process is
// enough; it needs no Close and starts no goroutine that outlives a
// fetch). Never make a TokenSource, or call Config.Client, per request:
// each starts with no token, so each request would fetch one, without the
// cache or the cool-down. Give a *TokenSource to a Transport as it is:
// wrapping it in
// oauth2.ReuseTokenSource adds a lock and loses the context-aware wait
// and the 401 recovery. Pass each request's context: a caller waits for a
// token no longer than it allows. Set Transport.Hosts from the API base
// URL the SDK is given, so that every environment gets its token.
//
// # A fleet
//
// Config.Store shares one token among the processes of a fleet, so that
// it makes about one token request per token lifetime; package
// github.com/forteauth/forteauth/redisstore implements a Store on Redis.
// TokenSource.Stats reports what a source has done, and module
// github.com/forteauth/forteauth/forteotel exports it as OpenTelemetry
// metrics.
//
// # Testing
//
// Package fortetest provides a fake token endpoint and API, on a loopback
// server or in memory for tests inside a testing/synctest bubble.
//
// docs/design.md in the repository says how the cache, the shared store
// and the redaction of the secret work inside; docs/troubleshooting.md
// says what each error and log line means and what to do.
package forteauth
