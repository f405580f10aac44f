package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/postern/postern"
	"github.com/postern/postern/examples/policies"
	"github.com/postern/postern/internal/config"
	"github.com/postern/postern/internal/pgpolicy"
	"github.com/postern/postern/internal/sqlclass"
	"github.com/postern/postern/mesh/connector"
	"github.com/postern/postern/mesh/identity"
	"github.com/postern/postern/mesh/relay"
	"github.com/postern/postern/policy"
	"github.com/postern/postern/transport"
)

const devAbout = `
Run a whole mesh in one process, for trying Postern and for developing
agents: a relay, a connector, and demo private services behind it:

  staging-api    http      staging              a JSON API; the connector injects its Authorization header
  staging-echo   tcp       staging              a TCP echo service
  staging-db     postgres  staging              a PostgreSQL database (when PostgreSQL is installed)
  prod-status    http      prod                 a status API
  prod-finance   postgres  prod [financial]     financial records (http when PostgreSQL is not installed)

It writes a signing key, its public key set and tokens for two agents (a
coding agent in group coding-agents, an on-call agent in group oncall)
into --dir, copies the example policies there (edit them: they are
reloaded on change), prints the environment variables an agent exports to
use the mesh, then writes audit events to stdout, one JSON line each,
until SIGINT or SIGTERM.`

// devAudience and devIssuer are those of the dev mesh's tokens.
const (
	devAudience = "postern"
	devIssuer   = "postern-dev"
)

func runDev(ctx context.Context, env Env, args []string) int {
	fs := flagSet(env, "dev", "dev [--listen 127.0.0.1:7443] [--dir DIR]", devAbout)
	listen := fs.String("listen", "127.0.0.1:7443", "the relay's `address`: UDP for QUIC and TCP for TLS over TCP, on the same port")
	dirFlag := fs.String("dir", "", "write keys, tokens and policies to `dir` and keep them (default: a temporary directory, removed at exit)")
	policyDir := fs.String("policies", "", "use the *.cedar policies in `dir` (default: the examples, copied into --dir)")
	ttl := fs.Duration("ttl", 12*time.Hour, "lifetime of the tokens")
	noPostgres := fs.Bool("no-postgres", false, "do not start PostgreSQL, even when it is installed")
	metricsAddr := fs.String("metrics", devMetrics, "serve /metrics, /healthz and /readyz of the relay and the connector on `host:port` (\"off\": none; when the default is taken, another port)")
	level := fs.String("log-level", "warn", "operational log `level` on stderr: debug, info, warn or error")
	pos, code, done := parse(fs, env, args)
	if done {
		return code
	}
	if len(pos) > 0 {
		return failf(env, ExitUsage, "dev: unexpected argument %q", pos[0])
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		return failf(env, ExitUsage, "dev: --log-level: want debug, info, warn or error")
	}
	log := newLogger(env.Stderr, config.Log{Level: lvl})

	// From here on a signal must not kill the process: it would leave the
	// temporary directory (a signing key, tokens) and PostgreSQL's data
	// behind. One that arrives while the mesh starts stops it once started.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)

	dir := *dirFlag
	if dir == "" {
		tmp, err := os.MkdirTemp("", "postern-dev-")
		if err != nil {
			return failf(env, ExitFailure, "dev: %v", err)
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return failf(env, ExitFailure, "dev: --dir: %v", err)
	}
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}

	// Audit events start with the connector's session: hold them until
	// the banner is out.
	audit := &gateWriter{w: env.Stdout}
	metrics := *metricsAddr
	if metrics == "off" {
		metrics = ""
	}
	m, err := startDev(ctx, devOptions{
		listen: *listen, dir: dir, policyDir: *policyDir, ttl: *ttl,
		postgres: !*noPostgres, log: log, audit: audit,
		metrics: metrics, metricsFallback: !flagGiven(fs, "metrics"),
	})
	if err != nil {
		return failf(env, ExitFailure, "dev: %v", err)
	}
	m.printBanner(env.Stdout)
	audit.release()

	why := waitStop(ctx, sigs, func() { m.watcher.reload("SIGHUP") })
	log.Info("dev: stopping", "signal", why)
	m.stop()
	fmt.Fprintln(env.Stderr, "postern dev: stopped")
	return ExitOK
}

