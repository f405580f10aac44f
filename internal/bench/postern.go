package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/postern/postern"
	"github.com/postern/postern/internal/config"
	"github.com/postern/postern/internal/gcfloor"
	"github.com/postern/postern/internal/measure"
	"github.com/postern/postern/mesh"
	"github.com/postern/postern/mesh/connector"
	"github.com/postern/postern/mesh/identity"
	"github.com/postern/postern/mesh/relay"
	"github.com/postern/postern/policy"
	"github.com/postern/postern/transport"
)

const (
	audience = "postern-bench"
	issuer   = "https://bench.postern.invalid"
)

// basePolicies is the product's sentence as policy, with reads and writes
// through staging bindings permitted: the connector decides each HTTP
// request, and connect alone permits none. Extra policies that
// decide nothing for the bench's agent can be added (-policies) to show
// what a large policy set costs.
const basePolicies = `
@id("staging-for-coding-agents")
permit (principal in Group::"coding-agents", action == Action::"connect", resource in Environment::"staging");

@id("staging-requests-for-coding-agents")
permit (principal in Group::"coding-agents", action in [Action::"read", Action::"write"], resource in Environment::"staging");

@id("forbid-financial")
forbid (principal, action, resource) when { resource has labels && resource.labels.contains("financial") };
`

func policies(extra int) string {
	var b strings.Builder
	b.WriteString(basePolicies)
	for i := range extra {
		fmt.Fprintf(&b, "@id(\"team-%d\")\npermit (principal in Group::\"team-%d\", action == Action::\"connect\", resource in Environment::\"env-%d\");\n", i, i, i)
	}
	return b.String()
}

// meshKeys are the mesh's signing key and the tokens the bench uses.
type meshKeys struct {
	jwks      []byte
	agent     string
	connector string
}

// Binding names the bench's connector serves.
const (
	bindEcho = "bench-echo"
	bindPG   = "bench-pg"
	bindHTTP = "bench-http"
)

func newMeshKeys() (*meshKeys, error) {
	key, err := identity.GenerateSigningKey(identity.EdDSA)
	if err != nil {
		return nil, err
	}
	jwks, err := key.PublicJWKS()
	if err != nil {
		return nil, err
	}
	exp := time.Now().Add(48 * time.Hour)
	agent, err := key.Issue(identity.Claims{Issuer: issuer, Audience: []string{audience}, Subject: "bench-agent",
		Role: identity.RoleAgent, Groups: []string{"coding-agents"}, ExpiresAt: exp})
	if err != nil {
		return nil, err
	}
	conn, err := key.Issue(identity.Claims{Issuer: issuer, Audience: []string{audience}, Subject: "bench-connector",
		Role: identity.RoleConnector, ExpiresAt: exp,
		// What policy reads of each binding, as startConnector advertises
		// it: the relay takes the token's word, never the connector's.
		Services: []identity.Service{
			{Name: bindEcho, Kind: postern.KindTCP, Environment: "staging"},
			{Name: bindPG, Kind: postern.KindPostgres, Environment: "staging"},
			{Name: bindHTTP, Kind: postern.KindHTTP, Environment: "staging"},
		}})
	if err != nil {
		return nil, err
	}
	return &meshKeys{jwks: jwks, agent: agent, connector: conn}, nil
}

type relayConfig struct {
	JWKS     []byte `json:"jwks"`
	Policies string `json:"policies"`
	// Audit is the file the audit trail is appended to; empty means a
	// JSON handler writing to io.Discard (the events are still built).
	Audit string `json:"audit"`
	// Limits are the relay's; zero fields keep its defaults.
	Limits relay.Limits `json:"limits"`
	// Observe turns metrics and tracing on (observe.go).
	Observe *observeConfig `json:"observe,omitempty"`
	// Network is what the relay listens on (transport.Config.Network).
	Network string `json:"network,omitempty"`
	// Procs, when set, is the relay's GOMAXPROCS: the CPUs it is placed
	// on (placement), as the runtime would have chosen had it started
	// there.
	Procs int `json:"procs,omitempty"`
}

