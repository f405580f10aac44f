package connector

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/postern/postern"
	"github.com/postern/postern/internal/measure"
	"github.com/postern/postern/internal/quicnet"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	sess "github.com/postern/postern/internal/session"
	"github.com/postern/postern/internal/wire"
	"github.com/postern/postern/transport"
)

// Service is a private service the connector serves: the only upstreams it
// ever dials.
type Service struct {
	// Name is the binding name agents open. Required; the connector's token
	// must grant it.
	Name string
	// Kind, Environment and Labels are what policy reads of the service,
	// and they must agree with its authority: the description in the
	// connector's token, or the binding the relay's configuration
	// declares. The relay refuses a connector that advertises them
	// otherwise (service_mismatch), and a name-only grant of a binding it
	// does not declare (service_undescribed).
	//
	// Kind is postern.KindTCP, postern.KindHTTP or postern.KindPostgres. Empty
	// means tcp.
	Kind string
	// Upstream is the service's address, host:port, as the connector
	// reaches it. Required. It is never sent to the relay or to agents.
	Upstream string
	// Environment and Labels describe the service to policy (resource in
	// Environment::"<env>", resource.labels), as its authority does.
	Environment string
	Labels      []string
	// Description is shown to agents in their catalog.
	Description string
	// DialTimeout bounds the dial to the upstream. Zero means 10s.
	DialTimeout time.Duration
	// MaxConns caps the streams this connector serves for the service at
	// once, across relays, and so its connections to the upstream (each
	// stream holds at most one; a postgres stream is one login, which is
	// what exhausts a server's max_connections). A stream over it is
	// refused with CODE_LIMIT, reason "upstream_connections", and the
	// agent's open fails with postern.ErrLimitExceeded. Zero means 64 for
	// kind postgres and 1024 for tcp and http; negative means no cap.
	MaxConns int
	// Postgres is the upstream login, for kind postgres.
	Postgres *Postgres
	// HTTP is what the connector adds to requests, for kind http.
	HTTP *HTTP
}

// Config configures a connector. Relays, a token and a way to trust the
// relays are required.
type Config struct {
	// Relays are the relay addresses (host:port) to connect to. The
	// connector keeps a session with every one, so that agents reach its
	// services through any of them.
	Relays []string
	// Token or TokenSource, exactly one, give the connector's identity
	// token (role connector, services listing every Service name).
	// TokenSource is called to connect and, on a live session, before the
	// token in use expires.
	Token       string
	TokenSource func(ctx context.Context) (string, error)
	// RootCAs, Pin and ServerName say how to trust the relays'
	// certificates, as in mesh.Config.
	RootCAs    *x509.CertPool
	Pin        string
	ServerName string
	// Key is the connector's private key, proved in every handshake, for
	// a token bound to it (as mesh.Config.Key). Nil proves no key.
	Key crypto.Signer
	// Services are what the connector serves.
	Services []Service
	// Logger receives the connector's operational log. Nil means silent.
	Logger *slog.Logger
	// Audit receives one event per decision the connector makes: each
	// HTTP request (EventHTTPRequest), allowed or refused. Nil means no
	// audit trail. No credential ever appears in it.
	Audit *slog.Logger
	// MinBackoff and MaxBackoff bound the wait between reconnects to a
	// relay that answered but refused or failed the session. The wait
	// doubles from MinBackoff up to MaxBackoff, with jitter, and goes back
	// to MinBackoff after a session the relay welcomed. Zero means 250ms
	// and 30s. A relay that does not answer at all (it is down) is not
	// backed off from: each reconnect sends it a fresh handshake every
	// 500ms for 15s, so that it is served again within half a second of
	// coming back.
	MinBackoff, MaxBackoff time.Duration
	// Transport tunes QUIC and TLS over TCP. Nil, or a zero field, means
	// transport's defaults, except for what a relay needs to see this
	// connector die within seconds (see [RelaySessionTransport]): room for
	// many streams from each relay, a keep-alive every 500ms and a 5s
	// idle timeout, and per-stream receive windows well below the
	// connection's. Its Network chooses how relays are reached: "" or
	// "auto" (QUIC first, falling back to TLS over TCP; see
	// mesh.Config.Transport), "quic" or "tcp".
	// A relay silent for 1.5s (plus up to two round trips) is taken for
	// gone: its session is ended and a new one dialed, so that a relay
	// restarted on its address is served again at once.
	Transport *transport.Config
	// Metrics, when set, receives the connector's Prometheus collectors
	// (postern_connector_*; see "Metrics" in the package documentation).
	// Nil means no metrics, and no cost.
	Metrics prometheus.Registerer
	// TracerProvider makes the connector's spans. Nil means
	// OpenTelemetry's global provider, a no-op unless the program
	// installs one.
	TracerProvider trace.TracerProvider
	// Measure switches parts of the connector off for this module's
	// benchmark; its type is internal, so outside this module it can only
	// be nil, which is what every deployment runs.
	Measure *measure.Connector
}

