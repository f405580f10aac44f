package connector

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"

	"github.com/postern/postern"
)

// Secret is a credential the connector holds for an upstream: read from a
// file or an environment variable when it is needed, so that rotating it
// needs no restart, or given as a value (for tests and embedding). A
// Secret never prints its value: String, GoString and LogValue say
// "[redacted]".
type Secret struct {
	// Value is the secret itself. Prefer File or Env in configuration.
	Value string
	// File is a path whose content (trailing newline trimmed) is the
	// secret.
	File string
	// Env is the name of an environment variable holding the secret.
	Env string
}

// IsZero reports whether no source is set.
func (s Secret) IsZero() bool { return s.Value == "" && s.File == "" && s.Env == "" }

// Read returns the secret. Errors name the file or variable, never the
// value.
func (s Secret) Read() (string, error) {
	switch n := s.sources(); {
	case n == 0:
		return "", errors.New("connector: secret has no value, file or env")
	case n > 1:
		return "", errors.New("connector: secret sets more than one of value, file and env")
	case s.File != "":
		b, err := os.ReadFile(s.File)
		if err != nil {
			return "", fmt.Errorf("connector: secret file: %w", err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	case s.Env != "":
		v, ok := os.LookupEnv(s.Env)
		if !ok || v == "" {
			return "", fmt.Errorf("connector: secret environment variable %s is not set", s.Env)
		}
		return v, nil
	}
	return s.Value, nil
}

func (s Secret) String() string               { return "[redacted]" }
func (s Secret) GoString() string             { return "connector.Secret{[redacted]}" }
func (s Secret) LogValue() slog.Value         { return slog.StringValue("[redacted]") }
func (s Secret) MarshalText() ([]byte, error) { return []byte("[redacted]"), nil }

// Postgres is how the connector logs in to a PostgreSQL upstream for kind
// postgres. The agent never holds any of it: the connector completes the
// upstream's authentication itself and then relays the session.
//
// The password never leaves the connector in a form that logs in: unless
// SSLMode is "verify-full" (the server's certificate and name are
// verified) or InsecureAuth is set, the connector authenticates only by
// SCRAM-SHA-256 (libpq's require_auth=scram-sha-256), which proves the
// password without sending it and makes the server prove it knows the
// password's verifier; and whenever TLS is on it requires channel binding
// (SCRAM-SHA-256-PLUS, channel_binding=require), which ties the login to
// the TLS session so that a machine in the middle with its own
// certificate cannot relay it. An upstream that asks for a cleartext
// password or an MD5 digest instead is refused before anything is sent
// (reason "upstream_auth_insecure", or "upstream_channel_binding" over
// TLS). A login without a password is not restricted: there is nothing
// to reveal.
type Postgres struct {
	User     string // required
	Database string // empty means User
	// Password is read at each login, so rotating it needs no restart.
	// Zero means none: for an upstream that trusts the connector without
	// one.
	Password Secret
	// SSLMode is the TLS mode toward the upstream, as in libpq: "disable",
	// "prefer" (the default), "require", "verify-ca" or "verify-full"
	// ("allow" is taken as "prefer"). "prefer" tries TLS, with channel
	// binding required, and falls back to plain TCP only when the server
	// says it has no TLS; such a fallback can be forced by anyone on the
	// path, so production upstreams should say "verify-full" (or at least
	// "require").
	SSLMode string
	// InsecureAuth lets the connector answer an upstream that asks for a
	// cleartext password or an MD5 digest, and drops the channel-binding
	// requirement, when SSLMode is not "verify-full". Whoever sits on the
	// path to an unverified server can then collect the password (or an
	// MD5 digest, which logs in as well as the password does). For legacy
	// servers only; false (the default) refuses them. With "verify-full"
	// every method is allowed whatever this says: the password goes only
	// to the verified server.
	InsecureAuth bool
	// RootCAFile verifies the upstream's certificate for verify-ca and
	// verify-full.
	RootCAFile string
	// ReadOnly, when set, is a second login, a role granted no more than
	// SELECT, that the connector uses instead of User for an agent whose
	// policy permits it no write on this binding (see "Read-only login" in
	// the package documentation): a backstop that holds even if a
	// statement the parser misjudged were let through. Nil means every
	// agent logs in as User.
	ReadOnly *PostgresLogin
}

// PostgresLogin is a role and its password on the upstream of a
// [Postgres] service; the database and TLS settings are the service's.
type PostgresLogin struct {
	User string // required
	// Password is read at each login; zero means none.
	Password Secret
}

// HTTP is what the connector adds to requests for kind http.
type HTTP struct {
	// Headers are set on every request to the upstream, replacing any
	// the agent sent under the same names (an Authorization header, say),
	// and dropping any it sent under names that differ only in case, '-'
	// and '_', or as trailers.
	// Values are read for each request, so rotating them needs no
	// restart. Host and hop-by-hop headers cannot be set.
	Headers map[string]Secret
	// TLS makes the connector speak https to the upstream.
	TLS bool
	// ServerName is checked in the upstream's certificate with TLS; empty
	// means the host of Service.Upstream.
	ServerName string
	// RootCAFile verifies the upstream's certificate; empty means the
	// system pool.
	RootCAFile string
	// Host, when set, is the Host header sent upstream; empty means the
	// upstream address.
	Host string
}

// validateKind checks what a service's kind requires: a login for
// postgres, well-formed headers for http, and no credentials a kind would
// silently ignore.
func (s *Service) validateKind() error {
	switch s.Kind {
	case postern.KindPostgres:
		if s.HTTP != nil {
			return errors.New("HTTP is set on a postgres service")
		}
		return s.Postgres.validate()
	case postern.KindHTTP:
		if s.Postgres != nil {
			return errors.New("Postgres is set on an http service")
		}
		if s.HTTP != nil {
			return s.HTTP.validate()
		}
		return nil
	}
	if s.Postgres != nil || s.HTTP != nil {
		return fmt.Errorf("credentials (Postgres or HTTP) are set on a %s service, which would pass bytes through without them", s.Kind)
	}
	return nil
}

func (p *Postgres) validate() error {
	if p == nil {
		return errors.New("kind postgres needs Postgres: the login the connector uses upstream")
	}
	if p.User == "" {
		return errors.New("Postgres.User is required")
	}
	switch p.SSLMode {
	case "", "disable", "allow", "prefer", "require", "verify-ca", "verify-full":
	default:
		return fmt.Errorf("Postgres.SSLMode %q is not disable, allow, prefer, require, verify-ca or verify-full", p.SSLMode)
	}
	if p.Password.sources() > 1 {
		return errors.New("Postgres.Password sets more than one of Value, File and Env")
	}
	if r := p.ReadOnly; r != nil {
		if r.User == "" {
			return errors.New("Postgres.ReadOnly.User is required")
		}
		if r.User == p.User {
			return errors.New("Postgres.ReadOnly.User is Postgres.User: the read-only login must be a role of its own, granted no write")
		}
		if r.Password.sources() > 1 {
			return errors.New("Postgres.ReadOnly.Password sets more than one of Value, File and Env")
		}
	}
	return nil
}

func (h *HTTP) validate() error {
	for name, v := range h.Headers {
		if !validHeaderName(name) {
			return fmt.Errorf("HTTP.Headers: %q is not a header name", name)
		}
		switch http.CanonicalHeaderKey(name) {
		case "Host", "Content-Length", "Transfer-Encoding", "Connection", "Keep-Alive", "Proxy-Connection",
			"Te", "Trailer", "Upgrade", "Proxy-Authenticate", "Proxy-Authorization":
			return fmt.Errorf("HTTP.Headers: %s cannot be injected (use HTTP.Host for the Host header)", name)
		}
		if n := v.sources(); n != 1 {
			return fmt.Errorf("HTTP.Headers[%s]: set exactly one of Value, File and Env", name)
		}
	}
	return nil
}

func (s Secret) sources() int {
	n := 0
	for _, set := range []bool{s.Value != "", s.File != "", s.Env != ""} {
		if set {
			n++
		}
	}
	return n
}

// validHeaderName reports whether name is an RFC 9110 token.
func validHeaderName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
