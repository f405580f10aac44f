package binding_test

import (
	"context"
	"encoding/pem"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern"
	"github.com/postern/postern/binding"
	"github.com/postern/postern/internal/meshtest"
	"github.com/postern/postern/mesh"
	"github.com/postern/postern/mesh/connector"
	"github.com/postern/postern/mesh/identity"
	"github.com/postern/postern/mesh/relay"
	"github.com/postern/postern/transport"
)

var envVars = []string{binding.EnvRelay, binding.EnvToken, binding.EnvTokenFile, binding.EnvRelayCA, binding.EnvRelayPin, binding.EnvKeyFile, binding.EnvTransport}

// setEnv sets the seven variables to env (absent means unset) for the test.
func setEnv(t *testing.T, env map[string]string) {
	t.Helper()
	for _, v := range envVars {
		t.Setenv(v, env[v]) // restores the old value at cleanup
		if _, ok := env[v]; !ok {
			os.Unsetenv(v)
		}
	}
}

// envErrors returns the variables that the errors in err name.
func envErrors(err error) []string {
	var vars []string
	var walk func(error)
	walk = func(err error) {
		if ee, ok := err.(*binding.EnvError); ok {
			vars = append(vars, ee.Var)
			return
		}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
		}
	}
	walk(err)
	return vars
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestConfigFromEnv: each missing or malformed variable gives its own
// error naming it, and no error repeats a token.
func TestConfigFromEnv(t *testing.T) {
	m := meshtest.New(t, meshtest.Options{})
	tok := m.AgentToken("coding-agent", "coding-agents")
	tokFile := writeFile(t, "token", tok+"\n")
	const garbage = "not.a-token-but-secret-looking"
	garbageFile := writeFile(t, "garbage", garbage)
	hugeFile := writeFile(t, "huge", strings.Repeat(garbage, 4000))
	caFile := writeFile(t, "ca.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: m.Cert.Certificate[0]})))
	notPEM := writeFile(t, "ca.txt", "hello")
	missing := filepath.Join(t.TempDir(), "missing")
	agentKey, err := transport.GenerateClientKey()
	if err != nil {
		t.Fatal(err)
	}
	agentPEM, err := transport.MarshalClientKey(agentKey)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := writeFile(t, "agent.key", string(agentPEM))
	valid := map[string]string{binding.EnvRelay: "relay.example.com:7443", binding.EnvToken: tok, binding.EnvRelayPin: m.Pin}
	with := func(changes map[string]string) map[string]string {
		env := map[string]string{}
		for k, v := range valid {
			env[k] = v
		}
		for k, v := range changes {
			if v == "-" {
				delete(env, k)
			} else {
				env[k] = v
			}
		}
		return env
	}

	tests := []struct {
		name   string
		env    map[string]string
		want   []string // variables named by the errors; nil means valid
		text   string   // one error's text contains it
		relays []string // the relays of a valid configuration; nil means the one of valid
	}{
		{name: "valid, token and pin", env: valid},
		{name: "valid, token file and CA", env: with(map[string]string{binding.EnvToken: "-", binding.EnvTokenFile: tokFile, binding.EnvRelayPin: "-", binding.EnvRelayCA: caFile})},
		{name: "valid, with a key file", env: with(map[string]string{binding.EnvKeyFile: keyFile})},
		{name: "key file missing", env: with(map[string]string{binding.EnvKeyFile: missing}), want: []string{binding.EnvKeyFile}, text: "no such file"},
		{name: "key file holds a certificate", env: with(map[string]string{binding.EnvKeyFile: caFile}), want: []string{binding.EnvKeyFile}, text: `want a PEM "PRIVATE KEY"`},
		{name: "nothing set", env: map[string]string{}, want: []string{binding.EnvRelay, binding.EnvToken, binding.EnvRelayPin}},
		{name: "relay missing", env: with(map[string]string{binding.EnvRelay: "-"}), want: []string{binding.EnvRelay}, text: "not set"},
		{name: "relay without port", env: with(map[string]string{binding.EnvRelay: "relay.example.com"}), want: []string{binding.EnvRelay}, text: "host:port"},
		{name: "relay without host", env: with(map[string]string{binding.EnvRelay: ":7443"}), want: []string{binding.EnvRelay}},
		{name: "relay port out of range", env: with(map[string]string{binding.EnvRelay: "relay:70000"}), want: []string{binding.EnvRelay}},
		{name: "valid, two relays", env: with(map[string]string{binding.EnvRelay: "relay-a.example.com:7443, relay-b.example.com:7443"}), relays: []string{"relay-a.example.com:7443", "relay-b.example.com:7443"}},
		{name: "relays, one bad", env: with(map[string]string{binding.EnvRelay: "relay-a.example.com:7443,relay-b"}), want: []string{binding.EnvRelay}, text: `"relay-b" is not host:port`},
		{name: "relays, empty entry", env: with(map[string]string{binding.EnvRelay: "relay-a.example.com:7443,,relay-b.example.com:7443"}), want: []string{binding.EnvRelay}, text: "empty entry"},
		{name: "relays, trailing comma", env: with(map[string]string{binding.EnvRelay: "relay-a.example.com:7443,"}), want: []string{binding.EnvRelay}, text: "empty entry"},
		{name: "relays, twice", env: with(map[string]string{binding.EnvRelay: "relay-a.example.com:7443,relay-a.example.com:7443"}), want: []string{binding.EnvRelay}, text: "listed twice"},
		{name: "relays, only commas", env: with(map[string]string{binding.EnvRelay: " , "}), want: []string{binding.EnvRelay, binding.EnvRelay}, text: "empty entry"},
		{name: "no token", env: with(map[string]string{binding.EnvToken: "-"}), want: []string{binding.EnvToken}, text: binding.EnvTokenFile},
		{name: "token malformed", env: with(map[string]string{binding.EnvToken: garbage}), want: []string{binding.EnvToken}, text: "not a token"},
		{name: "token and token file", env: with(map[string]string{binding.EnvTokenFile: tokFile}), want: []string{binding.EnvToken}, text: "set one"},
		{name: "token file missing", env: with(map[string]string{binding.EnvToken: "-", binding.EnvTokenFile: missing}), want: []string{binding.EnvTokenFile}, text: "no such file"},
		{name: "token file malformed", env: with(map[string]string{binding.EnvToken: "-", binding.EnvTokenFile: garbageFile}), want: []string{binding.EnvTokenFile}, text: "does not hold a token"},
		{name: "token file too large", env: with(map[string]string{binding.EnvToken: "-", binding.EnvTokenFile: hugeFile}), want: []string{binding.EnvTokenFile}, text: "larger than 64 KiB"},
		{name: "no trust", env: with(map[string]string{binding.EnvRelayPin: "-"}), want: []string{binding.EnvRelayPin}, text: binding.EnvRelayCA},
		{name: "pin malformed", env: with(map[string]string{binding.EnvRelayPin: "sha256:abcd"}), want: []string{binding.EnvRelayPin}, text: "64 hex digits"},
		{name: "CA and pin", env: with(map[string]string{binding.EnvRelayCA: caFile}), want: []string{binding.EnvRelayCA}, text: "set one"},
		{name: "CA file missing", env: with(map[string]string{binding.EnvRelayPin: "-", binding.EnvRelayCA: missing}), want: []string{binding.EnvRelayCA}, text: "no such file"},
		{name: "valid, transport tcp", env: with(map[string]string{binding.EnvTransport: "tcp"})},
		{name: "transport unknown", env: with(map[string]string{binding.EnvTransport: "udp"}), want: []string{binding.EnvTransport}, text: "want auto, quic or tcp"},
		{name: "CA file not PEM", env: with(map[string]string{binding.EnvRelayPin: "-", binding.EnvRelayCA: notPEM}), want: []string{binding.EnvRelayCA}, text: "no PEM certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			setEnv(t, tt.env)
			cfg, err := binding.ConfigFromEnv()
			if tt.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				if _, err := mesh.NewClient(cfg); err != nil {
					t.Fatalf("the configuration does not make a client: %v", err)
				}
				want := tt.relays
				if want == nil {
					want = []string{valid[binding.EnvRelay]}
				}
				if !slices.Equal(cfg.Relays, want) || cfg.Relay != "" {
					t.Fatalf("relays = %q (Relay %q), want %q", cfg.Relays, cfg.Relay, want)
				}
				return
			}
			if got := envErrors(err); !slices.Equal(got, tt.want) {
				t.Fatalf("errors name %v, want %v; err = %v", got, tt.want, err)
			}
			for _, v := range tt.want {
				if !strings.Contains(err.Error(), "binding: "+v+": ") {
					t.Fatalf("error %q does not start with the variable %s", err, v)
				}
			}
			if !strings.Contains(err.Error(), tt.text) {
				t.Fatalf("error %q does not say %q", err, tt.text)
			}
			for _, secret := range []string{tok, garbage} {
				if strings.Contains(err.Error(), secret) {
					t.Fatalf("error %q repeats a token", err)
				}
			}
			if _, err := binding.Open("staging-db"); !slices.Equal(envErrors(err), tt.want) {
				t.Fatalf("Open: err = %v, want the same errors", err)
			}
		})
	}
}