type devOptions struct {
	listen, dir, policyDir string
	ttl                    time.Duration
	postgres               bool
	log                    *slog.Logger
	audit                  io.Writer
	metrics                string // metrics listener address; "" for none
	metricsFallback        bool   // when metrics is taken, listen on another port
}

// devMesh is a running dev mesh.
type devMesh struct {
	opts     devOptions
	relay    *relay.Relay
	pin      string
	engine   *policy.Engine
	watcher  *policyWatcher
	services []connector.Service
	servers  []*demoServer
	pgNote   string // what happened to PostgreSQL, for the banner
	pgStop   func()
	tokens   []devIdentity
	obs      *observer
	stopConn func()
	verifier *identity.Verifier
}

type devIdentity struct {
	sub, group, file string
}

func startDev(ctx context.Context, o devOptions) (_ *devMesh, err error) {
	m := &devMesh{opts: o}
	defer func() {
		if err != nil {
			m.stop()
		}
	}()

	// Keys and tokens.
	key, err := identity.GenerateSigningKey(identity.EdDSA)
	if err != nil {
		return nil, err
	}
	jwks, err := key.PublicJWKS()
	if err != nil {
		return nil, err
	}
	private, err := key.MarshalJWK()
	if err != nil {
		return nil, err
	}
	if err := writeFileAtomic(filepath.Join(o.dir, "signing-key.jwk"), private, 0o600); err != nil {
		return nil, err
	}
	if err := writeFileAtomic(filepath.Join(o.dir, "jwks.json"), indentJSON(jwks), 0o644); err != nil {
		return nil, err
	}
	issue := func(c identity.Claims, file string) (string, error) {
		c.Issuer, c.Audience, c.ExpiresAt = devIssuer, []string{devAudience}, time.Now().Add(o.ttl)
		tok, err := key.Issue(c)
		if err != nil {
			return "", err
		}
		return tok, writeFileAtomic(filepath.Join(o.dir, file), []byte(tok+"\n"), 0o600)
	}
	m.tokens = []devIdentity{
		{sub: "coding-agent", group: "coding-agents", file: filepath.Join(o.dir, "coding-agent.token")},
		{sub: "oncall-agent", group: "oncall", file: filepath.Join(o.dir, "oncall-agent.token")},
	}
	for _, id := range m.tokens {
		if _, err := issue(identity.Claims{Subject: id.sub, Role: identity.RoleAgent, Groups: []string{id.group}}, filepath.Base(id.file)); err != nil {
			return nil, err
		}
	}

	// Demo services.
	apiAuth := "Bearer " + randomHex(16)
	api, err := serveHTTP(demoAPI("staging-api", "staging", apiAuth))
	if err != nil {
		return nil, err
	}
	m.servers = append(m.servers, api)
	echo, err := serveEcho()
	if err != nil {
		return nil, err
	}
	m.servers = append(m.servers, echo)
	status, err := serveHTTP(demoStatus())
	if err != nil {
		return nil, err
	}
	m.servers = append(m.servers, status)
	m.services = []connector.Service{
		{Name: "staging-api", Kind: postern.KindHTTP, Upstream: api.addr, Environment: "staging",
			Description: "orders API (demo); the connector adds its Authorization header",
			HTTP:        &connector.HTTP{Headers: map[string]connector.Secret{"Authorization": {Value: apiAuth}}}},
		{Name: "staging-echo", Kind: postern.KindTCP, Upstream: echo.addr, Environment: "staging", Description: "TCP echo (demo)"},
		{Name: "prod-status", Kind: postern.KindHTTP, Upstream: status.addr, Environment: "prod", Description: "production status API (demo)"},
	}
	pgServices, note, stop, err := devPostgres(ctx, o)
	if err != nil {
		return nil, err
	}
	m.pgNote, m.pgStop = note, stop
	if pgServices != nil {
		m.services = append(m.services, pgServices...)
	} else {
		ledger, err := serveHTTP(demoLedger())
		if err != nil {
			return nil, err
		}
		m.servers = append(m.servers, ledger)
		m.services = append(m.services, connector.Service{Name: "prod-finance", Kind: postern.KindHTTP, Upstream: ledger.addr,
			Environment: "prod", Labels: []string{"financial"}, Description: "financial records (demo)"})
	}
	slices.SortFunc(m.services, func(a, b connector.Service) int { return strings.Compare(a.Name, b.Name) })
	// The token says what each service is, so that the relay lets policy
	// read what the issuer said and not what the connector claims.
	var granted []identity.Service
	for _, s := range m.services {
		granted = append(granted, identity.Service{Name: s.Name, Kind: s.Kind, Environment: s.Environment, Labels: s.Labels})
	}
	connTok, err := issue(identity.Claims{Subject: "dev-connector", Role: identity.RoleConnector, Services: granted}, "connector.token")
	if err != nil {
		return nil, err
	}

	// Policies: the examples, copied where the user can edit them.
	pdir := o.policyDir
	if pdir == "" {
		pdir = filepath.Join(o.dir, "policies")
		if err := copyPolicies(pdir); err != nil {
			return nil, err
		}
	}
	loaded, _ := dirState(pdir)
	set, err := config.LoadPolicies(pdir, policy.ValidateOptions{})
	if err != nil {
		return nil, fmt.Errorf("policies in %s: %w", pdir, err)
	}
	m.engine = policy.NewEngine(set)
	m.opts.policyDir = pdir

	// Relay and connector.
	m.verifier, err = identity.NewVerifier(ctx, identity.VerifierConfig{Audience: devAudience, Issuer: devIssuer, KeySet: jwks, Logger: o.log})
	if err != nil {
		return nil, err
	}
	cert, err := transport.SelfSigned("127.0.0.1", "localhost")
	if err != nil {
		return nil, err
	}
	m.pin = transport.Pin(cert)
	m.obs, err = newObserver(ctx, "postern-dev", o.metrics, o.log)
	if err != nil {
		return nil, err
	}
	m.relay, err = relay.Listen(relay.Config{
		Addr: o.listen, Certificate: cert, Verifier: m.verifier, Policy: m.engine,
		PolicyOptions: &policy.ValidateOptions{},
		Logger:        o.log, Audit: slog.New(slog.NewJSONHandler(o.audit, nil)),
		Metrics: m.obs.registerer(), TracerProvider: m.obs.tp,
	})
	if err != nil {
		return nil, err
	}
	m.watcher = startPolicyWatcher(pdir, loaded, policy.ValidateOptions{}, m.engine, devPolicyPoll, o.log)

	c, err := connector.New(connector.Config{
		Relays: []string{m.relay.Addr().String()}, Token: connTok, Pin: m.pin,
		Services: m.services, Logger: o.log, Audit: slog.New(slog.NewJSONHandler(o.audit, nil)),
		MinBackoff: 50 * time.Millisecond, MaxBackoff: 2 * time.Second,
		Metrics: m.obs.registerer(), TracerProvider: m.obs.tp,
	})
	if err != nil {
		return nil, err
	}
	ready := func() error {
		if err := m.relay.CheckReady(); err != nil {
			return err
		}
		return c.CheckReady()
	}
	if err := m.obs.serve(ready); err != nil {
		if !o.metricsFallback {
			return nil, err
		}
		m.obs.listen = "127.0.0.1:0" // the default port is taken: any other
		if err := m.obs.serve(ready); err != nil {
			return nil, err
		}
	}
	cctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(cctx) }()
	m.stopConn = func() {
		cancel()
		<-done
	}
	select {
	case <-c.Ready():
	case err := <-done:
		m.stopConn = nil
		cancel()
		return nil, fmt.Errorf("connector: %w", err)
	case <-time.After(10 * time.Second):
		return nil, errors.New("connector: not connected to the relay after 10s")
	}
	return m, nil
}

