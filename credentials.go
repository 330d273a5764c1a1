package forteauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// Credentials are a client ID and secret issued by Forte. Printed with
// fmt, logged with log/slog or encoded with encoding/json, a Credentials
// shows "[REDACTED]" for a ClientSecret that is set.
type Credentials struct {
	ClientID     string
	ClientSecret string
}

// ErrCredentials is wrapped by every error that comes from
// Config.Credentials: the func failed, or returned an empty client ID or
// secret, or, from CredentialsFromFiles, a file is missing, unreadable or
// empty. The error from the func, or from reading a file, is wrapped too,
// so errors.Is(err, fs.ErrNotExist) works.
var ErrCredentials = errors.New("forteauth: no usable credentials")

// CredentialsFromFiles returns a Credentials func that reads the client ID
// and the secret from two files at each call (one trailing newline
// dropped), following symlinks, as Kubernetes Secret volumes and Vault
// Agent write them. A file that changes takes effect at the next token
// fetch; none is read on a cache hit.
//
// The two files are read through the same resolved directory when they
// are links into one, as Kubernetes makes them, so that a swap between the
// two reads cannot pair one's old value with the other's new one; files
// rewritten in place are checked by reading the first again. A read that
// fails is tried twice more at once: a file being swapped can be missing
// for an instant. Its errors wrap ErrCredentials and the error of the
// read, and name the file, never its content.
func CredentialsFromFiles(clientIDFile, clientSecretFile string) func(context.Context) (Credentials, error) {
	return func(ctx context.Context) (Credentials, error) {
		var err error
		for range 3 {
			if err := ctx.Err(); err != nil {
				return Credentials{}, err
			}
			var cr Credentials
			if cr, err = readPair(clientIDFile, clientSecretFile); err == nil {
				return cr, nil
			}
		}
		return Credentials{}, err
	}
}

// readPair reads the client ID and the secret from their files, after
// following their symlinks, which must lead into one directory if the
// files are in one; then it reads the client ID again, which must not
// have changed.
func readPair(idFile, secretFile string) (Credentials, error) {
	idPath, idOK := resolve(idFile)
	secretPath, secretOK := resolve(secretFile)
	if idOK && secretOK && filepath.Dir(idFile) == filepath.Dir(secretFile) && filepath.Dir(idPath) != filepath.Dir(secretPath) {
		return Credentials{}, fmt.Errorf("%w: %s and %s were swapped while they were read", ErrCredentials, idFile, secretFile)
	}
	id, err := readCredential(idPath, idFile, "client ID")
	if err != nil {
		return Credentials{}, err
	}
	secret, err := readCredential(secretPath, secretFile, "client secret")
	if err != nil {
		return Credentials{}, err
	}
	if again, err := readCredential(idFile, idFile, "client ID"); err != nil || again != id {
		return Credentials{}, fmt.Errorf("%w: %s changed while the credentials were read", ErrCredentials, idFile)
	}
	return Credentials{ClientID: id, ClientSecret: secret}, nil
}

// resolve returns path with its symlinks followed, and true; or path
// itself and false if they cannot be, so that the read says why.
func resolve(path string) (string, bool) {
	if p, err := filepath.EvalSymlinks(path); err == nil {
		return p, true
	}
	return path, false
}

// readCredential reads one value from the file at path, which name, as
// the caller gave it, leads to.
func readCredential(path, name, what string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%w: reading the %s from %s: %w", ErrCredentials, what, name, err)
	}
	s := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if s == "" {
		return "", fmt.Errorf("%w: the %s file %s is empty", ErrCredentials, what, name)
	}
	return s, nil
}

// Format implements fmt.Formatter: every verb prints c with ClientSecret,
// if set, as "[REDACTED]".
func (c Credentials) Format(f fmt.State, verb rune) {
	fmt.Fprintf(f, fmt.FormatString(f, verb), c.printable())
}

// LogValue implements slog.LogValuer with the same content as Format.
func (c Credentials) LogValue() slog.Value {
	if c.ClientSecret != "" {
		c.ClientSecret = redacted
	}
	return slog.GroupValue(slog.String("client_id", c.ClientID), slog.String("client_secret", c.ClientSecret))
}