// TestOpenFromEnvironment: Open uses a default client configured from the
// environment; while the environment is wrong each Open says so, and once
// it is right the client is made and kept.
func TestOpenFromEnvironment(t *testing.T) {
	m := meshtest.New(t, meshtest.Options{})
	m.Connector("office-1", connector.Service{Name: "staging-tcp", Upstream: meshtest.EchoServer(t), Environment: "staging"})
	t.Cleanup(func() { binding.CloseDefault() })

	setEnv(t, map[string]string{binding.EnvRelay: m.Addr(), binding.EnvRelayPin: m.Pin})
	if _, err := binding.Open("staging-tcp"); !slices.Equal(envErrors(err), []string{binding.EnvToken}) {
		t.Fatalf("Open without a token: %v", err)
	}
	t.Setenv(binding.EnvTokenFile, writeFile(t, "token", m.AgentToken("coding-agent", "coding-agents")))
	b, err := binding.Open("staging-tcp")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	c1, _ := binding.DefaultClient()
	if c2, _ := binding.DefaultClient(); c1 != c2 || b.Client() != c1 {
		t.Fatal("the default client is not made once")
	}
	conn, err := b.Dial(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.Write([]byte("hi"))
	conn.(interface{ CloseWrite() error }).CloseWrite()
	if got, err := io.ReadAll(conn); err != nil || string(got) != "hi" {
		t.Fatalf("echo = %q, %v", got, err)
	}

	// CloseDefault ends the session now: the relay audits its end at
	// once, not at its idle timeout; a later Open makes a new client.
	if err := binding.CloseDefault(); err != nil {
		t.Fatal(err)
	}
	meshtest.WaitFor(t, "the relay to end the agent's session", func() bool {
		for _, ev := range m.Audit.Events(relay.EventSessionEnd) {
			if ev["role"] == "agent" {
				return true
			}
		}
		return false
	})
	if c3, err := binding.DefaultClient(); err != nil || c3 == c1 {
		t.Fatalf("after CloseDefault: client %p (was %p), %v; want a new one", c3, c1, err)
	}
}

// TestTokenFileRefresh: a token rewritten on disk is what the client
// presents at its next refresh, so the session outlives the first token.
func TestTokenFileRefresh(t *testing.T) {
	m := meshtest.New(t, meshtest.Options{})
	m.Connector("office-1", connector.Service{Name: "staging-tcp", Upstream: meshtest.EchoServer(t), Environment: "staging"})
	issue := func(life time.Duration) string {
		return m.Token(identity.Claims{Subject: "file-agent", Role: identity.RoleAgent, Groups: []string{"coding-agents"}, ExpiresAt: time.Now().Add(life)})
	}
	tokFile := writeFile(t, "token", issue(3*time.Second))
	setEnv(t, map[string]string{binding.EnvRelay: m.Addr(), binding.EnvTokenFile: tokFile, binding.EnvRelayPin: m.Pin})
	cfg, err := binding.ConfigFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	client, err := mesh.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if err := client.Connect(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	// Rotate the file as a token agent would, by renaming over it.
	next := writeFile(t, "next", issue(time.Hour))
	if err := os.Rename(next, tokFile); err != nil {
		t.Fatal(err)
	}
	time.Sleep(4 * time.Second) // past the first token's expiry

	b, err := binding.OpenWith(client, "staging-tcp")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	conn, err := b.Dial(testCtx(t))
	if err != nil {
		t.Fatalf("dial after the first token expired: %v", err)
	}
	conn.Close()
	var starts, ends int
	for _, ev := range m.Audit.Events(relay.EventSessionStart) {
		if ev["subject"] == "file-agent" {
			starts++
		}
	}
	for _, ev := range m.Audit.Events(relay.EventSessionEnd) {
		if ev["subject"] == "file-agent" {
			ends++
		}
	}
	if starts != 1 || ends != 0 {
		t.Fatalf("%d sessions started and %d ended: want one session, kept alive by the token read from the rewritten file", starts, ends)
	}
}

// A token source error names the variable, and a client with a vanished
// token file fails to connect with ErrUnauthenticated.
func TestTokenFileVanishes(t *testing.T) {
	m := meshtest.New(t, meshtest.Options{})
	tokFile := writeFile(t, "token", m.AgentToken("coding-agent", "coding-agents"))
	setEnv(t, map[string]string{binding.EnvRelay: m.Addr(), binding.EnvTokenFile: tokFile, binding.EnvRelayPin: m.Pin})
	cfg, err := binding.ConfigFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(tokFile)
	client, err := mesh.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	err = client.Connect(context.Background())
	var ee *binding.EnvError
	if !errors.Is(err, postern.ErrUnauthenticated) || !errors.As(err, &ee) || ee.Var != binding.EnvTokenFile {
		t.Fatalf("connect with the token file gone: %v", err)
	}
}

// TestBoundTokenFromEnvironment: an agent configured by POSTERN_KEY_FILE
// and a token bound to that key opens bindings on a relay that requires
// bound tokens; the same token without the key file is refused with
// postern.ErrKeyNotProven.
func TestBoundTokenFromEnvironment(t *testing.T) {
	m := meshtest.New(t, meshtest.Options{RequireBoundTokens: true})
	m.Connector("office-1", connector.Service{Name: "staging-tcp", Upstream: meshtest.EchoServer(t), Environment: "staging"})
	key, err := transport.GenerateClientKey()
	if err != nil {
		t.Fatal(err)
	}
	jkt, err := identity.KeyThumbprint(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := transport.MarshalClientKey(key)
	if err != nil {
		t.Fatal(err)
	}
	tok := m.Token(identity.Claims{Subject: "coding-agent", Role: identity.RoleAgent, Groups: []string{"coding-agents"}, BoundKey: jkt})
	env := map[string]string{binding.EnvRelay: m.Addr(), binding.EnvRelayPin: m.Pin, binding.EnvToken: tok}
	for _, withKey := range []bool{true, false} {
		if withKey {
			env[binding.EnvKeyFile] = writeFile(t, "agent.key", string(keyPEM))
		} else {
			delete(env, binding.EnvKeyFile)
		}
		setEnv(t, env)
		cfg, err := binding.ConfigFromEnv()
		if err != nil {
			t.Fatal(err)
		}
		client, err := mesh.NewClient(cfg)
		if err != nil {
			t.Fatal(err)
		}
		b, err := binding.OpenWith(client, "staging-tcp")
		if err != nil {
			t.Fatal(err)
		}
		conn, err := b.Dial(testCtx(t))
		if withKey {
			if err != nil {
				t.Fatalf("with %s: %v", binding.EnvKeyFile, err)
			}
			conn.Close()
		} else if !errors.Is(err, postern.ErrKeyNotProven) {
			t.Fatalf("without %s: %v, want postern.ErrKeyNotProven", binding.EnvKeyFile, err)
		}
		b.Close()
		client.Close()
	}
}
