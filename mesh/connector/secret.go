package connector

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
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
	n := 0
	for _, set := range []bool{s.Value != "", s.File != "", s.Env != ""} {
		if set {
			n++
		}
	}
	switch {
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
// upstream's authentication (SCRAM-SHA-256, MD5 or cleartext, as the
// server asks) itself and then relays the session.
type Postgres struct {
	User     string // required
	Database string // empty means User
	Password Secret
	// SSLMode is the TLS mode toward the upstream, as in libpq: "disable",
	// "prefer" (the default), "require", "verify-ca" or "verify-full".
	SSLMode string
	// RootCAFile verifies the upstream's certificate for verify-ca and
	// verify-full.
	RootCAFile string
}

// HTTP is what the connector adds to requests for kind http.
type HTTP struct {
	// Headers are set on every request to the upstream, replacing any
	// the agent sent under the same names (an Authorization header, say).
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
