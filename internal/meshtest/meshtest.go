// Package meshtest starts a whole Postern mesh inside a test: a relay on
// 127.0.0.1:0 with a real signing key, verifier and Cedar policies, and
// connectors and agent clients talking to it over real QUIC. Everything it
// starts is stopped by t.Cleanup.
package meshtest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/postern/postern"
	"github.com/postern/postern/internal/tcpserve"
	"github.com/postern/postern/mesh"
	"github.com/postern/postern/mesh/connector"
	"github.com/postern/postern/mesh/identity"
	"github.com/postern/postern/mesh/relay"
	"github.com/postern/postern/policy"
	"github.com/postern/postern/transport"
)

// Audience and Issuer are those of every token the harness issues, and
// what its relay's verifier requires.
const (
	Audience = "postern-test"
	Issuer   = "https://issuer.postern.test"
)

// Policies is the product's sentence as policy: coding agents may connect
// to staging, and nobody to anything labelled financial; coding agents may
// read and write through staging bindings (and the finance team through
// prod ones), since the connector decides each HTTP request and connect
// alone permits none.
const Policies = `
@id("staging-for-coding-agents")
permit (principal in Group::"coding-agents", action == Action::"connect", resource in Environment::"staging");

@id("forbid-financial")
forbid (principal, action, resource) when { resource has labels && resource.labels.contains("financial") };

@id("prod-for-finance-team")
permit (principal in Group::"finance", action == Action::"connect", resource in Environment::"prod");

@id("staging-requests-for-coding-agents")
permit (principal in Group::"coding-agents", action in [Action::"read", Action::"write"], resource in Environment::"staging");

@id("prod-requests-for-finance-team")
permit (principal in Group::"finance", action in [Action::"read", Action::"write"], resource in Environment::"prod");
`

// Options adjust the mesh. The zero value is a working mesh with Policies.
type Options struct {
	Policies string            // Cedar source; empty means Policies
	Limits   relay.Limits      // relay limits
	Bindings []postern.Binding // declared bindings
	Leeway   time.Duration     // the verifier's clock-skew leeway (negative: none)
	// MaxLifetime is the verifier's cap on exp - iat; zero: none.
	MaxLifetime time.Duration
	// Revocations is the relay's Config.Revocations; nil: none.
	Revocations relay.Revocations
	// PolicyOptions is the relay's Config.PolicyOptions: what connectors
	// validate the policy set against. Nil: they only parse it.
	PolicyOptions *policy.ValidateOptions
	// Configure, when set, adjusts the relay's configuration last.
	Configure func(*relay.Config)
	// RequireBoundTokens is the relay's: bearer agent tokens are refused.
	RequireBoundTokens bool
	// Metrics and TracerProvider are the relay's Config.Metrics and
	// Config.TracerProvider.
	Metrics        prometheus.Registerer
	TracerProvider trace.TracerProvider
	// Network is the transport of the relay, and of the clients and
	// connectors the mesh starts (transport.Config.Network): "" means
	// the environment variable POSTERN_TEST_NETWORK, and when that is
	// unset too, auto (the relay on both, clients trying QUIC first).
	// POSTERN_TEST_NETWORK=tcp runs a package's mesh tests over TLS/TCP.
	Network string
}

// EnvNetwork names the transport of meshes whose Options.Network is
// empty.
const EnvNetwork = "POSTERN_TEST_NETWORK"

// Mesh is a running relay and what is needed to join it.
type Mesh struct {
	t        testing.TB
	Key      *identity.SigningKey
	Verifier *identity.Verifier
	Policy   *policy.Engine
	Cert     tls.Certificate
	Pin      string
	Audit    *Log
	opts     Options

	mu    sync.Mutex
	relay *relay.Relay
	addr  string
}