// Connector serves its services to one or more relays. It dials out only:
// nothing listens.
type Connector struct {
	cfg      Config
	log      *slog.Logger
	audit    *slog.Logger
	services map[string]*Service
	serving  map[string]*atomic.Int64 // service -> streams served now
	hello    []*wire.Binding
	tc       transport.Config
	ungated  bool      // Config.Measure.Ungated: decide no statement or request
	pgKeys   pgKeyring // cancel keys handed to agents (postgres)
	m        *metrics  // nil without Config.Metrics
	tracer   trace.Tracer

	mu     sync.Mutex
	status map[string]bool         // relay -> session established
	policy map[string]*relayPolicy // relay -> its current session's policy set
	conns  map[string]any          // relay -> its live session's connection, for the QUIC sampler
	ready  chan struct{}           // closed once every relay has a session
	wg     sync.WaitGroup          // streams being served
}

// New checks cfg and returns a connector. Run starts it.
func New(cfg Config) (*Connector, error) {
	if len(cfg.Relays) == 0 {
		return nil, errors.New("connector: config: at least one relay address is required")
	}
	if cfg.Token == "" && cfg.TokenSource == nil {
		return nil, errors.New("connector: config: a Token or a TokenSource is required")
	}
	if cfg.Token != "" && cfg.TokenSource != nil {
		return nil, errors.New("connector: config: set Token or TokenSource, not both")
	}
	if len(cfg.Services) == 0 {
		return nil, errors.New("connector: config: no services to serve")
	}
	if cfg.Transport != nil {
		if err := transport.CheckNetwork(cfg.Transport.Network); err != nil {
			return nil, fmt.Errorf("connector: config: %w", err)
		}
	}
	c := &Connector{cfg: cfg, log: cfg.Logger, services: make(map[string]*Service), serving: make(map[string]*atomic.Int64), status: make(map[string]bool), policy: make(map[string]*relayPolicy), ready: make(chan struct{})}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.audit = cfg.Audit
	c.ungated = cfg.Measure != nil && cfg.Measure.Ungated
	if c.audit == nil {
		c.audit = slog.New(slog.DiscardHandler)
	}
	for i := range cfg.Services {
		s := cfg.Services[i]
		if err := wire.ValidName(s.Name); err != nil {
			return nil, fmt.Errorf("connector: config: service %q: %w", s.Name, err)
		}
		if _, dup := c.services[s.Name]; dup {
			return nil, fmt.Errorf("connector: config: service %q listed twice", s.Name)
		}
		if s.Kind == "" {
			s.Kind = postern.KindTCP
		}
		if !postern.ValidKind(s.Kind) {
			return nil, fmt.Errorf("connector: config: service %q: kind %q is not tcp, http or postgres", s.Name, s.Kind)
		}
		if _, _, err := net.SplitHostPort(s.Upstream); err != nil {
			return nil, fmt.Errorf("connector: config: service %q: upstream %q: want host:port", s.Name, s.Upstream)
		}
		if err := s.validateKind(); err != nil {
			return nil, fmt.Errorf("connector: config: service %q: %w", s.Name, err)
		}
		if s.DialTimeout <= 0 {
			s.DialTimeout = 10 * time.Second
		}
		if s.MaxConns == 0 {
			s.MaxConns = 1024
			if s.Kind == postern.KindPostgres {
				s.MaxConns = 64
			}
		}
		c.services[s.Name] = &s
		c.serving[s.Name] = new(atomic.Int64)
		c.hello = append(c.hello, &wire.Binding{Name: s.Name, Kind: s.Kind, Environment: s.Environment, Labels: s.Labels, Description: s.Description})
	}
	for _, addr := range cfg.Relays {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("connector: config: relay %q: want host:port", addr)
		}
		if _, err := c.tlsFor(addr); err != nil {
			return nil, err
		}
	}
	if c.cfg.MinBackoff <= 0 {
		c.cfg.MinBackoff = 250 * time.Millisecond
	}
	if c.cfg.MaxBackoff <= 0 {
		c.cfg.MaxBackoff = 30 * time.Second
	}
	if cfg.Transport != nil {
		c.tc = *cfg.Transport
	}
	c.tc = RelaySessionTransport(c.tc)
	if c.tc.MaxIncomingStreams == 0 {
		// Every agent's open through a relay is a stream to us.
		c.tc.MaxIncomingStreams = 16384
	}
	c.conns = make(map[string]any)
	c.tracer = tracerOf(cfg.TracerProvider)
	m, err := newMetrics(cfg.Metrics, c)
	if err != nil {
		return nil, fmt.Errorf("connector: config: metrics: %w", err)
	}
	c.m = m
	return c, nil
}