type relayReady struct {
	Addr string `json:"addr"`
	Pin  string `json:"pin"`
}

func startRelay(b []byte) (any, func(), error) {
	var cfg relayConfig
	if err := decodeConfig(b, &cfg); err != nil {
		return nil, nil, err
	}
	if cfg.Procs > 0 {
		runtime.GOMAXPROCS(cfg.Procs)
	}
	v, err := identity.NewVerifier(context.Background(), identity.VerifierConfig{Audience: audience, Issuer: issuer, KeySet: cfg.JWKS})
	if err != nil {
		return nil, nil, err
	}
	set, err := policy.Parse("bench.cedar", []byte(cfg.Policies))
	if err != nil {
		v.Close()
		return nil, nil, err
	}
	cert, err := transport.SelfSigned("127.0.0.1")
	if err != nil {
		v.Close()
		return nil, nil, err
	}
	var audit io.Writer = io.Discard
	var auditFile *os.File
	if cfg.Audit != "" {
		if auditFile, err = os.OpenFile(cfg.Audit, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
			v.Close()
			return nil, nil, err
		}
		audit = auditFile
	}
	// As the postern binary writes it: one write per batch of events.
	bw := bufio.NewWriterSize(audit, 1<<20)
	var r *relay.Relay
	reg, tp, stopObserving, err := startObserving(cfg.Observe, func() error { return r.CheckReady() })
	if err != nil {
		v.Close()
		return nil, nil, err
	}
	r, err = relay.Listen(relay.Config{
		Addr:           "127.0.0.1:0",
		Certificate:    cert,
		Verifier:       v,
		Transport:      &transport.Config{Network: cfg.Network},
		Policy:         policy.NewEngine(set),
		Limits:         cfg.Limits,
		Audit:          slog.New(slog.NewJSONHandler(bw, nil)),
		AuditQueue:     relay.AuditQueue{Flush: bw.Flush},
		Logger:         slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Metrics:        reg,
		TracerProvider: tp,
	})
	if err != nil {
		stopObserving()
		v.Close()
		return nil, nil, err
	}
	statsHook = func() any { return r.Stats() }
	commandHook = func(cmd, _ string) (any, bool) {
		if cmd != cmdSyncAudit {
			return nil, false
		}
		r.SyncAudit()
		return reply{OK: true}, true
	}
	// As postern relay does by default (gc_headroom_mib).
	gc := gcfloor.Start(config.DefaultGCHeadroom)
	stop := func() {
		gc.Stop()
		r.Close()
		stopObserving()
		v.Close()
		if auditFile != nil {
			auditFile.Close()
		}
	}
	return relayReady{Addr: r.Addr().String(), Pin: transport.Pin(cert)}, stop, nil
}

// service is a connector service as the driver describes it. (A
// connector.Secret marshals as "[redacted]", so passwords travel here.)
type service struct {
	Name     string `json:"name"`
	Kind     string `json:"kind"`
	Upstream string `json:"upstream"`
	PGUser   string `json:"pg_user,omitempty"`
	PGPass   string `json:"pg_password,omitempty"`
	PGDB     string `json:"pg_database,omitempty"`
	// MaxConns is connector.Service.MaxConns: zero for the connector's
	// default, which the revocation bench's thousands of streams exceed.
	MaxConns int `json:"max_conns,omitempty"`
}

type connectorConfig struct {
	Relay    string    `json:"relay"`
	Pin      string    `json:"pin"`
	Token    string    `json:"token"`
	Services []service `json:"services"`
	// Ungated turns the connector's statement and request gate off.
	Ungated bool `json:"ungated,omitempty"`
	// Observe turns metrics and tracing on (observe.go).
	Observe *observeConfig `json:"observe,omitempty"`
	// Network is how the connector reaches the relay.
	Network string `json:"network,omitempty"`
}