// New starts a relay.
func New(t testing.TB, opts Options) *Mesh {
	t.Helper()
	key, err := identity.GenerateSigningKey(identity.EdDSA)
	if err != nil {
		t.Fatal(err)
	}
	jwks, err := key.PublicJWKS()
	if err != nil {
		t.Fatal(err)
	}
	v, err := identity.NewVerifier(context.Background(), identity.VerifierConfig{Audience: Audience, Issuer: Issuer, KeySet: jwks, Leeway: opts.Leeway, MaxLifetime: opts.MaxLifetime})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	src := opts.Policies
	if src == "" {
		src = Policies
	}
	set, err := policy.Parse("test.cedar", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := transport.SelfSigned("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if opts.Network == "" {
		opts.Network = os.Getenv(EnvNetwork)
	}
	if err := transport.CheckNetwork(opts.Network); err != nil {
		t.Fatal(err)
	}
	m := &Mesh{t: t, Key: key, Verifier: v, Policy: policy.NewEngine(set), Cert: cert, Pin: transport.Pin(cert), Audit: &Log{}, opts: opts}
	m.Audit.sync = func() {
		if r := m.Relay(); r != nil {
			r.SyncAudit()
		}
	}
	m.StartRelay("127.0.0.1:0")
	t.Cleanup(m.StopRelay)
	return m
}

// StartRelay starts the relay on addr (use Addr() to restart it where it
// was).
func (m *Mesh) StartRelay(addr string) {
	m.t.Helper()
	cfg := relay.Config{
		Addr:               addr,
		Certificate:        m.Cert,
		Verifier:           m.Verifier,
		Policy:             m.Policy,
		PolicyOptions:      m.opts.PolicyOptions,
		Bindings:           m.opts.Bindings,
		Limits:             m.opts.Limits,
		RequireBoundTokens: m.opts.RequireBoundTokens,
		Revocations:        m.opts.Revocations,
		Transport:          &transport.Config{Network: m.opts.Network},
		Audit:              slog.New(slog.NewJSONHandler(m.Audit, nil)),
		Metrics:            m.opts.Metrics,
		TracerProvider:     m.opts.TracerProvider,
	}
	if m.opts.Configure != nil {
		m.opts.Configure(&cfg)
	}
	r, err := relay.Listen(cfg)
	if err != nil {
		m.t.Fatal(err)
	}
	m.mu.Lock()
	m.relay, m.addr = r, r.Addr().String()
	m.mu.Unlock()
}

// StopRelay closes the relay, if it runs.
func (m *Mesh) StopRelay() {
	m.mu.Lock()
	r := m.relay
	m.relay = nil
	m.mu.Unlock()
	if r != nil {
		r.Close()
	}
}

// Relay returns the running relay.
func (m *Mesh) Relay() *relay.Relay {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.relay
}

// Addr is the relay's address.
func (m *Mesh) Addr() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.addr
}

// Token issues a token valid for an hour.
func (m *Mesh) Token(c identity.Claims) string {
	m.t.Helper()
	if c.Audience == nil {
		c.Audience = []string{Audience}
	}
	if c.Issuer == "" {
		c.Issuer = Issuer
	}
	if c.ExpiresAt.IsZero() {
		c.ExpiresAt = time.Now().Add(time.Hour)
	}
	tok, err := m.Key.Issue(c)
	if err != nil {
		m.t.Fatal(err)
	}
	return tok
}

// AgentToken issues an agent token for sub in groups.
func (m *Mesh) AgentToken(sub string, groups ...string) string {
	return m.Token(identity.Claims{Subject: sub, Role: identity.RoleAgent, Groups: groups})
}

// ConnectorToken issues a connector token granting services (described,
// or by name alone: see Describe and identity.ServiceNames).
func (m *Mesh) ConnectorToken(sub string, services ...identity.Service) string {
	return m.Token(identity.Claims{Subject: sub, Role: identity.RoleConnector, Services: services})
}

// Describe is what a connector token says of services: their names, and
// what policy reads of them (an empty kind is tcp, as for the connector).
func Describe(services ...connector.Service) []identity.Service {
	out := make([]identity.Service, 0, len(services))
	for _, s := range services {
		kind := s.Kind
		if kind == "" {
			kind = postern.KindTCP
		}
		out = append(out, identity.Service{Name: s.Name, Kind: kind, Environment: s.Environment, Labels: s.Labels})
	}
	return out
}

// Client returns an agent client for tok, closed at cleanup.
func (m *Mesh) Client(tok string) *mesh.Client {
	m.t.Helper()
	c, err := mesh.NewClient(mesh.Config{Relay: m.Addr(), Token: tok, Pin: m.Pin, Transport: m.ClientTransport()})
	if err != nil {
		m.t.Fatal(err)
	}
	m.t.Cleanup(func() { c.Close() })
	return c
}