// Defaults of a connector's sessions with relays, where they differ from
// transport's; see RelaySessionTransport.
const (
	DefaultKeepAlive   = 500 * time.Millisecond
	DefaultIdleTimeout = 5 * time.Second
)

// RelaySessionTransport fills the zero fields of tc that a connector's
// relay sessions want otherwise than transport's defaults:
//
//   - MaxIncomingStreams 16384: every agent's open through a relay is a
//     stream to the connector.
//   - KeepAlive 500ms and IdleTimeout 5s (the least quic-go accepts
//     from a peer). With a keep-alive of at most a second the connector
//     lists wire.FeatureKeepAlive in its Hello, and the relay may then
//     end the session after a short silence (relay.Limits.ConnectorSilence,
//     2s by default): it stops routing to a connector killed with kill -9
//     and fails the streams it carried within that, where QUIC's idle
//     timeout would take 5s. Keep-alives every 500ms cost two small
//     packets a second per relay, and a session survives three lost in
//     a row.
//   - StreamWindow 512 KiB and MaxStreamWindow 2 MiB, with a connection
//     window of 64 MiB from the start (ConnWindow = MaxConnWindow): bytes
//     a stream's reader leaves unread hold the connection's credit, and a
//     window this much smaller than the connection's keeps one upload to
//     a stalled upstream from holding the credit the relay's next Dials
//     need. (The relay bounds how many of one agent's streams may stall;
//     see relay.Limits.)
func RelaySessionTransport(tc transport.Config) transport.Config {
	if tc.MaxIncomingStreams == 0 {
		tc.MaxIncomingStreams = 16384
	}
	if tc.KeepAlive == 0 {
		tc.KeepAlive = DefaultKeepAlive
	}
	if tc.IdleTimeout == 0 {
		tc.IdleTimeout = DefaultIdleTimeout
	}
	if tc.StreamWindow == 0 {
		tc.StreamWindow = 512 << 10
	}
	if tc.MaxStreamWindow == 0 {
		tc.MaxStreamWindow = 2 << 20
	}
	if tc.MaxConnWindow == 0 {
		tc.MaxConnWindow = 64 << 20
	}
	if tc.ConnWindow == 0 {
		tc.ConnWindow = tc.MaxConnWindow
	}
	return tc
}