// devPolicyPoll is how often postern dev looks for edited policies.
const devPolicyPoll = time.Second

func (m *devMesh) stop() {
	if m.stopConn != nil {
		m.stopConn()
		m.stopConn = nil
	}
	if m.obs != nil {
		m.obs.close()
		m.obs = nil
	}
	if m.watcher != nil {
		m.watcher.stop()
		m.watcher = nil
	}
	if m.relay != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		m.relay.Shutdown(ctx)
		cancel()
		m.relay = nil
	}
	if m.verifier != nil {
		m.verifier.Close()
		m.verifier = nil
	}
	for _, s := range m.servers {
		s.close()
	}
	m.servers = nil
	if m.pgStop != nil {
		m.pgStop()
		m.pgStop = nil
	}
}

func (m *devMesh) printBanner(w io.Writer) {
	addr := m.relay.Addr().String()
	fmt.Fprintf(w, "postern dev: a relay, a connector and demo private services in one process.\n\n")
	fmt.Fprintf(w, "relay     %s (QUIC, and TLS over TCP), certificate pin %s\n", addr, m.pin)
	fmt.Fprintf(w, "files     %s\n", m.opts.dir)
	fmt.Fprintf(w, "policies  %s (%s), reloaded on change\n", m.opts.policyDir, strings.Join(m.engine.Set().IDs(), ", "))
	if u := m.obs.url(); u != "" {
		fmt.Fprintf(w, "metrics   %s/metrics (Prometheus), %s/readyz; a summary: postern status --metrics %s\n", u, u, u)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "binding\tkind\tenvironment\tlabels\tcoding-agent\toncall-agent")
	for _, s := range m.services {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, s.Kind, s.Environment, strings.Join(s.Labels, ","),
			m.decide("coding-agent", "coding-agents", s), m.decide("oncall-agent", "oncall", s))
	}
	tw.Flush()
	fmt.Fprintf(w, "\nrequests  the connector decides each HTTP request; the coding agent through staging-api:\n")
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		fmt.Fprintf(w, "  %-4s /orders  %s\n", method, m.decideRequest("coding-agent", "coding-agents", "staging-api", method, "/orders"))
	}
	if m.hasService("prod-status") {
		fmt.Fprintf(w, "and the on-call agent through prod-status, which it may write to under /v1/incidents/:\n")
		for _, path := range []string{"/v1/incidents/42", "/v1/config"} {
			fmt.Fprintf(w, "  POST %-17s %s\n", path, m.decideRequest("oncall-agent", "oncall", "prod-status", http.MethodPost, path))
		}
	}
	fmt.Fprintf(w, "  (a denied request is answered 403 with {\"error\":\"denied\",\"policies\":[...],\"message\":...}; TRACE and CONNECT with 405)\n")
	if m.hasService("staging-db") {
		fmt.Fprintf(w, "\nstatements  the connector decides each SQL statement; the coding agent through staging-db:\n")
		for _, q := range devStatements {
			fmt.Fprintf(w, "  %-32s  %s\n", q, m.decideStatement("coding-agent", "coding-agents", "staging-db", q))
		}
	}
	fmt.Fprintf(w, "\n%s\n\n", m.pgNote)
	fmt.Fprintf(w, "To act as the coding agent (group coding-agents), export in another shell:\n\n")
	fmt.Fprintf(w, "export POSTERN_RELAY=%s\n", addr)
	fmt.Fprintf(w, "export POSTERN_RELAY_PIN=%s\n", m.pin)
	fmt.Fprintf(w, "export POSTERN_TOKEN_FILE=%s\n\n", m.tokens[0].file)
	fmt.Fprintf(w, "and run an agent, such as: go run ./examples/coding-agent\n")
	fmt.Fprintf(w, "For the on-call agent (group oncall): export POSTERN_TOKEN_FILE=%s\n\n", m.tokens[1].file)
	fmt.Fprintf(w, "Audit events follow, one JSON line each. Stop with Ctrl-C.\n")
}