// Network is the mesh's transport: "auto", "quic" or "tcp".
func (m *Mesh) Network() string {
	if m.opts.Network == "" {
		return transport.NetworkAuto
	}
	return m.opts.Network
}

// ClientTransport is the transport configuration of the mesh's clients
// and connectors.
func (m *Mesh) ClientTransport() *transport.Config {
	return &transport.Config{Network: m.opts.Network}
}

// Connector starts a connector named name serving services (its token
// grants and describes exactly them) and waits until the relay has registered it. It
// stops at cleanup, or when the returned stop function is called.
func (m *Mesh) Connector(name string, services ...connector.Service) (stop func()) {
	m.t.Helper()
	return m.ConnectorWith(connector.Config{Token: m.ConnectorToken(name, Describe(services...)...), Services: services})
}

// ConnectorWith starts a connector from cfg, filling in the relay address
// and trust, and waits until it is connected.
func (m *Mesh) ConnectorWith(cfg connector.Config) (stop func()) {
	m.t.Helper()
	_, stop = m.StartConnector(cfg)
	return stop
}

// StartConnector is ConnectorWith, returning the connector too.
func (m *Mesh) StartConnector(cfg connector.Config) (c *connector.Connector, stop func()) {
	m.t.Helper()
	if cfg.Relays == nil {
		cfg.Relays = []string{m.Addr()}
	}
	cfg.Pin = m.Pin
	if cfg.Transport == nil {
		cfg.Transport = m.ClientTransport()
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = 20 * time.Millisecond
		cfg.MaxBackoff = 200 * time.Millisecond
	}
	c, err := connector.New(cfg)
	if err != nil {
		m.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			<-done
		})
	}
	m.t.Cleanup(stop)
	select {
	case <-c.Ready():
	case err := <-done:
		m.t.Fatalf("connector stopped before it was ready: %v", err)
	case <-time.After(30 * time.Second):
		m.t.Fatal("connector not ready after 30s")
	}
	return c, stop
}

// WaitFor polls cond until it holds or 10s pass.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Log collects JSON log lines, safe for concurrent writes.
type Log struct {
	mu  sync.Mutex
	buf bytes.Buffer
	// sync, when set, is called before the log is read: the relay's audit
	// trail is written from a queue, and a test reads what it caused.
	sync func()
}

func (l *Log) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// String returns everything logged.
func (l *Log) String() string {
	if l.sync != nil {
		l.sync()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// Events returns the logged records whose message is msg, decoded.
func (l *Log) Events(msg string) []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(l.String()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var ev map[string]any
		if json.Unmarshal(sc.Bytes(), &ev) == nil && ev["msg"] == msg {
			out = append(out, ev)
		}
	}
	return out
}

// EchoServer starts a TCP server on 127.0.0.1:0 that echoes each
// connection's bytes until EOF, then half-closes its side.
func EchoServer(t testing.TB) string {
	t.Helper()
	return Server(t, echo)
}

// ServeEcho is EchoServer on a listener of the caller's (one made in
// another network namespace, say).
func ServeEcho(t testing.TB, ln net.Listener) string {
	t.Helper()
	return Serve(t, ln, echo)
}

func echo(c net.Conn) {
	io.Copy(c, c)
	c.(*net.TCPConn).CloseWrite()
}

// Server starts a TCP server on 127.0.0.1:0 running handle for each
// connection, and returns its address. It stops at cleanup and waits for
// its handlers.
func Server(t testing.TB, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return Serve(t, ln, handle)
}

// Serve is Server on a listener of the caller's.
func Serve(t testing.TB, ln net.Listener, handle func(net.Conn)) string {
	t.Helper()
	t.Cleanup(tcpserve.Serve(ln, handle))
	return ln.Addr().String()
}

// DeadAddr returns a 127.0.0.1 address where nothing listens: an upstream
// that refuses connections.
func DeadAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// IsMeshError reports whether err is a *postern.Error matching target.
func IsMeshError(err, target error) bool {
	var me *postern.Error
	return errors.As(err, &me) && errors.Is(err, target)
}