// MarshalJSON encodes c with ClientSecret, if set, as "[REDACTED]".
func (c Credentials) MarshalJSON() ([]byte, error) { return json.Marshal(c.printable()) }

// printable is c as it may be shown, in a type of its own, so that
// printing it does not call Format again, named Credentials so that %#v
// prints "forteauth.Credentials{...}".
func (c Credentials) printable() any {
	type Credentials struct{ ClientID, ClientSecret string }
	if c.ClientSecret != "" {
		c.ClientSecret = redacted
	}
	return Credentials(c)
}

// credentials is where a TokenSource, or one call of Config.Token, gets
// its client credentials: Config's two fields, or its Credentials func,
// called once per fetch. It remembers the credentials the endpoint last
// accepted, to fall back on while a new secret is not yet active.
type credentials struct {
	fn     func(context.Context) (Credentials, error)
	red    *redactor // learns every secret before it is sent
	log    *slog.Logger
	counts *counters

	mu       sync.Mutex
	last     Credentials // what fn returned last
	accepted Credentials // what the endpoint last issued a token for
}

// get calls the source once.
func (c *credentials) get(ctx context.Context) (Credentials, error) {
	cr, err := c.fn(ctx)
	switch {
	case err != nil && c.red.holds(err.Error()):
		err = fmt.Errorf("%w: Config.Credentials failed: %s", ErrCredentials, withheld)
	case err != nil && !errors.Is(err, ErrCredentials):
		err = fmt.Errorf("%w: Config.Credentials failed: %w", ErrCredentials, err)
	case err == nil && (cr.ClientID == "" || cr.ClientSecret == ""):
		err = fmt.Errorf("%w: Config.Credentials returned an empty client ID or secret", ErrCredentials)
	}
	if err != nil {
		c.counts.credentialFailures.Add(1)
		return Credentials{}, err
	}
	c.red.remember(cr)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last != cr && c.last != (Credentials{}) {
		c.counts.credentialChanges.Add(1)
	}
	c.last = cr
	return cr, nil
}

// clientID returns the client ID last used, for printing.
func (c *credentials) clientID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last.ClientID
}

// obtain fetches a token with cr, the credentials get returned for this
// fetch, and recovers from the endpoint's rejection of them (400, 401 or
// 403): it asks the source again and, if that gives other credentials,
// tries them at once; if the newest are rejected where the endpoint last
// accepted others, as while a new secret is not active yet, it tries
// those once. It returns the token and the credentials that got it, and
// counts its requests in info.
func (c *credentials) obtain(ctx context.Context, p *endpoint, cr Credentials, info *FetchInfo) (fetched, Credentials, error) {
	f, err := p.fetch(ctx, cr, info)
	if !rejected(err) {
		return c.settle(f, cr, err)
	}
	if again, gerr := c.get(ctx); gerr == nil && again != cr {
		cr = again
		if f, err = p.fetch(ctx, cr, info); !rejected(err) {
			return c.settle(f, cr, err)
		}
	}
	c.mu.Lock()
	prev := c.accepted
	c.mu.Unlock()
	if prev == (Credentials{}) || prev == cr {
		return fetched{}, cr, err
	}
	c.counts.credentialFallbacks.Add(1)
	c.log.WarnContext(ctx, "forteauth: the token endpoint rejected the newest credentials; trying the ones it last accepted, as while a new secret is not active yet",
		"client_id", cr.ClientID, "error", err)
	if f, perr := p.fetch(ctx, prev, info); perr == nil {
		return c.settle(f, prev, nil)
	}
	return fetched{}, cr, err
}

// settle records the outcome of a fetch with cr.
func (c *credentials) settle(f fetched, cr Credentials, err error) (fetched, Credentials, error) {
	if err == nil {
		c.mu.Lock()
		c.accepted = cr
		c.mu.Unlock()
	}
	return f, cr, err
}

// rejected reports whether err is the endpoint's rejection of the
// credentials.
func rejected(err error) bool {
	var se *statusError
	if !errors.As(err, &se) {
		return false
	}
	switch se.re.Response.StatusCode {
	case http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden:
		return true
	}
	return false
}