// decide says what policy decides for sub in group opening s.
func (m *devMesh) decide(sub, group string, s connector.Service) string {
	p, err := policy.NewPrincipal(sub, []string{group}, nil)
	if err != nil {
		return "?"
	}
	d := m.engine.AuthorizeOpen(policy.Request{Principal: p, Resource: policy.NewResource(s.Name, s.Kind, s.Environment, s.Labels...)})
	return d.String()
}

// decideRequest says what policy decides for sub in group sending method
// path through the binding name, as the connector decides it.
func (m *devMesh) decideRequest(sub, group, name, method, path string) string {
	p, err := policy.NewPrincipal(sub, []string{group}, nil)
	if err != nil {
		return "?"
	}
	for _, s := range m.services {
		if s.Name == name {
			d := m.engine.Authorize(policy.Request{Principal: p, Action: policy.HTTPAction(method),
				Resource: policy.NewResource(s.Name, s.Kind, s.Environment, s.Labels...),
				HTTP:     &policy.HTTP{Method: method, Path: path}})
			return d.String()
		}
	}
	return "?"
}

// devStatements are the statements the banner shows decided.
var devStatements = []string{"SELECT id, item FROM orders", "DELETE FROM orders WHERE id = 1"}

func (m *devMesh) hasService(name string) bool {
	for _, s := range m.services {
		if s.Name == name {
			return true
		}
	}
	return false
}