func (c *Connector) tlsFor(addr string) (*tls.Config, error) {
	host, _, _ := net.SplitHostPort(addr)
	t, err := transport.Trust{RootCAs: c.cfg.RootCAs, Pin: c.cfg.Pin, ServerName: c.cfg.ServerName, Key: c.cfg.Key}.ClientTLS(host)
	if err != nil {
		return nil, fmt.Errorf("connector: config: %w", err)
	}
	return t, nil
}

// Ready is closed once the connector has had a session with every relay.
func (c *Connector) Ready() <-chan struct{} { return c.ready }

// Connected reports, for each relay, whether a session is up now.
func (c *Connector) Connected() map[string]bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := make(map[string]bool, len(c.status))
	for k, v := range c.status {
		m[k] = v
	}
	return m
}

// Policy reports, for each relay with a session now or before, the policy
// set its latest session holds: the one that decides the statements and
// requests of the streams it opens.
func (c *Connector) Policy() map[string]PolicyState {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := make(map[string]PolicyState, len(c.policy))
	for k, p := range c.policy {
		m[k] = p.snapshot()
	}
	return m
}

func (c *Connector) setStatus(relay string, up bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.status[relay] != up {
		c.m.relayUp(relay, up)
	}
	c.status[relay] = up
	if !up {
		return
	}
	for _, r := range c.cfg.Relays {
		if !c.status[r] {
			return
		}
	}
	select {
	case <-c.ready:
	default:
		close(c.ready)
	}
}

// Run serves until ctx is done, keeping a session with every relay and
// reconnecting with backoff when one goes away. It returns ctx's error
// after every stream it was serving has ended, or at once with an error
// a retry cannot fix (the relay refused the token or a service).
func (c *Connector) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	for _, addr := range c.cfg.Relays {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.runRelay(ctx, addr); err != nil {
				cancel(err)
			}
		}()
	}
	wg.Wait()
	c.wg.Wait()
	return context.Cause(ctx)
}

// relaySilence is how long a relay may be silent before its session is
// ended (see Config.Transport).
const relaySilence = 1500 * time.Millisecond

var errRelaySilent = errors.New("connector: relay silent")

// unanswered reports whether a dial failed for want of any answer from
// the relay, as when it is down.
func unanswered(err error) bool {
	var ne net.Error // QUIC's handshake and idle timeouts are net.Errors that time out
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// runRelay keeps a session with one relay. It returns an error only for a
// refusal that retrying will not fix.
func (c *Connector) runRelay(ctx context.Context, addr string) error {
	backoff := c.cfg.MinBackoff
	for ctx.Err() == nil {
		up, err := c.session(ctx, addr)
		c.setStatus(addr, false)
		if ctx.Err() != nil {
			return nil
		}
		if fatal(err) {
			c.log.Error("connector: the relay refused this connector", "relay", addr, "err", err)
			return err
		}
		if up || unanswered(err) {
			// A relay that welcomed us, or that is down (the dial already
			// paced its attempts), is dialed again soon; only one that
			// answers and fails is backed off from.
			backoff = c.cfg.MinBackoff
		}
		// Full jitter in [backoff/2, backoff): reconnects from many
		// connectors to a relay that restarted do not arrive in step.
		wait := backoff/2 + rand.N(backoff/2+1)
		c.log.Warn("connector: relay session ended; reconnecting", "relay", addr, "err", err, "in", wait.Round(time.Millisecond))
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil
		}
		backoff = min(backoff*2, c.cfg.MaxBackoff)
	}
	return nil
}

func (c *Connector) token(ctx context.Context) (string, error) {
	if c.cfg.TokenSource != nil {
		return c.cfg.TokenSource(ctx)
	}
	return c.cfg.Token, nil
}

