package benchenv

import (
	"context"
	"time"

	"github.com/forteauth/forteauth"
	"golang.org/x/oauth2"
)

// JSONFetcher is the token source a Go user would hand-roll for Forte with
// x/oauth2: every Token call POSTs the credentials to the token endpoint
// and parses {"data":{...}}, with no caching. It uses Config.Token, which is
// exactly that fetch, so that the anchor and forteauth differ only in what
// they do around it.
type JSONFetcher struct{ Config *forteauth.Config }

// Token implements oauth2.TokenSource.
func (f JSONFetcher) Token() (*oauth2.Token, error) {
	return f.Config.Token(context.Background())
}

// Anchor is the x/oauth2 reference: JSONFetcher wrapped in
// oauth2.ReuseTokenSource, as oauth2.NewClient would wrap it. earlyExpiry
// is ReuseTokenSourceWithExpiry's; 0 keeps x/oauth2's default of 10 s.
func Anchor(cfg *forteauth.Config, earlyExpiry time.Duration) oauth2.TokenSource {
	if earlyExpiry == 0 {
		return oauth2.ReuseTokenSource(nil, JSONFetcher{cfg})
	}
	return oauth2.ReuseTokenSourceWithExpiry(nil, JSONFetcher{cfg}, earlyExpiry)
}

// ScaledEarlyExpiry is x/oauth2's 10 s early expiry scaled from a one-hour
// token to one of the given lifetime. With a 1 s token the default 10 s
// would make ReuseTokenSource treat every token as expired on arrival and
// fetch on every call, which measures nothing useful; scaled, it keeps the
// token for the same share of its life as it would a real Forte token.
func ScaledEarlyExpiry(lifetime time.Duration) time.Duration {
	return max(time.Nanosecond, lifetime/(time.Hour/(10*time.Second)))
}