func startConnector(b []byte) (any, func(), error) {
	var cfg connectorConfig
	if err := decodeConfig(b, &cfg); err != nil {
		return nil, nil, err
	}
	var svcs []connector.Service
	for _, s := range cfg.Services {
		cs := connector.Service{Name: s.Name, Kind: s.Kind, Upstream: s.Upstream, Environment: "staging", MaxConns: s.MaxConns}
		if s.Kind == postern.KindPostgres {
			cs.Postgres = &connector.Postgres{User: s.PGUser, Database: s.PGDB, Password: connector.Secret{Value: s.PGPass}, SSLMode: "disable"}
		}
		if s.Kind == postern.KindHTTP {
			cs.HTTP = &connector.HTTP{}
		}
		svcs = append(svcs, cs)
	}
	var c *connector.Connector
	reg, tp, stopObserving, err := startObserving(cfg.Observe, func() error { return c.CheckReady() })
	if err != nil {
		return nil, nil, err
	}
	c, err = connector.New(connector.Config{
		Relays:         []string{cfg.Relay},
		Token:          cfg.Token,
		Pin:            cfg.Pin,
		Services:       svcs,
		Logger:         slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Measure:        &measure.Connector{Ungated: cfg.Ungated},
		Transport:      &transport.Config{Network: cfg.Network},
		Metrics:        reg,
		TracerProvider: tp,
	})
	if err != nil {
		stopObserving()
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	select {
	case <-c.Ready():
	case err := <-done:
		cancel()
		stopObserving()
		return nil, nil, fmt.Errorf("connector stopped: %w", err)
	case <-time.After(30 * time.Second):
		cancel()
		<-done
		stopObserving()
		return nil, nil, fmt.Errorf("connector not connected after 30s")
	}
	stop := func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
		}
		stopObserving()
	}
	return struct{}{}, stop, nil
}

// agentsConfig starts Count idle agent sessions, for the scale run.
type agentsConfig struct {
	Relay       string `json:"relay"`
	Pin         string `json:"pin"`
	Token       string `json:"token"`
	Count       int    `json:"count"`
	Concurrency int    `json:"concurrency"`
}

type agentsReady struct {
	Connected int     `json:"connected"`
	Failed    int     `json:"failed"`
	Error     string  `json:"error,omitempty"`
	Seconds   float64 `json:"seconds"`
}

func startAgents(b []byte) (any, func(), error) {
	var cfg agentsConfig
	if err := decodeConfig(b, &cfg); err != nil {
		return nil, nil, err
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 16
	}
	start := time.Now()
	clients := make([]*mesh.Client, cfg.Count)
	var (
		mu      sync.Mutex
		ready   agentsReady
		wg      sync.WaitGroup
		tickets = make(chan int)
	)
	for range cfg.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range tickets {
				c, err := mesh.NewClient(mesh.Config{Relay: cfg.Relay, Token: cfg.Token, Pin: cfg.Pin})
				if err == nil {
					// The relay may refuse a handshake while its accept
					// queue is full; a real client retries too.
					for try := 0; try < 5; try++ {
						ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
						err = c.Connect(ctx)
						cancel()
						if err == nil {
							break
						}
						time.Sleep(time.Duration(50<<try) * time.Millisecond)
					}
				}
				mu.Lock()
				if err != nil {
					ready.Failed++
					if ready.Error == "" {
						ready.Error = err.Error()
					}
					if c != nil {
						c.Close()
					}
				} else {
					ready.Connected++
					clients[i] = c
				}
				mu.Unlock()
			}
		}()
	}
	for i := range cfg.Count {
		tickets <- i
	}
	close(tickets)
	wg.Wait()
	ready.Seconds = time.Since(start).Seconds()
	stop := func() {
		for _, c := range clients {
			if c != nil {
				c.Close()
			}
		}
	}
	return ready, stop, nil
}