// session runs one session with a relay; up says whether the relay
// welcomed it.
func (c *Connector) session(ctx context.Context, addr string) (up bool, err error) {
	tlsConf, err := c.tlsFor(addr)
	if err != nil {
		return false, err
	}
	pol := newRelayPolicy(addr)
	c.mu.Lock()
	c.policy[addr] = pol
	c.mu.Unlock()
	hctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	s, err := sess.DialAny(hctx, []string{addr}, sess.Config{
		TLS:          tlsConf,
		Transport:    &c.tc,
		Role:         wire.RoleConnector,
		Services:     c.hello,
		Client:       "postern-connector",
		Token:        c.token,
		Refresh:      c.cfg.TokenSource != nil,
		Log:          c.log,
		Features:     c.features(),
		OnPolicy:     func(m *wire.Policy) { pol.apply(m, c.log) },
		SuspectAfter: relaySilence,
	}, sess.Pace{})
	cancel()
	if err != nil {
		return false, err
	}
	defer s.Close()
	c.log.Info("connector: serving through relay", "relay", addr, "session", s.Welcome.Session, "services", len(c.hello))
	c.track(addr, s.Conn)
	defer c.track(addr, nil)
	c.setStatus(addr, true)

	sctx, scancel := context.WithCancel(ctx)
	defer scancel()
	stop := context.AfterFunc(sctx, func() { s.End(net.ErrClosed) })
	defer stop()
	go func() {
		select {
		case <-s.Suspect():
			// The relay fell silent: it is gone (killed, or restarted and
			// not yet heard from). Waiting for the idle timeout would
			// leave its agents without this connector for that long.
			s.End(errRelaySilent)
		case <-sctx.Done():
		}
	}()
	for {
		st, err := s.Conn.AcceptStream(sctx)
		if err != nil {
			if ctx.Err() != nil {
				return true, nil
			}
			if serr := s.Err(); serr != nil {
				err = serr
			}
			return true, err
		}
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.serveStream(s.Conn, st, pol)
		}()
	}
}

// features are what the connector's Hello lists.
func (c *Connector) features() []string {
	f := []string{wire.FeaturePolicy, wire.FeatureDialAck}
	if c.tc.KeepAlive > 0 && c.tc.KeepAlive <= time.Second {
		f = append(f, wire.FeatureKeepAlive)
	}
	return f
}

// fatal reports whether a session error is a refusal that retrying will
// not fix: the relay refused a service, or the token for a reason other
// than its age (an expired token may be replaced on disk meanwhile).
func fatal(err error) bool {
	var rej *sess.RejectError
	if !errors.As(err, &rej) {
		return false
	}
	switch rej.Code {
	case wire.CodeDenied, wire.CodeProtocol, wire.CodeUnsupported:
		return true
	case wire.CodeUnauthenticated:
		return rej.Reason != "token_expired" && rej.Reason != "token_not_yet_valid"
	}
	return false
}