// decideStatement says what the connector answers sub in group sending
// sql through the binding name: "allow (...)", or the 42501 error.
func (m *devMesh) decideStatement(sub, group, name, sql string) string {
	p, err := policy.NewPrincipal(sub, []string{group}, nil)
	if err != nil {
		return "?"
	}
	sts, err := sqlclass.Classify(sql)
	if err != nil || len(sts) != 1 {
		return "?"
	}
	for _, s := range m.services {
		if s.Name == name {
			v := pgpolicy.EngineDecide(m.engine, policy.Request{Principal: p, Resource: policy.NewResource(s.Name, s.Kind, s.Environment, s.Labels...)}, &sts[0])
			if v.Allowed {
				return "allow (" + strings.Join(v.Policies, ", ") + ")"
			}
			return "ERROR 42501: " + pgpolicy.DenialMessage(&sts[0], v)
		}
	}
	return "?"
}

// copyPolicies writes the example policies into dir, replacing files of
// the same names.
func copyPolicies(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return fs.WalkDir(policies.FS, ".", func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, err := policies.FS.ReadFile(path)
		if err != nil {
			return err
		}
		return writeFileAtomic(filepath.Join(dir, path), b, 0o644)
	})
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// demoStatus is the production status API of postern dev.
func demoStatus() http.Handler {
	return jsonHandler(map[string]any{"service": "prod-status", "environment": "prod", "status": "all systems operational"})
}

// demoLedger stands for financial records when PostgreSQL is missing.
func demoLedger() http.Handler {
	return jsonHandler(map[string]any{"service": "prod-finance", "ledger": []map[string]any{{"account": "4000-revenue", "balance": 1254300}}})
}

// gateWriter holds what is written to it until release, then passes
// everything through.
type gateWriter struct {
	mu   sync.Mutex
	w    io.Writer
	open bool
	held []byte
}

func (g *gateWriter) Write(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.open {
		g.held = append(g.held, p...)
		return len(p), nil
	}
	return g.w.Write(p)
}

func (g *gateWriter) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.open = true
	g.w.Write(g.held)
	g.held = nil
}

// devMetrics is where postern dev serves its metrics by default: the
// port postern status reads by default.
const devMetrics = "127.0.0.1:9464"

// flagGiven reports whether the flag name was given on the command line.
func flagGiven(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
