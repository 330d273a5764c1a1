package benchenv

import (
	"net/http"
	"net/url"

	"github.com/forteauth/forteauth"
)

// APIURL is the request the transport benchmarks and the storm send: an
// https URL on the production token endpoint's host, so that forteauth's
// Transport adds the token exactly as cfg.Client would, by its default
// host rule.
const APIURL = "https://api.prod.lemmax.com/v3/organizations/org_300005/locations/loc_115161/transactions"

// Config returns a Config whose TokenURL is forteauth.ProductionTokenURL
// and whose HTTPClient delivers the token requests to the fake endpoint at
// base (such as a fortetest.Server's URL) instead. Nothing leaves the
// machine.
func Config(base, clientID, clientSecret string) *forteauth.Config {
	return &forteauth.Config{
		ClientID:     clientID,
		ClientSecret: clientSecret,
		TokenURL:     forteauth.ProductionTokenURL,
		HTTPClient:   &http.Client{Transport: Reroute(base, http.DefaultTransport)},
	}
}

// Reroute returns a RoundTripper that sends every request to the scheme
// and host of base, keeping its path, through next.
func Reroute(base string, next http.RoundTripper) http.RoundTripper {
	u, err := url.Parse(base)
	if err != nil {
		panic("benchenv: bad base URL: " + err.Error())
	}
	return rerouter{scheme: u.Scheme, host: u.Host, next: next}
}

type rerouter struct {
	scheme, host string
	next         http.RoundTripper
}

func (r rerouter) RoundTrip(req *http.Request) (*http.Response, error) {
	// A RoundTripper may not modify the request it is given.
	out := req.Clone(req.Context())
	out.URL.Scheme, out.URL.Host, out.Host = r.scheme, r.host, ""
	return r.next.RoundTrip(out)
}