// serveStream serves one stream the relay opened: dial the advertised
// upstream, answer, splice.
func (c *Connector) serveStream(conn quicnet.Session, st quicnet.Stream, pol *relayPolicy) {
	st.SetReadDeadline(time.Now().Add(10 * time.Second))
	var dial wire.Dial
	if err := wire.ReadExpected(st, 1<<20, &dial); err != nil {
		c.log.Warn("connector: bad dial from relay", "err", err)
		quicnet.Refuse(st, &wire.Result{Code: wire.CodeProtocol, Reason: "malformed_dial", Message: "connector could not read the dial"})
		return
	}
	st.SetReadDeadline(time.Time{})
	// The DialAck goes out before anything that may take long (the
	// upstream dial, a login): the relay tells a live connector by it. A
	// Result ready within AckHold goes with it, in one packet.
	ack := holdAck(st, &dial)
	svc := c.services[dial.Binding]
	if svc == nil {
		// Never dial what was not advertised, whatever the relay says.
		c.log.Warn("connector: relay asked for a service this connector does not serve", "binding", dial.Binding, "subject", dial.Identity.Subject)
		ack.refuse(&wire.Result{Code: wire.CodeUnknownBinding, Reason: "not_served", Message: "this connector does not serve the binding"})
		return
	}
	log := c.log.With("binding", svc.Name, "subject", dial.Identity.Subject, "session", dial.Session)
	sctx, span := c.startStream(&dial, svc)
	defer span.End()
	c.m.streamStarted(svc.Name)
	defer c.m.streamEnded(svc.Name)
	n := c.serving[svc.Name]
	if cur := n.Add(1); svc.MaxConns > 0 && cur > int64(svc.MaxConns) {
		n.Add(-1)
		log.Warn("connector: upstream connection limit reached", "limit", svc.MaxConns)
		c.refuse(ack, svc.Name, &wire.Result{Code: wire.CodeLimit, Reason: ReasonUpstreamConnections, Message: fmt.Sprintf(
			"the connector serves %d streams of this binding already, its limit (max_conns)", svc.MaxConns)})
		return
	}
	defer n.Add(-1)
	switch svc.Kind {
	case postern.KindPostgres:
		c.servePostgres(sctx, ack, quicnet.NewConn(st, conn.LocalAddr(), conn.RemoteAddr()), svc, &dial, pol, log)
		return
	case postern.KindHTTP:
		c.serveHTTP(sctx, ack, quicnet.NewConn(st, conn.LocalAddr(), conn.RemoteAddr()), svc, &dial, pol, log)
		return
	}
	ctx, cancel := context.WithTimeout(sctx, svc.DialTimeout)
	up, err := c.instrumentDial(svc.Name, (&net.Dialer{}).DialContext)(ctx, "tcp", svc.Upstream)
	cancel()
	if err != nil {
		log.Warn("connector: upstream dial failed", "upstream", svc.Upstream, "err", err)
		c.refuse(ack, svc.Name, upstreamFailure(svc.Name, err))
		return
	}
	c.m.answered(svc.Name, wire.CodeOK)
	down := quicnet.NewConn(st, conn.LocalAddr(), conn.RemoteAddr())
	if err := ack.write(down, &wire.Result{Code: wire.CodeOK}); err != nil {
		up.Close()
		down.Abort(quicnet.StreamAborted)
		return
	}
	start := time.Now()
	in, out, err := quicnet.Splice(down, up.(*net.TCPConn))
	log.Debug("connector: stream closed", "bytes_up", in, "bytes_down", out, "duration", time.Since(start), "err", err)
}

// ReasonUpstreamConnections is the reason of a stream refused at
// Service.MaxConns (CODE_LIMIT).
const ReasonUpstreamConnections = "upstream_connections"

// track keeps the connection of the live session with relay (nil: none)
// for the QUIC sampler.
func (c *Connector) track(relay string, conn any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if conn == nil {
		delete(c.conns, relay)
		return
	}
	c.conns[relay] = conn
}

// refuse answers the relay's Dial with res and counts it.
func (c *Connector) refuse(ack *heldAck, binding string, res *wire.Result) {
	c.m.answered(binding, res.Code)
	ack.refuse(res)
}

// upstreamFailure says why the upstream could not be reached without
// naming its address: agents learn that it failed, not where it lives.
func upstreamFailure(name string, err error) *wire.Result {
	msg := "the connector could not reach the upstream of " + name
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded):
		return &wire.Result{Code: wire.CodeUpstream, Reason: "upstream_timeout", Message: msg + ": timed out"}
	case isRefused(err):
		return &wire.Result{Code: wire.CodeUpstream, Reason: "upstream_refused", Message: msg + ": connection refused"}
	}
	return &wire.Result{Code: wire.CodeUpstream, Reason: "upstream_unreachable", Message: msg}
}

func isRefused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }
