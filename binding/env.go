package binding

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/postern/postern/internal/tokenfile"
	"github.com/postern/postern/mesh"
	"github.com/postern/postern/mesh/identity"
	"github.com/postern/postern/transport"
)

// The environment variables the default client reads.
const (
	EnvRelay     = "POSTERN_RELAY"      // the relay's address, host:port (UDP and TCP); several, comma-separated
	EnvToken     = "POSTERN_TOKEN"      // the agent's identity token (a JWT)
	EnvTokenFile = "POSTERN_TOKEN_FILE" // a file holding it, read again at each refresh
	EnvRelayCA   = "POSTERN_RELAY_CA"   // a PEM file of CAs that sign the relay's certificate
	EnvRelayPin  = "POSTERN_RELAY_PIN"  // the relay certificate's pin, sha256:<hex>
	EnvKeyFile   = "POSTERN_KEY_FILE"   // the agent's private key (PEM), for tokens bound to it
	EnvTransport = "POSTERN_TRANSPORT"  // auto (default), quic or tcp
)

// EnvError is a missing or malformed environment variable.
type EnvError struct {
	Var string // the variable, e.g. "POSTERN_RELAY"
	Err error  // what is wrong with it
}

func (e *EnvError) Error() string { return "binding: " + e.Var + ": " + e.Err.Error() }
func (e *EnvError) Unwrap() error { return e.Err }

var defaultClient struct {
	mu sync.Mutex
	c  *mesh.Client
}

// DefaultClient returns the process-wide client that Open uses, creating
// it from the environment (see ConfigFromEnv) at the first call that finds
// the environment valid. Until then each call reads the environment again
// and returns its errors, each naming its variable. It does no network
// I/O; the client connects at first use and lives as long as the process.
func DefaultClient() (*mesh.Client, error) {
	defaultClient.mu.Lock()
	defer defaultClient.mu.Unlock()
	if defaultClient.c != nil {
		return defaultClient.c, nil
	}
	cfg, err := ConfigFromEnv()
	if err != nil {
		return nil, err
	}
	c, err := mesh.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("binding: %w", err)
	}
	defaultClient.c = c
	return c, nil
}

// CloseDefault closes the default client, if one was made: its session
// with the relay ends now, so the relay's audit trail records the end of
// the agent's streams and session when the program is done rather than
// when the relay notices the silence. Handles opened with Open stop
// working. A later Open makes a new default client. Call it before a
// program exits: defer binding.CloseDefault().
func CloseDefault() error {
	defaultClient.mu.Lock()
	c := defaultClient.c
	defaultClient.c = nil
	defaultClient.mu.Unlock()
	if c == nil {
		return nil
	}
	return c.Close()
}

// ConfigFromEnv builds a mesh client configuration from the environment:
//
//   - POSTERN_RELAY (required): the relay's host:port, or several relays
//     of one mesh separated by commas, in order of preference
//     ("relay-a.example.com:7443,relay-b.example.com:7443"; spaces around
//     the commas are ignored). The client uses one at a time and moves to
//     the next when it goes away (see mesh.Config.Relays).
//
//   - POSTERN_TOKEN or POSTERN_TOKEN_FILE (exactly one): the agent's
//     token, or a file holding it. The file is read again each time the
//     client needs a token (to connect, and before the one in use
//     expires), so a token rotated on disk is picked up by the live
//     session. Replace the file atomically (write, then rename over).
//
//   - POSTERN_RELAY_CA or POSTERN_RELAY_PIN (exactly one): how to trust
//     the relay, a PEM file of CAs or the pin of its certificate
//     ("sha256:<hex>", as the relay prints it).
//
//   - POSTERN_KEY_FILE (optional): the agent's private key, a PEM
//     "PRIVATE KEY" file (`postern agent-key` writes one), proved in
//     every handshake so that a token bound to it is accepted
//     (mesh.Config.Key). Keep it out of the reach of the code the agent
//     runs: a token bound to it is useless without it.
//
//   - POSTERN_TRANSPORT (optional): "auto" (the default: QUIC, falling
//     back to TLS over TCP when UDP does not get through), "quic" or
//     "tcp" (for networks that drop UDP).
//
// Each missing or malformed variable gives its own *EnvError; all of them
// are returned together (errors.Join). An empty variable counts as unset.
func ConfigFromEnv() (mesh.Config, error) {
	return configFromEnv(os.Getenv)
}

func configFromEnv(getenv func(string) string) (mesh.Config, error) {
	var cfg mesh.Config
	var errs []error
	bad := func(v string, format string, args ...any) {
		errs = append(errs, &EnvError{Var: v, Err: fmt.Errorf(format, args...)})
	}

	switch relays := getenv(EnvRelay); {
	case strings.TrimSpace(relays) == "":
		bad(EnvRelay, "not set: want the relay's host:port, e.g. relay.example.com:7443 (several: comma-separated)")
	default:
		cfg.Relays = parseRelays(relays, bad)
	}

	tok, file := getenv(EnvToken), getenv(EnvTokenFile)
	switch {
	case tok != "" && file != "":
		bad(EnvToken, "both %s and %s are set: set one", EnvToken, EnvTokenFile)
	case tok != "":
		if err := checkToken(tok); err != nil {
			bad(EnvToken, "not a token: %v", err)
		}
		cfg.Token = tok
	case file != "":
		if _, err := readTokenFile(file); err != nil {
			bad(EnvTokenFile, "%v", err)
		}
		cfg.TokenSource = func(context.Context) (string, error) {
			t, err := readTokenFile(file)
			if err != nil {
				return "", &EnvError{Var: EnvTokenFile, Err: err}
			}
			return t, nil
		}
	default:
		bad(EnvToken, "not set, nor %s: the agent needs its identity token", EnvTokenFile)
	}

	ca, pin := getenv(EnvRelayCA), getenv(EnvRelayPin)
	switch {
	case ca != "" && pin != "":
		bad(EnvRelayCA, "both %s and %s are set: set one", EnvRelayCA, EnvRelayPin)
	case ca != "":
		pem, err := os.ReadFile(ca)
		if err != nil {
			bad(EnvRelayCA, "%v", err)
			break
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			bad(EnvRelayCA, "%s holds no PEM certificate", ca)
			break
		}
		cfg.RootCAs = pool
	case pin != "":
		p, err := transport.ParsePin(pin)
		if err != nil {
			bad(EnvRelayPin, "%q: want sha256: followed by 64 hex digits", pin)
			break
		}
		cfg.Pin = p
	default:
		bad(EnvRelayPin, "not set, nor %s: say how to trust the relay's certificate", EnvRelayCA)
	}

	if path := getenv(EnvKeyFile); path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			bad(EnvKeyFile, "%v", err)
		} else if cfg.Key, err = transport.ParseClientKey(b); err != nil {
			bad(EnvKeyFile, "%s: %v", path, err)
		}
	}

	if n := getenv(EnvTransport); n != "" {
		if err := transport.CheckNetwork(n); err != nil {
			bad(EnvTransport, "%q: want auto, quic or tcp", n)
		} else {
			cfg.Transport = &transport.Config{Network: n}
		}
	}

	if len(errs) > 0 {
		return mesh.Config{}, errors.Join(errs...)
	}
	return cfg, nil
}

// parseRelays splits a comma-separated list of host:port, saying what is
// wrong with each bad entry.
func parseRelays(list string, bad func(v string, format string, args ...any)) []string {
	var relays []string
	seen := map[string]bool{}
	for _, relay := range strings.Split(list, ",") {
		relay = strings.TrimSpace(relay)
		host, port, err := net.SplitHostPort(relay)
		switch n, perr := strconv.Atoi(port); {
		case relay == "":
			bad(EnvRelay, "%q has an empty entry: want host:port, comma-separated", list)
		case err != nil || host == "" || perr != nil || n < 1 || n > 65535:
			bad(EnvRelay, "%q is not host:port", relay)
		case seen[relay]:
			bad(EnvRelay, "%q is listed twice", relay)
		default:
			seen[relay] = true
			relays = append(relays, relay)
		}
	}
	return relays
}

// readTokenFile reads and checks a token file. Errors name the file,
// never its content.
func readTokenFile(path string) (string, error) {
	tok, err := tokenfile.Read(path)
	if err != nil {
		return "", err
	}
	if err := checkToken(tok); err != nil {
		return "", fmt.Errorf("%s does not hold a token: %w", path, err)
	}
	return tok, nil
}

// checkToken checks that tok has the shape of a token; the relay verifies
// it.
func checkToken(tok string) error {
	if tok == "" {
		return errors.New("empty")
	}
	_, err := identity.ParseUnverified(tok)
	return err
}
