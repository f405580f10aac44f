package config

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/postern/postern"
	"github.com/postern/postern/mesh/identity"
	"github.com/postern/postern/policy"
	"github.com/postern/postern/transport"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fixture is a directory holding what configuration files refer to: a
// key set, a policy directory, a connector token, a password file.
type fixture struct {
	dir   string
	key   *identity.SigningKey
	token string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	key, err := identity.GenerateSigningKey(identity.EdDSA)
	if err != nil {
		t.Fatal(err)
	}
	jwks, err := key.PublicJWKS()
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{dir: dir, key: key}
	f.write(t, "jwks.json", string(jwks))
	f.write(t, "policies/allow.cedar", `@id("a") permit (principal, action, resource);`)
	f.token = f.issue(t, identity.Claims{Subject: "c1", Role: identity.RoleConnector, Services: []identity.Service{
		{Name: "db"}, // by name alone: a relay must declare it
		{Name: "api", Kind: "http", Environment: "prod"},
	}})
	f.write(t, "connector.token", f.token+"\n")
	f.write(t, "pg-password", "s3cret\n")
	f.write(t, "api-auth", "Bearer abc\n")
	return f
}

func (f *fixture) issue(t *testing.T, c identity.Claims) string {
	t.Helper()
	c.Audience = []string{"postern"}
	if c.ExpiresAt.IsZero() {
		c.ExpiresAt = time.Now().Add(time.Hour)
	}
	tok, err := f.key.Issue(c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func (f *fixture) write(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(f.dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const goodRelay = `
listen: 127.0.0.1:0
tokens:
  audience: postern
  issuer: https://issuer.example
  jwks_file: jwks.json
  leeway: 10s
  require_bound: true
policy:
  dir: policies
  poll: 500ms
  principal_attributes: {team: String}
  detail_keys: [database]
limits:
  streams_per_agent: 64
  handshake_timeout: 5s
  open_timeout: 1m30s
  ack_timeout: 500ms
  stall_timeout: 2m
  stalled_streams_per_agent: 8
  connector_silence: 3s
bindings:
  - name: db
    kind: postgres
    environment: staging
    labels: [pii]
audit: stderr
log: {level: debug, format: json}
drain_timeout: 3s
gc_headroom_mib: 16
metrics: {listen: 127.0.0.1:9464}
`

func TestLoadRelay(t *testing.T) {
	f := newFixture(t)
	r, err := LoadRelay(f.write(t, "relay.yaml", goodRelay))
	if err != nil {
		t.Fatal(err)
	}
	if r.Listen != "127.0.0.1:0" || r.CertSource != "ephemeral" || len(r.Certificate.Certificate) == 0 {
		t.Errorf("listen %q, certificate %q", r.Listen, r.CertSource)
	}
	if r.Verifier.Audience != "postern" || r.Verifier.Issuer != "https://issuer.example" || len(r.Verifier.KeySet) == 0 || r.Verifier.Leeway != 10*time.Second {
		t.Errorf("verifier config %+v", r.Verifier)
	}
	if !r.RequireBound {
		t.Error("tokens.require_bound: true was not read")
	}
	if r, err := LoadRelay(f.write(t, "default.yaml", "tokens: {audience: postern, jwks_file: jwks.json}\npolicy: {dir: policies}\n")); err != nil || r.RequireBound {
		t.Errorf("tokens.require_bound defaults to %v (%v), want false", r != nil && r.RequireBound, err)
	}
	if r.PolicyDir != filepath.Join(f.dir, "policies") || r.PolicyPoll != 500*time.Millisecond {
		t.Errorf("policy dir %q poll %s", r.PolicyDir, r.PolicyPoll)
	}
	if r.PolicyOptions.PrincipalAttributes["team"] != "String" || len(r.PolicyOptions.DetailKeys) != 1 {
		t.Errorf("policy options %+v", r.PolicyOptions)
	}
	if r.Limits.StreamsPerAgent != 64 || r.Limits.HandshakeTimeout != 5*time.Second || r.Limits.OpenTimeout != 90*time.Second {
		t.Errorf("limits %+v", r.Limits)
	}
	if r.Limits.AckTimeout != 500*time.Millisecond || r.Limits.StallTimeout != 2*time.Minute || r.Limits.StalledStreamsPerAgent != 8 || r.Limits.ConnectorSilence != 3*time.Second {
		t.Errorf("failover and isolation limits %+v", r.Limits)
	}
	want := postern.Binding{Name: "db", Kind: "postgres", Environment: "staging", Labels: []string{"pii"}}
	if len(r.Bindings) != 1 || r.Bindings[0].Name != want.Name || r.Bindings[0].Kind != want.Kind || !r.Bindings[0].HasLabel("pii") {
		t.Errorf("bindings %+v", r.Bindings)
	}
	if r.Audit != "stderr" || !r.Log.JSON || r.Log.Level.String() != "DEBUG" || r.DrainTimeout != 3*time.Second {
		t.Errorf("audit %q log %+v drain %s", r.Audit, r.Log, r.DrainTimeout)
	}
	if r.GCHeadroom != 16<<20 {
		t.Errorf("gc_headroom_mib 16: GCHeadroom %d", r.GCHeadroom)
	}
	if r.MetricsListen != "127.0.0.1:9464" {
		t.Errorf("metrics.listen %q", r.MetricsListen)
	}
	if _, err := set(t, r); err != nil {
		t.Fatal(err)
	}
}

func set(t *testing.T, r *Relay) (int, error) {
	t.Helper()
	s, err := LoadPolicies(r.PolicyDir, r.PolicyOptions)
	if err != nil {
		return 0, err
	}
	return s.Len(), nil
}

// TestRelayAttackKnobs: the limits on unverified and authenticated peers,
// the audit queue and hide_denied reach the relay's configuration.
func TestRelayAttackKnobs(t *testing.T) {
	f := newFixture(t)
	r, err := LoadRelay(f.write(t, "relay.yaml", `tokens: {audience: postern, jwks_file: jwks.json}
policy: {dir: policies}
limits:
  unverified_connections: 500
  unverified_per_source: 8
  retry_above: -1
  initial_stream_window: 16384
  initial_conn_window: 65536
  connector_networks: [10.1.0.0/16, 192.0.2.7, "2001:db8::/32"]
  sessions_per_subject: 4
  streams_per_subject: 100
  refreshes_per_minute: 6
  rejects_per_source: 3
  flood_rejects: 50
  handshake_budget: 5
audit_queue: {size: 100, full: drop, reject_interval: 30s}
hide_denied: true
`))
	if err != nil {
		t.Fatal(err)
	}
	l := r.Limits
	if l.MaxUnverified != 500 || l.MaxUnverifiedPerSource != 8 || l.RetryAbove != -1 || l.InitialStreamWindow != 16384 || l.InitialConnWindow != 65536 ||
		l.SessionsPerSubject != 4 || l.StreamsPerSubject != 100 || l.RefreshesPerMinute != 6 || l.RejectsPerSource != 3 ||
		l.FloodRejects != 50 || l.HandshakeBudget != 5 {
		t.Errorf("limits %+v", l)
	}
	if got := fmt.Sprint(l.ConnectorNetworks); got != "[10.1.0.0/16 192.0.2.7/32 2001:db8::/32]" {
		t.Errorf("connector networks %s, want [10.1.0.0/16 192.0.2.7/32 2001:db8::/32]", got)
	}
	if r.AuditQueue.Size != 100 || !r.AuditQueue.Drop || r.RejectInterval != 30*time.Second || !r.HideDenied {
		t.Errorf("audit queue %+v, reject interval %s, hide denied %v", r.AuditQueue, r.RejectInterval, r.HideDenied)
	}
}

func TestLoadRelayDefaults(t *testing.T) {
	f := newFixture(t)
	r, err := LoadRelay(f.write(t, "relay.yaml", "tokens: {audience: postern, jwks_file: jwks.json}\npolicy: {dir: policies}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if r.Listen != DefaultListen || r.Transport != "auto" || r.Audit != "stdout" || r.DrainTimeout != DefaultDrainTimeout || r.PolicyPoll != DefaultPolicyPoll || r.Log.JSON || r.MetricsListen != "" || r.GCHeadroom != DefaultGCHeadroom {
		t.Errorf("defaults: %+v", r)
	}
	if r.Verifier.MaxLifetime != 24*time.Hour || r.RevocationFile != "" {
		t.Errorf("token defaults: max lifetime %v, revocation file %q", r.Verifier.MaxLifetime, r.RevocationFile)
	}
}

// TestLoadRelayRevocation: tokens.max_ttl and tokens.revocation_file
// resolve, the file is read at load, relative to the configuration.
func TestLoadRelayRevocation(t *testing.T) {
	f := newFixture(t)
	f.write(t, "lists/revoked.txt", "# revoked\ntoken abc\nsubject ci-runner\n")
	r, err := LoadRelay(f.write(t, "relay.yaml", "tokens: {audience: postern, jwks_file: jwks.json, max_ttl: 8h, revocation_file: lists/revoked.txt}\npolicy: {dir: policies}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if r.Verifier.MaxLifetime != 8*time.Hour {
		t.Errorf("max lifetime %v", r.Verifier.MaxLifetime)
	}
	if r.RevocationFile != filepath.Join(f.dir, "lists", "revoked.txt") || len(r.Revoked.Tokens) != 1 || len(r.Revoked.Subjects) != 1 {
		t.Errorf("revocation file %q: %+v", r.RevocationFile, r.Revoked)
	}
}

// TestRelaySelfSigned: with tls.self_signed the certificate is made once
// and kept, so that its pin survives a restart.
func TestRelaySelfSigned(t *testing.T) {
	f := newFixture(t)
	cfg := f.write(t, "relay.yaml", "tls: {cert_file: tls/relay.crt, key_file: tls/relay.key, self_signed: true}\ntokens: {audience: postern, jwks_file: jwks.json}\npolicy: {dir: policies}\n")
	if err := os.Mkdir(filepath.Join(f.dir, "tls"), 0o755); err != nil {
		t.Fatal(err)
	}
	first, err := LoadRelay(cfg)
	if err != nil {
		t.Fatal(err)
	}
	second, err := LoadRelay(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if first.CertSource != "generated" || second.CertSource != "file" {
		t.Errorf("sources %q then %q, want generated then file", first.CertSource, second.CertSource)
	}
	if transport.Pin(first.Certificate) != transport.Pin(second.Certificate) {
		t.Error("the pin changed across loads")
	}
	st, err := os.Stat(filepath.Join(f.dir, "tls/relay.key"))
	if err != nil {
		t.Error(err)
	} else if st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", st.Mode())
	}
	if _, err := tls.LoadX509KeyPair(filepath.Join(f.dir, "tls/relay.crt"), filepath.Join(f.dir, "tls/relay.key")); err != nil {
		t.Error(err)
	}
}

// TestRelayGCHeadroomOff: gc_headroom_mib -1 turns the floor off.
func TestRelayGCHeadroomOff(t *testing.T) {
	f := newFixture(t)
	r, err := LoadRelay(f.write(t, "relay.yaml", "tokens: {audience: postern, jwks_file: jwks.json}\npolicy: {dir: policies}\ngc_headroom_mib: -1\n"))
	if err != nil {
		t.Fatal(err)
	}
	if r.GCHeadroom != 0 {
		t.Errorf("gc_headroom_mib -1: GCHeadroom %d, want 0 (off)", r.GCHeadroom)
	}
}

// TestRelayErrors: every bad file gives an error naming the file, the line
// and the field.
func TestRelayErrors(t *testing.T) {
	base := "tokens: {audience: postern, jwks_file: jwks.json}\npolicy: {dir: policies}\n"
	tests := []struct {
		name string
		yaml string
		want []string // each must appear in the error
	}{
		{"unknown key", base + "listn: :7443\n", []string{"relay.yaml:3:1: listn: unknown field", `did you mean "listen"`}},
		{"unknown nested key", "tokens: {audience: postern, jwks_file: jwks.json, audiance: x}\npolicy: {dir: policies}\n", []string{"relay.yaml:1:", "tokens.audiance: unknown field"}},
		{"missing audience", "tokens:\n  jwks_file: jwks.json\npolicy: {dir: policies}\n", []string{"relay.yaml:1:1: tokens.audience: required"}},
		{"missing keys", "tokens:\n  audience: postern\npolicy: {dir: policies}\n", []string{"relay.yaml:1:1: tokens.jwks_file: required"}},
		{"missing policy dir", "tokens: {audience: postern, jwks_file: jwks.json}\n", []string{"relay.yaml:1:1: policy.dir: required"}},
		{"wrong type int", base + "limits:\n  streams_per_agent: many\n", []string{"relay.yaml:4:22: limits.streams_per_agent: want a whole number, got \"many\""}},
		{"negative gc headroom", base + "gc_headroom_mib: -2\n", []string{"gc_headroom_mib: want -1 (off) or 1 to 1048576, got -2"}},
		{"huge gc headroom", base + "gc_headroom_mib: 2000000\n", []string{"gc_headroom_mib: want -1 (off) or 1 to 1048576, got 2000000"}},
		{"wrong type duration", base + "drain_timeout: 10\n", []string{"relay.yaml:3:16: drain_timeout: want a duration such as 10s or 1m30s, got the number 10"}},
		{"bad duration", base + "limits: {open_timeout: soon}\n", []string{"relay.yaml:3:", "limits.open_timeout: want a duration"}},
		{"negative stalled streams", base + "limits: {stalled_streams_per_agent: -1}\n", []string{"limits.stalled_streams_per_agent: must not be negative"}},
		{"negative ack timeout", base + "limits: {ack_timeout: -1s}\n", []string{"limits.ack_timeout: want a duration"}},
		{"bad metrics listen", base + "metrics: {listen: 9464}\n", []string{"relay.yaml:3:", `metrics.listen: want host:port (such as 127.0.0.1:9464), got "9464"`}},
		{"bad metrics port", base + "metrics: {listen: '127.0.0.1:http-ish'}\n", []string{"metrics.listen: want host:port"}},
		{"unknown metrics key", base + "metrics: {addr: 127.0.0.1:9464}\n", []string{"metrics.addr: unknown field"}},
		{"wrong type list", base + "bindings: db\n", []string{"relay.yaml:3:11: bindings: want a list"}},
		{"wrong type mapping", "tokens: postern\npolicy: {dir: policies}\n", []string{"relay.yaml:1:9: tokens: want a mapping"}},
		{"set twice", base + "audit: stdout\naudit: stderr\n", []string{"relay.yaml:4:1: audit: set twice"}},
		{"bad transport", base + "transport: udp\n", []string{"relay.yaml:", `transport: want auto (UDP and TCP), quic or tcp, got "udp"`}},
		{"unreadable key set", "tokens:\n  audience: postern\n  jwks_file: nope.json\npolicy: {dir: policies}\n", []string{"relay.yaml:3:3: tokens.jwks_file: cannot read nope.json: no such file or directory"}},
		{"private key set", "tokens:\n  audience: postern\n  jwks_file: signing.jwk\npolicy: {dir: policies}\n", []string{"relay.yaml:3:3: tokens.jwks_file: signing.jwk is not a public JWK set"}},
		{"unreadable tls key", base + "tls:\n  cert_file: relay.crt\n  key_file: relay.key\n", []string{"relay.yaml:4:3: tls.cert_file: cannot read relay.crt", "relay.yaml:5:3: tls.key_file: cannot read relay.key"}},
		{"jwks url not http", "tokens: {audience: postern, jwks_url: 'ftp://reader:hunter2@idp.example/jwks'}\npolicy: {dir: policies}\n", []string{"tokens.jwks_url: want an https:// URL", "reader:xxxxx@idp.example"}},
		{"both key sources", "tokens: {audience: postern, jwks_file: jwks.json, jwks_url: 'https://x/jwks'}\npolicy: {dir: policies}\n", []string{"tokens.jwks_url: set either jwks_file or jwks_url"}},
		{"bad binding kind", base + "bindings:\n  - name: db\n    kind: mysql\n", []string{"relay.yaml:5:5: bindings[0].kind: want tcp, http or postgres, got \"mysql\""}},
		{"bad listen", base + "listen: 7443\n", []string{"relay.yaml:3:1: listen: want host:port"}},
		{"retry above the cap", base + "limits: {unverified_connections: 100, retry_above: 100}\n", []string{"limits.retry_above: must be below limits.unverified_connections (100)"}},
		{"retry above the default cap", base + "limits: {retry_above: 2000}\n", []string{"limits.retry_above: must be below limits.unverified_connections (1024)"}},
		{"negative per-subject cap", base + "limits: {sessions_per_subject: -1}\n", []string{"limits.sessions_per_subject: must not be negative"}},
		{"tiny window", base + "limits: {initial_stream_window: 10}\n", []string{"limits.initial_stream_window: want 1024 to 16777216 bytes, got 10"}},
		{"bad connector network", base + "limits:\n  connector_networks: [10.0.0.0/8, office]\n", []string{`limits.connector_networks[1]: "office" is not a CIDR prefix (10.1.0.0/16, 2001:db8::/32) or an IP address`}},
		{"bad audit policy", base + "audit_queue: {full: wait}\n", []string{"audit_queue.full: want block or drop, got \"wait\""}},
		{"negative audit queue", base + "audit_queue: {size: -1}\n", []string{"audit_queue.size: must not be negative"}},
		{"bad log level", base + "log: {level: loud}\n", []string{"relay.yaml:3:7: log.level: want debug, info, warn or error"}},
		{"policy dir is a file", "tokens: {audience: postern, jwks_file: jwks.json}\npolicy: {dir: jwks.json}\n", []string{"policy.dir: jwks.json is not a directory"}},
		{"not yaml", "tokens: [\n", []string{"relay.yaml:", "not valid YAML"}},
		{"empty", "", []string{"relay.yaml: the file is empty"}},
		{"negative max_ttl", "tokens: {audience: postern, jwks_file: jwks.json, max_ttl: -1h}\npolicy: {dir: policies}\n", []string{"relay.yaml:1:", "tokens.max_ttl: want a duration"}},
		{"missing revocation file", "tokens: {audience: postern, jwks_file: jwks.json, revocation_file: revoked.txt}\npolicy: {dir: policies}\n", []string{"relay.yaml:1:", "tokens.revocation_file: cannot read revoked.txt", "create it empty"}},
		{"bad revocation file", "tokens: {audience: postern, jwks_file: jwks.json, revocation_file: signing.jwk}\npolicy: {dir: policies}\n", []string{"tokens.revocation_file: signing.jwk: revocation file: line 1: want \"token ID\" or \"subject NAME\""}},
		{"two problems at once", "listen: 1\ntokens: {audience: postern, jwks_file: jwks.json}\npolicy: {dir: policies}\nlog: {format: xml}\n", []string{"listen: want host:port", "log.format: want text or json"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			private, err := f.key.MarshalJWK()
			if err != nil {
				t.Fatal(err)
			}
			f.write(t, "signing.jwk", string(private))
			path := f.write(t, "relay.yaml", tt.yaml)
			_, err = LoadRelay(path)
			if err == nil {
				t.Fatal("loaded a bad configuration")
			}
			msg := err.Error()
			if !strings.Contains(msg, path) {
				t.Errorf("error does not name the file %s:\n%s", path, msg)
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error lacks %q:\n%s", w, msg)
				}
			}
			if strings.Contains(msg, "hunter2") {
				t.Errorf("error reveals a password:\n%s", msg)
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Errorf("error is not a *config.Error: %T", err)
			}
		})
	}
}

func TestLoadRelayMissingFile(t *testing.T) {
	_, err := LoadRelay(filepath.Join(t.TempDir(), "nope.yaml"))
	if err == nil || !strings.Contains(err.Error(), "nope.yaml: cannot read the configuration file") {
		t.Fatalf("err = %v", err)
	}
}

func goodConnector(pin string) string {
	return `
relays: [127.0.0.1:7443, 127.0.0.2:7443]
transport: tcp
token_file: connector.token
trust:
  pin: ` + pin + `
services:
  - name: db
    kind: postgres
    upstream: 10.0.0.5:5432
    environment: staging
    labels: [pii, customers]
    description: the staging database
    dial_timeout: 3s
    postgres:
      user: app
      database: appdb
      password_file: pg-password
      sslmode: require
      read_only: {user: reader, password_env: POSTERN_TEST_TEAM}
  - name: api
    kind: http
    upstream: internal.example:443
    environment: prod
    http:
      tls: true
      headers:
        Authorization: {file: api-auth}
        X-Team: {env: POSTERN_TEST_TEAM}
backoff: {min: 100ms, max: 5s}
metrics: {listen: "127.0.0.1:0"}
`
}

func testPin(t *testing.T) string {
	t.Helper()
	cert, err := transport.SelfSigned("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	return transport.Pin(cert)
}

func TestLoadConnector(t *testing.T) {
	t.Setenv("POSTERN_TEST_TEAM", "platform")
	f := newFixture(t)
	pin := testPin(t)
	c, err := LoadConnector(f.write(t, "connector.yaml", goodConnector(pin)))
	if err != nil {
		t.Fatal(err)
	}
	cfg := c.Config
	if len(cfg.Relays) != 2 || cfg.Pin != pin || cfg.MinBackoff != 100*time.Millisecond || cfg.MaxBackoff != 5*time.Second {
		t.Errorf("config %+v", cfg)
	}
	if c.MetricsListen != "127.0.0.1:0" {
		t.Errorf("metrics.listen %q", c.MetricsListen)
	}
	if cfg.Transport == nil || cfg.Transport.Network != "tcp" {
		t.Errorf("transport %+v, want network tcp", cfg.Transport)
	}
	if len(cfg.Services) != 2 {
		t.Fatalf("services %+v", cfg.Services)
	}
	db, api := cfg.Services[0], cfg.Services[1]
	if db.Name != "db" || db.Kind != "postgres" || db.Upstream != "10.0.0.5:5432" || db.DialTimeout != 3*time.Second || len(db.Labels) != 2 {
		t.Errorf("db %+v", db)
	}
	if db.Postgres == nil || db.Postgres.User != "app" || db.Postgres.Database != "appdb" || db.Postgres.SSLMode != "require" {
		t.Fatalf("db.postgres %+v", db.Postgres)
	}
	if pw, err := db.Postgres.Password.Read(); err != nil || pw != "s3cret" {
		t.Errorf("password: %v (right value: %v)", err, pw == "s3cret")
	}
	if ro := db.Postgres.ReadOnly; ro == nil || ro.User != "reader" || ro.Password.Env != "POSTERN_TEST_TEAM" {
		t.Errorf("db.postgres.read_only %+v", ro)
	}
	if api.HTTP == nil || !api.HTTP.TLS {
		t.Fatalf("api.http %+v", api.HTTP)
	}
	if v, err := api.HTTP.Headers["Authorization"].Read(); err != nil || v != "Bearer abc" {
		t.Errorf("Authorization header: %v", err)
	}
	if v, err := api.HTTP.Headers["X-Team"].Read(); err != nil || v != "platform" {
		t.Errorf("X-Team header %q: %v", v, err)
	}
	tok, err := cfg.TokenSource(context.Background())
	if err != nil || tok != f.token {
		t.Errorf("token source: %v", err)
	}
}

func TestConnectorErrors(t *testing.T) {
	pin := testPin(t)
	svc := "services:\n  - name: db\n    upstream: 127.0.0.1:5432\n"
	head := "relays: [127.0.0.1:7443]\ntoken_file: connector.token\ntrust: {pin: " + pin + "}\n"
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{"bad transport", head + "transport: sctp\n" + svc, []string{"connector.yaml:", `transport: want auto (QUIC, falling back to TLS over TCP), quic or tcp, got "sctp"`}},
		{"missing relays", "token_file: connector.token\ntrust: {pin: " + pin + "}\n" + svc, []string{"connector.yaml:1:1: relays: required"}},
		{"missing token file", "relays: [127.0.0.1:7443]\ntrust: {pin: " + pin + "}\n" + svc, []string{"connector.yaml:1:1: token_file: required"}},
		{"unreadable token file", "relays: [127.0.0.1:7443]\ntoken_file: gone.token\ntrust: {pin: " + pin + "}\n" + svc, []string{"connector.yaml:2:1: token_file: cannot read token file", "gone.token"}},
		{"token file too large", "relays: [127.0.0.1:7443]\ntoken_file: huge.token\ntrust: {pin: " + pin + "}\n" + svc, []string{"connector.yaml:2:1: token_file: cannot read token file", "huge.token: larger than 64 KiB: not a token file"}},
		{"agent token", "relays: [127.0.0.1:7443]\ntoken_file: agent.token\ntrust: {pin: " + pin + "}\n" + svc, []string{"connector.yaml:2:1: token_file:", `role "agent"`}},
		{"service not granted", head + "services:\n  - name: prod-db\n    upstream: 127.0.0.1:5432\n", []string{"connector.yaml:5:5: services[0].name:", `does not grant service "prod-db"`}},
		{"service described otherwise", head + "services:\n  - name: api\n    kind: http\n    upstream: 127.0.0.1:80\n    environment: staging\n",
			[]string{"connector.yaml:8:5: services[0].environment:", `service "api" has environment "staging", but the token in connector.token describes it with environment "prod"`}},
		{"service kind otherwise", head + "services:\n  - name: api\n    upstream: 127.0.0.1:80\n    environment: prod\n",
			[]string{"services[0].kind:", `service "api" has kind "tcp", but the token`}},
		{"missing trust", "relays: [127.0.0.1:7443]\ntoken_file: connector.token\n" + svc, []string{"trust.pin: required"}},
		{"bad pin", "relays: [127.0.0.1:7443]\ntoken_file: connector.token\ntrust: {pin: abc}\n" + svc, []string{"connector.yaml:3:9: trust.pin: want sha256:"}},
		{"unreadable ca", "relays: [127.0.0.1:7443]\ntoken_file: connector.token\ntrust: {ca_file: ca.pem}\n" + svc, []string{"connector.yaml:3:9: trust.ca_file: cannot read"}},
		{"bad relay", "relays: [relay.example]\ntoken_file: connector.token\ntrust: {pin: " + pin + "}\n" + svc, []string{"connector.yaml:1:10: relays[0]: want host:port"}},
		{"bad metrics listen", head + svc + "metrics: {listen: localhost}\n", []string{"metrics.listen: want host:port", `got "localhost"`}},
		{"missing upstream", head + "services:\n  - name: db\n    kind: tcp\n", []string{"connector.yaml:5:5: services[0].upstream: required"}},
		{"unknown service key", head + svc + "    upsteam: x\n", []string{"connector.yaml:7:5: services[0].upsteam: unknown field", `did you mean "upstream"`}},
		{"wrong type labels", head + svc + "    labels: financial\n", []string{"connector.yaml:7:13: services[0].labels: want a list"}},
		{"wrong type tls", head + "services:\n  - name: api\n    kind: http\n    upstream: 127.0.0.1:80\n    http: {tls: yes please}\n", []string{"connector.yaml:8:17: services[0].http.tls: want true or false"}},
		{"unreadable password", head + "services:\n  - name: db\n    kind: postgres\n    upstream: 127.0.0.1:5432\n    postgres:\n      user: app\n      password_file: /nonexistent/pw\n", []string{"connector.yaml:10:7: services[0].postgres.password_file: cannot read /nonexistent/pw"}},
		{"unset password env", head + "services:\n  - name: db\n    kind: postgres\n    upstream: 127.0.0.1:5432\n    postgres:\n      user: app\n      password_env: POSTERN_TEST_UNSET\n", []string{"services[0].postgres.password_env: environment variable POSTERN_TEST_UNSET is not set"}},
		{"inline secret", head + "services:\n  - name: db\n    kind: postgres\n    upstream: 127.0.0.1:5432\n    postgres:\n      user: app\n      password: hunter2\n", []string{"services[0].postgres.password: unknown field"}},
		{"header without source", head + "services:\n  - name: api\n    kind: http\n    upstream: 127.0.0.1:80\n    http:\n      headers:\n        Authorization: {}\n", []string{"services[0].http.headers.Authorization.file: required"}},
		{"postgres on http", head + "services:\n  - name: api\n    kind: http\n    upstream: 127.0.0.1:80\n    postgres: {user: app}\n", []string{"connector.yaml:8:5: services[0].postgres: only for kind postgres"}},
		{"read-only login without user", head + "services:\n  - name: db\n    kind: postgres\n    upstream: 127.0.0.1:5432\n    postgres:\n      user: app\n      read_only: {password_env: POSTERN_TEST_UNSET}\n",
			[]string{"services[0].postgres.read_only.user: required", "services[0].postgres.read_only.password_env: environment variable POSTERN_TEST_UNSET is not set"}},
		{"read-only login is the main one", head + "services:\n  - name: db\n    kind: postgres\n    upstream: 127.0.0.1:5432\n    postgres:\n      user: app\n      read_only: {user: app}\n",
			[]string{`services[0].postgres.read_only.user: is postgres.user ("app"): the read-only login must be a role of its own`}},
		{"read-only login with an inline password", head + "services:\n  - name: db\n    kind: postgres\n    upstream: 127.0.0.1:5432\n    postgres:\n      user: app\n      read_only: {user: reader, password: hunter2}\n",
			[]string{"services[0].postgres.read_only.password: unknown field"}},
		{"missing postgres user", head + "services:\n  - name: db\n    kind: postgres\n    upstream: 127.0.0.1:5432\n    postgres: {database: app}\n", []string{"services[0].postgres.user: required"}},
		{"bound token without key_file", "relays: [127.0.0.1:7443]\ntoken_file: bound.token\ntrust: {pin: " + pin + "}\n" + svc, []string{"key_file: required: the token in bound.token is bound to a key"}},
		{"key_file not a key", head + "key_file: connector.token\n" + svc, []string{"connector.yaml:4:1: key_file: connector.token:", `want a PEM "PRIVATE KEY"`}},
		{"key_file missing", head + "key_file: gone.key\n" + svc, []string{"connector.yaml:4:1: key_file: cannot read gone.key"}},
		{"duplicate service", head + svc + "  - name: db\n    upstream: 127.0.0.1:5433\n", []string{"connector.yaml:7:5: services[1].name: service \"db\" is listed twice"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			f.write(t, "agent.token", f.issue(t, identity.Claims{Subject: "a", Role: identity.RoleAgent}))
			f.write(t, "huge.token", strings.Repeat(f.token, 1000))
			f.write(t, "bound.token", f.issue(t, identity.Claims{Subject: "c1", Role: identity.RoleConnector, Services: identity.ServiceNames("db"), BoundKey: strings.Repeat("A", 43)}))
			path := f.write(t, "connector.yaml", tt.yaml)
			_, err := LoadConnector(path)
			if err == nil {
				t.Fatal("loaded a bad configuration")
			}
			msg := err.Error()
			for _, w := range append([]string{path}, tt.want...) {
				if !strings.Contains(msg, w) {
					t.Errorf("error lacks %q:\n%s", w, msg)
				}
			}
			if strings.Contains(msg, f.token) || strings.Contains(msg, "s3cret") {
				t.Errorf("error reveals a secret:\n%s", msg)
			}
		})
	}
}

// TestTokenFileSource: a token rewritten on disk is what the next call
// returns; an expired one is refused with the file's name.
func TestTokenFileSource(t *testing.T) {
	f := newFixture(t)
	path := filepath.Join(f.dir, "connector.token")
	src := TokenFileSource(path)
	ctx := context.Background()
	if tok, err := src(ctx); err != nil || tok != f.token {
		t.Fatalf("first read: %v", err)
	}
	next := f.issue(t, identity.Claims{Subject: "c1", Role: identity.RoleConnector, Services: identity.ServiceNames("db"), ID: "second"})
	f.write(t, "connector.token", "\n"+next+"\n\n")
	if tok, err := src(ctx); err != nil || tok != next {
		t.Fatalf("after rewrite: %v (same as before: %v)", err, tok == f.token)
	}
	old := f.issue(t, identity.Claims{Subject: "c1", Role: identity.RoleConnector, Services: identity.ServiceNames("db"), ExpiresAt: time.Now().Add(-time.Minute)})
	f.write(t, "connector.token", old)
	if _, err := src(ctx); err == nil || !strings.Contains(err.Error(), "expired") || !strings.Contains(err.Error(), path) || strings.Contains(err.Error(), old) {
		t.Errorf("expired token: %v", err)
	}
	f.write(t, "connector.token", "  \n")
	if _, err := src(ctx); err == nil || !strings.Contains(err.Error(), "is empty") {
		t.Errorf("empty file: %v", err)
	}
}

func TestLoadPoliciesRejectsTypos(t *testing.T) {
	tests := []struct {
		name, src, want string
	}{
		{"unknown entity type", `@id("p") permit (principal in Groop::"coding-agents", action, resource);`, "Groop"},
		{"unknown attribute", `@id("f") forbid (principal, action, resource) when { resource.lables.contains("financial") };`, "lables"},
		{"undeclared token attribute", `@id("t") permit (principal, action, resource) when { principal has team && principal.team == "x" };`, "team"},
		{"syntax", `@id("s") permit (principal, action resource);`, "syntax"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "p.cedar"), []byte(tt.src), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := LoadPolicies(dir, policyOptions())
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "p.cedar:1") {
				t.Errorf("err = %v, want one naming p.cedar:1 and %q", err, tt.want)
			}
		})
	}
}

func policyOptions() policy.ValidateOptions { return policy.ValidateOptions{} }

// TestReadmeReference: the configuration reference in the README decodes
// without an unknown key or a value of the wrong type, so that it cannot
// drift from what the command reads.
func TestReadmeReference(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	block := func(heading string) []byte {
		t.Helper()
		_, rest, ok := strings.Cut(string(readme), heading+"\n")
		if !ok {
			t.Fatalf("README has no %q", heading)
		}
		_, rest, ok = strings.Cut(rest, "```yaml\n")
		if !ok {
			t.Fatalf("no yaml block after %q", heading)
		}
		body, _, _ := strings.Cut(rest, "```")
		return []byte(body)
	}
	var rf RelayFile
	if d := decode("README.md relay.yaml", block("### relay.yaml"), &rf); len(d.errs) > 0 {
		t.Errorf("relay.yaml reference: %v", d.err())
	}
	if rf.Tokens.Audience == "" || rf.Policy.Dir == "" || len(rf.Bindings) == 0 || rf.DrainTimeout == 0 {
		t.Errorf("relay.yaml reference decoded to %+v", rf)
	}
	var cf ConnectorFile
	if d := decode("README.md connector.yaml", block("### connector.yaml"), &cf); len(d.errs) > 0 {
		t.Errorf("connector.yaml reference: %v", d.err())
	}
	if rf.Transport != "auto" || cf.Transport != "auto" {
		t.Errorf("transport reference: relay %q, connector %q", rf.Transport, cf.Transport)
	}
	if len(cf.Relays) != 2 || len(cf.Services) != 2 || cf.Services[0].Postgres == nil || cf.Services[1].HTTP == nil || len(cf.Services[1].HTTP.Headers) != 1 {
		t.Errorf("connector.yaml reference decoded to %+v", cf)
	}
}

// TestLoadRelayPolicy: the policy section alone resolves as LoadRelay
// resolves it, and its errors are located the same way.
func TestLoadRelayPolicy(t *testing.T) {
	f := newFixture(t)
	path := f.write(t, "relay.yaml", goodRelay)
	r, err := LoadRelay(path)
	if err != nil {
		t.Fatal(err)
	}
	dir, opts, err := LoadRelayPolicy(path)
	if err != nil {
		t.Fatal(err)
	}
	if dir != r.PolicyDir || opts.PrincipalAttributes["team"] != "String" || len(opts.DetailKeys) != 1 || opts.DetailKeys[0] != "database" {
		t.Errorf("LoadRelayPolicy = %q %+v, LoadRelay has %q %+v", dir, opts, r.PolicyDir, r.PolicyOptions)
	}
	path = f.write(t, "bad.yaml", "policy:\n  dir: nowhere\n")
	if _, _, err := LoadRelayPolicy(path); err == nil || !strings.Contains(err.Error(), "bad.yaml:2:3: policy.dir: cannot read nowhere") {
		t.Errorf("missing policy dir: %v", err)
	}
}
