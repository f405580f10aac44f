package relay

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/postern/postern"
	"github.com/postern/postern/internal/quicnet"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/quic-go/quic-go"
	"go.opentelemetry.io/otel/trace"

	"github.com/postern/postern/internal/idle"
	"github.com/postern/postern/internal/wire"
	"github.com/postern/postern/mesh/identity"
	"github.com/postern/postern/policy"
	"github.com/postern/postern/transport"
)

// Config configures a relay. Certificate and Verifier are required.
type Config struct {
	// Addr is the UDP address to listen on. Empty means ":7443".
	Addr string
	// Certificate is the relay's TLS certificate. Agents and connectors
	// trust it through a CA or by its pin (transport.Pin); for a
	// self-signed one, see transport.SelfSigned.
	Certificate tls.Certificate
	// Verifier checks agent and connector tokens.
	Verifier *identity.Verifier
	// RequireBoundTokens refuses agent tokens that are not bound to a key
	// (identity.Claims.BoundKey), with CODE_KEY_NOT_PROVEN and reason
	// "token_not_bound": a bearer token stolen from an agent's
	// environment then works nowhere else. False (the default) accepts
	// bearer tokens. A bound token, agent's or connector's, is always
	// refused without proof of its key, whatever this says.
	RequireBoundTokens bool
	// Policy decides every open and scopes every catalog. Nil, or an
	// Engine holding no policies, denies everything: the relay fails
	// closed. Swapping the Engine's Set re-scopes every live catalog and
	// decides every live stream's open again: a stream now denied is cut
	// (the agent's Read and Write return postern.ErrRevoked).
	Policy *policy.Engine
	// PolicyOptions are the declarations Policy's sets were validated
	// against (policy.ValidateOptions). Connectors receive every set with
	// them and validate it alike; a set that fails there leaves the
	// connector refusing every statement and request. Nil means the sets
	// were not validated, and connectors only parse them.
	PolicyOptions *policy.ValidateOptions
	// Bindings declares bindings ahead of any connector. A declared
	// binding's kind, environment and labels are authoritative: a
	// connector that advertises it differently, or whose token describes
	// it differently, is refused; a token may grant it by name alone. A
	// binding that is not declared takes its description from the token
	// of the connector that serves it (identity.Service), and is refused
	// when that token grants the name alone. Nil declares nothing.
	Bindings []postern.Binding
	// Revocations lists the tokens (by ID) and subjects the relay refuses
	// whatever their signature and expiry say. A listed token or subject
	// is refused at the Hello and at a Refresh (CODE_REVOKED), and when
	// the list changes, every live session it names ends at once, its
	// streams cut. Nil revokes nothing. See [RevocationList].
	Revocations Revocations
	// Limits bound what one client may ask of the relay.
	Limits Limits
	// Transport tunes QUIC and TLS over TCP. Its Network says what the
	// relay listens on: "" or "auto" (default) both UDP (QUIC) and TCP
	// (TLS 1.3), on Addr's port number; "quic" or "tcp" only one. Nil, or
	// a zero field, means transport's default, except for these: the
	// relay sends no keep-alives of its own unless KeepAlive is set (its
	// clients send them; a connector's every 500ms, so that a dead one is
	// noticed within 2.5s), the stream limit is raised to fit
	// Limits.StreamsPerAgent, and the QUIC receive windows are a stream's
	// 32 KiB growing to 2 MiB, a connection's 64 MiB from the start
	// (Limits.InitialStreamWindow, InitialConnWindow, ConnectorNetworks):
	// one stream can hold only a small share of a connection shared by
	// many agents (see Limits.StalledStreamsPerAgent). A single stream's
	// throughput is then at most 2 MiB per round trip.
	Transport *transport.Config
	// Logger receives operational messages. Nil means silent.
	Logger *slog.Logger
	// Audit receives one event per decision: session start and end, each
	// open allowed or denied, each stream's close; refused handshakes
	// are counted per source address (see RejectInterval). Nil means no
	// audit trail. Tokens and secrets never appear in it. Events reach
	// it through a queue (AuditQueue), never on the path of an open.
	Audit *slog.Logger
	// AuditQueue says how events are queued for Audit.
	AuditQueue AuditQueue
	// RejectInterval is how often refused handshakes are summed up in
	// the audit trail: the first from a source address in an interval is
	// written at once, the rest as one session.reject event with a count
	// when the interval ends. Zero means 10s.
	RejectInterval time.Duration
	// HideDenied answers an open that policy denies exactly as an open of
	// a binding that does not exist (CODE_UNKNOWN_BINDING,
	// "unknown_binding", no policies named), for deployments that must
	// not tell an agent which bindings exist. The audit trail still
	// records the denial and its policies. False means a denial says it
	// is one and names the policies that decided it.
	HideDenied bool
	// Metrics, when set, receives the relay's Prometheus collectors
	// (postern_relay_*; see "Metrics" in the package documentation). Nil
	// means no metrics, and no cost.
	Metrics prometheus.Registerer
	// TracerProvider makes the relay's spans. Nil means OpenTelemetry's
	// global provider, which is a no-op unless the program installs one.
	TracerProvider trace.TracerProvider
}

// Reasons of the relay's CODE_LIMIT refusals (Reject.reason and
// Result.reason; wire.proto lists them).
const (
	// ReasonUnverified: too many connections wait for their Hello (in
	// the metrics only: the connection is refused before a stream, with
	// CONNECTION_REFUSED over QUIC, a reset over TCP).
	ReasonUnverified = "unverified_connections"
	// ReasonSessionsPerSubject: the subject has Limits.SessionsPerSubject
	// sessions open (Reject of a Hello).
	ReasonSessionsPerSubject = "sessions_per_subject"
	// ReasonStreamsPerAgent: the session has Limits.StreamsPerAgent
	// binding streams open (Result of an Open).
	ReasonStreamsPerAgent = "streams_per_agent"
	// ReasonStreamsPerSubject: the subject has Limits.StreamsPerSubject
	// binding streams open across its sessions (Result of an Open).
	ReasonStreamsPerSubject = "streams_per_subject"
	// ReasonRefreshRate: the subject refreshed its token more than
	// Limits.RefreshesPerMinute times in a minute (Reject of a Refresh;
	// the session goes on).
	ReasonRefreshRate = "refresh_rate"
)

// Limits bound what one client may ask of the relay. Zero values mean the
// defaults given.
type Limits struct {
	// StreamsPerAgent is how many binding streams one agent session may
	// have open at once. Default 1024. An open beyond it fails with
	// postern.ErrLimitExceeded; open streams are unaffected.
	StreamsPerAgent int
	// MaxFrameSize caps every control frame a client sends. Default 64 KiB.
	MaxFrameSize int
	// HandshakeTimeout bounds the time from a client's QUIC or TLS
	// handshake to its verified Hello, and, unless Config.Transport sets
	// its own, the handshake itself. Default 5s.
	HandshakeTimeout time.Duration
	// MaxTokenSize caps the token in a Hello or a Refresh. Default 8 KiB.
	MaxTokenSize int
	// OpenTimeout bounds reading an Open frame, and the wait for the
	// connectors' answer to a dial (which includes their dial to the
	// upstream, and the moves to other connectors). Default 15s.
	OpenTimeout time.Duration

	// MaxUnverified caps the connections that have finished, or begun,
	// their handshake but had no Hello verified yet, QUIC and TLS over
	// TCP counted together: a TCP connection counts from the moment it
	// is accepted, before its TLS handshake. A connection over it is
	// refused before the relay keeps any state for it: with
	// CONNECTION_REFUSED over QUIC, a TCP reset before any TLS work over
	// TCP. Default 1024.
	MaxUnverified int
	// MaxUnverifiedPerSource caps them per source IP address, both
	// transports together. Default 32. A client whose address is
	// validated, by a Retry over QUIC or by the TCP handshake, is counted
	// against validated connections only, so that Initials spoofed from
	// its address cannot lock it out.
	MaxUnverifiedPerSource int
	// RetryAbove is the number of unverified connections (of both
	// transports) from which a new QUIC client must prove its address
	// with a Retry (one more round trip, no state kept for a spoofed
	// source); a source address that has MaxUnverifiedPerSource waiting
	// is asked too. TCP needs none: its handshake proves the address.
	// Default 128; it must be below MaxUnverified. Negative asks every
	// QUIC client.
	RetryAbove int
	// InitialStreamWindow is the flow-control window, in bytes, the
	// relay grants each stream at the handshake: what a peer that has
	// not shown a token can make the relay buffer on its control stream,
	// the one stream read before its Hello (an unverified peer's other
	// streams are not read and close its connection). quic-go's
	// auto-tuning doubles the window of a stream read faster than a
	// window per round trip, up to 2 MiB, so that verified flows reach
	// full speed within a few round trips; before the Hello the relay
	// reads at most MaxFrameSize of the control stream, which lets the
	// window double twice at most (128 KiB with the defaults). Zero
	// means 32 KiB.
	InitialStreamWindow uint64
	// InitialConnWindow is the flow-control window, in bytes, the relay
	// grants a connection at the handshake: what an unverified peer's
	// streams may hold at once before the relay closes it. The window of
	// the connection a connector shares among all agents must be whole
	// (64 MiB) from the start, since a stalled agent's stream holds its
	// unread bytes (see StalledStreamsPerAgent), and the relay knows a
	// connection's role only after the handshake. So: without
	// ConnectorNetworks, zero means 64 MiB for every connection (a relay
	// that serves agents only may set it small, 128 KiB say); with them,
	// it is what connections from other sources get, 128 KiB when zero,
	// and connections from ConnectorNetworks get 64 MiB. Either way
	// quic-go grows it, up to 64 MiB, for flows that use it.
	// Config.Transport's StreamWindow and ConnWindow, when set, take
	// precedence over both fields (and ConnectorNetworks is then moot).
	InitialConnWindow uint64
	// ConnectorNetworks are the networks connectors connect from. A QUIC
	// connection from one of them gets the whole connection window from
	// the start; one from elsewhere gets InitialConnWindow, which bounds
	// what a peer that has shown no token can make the relay buffer. The
	// relay decides on the source address of the first packet, before it
	// knows the peer's role, so a connector from outside them is served,
	// on a connection window that starts small and grows only with its
	// traffic, where other agents' streams are isolated less well from a
	// stalled agent's; the relay logs a warning for it. Nil means every
	// connection gets the connector's window.
	ConnectorNetworks []netip.Prefix

	// SessionsPerSubject caps the sessions one subject (a token's sub)
	// may have at once, agents and connectors alike. Default 64.
	SessionsPerSubject int
	// StreamsPerSubject caps the binding streams one agent subject may
	// have open at once across all its sessions. Default 4096.
	StreamsPerSubject int
	// RefreshesPerMinute caps the token refreshes of one subject, across
	// its sessions (a refresh costs a signature check and a catalog
	// recomputation). Default 60.
	RefreshesPerMinute int
	// RejectsPerSource is how many refused Hellos a source IP address
	// may have in the last Config.RejectInterval, over either transport
	// (a connection that sends no Hello by HandshakeTimeout, or a TCP
	// connection that has not finished its TLS handshake by then, counts
	// as one); past it the relay refuses its new connections, QUIC and TLS
	// over TCP, until its refusals age below it (the interval slides:
	// the audit's previous interval counts in proportion to how much of
	// it is still within one interval of now). The refusal comes at
	// once, before any TLS work and over QUIC without a Retry first;
	// only verified handshakes count towards it, so spoofed packets
	// cannot shut a victim out.
	// Sessions already verified are not touched. Default 16; negative
	// means no such refusal.
	RejectsPerSource int
	// FloodRejects is how many refused Hellos, from all sources together,
	// in the last Config.RejectInterval (counted as RejectsPerSource
	// counts them) make the relay flooded: a flood spread over many
	// sources, each below RejectsPerSource, still costs a full handshake
	// per attempt. While flooded, a new connection from a source that
	// has had no Hello verified in the last half hour or more (an hour
	// at most) takes a place in HandshakeBudget or is refused before any
	// TLS work, over QUIC without a Retry; with a place, over QUIC it
	// proves its address with a Retry first. Sources that had a Hello
	// verified lately, sources in ConnectorNetworks, and sessions already
	// verified, are not touched.
	// The audit trail says when a flood starts and ends (relay.flood).
	// Default 256; negative means never flooded.
	FloodRejects int
	// HandshakeBudget is how many new connections a second, QUIC and TLS
	// over TCP together, the relay admits from unfamiliar sources while
	// it is flooded (see FloodRejects), at most a quarter second's worth
	// at once. Default 32; negative means no budget (never flooded).
	HandshakeBudget int

	// AckTimeout is how long the relay waits for a connector to
	// acknowledge a dial (wire.DialAck, which it sends as soon as it has
	// read the Dial, before it dials the upstream: at most a millisecond
	// late, with its Result when that is ready) before it sends the
	// open to the next connector serving the binding, with every byte the
	// agent sent with it. With no other connector left, it waits on, up to
	// OpenTimeout: a slow connector is better than none. A connector that
	// missed it gets no new opens while another one answers, for ten
	// times this or until it acknowledges one again.
	// Connectors that do not know the acknowledgement (an older version)
	// are waited for OpenTimeout, as before. Default 1s.
	AckTimeout time.Duration
	// StallTimeout resets a binding stream (STREAM_ERROR_STALLED, to
	// both ends) when the relay has had bytes for one of its readers, the
	// agent or the connector, that it took none of for this long: what
	// the stream held of the shared relay-connector connection goes back.
	// Default 60s.
	StallTimeout time.Duration
	// StalledStreamsPerAgent is how many of one agent's streams may be
	// stalled at once: with a write to the agent or to the connector
	// waiting for a second or more. The relay resets the streams that
	// stall beyond it at once, most recent first, so that one agent that
	// stops reading (or dies without closing) holds only this many
	// stream windows of a connector connection's credit, and other
	// agents' opens and streams go on. Default 4.
	StalledStreamsPerAgent int
	// ConnectorSilence ends the session of a connector that promised
	// keep-alives (wire.FeatureKeepAlive: a packet at least once a
	// second) when nothing has come from it for this long: the relay
	// stops routing to it and fails the streams it carried (the agents
	// read an error, not an end). Connectors that did not promise are
	// held for QUIC's idle timeout. Default 2s.
	ConnectorSilence time.Duration
}

func (l *Limits) fill() {
	if l.StreamsPerAgent <= 0 {
		l.StreamsPerAgent = 1024
	}
	if l.MaxFrameSize <= 0 {
		l.MaxFrameSize = wire.DefaultMaxFrameSize
	}
	if l.HandshakeTimeout <= 0 {
		l.HandshakeTimeout = 5 * time.Second
	}
	if l.MaxTokenSize <= 0 {
		l.MaxTokenSize = 8 << 10
	}
	if l.OpenTimeout <= 0 {
		l.OpenTimeout = 15 * time.Second
	}
	if l.MaxUnverified <= 0 {
		l.MaxUnverified = 1024
	}
	if l.MaxUnverifiedPerSource <= 0 {
		l.MaxUnverifiedPerSource = 32
	}
	if l.RetryAbove == 0 {
		l.RetryAbove = min(128, l.MaxUnverified/2)
	}
	if l.SessionsPerSubject <= 0 {
		l.SessionsPerSubject = 64
	}
	if l.StreamsPerSubject <= 0 {
		l.StreamsPerSubject = 4096
	}
	if l.RefreshesPerMinute <= 0 {
		l.RefreshesPerMinute = 60
	}
	if l.RejectsPerSource == 0 {
		l.RejectsPerSource = 16
	}
	if l.FloodRejects == 0 {
		l.FloodRejects = 256
	}
	if l.HandshakeBudget == 0 {
		l.HandshakeBudget = 32
	}
	if l.AckTimeout <= 0 {
		l.AckTimeout = time.Second
	}
	if l.StallTimeout <= 0 {
		l.StallTimeout = 60 * time.Second
	}
	if l.StalledStreamsPerAgent <= 0 {
		l.StalledStreamsPerAgent = 4
	}
	if l.ConnectorSilence <= 0 {
		l.ConnectorSilence = 2 * time.Second
	}
}

// Relay accepts agents and connectors and splices agents' binding streams
// to connectors. It never dials anything itself.
type Relay struct {
	cfg    Config
	limits Limits
	ln     *quicnet.Listener
	log    *slog.Logger
	audit  *slog.Logger
	auditQ *auditQueue // nil without Config.Audit
	policy *policy.Engine

	gate     *gate
	subjects *subjects
	rejects  *rejectLog
	stopAux  chan struct{} // ends the reject log's ticker
	auxDone  chan struct{}

	policyFrames policyFrames // the Policy frame sent to connectors

	m      *metrics // nil without Config.Metrics
	tracer trace.Tracer

	ctx    context.Context // the relay's lifetime
	cancel context.CancelFunc
	wg     sync.WaitGroup // every goroutine the relay starts

	// Binding streams being served, for Shutdown. Not a WaitGroup: opens
	// keep arriving while Shutdown waits, and a WaitGroup's Add from zero
	// must not race with its Wait (it panics when it does).
	openN    atomic.Int64
	openIdle chan struct{} // one slot: a token is put in when openN drops to zero

	// smallConnWindow is the connection window of QUIC connections from
	// outside Limits.ConnectorNetworks; zero when all get the same.
	smallConnWindow uint64

	draining atomic.Bool
	closed   atomic.Bool

	mu         sync.RWMutex
	routes     map[string]*route
	agents     map[*agentSession]struct{}
	connectors map[*connectorSession]struct{}
	catalogGen uint64 // bumped when a route is added or changes metadata
	pushedGen  uint64 // catalogGen when catalogs were last re-scoped
}

// Listen starts a relay on cfg.Addr and serves in the background until
// Close or Shutdown.
func Listen(cfg Config) (*Relay, error) {
	if cfg.Verifier == nil {
		return nil, errors.New("relay: config: a token Verifier is required")
	}
	if len(cfg.Certificate.Certificate) == 0 {
		return nil, errors.New("relay: config: a TLS Certificate is required")
	}
	if cfg.Addr == "" {
		cfg.Addr = ":7443"
	}
	limits := cfg.Limits
	limits.fill()
	if limits.RetryAbove >= limits.MaxUnverified {
		return nil, fmt.Errorf("relay: config: limits: RetryAbove (%d) must be below MaxUnverified (%d), or spoofed Initials could fill the relay before any Retry is asked", limits.RetryAbove, limits.MaxUnverified)
	}
	for i, p := range limits.ConnectorNetworks {
		if !p.IsValid() {
			return nil, fmt.Errorf("relay: config: limits: ConnectorNetworks[%d] is not a valid prefix", i)
		}
	}
	if cfg.RejectInterval <= 0 {
		cfg.RejectInterval = 10 * time.Second
	}
	r := &Relay{
		tracer:     tracerOf(cfg.TracerProvider),
		cfg:        cfg,
		limits:     limits,
		log:        orDiscard(cfg.Logger),
		audit:      orDiscard(cfg.Audit),
		gate:       newGate(limits),
		subjects:   newSubjects(limits),
		policy:     cfg.Policy,
		routes:     make(map[string]*route),
		agents:     make(map[*agentSession]struct{}),
		connectors: make(map[*connectorSession]struct{}),
		openIdle:   make(chan struct{}, 1),
	}
	if r.policy == nil {
		r.policy = new(policy.Engine)
	}
	m, err := newMetrics(cfg.Metrics, r)
	if err != nil {
		return nil, fmt.Errorf("relay: config: metrics: %w", err)
	}
	r.m = m
	if m != nil && cfg.Audit != nil {
		r.audit = slog.New(auditHandler{cfg.Audit.Handler(), m})
	}
	for _, b := range cfg.Bindings {
		if err := wire.ValidName(b.Name); err != nil {
			return nil, fmt.Errorf("relay: config: binding %q: %w", b.Name, err)
		}
		if !postern.ValidKind(b.Kind) {
			return nil, fmt.Errorf("relay: config: binding %q: kind %q is not tcp, http or postgres", b.Name, b.Kind)
		}
		if _, dup := r.routes[b.Name]; dup {
			return nil, fmt.Errorf("relay: config: binding %q declared twice", b.Name)
		}
		r.routes[b.Name] = newRoute(b, true)
	}
	tc, outside := relayTransport(cfg.Transport, limits)
	if cfg.Audit != nil {
		// Over the metrics' counting handler, when there is one.
		r.auditQ = newAuditQueue(r.audit.Handler(), cfg.AuditQueue)
		r.audit = r.auditQ.logger()
	}
	// The gate consults the reject log from the first packet on.
	r.rejects = newRejectLog(r.audit, cfg.RejectInterval, limits.RejectsPerSource)
	r.gate.penalized = r.rejects.penalized
	if limits.FloodRejects > 0 && r.gate.budget != nil {
		r.rejects.floodAt, r.rejects.budgetRate = limits.FloodRejects, limits.HandshakeBudget
		r.rejects.budgetRefused = r.gate.budgetRefused
		r.gate.flooded = r.rejects.flooded
	}
	serverTLS := &tls.Config{Certificates: []tls.Certificate{cfg.Certificate}}
	transport.ServerRequestsClientKeys(serverTLS) // the proof of a bound token's key
	adm := quicnet.Admission{VerifySourceAddress: r.gate.verifySource, ConnContext: r.gate.connContext, TCPConnContext: r.gate.tcpConnContext,
		TCPHandshakeTimeout: r.tlsTimeout}
	if outside != nil {
		r.smallConnWindow = outside.ConnWindow
		adm.Transport = func(remote net.Addr) *transport.Config {
			if limits.connectorSource(sourceOf(remote)) {
				return nil
			}
			return outside
		}
	}
	ln, err := quicnet.ListenAdmit(cfg.Addr, serverTLS, &tc, adm)
	if err != nil {
		if r.auditQ != nil {
			r.auditQ.close()
		}
		return nil, fmt.Errorf("relay: %w", err)
	}
	r.ln = ln
	r.stopAux, r.auxDone = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(r.auxDone)
		r.rejects.run(r.stopAux)
	}()
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.wg.Add(3)
	go r.acceptLoop()
	go r.watchPolicy()
	go r.watch()
	if cfg.Revocations != nil {
		r.wg.Add(1)
		go r.watchRevocations()
	}
	tcpAddr := "none"
	if a := ln.TCPAddr(); a != nil {
		tcpAddr = a.String()
	}
	r.log.Info("relay: listening", "addr", ln.Addr().String(), "tcp", tcpAddr, "pin", transport.Pin(cfg.Certificate))
	return r, nil
}

// relayTransport is the QUIC configuration of a relay: c, with the zero
// fields the relay sets itself filled in from limits and the windows
// WindowedTransport's. When limits.ConnectorNetworks is set and c leaves
// ConnWindow zero, outside is the configuration of connections from
// other sources: the same with a small initial connection window
// (limits.InitialConnWindow, 128 KiB by default), and the connections
// from those networks get the whole connection window from the start.
func relayTransport(c *transport.Config, limits Limits) (tc transport.Config, outside *transport.Config) {
	if c != nil {
		tc = *c
	}
	if tc.KeepAlive == 0 {
		// Clients keep their sessions alive (they are the ones behind
		// NATs); a relay pinging every idle session as well would double
		// the idle packets of thousands of sessions for nothing.
		tc.KeepAlive = -1
	}
	// What a peer gets before it has shown a token; quic-go's
	// auto-tuning grows them for verified flows that use them.
	if tc.StreamWindow == 0 {
		tc.StreamWindow = limits.InitialStreamWindow
	}
	split := tc.ConnWindow == 0 && len(limits.ConnectorNetworks) > 0
	if tc.ConnWindow == 0 && !split {
		tc.ConnWindow = limits.InitialConnWindow
	}
	if tc.HandshakeTimeout == 0 {
		tc.HandshakeTimeout = limits.HandshakeTimeout
	}
	if tc.MaxIncomingStreams == 0 {
		// Room above the per-agent limit, so that an agent over it gets
		// a clear "limit exceeded" from the relay instead of waiting for
		// QUIC stream credit.
		tc.MaxIncomingStreams = int64(limits.StreamsPerAgent) + 64
	}
	tc = WindowedTransport(tc)
	if split {
		o := tc
		o.ConnWindow = cmp.Or(limits.InitialConnWindow, 128<<10)
		outside = &o
	}
	return tc, outside
}

// connectorSource reports whether a connection from ip gets the whole
// connection window from the start (see ConnectorNetworks).
func (l *Limits) connectorSource(ip netip.Addr) bool {
	for _, p := range l.ConnectorNetworks {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// WindowedTransport fills the receive windows of tc that are zero with the
// relay's: 32 KiB per stream at the handshake, all that a peer that has
// not shown a token can make the relay buffer on the one stream read
// before its Hello, growing to 2 MiB (quic-go's auto-tuning doubles the
// window of a stream read faster than the window per round trip), so
// that the bytes one stream's reader leaves unread hold a small share of
// a connection that many agents' streams share; and a connection window
// at its largest, 64 MiB, from the start, so that the share is of the
// whole.
func WindowedTransport(tc transport.Config) transport.Config {
	if tc.StreamWindow == 0 {
		tc.StreamWindow = 32 << 10
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

func orDiscard(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}

// Addr returns the address the relay listens on: the UDP address, or the
// TCP one when it listens on TCP only (Transport.Network "tcp"). A relay
// listening on both uses the same port number for each.
func (r *Relay) Addr() net.Addr { return r.ln.Addr() }

// TCPAddr returns the TCP address the relay listens on for TLS over TCP;
// nil when it listens on UDP only (Transport.Network "quic").
func (r *Relay) TCPAddr() net.Addr { return r.ln.TCPAddr() }

// Close ends every session at once (clients are told the relay is shutting
// down) and stops listening. It waits for the relay's goroutines.
func (r *Relay) Close() error {
	if r.closed.Swap(true) {
		return nil
	}
	r.draining.Store(true)
	r.cancel()
	r.mu.RLock()
	var sessions []*session
	for a := range r.agents {
		sessions = append(sessions, &a.session)
	}
	for c := range r.connectors {
		sessions = append(sessions, &c.session)
	}
	r.mu.RUnlock()
	// In parallel: a client that stopped reading holds its goaway for the
	// write deadline, and must not hold everyone else's.
	var wg sync.WaitGroup
	for _, s := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.goaway(wire.CodeShutdown, "relay_shutdown", "the relay is shutting down")
		}()
	}
	wg.Wait()
	err := r.ln.Close()
	r.wg.Wait()
	// Every event accepted is written before Close returns.
	close(r.stopAux)
	<-r.auxDone
	if r.auditQ != nil {
		r.auditQ.close()
	}
	return err
}

// Shutdown stops taking new opens (they fail with postern.ErrUnavailable),
// waits for open binding streams to end or for ctx to be done, then closes
// the relay as Close does.
func (r *Relay) Shutdown(ctx context.Context) error {
	r.draining.Store(true)
	var err error
	// A drop to zero after the Load leaves a token in openIdle, so no wake-up
	// is lost; a stale token only costs another look at the count.
	for err == nil && r.openN.Load() > 0 {
		select {
		case <-r.openIdle:
		case <-ctx.Done():
			err = fmt.Errorf("relay: shutdown: streams still open: %w", ctx.Err())
		}
	}
	if cerr := r.Close(); err == nil {
		err = cerr
	}
	return err
}

// SyncAudit returns once every audit event emitted before the call has
// been handed to Config.Audit (and AuditQueue.Flush called); refusals
// counted for the current RejectInterval are written first, which ends
// that interval early (Limits.RejectsPerSource then weighs it as the
// previous one). Tests, and programs that read the trail they just
// caused, call it.
func (r *Relay) SyncAudit() {
	r.rejects.flush()
	if r.auditQ != nil {
		r.auditQ.wait()
	}
}

// Stats is a snapshot of the relay's sessions.
type Stats struct {
	Agents     int
	Connectors int
	Streams    int64          // binding streams open now
	Bindings   map[string]int // binding name -> connectors serving it now
	// Unverified is how many connections, QUIC and TLS over TCP, wait
	// for their Hello now.
	Unverified int
	// Refused counts the connections refused before their handshake
	// since the relay started, over either transport: at
	// Limits.MaxUnverified or MaxUnverifiedPerSource, or from a source
	// past Limits.RejectsPerSource, or for Limits.HandshakeBudget while
	// flooded. RefusedTCP is the part of it over TLS over TCP, and
	// RefusedBudget the part for the budget. Retried counts the new QUIC
	// clients asked to prove their address with a Retry.
	Refused, RefusedTCP, RefusedBudget, Retried uint64
	// Flooded: the relay's refused Hellos in the last interval reach
	// Limits.FloodRejects.
	Flooded bool
}

// Stats returns a snapshot of the relay's sessions.
func (r *Relay) Stats() Stats {
	r.mu.RLock()
	defer r.mu.RUnlock()
	st := Stats{Agents: len(r.agents), Connectors: len(r.connectors), Bindings: make(map[string]int, len(r.routes)),
		Unverified: r.gate.unverified(), Refused: r.gate.refusedTotal(viaQUIC) + r.gate.refusedTotal(viaTCP),
		RefusedTCP: r.gate.refusedTotal(viaTCP), RefusedBudget: r.gate.budgetRefused(), Retried: r.gate.retried.Load(),
		Flooded: r.gate.isFlooded()}
	for a := range r.agents {
		st.Streams += a.streams.Load()
	}
	for name, rt := range r.routes {
		st.Bindings[name] = len(*rt.conns.Load())
	}
	return st
}

// streamStarted and streamEnded count the binding streams being served.
func (r *Relay) streamStarted() {
	r.openN.Add(1)
	r.m.streamStarted()
}

func (r *Relay) streamEnded() {
	r.m.streamEnded()
	if r.openN.Add(-1) == 0 {
		select {
		case r.openIdle <- struct{}{}:
		default: // a token is there already
		}
	}
}

func (r *Relay) acceptLoop() {
	defer r.wg.Done()
	for {
		conn, err := r.ln.Accept(r.ctx)
		if err != nil {
			if r.ctx.Err() == nil {
				r.log.Error("relay: accept", "err", err)
			}
			return
		}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.serveConn(conn)
		}()
	}
}

// Application error codes in CONNECTION_CLOSE are wire codes, so that a
// client that missed the Reject or Goaway frame still learns why.
func closeConn(conn quicnet.Session, code wire.Code, reason, msg string) {
	conn.CloseWithError(quic.ApplicationErrorCode(code), reason+": "+msg)
}

const noHelloMsg = "no hello within the handshake time"

// recordReject counts a refused handshake against its source
// (Limits.RejectsPerSource) and in the audit trail's per-source
// session.reject events.
func (r *Relay) recordReject(conn quicnet.Session, role, subject string, rej *wire.Reject) {
	r.rejectFrom(conn.RemoteAddr(), role, subject, rej)
}

// rejectFrom is recordReject for a peer known by its address alone; extra
// attributes join the full event's.
func (r *Relay) rejectFrom(remote net.Addr, role, subject string, rej *wire.Reject, extra ...slog.Attr) {
	r.rejects.reject(sourceOf(remote), role, rej.Reason, append([]slog.Attr{
		slog.String("remote", remote.String()), slog.String("role", role), slog.String("subject", subject),
		slog.String("code", rej.Code.Text()), slog.String("reason", rej.Reason), slog.String("message", rej.Message)}, extra...))
}

const noTLSMsg = "no TLS handshake within the handshake time"

// tlsTimeout is quicnet.Admission.TCPHandshakeTimeout: a TCP connection
// that did not finish its TLS handshake by the deadline held a place in
// the gate as long as one that sends no Hello, and counts as a refusal of
// its source in the same way (the TCP handshake proved the address).
func (r *Relay) tlsTimeout(remote net.Addr) {
	r.m.handshakeFailed("", "handshake_timeout")
	r.rejectFrom(remote, "", "", &wire.Reject{Code: wire.CodeTimeout, Reason: "handshake_timeout", Message: noTLSMsg},
		slog.String("transport", transport.NetworkTCP))
}

// serveConn runs one client connection from handshake to end.
func (r *Relay) serveConn(conn quicnet.Session) {
	remote := conn.RemoteAddr().String()
	ctx, cancel := context.WithTimeout(r.ctx, r.limits.HandshakeTimeout)
	defer cancel()
	ctrl, err := conn.AcceptStream(ctx)
	if err != nil {
		r.log.Debug("relay: no control stream", "remote", remote, "transport", conn.Network(), "err", err)
		if ctx.Err() != nil && conn.Context().Err() == nil {
			// The peer finished a handshake and then said nothing for
			// the whole Hello deadline: a refusal like a bad Hello, in
			// the trail and towards Limits.RejectsPerSource, so that a
			// source that holds connections open without a Hello is
			// refused before its next handshake.
			r.m.handshakeFailed("", "handshake_timeout")
			r.recordReject(conn, "", "", &wire.Reject{Code: wire.CodeTimeout, Reason: "handshake_timeout", Message: noHelloMsg})
		}
		closeConn(conn, wire.CodeTimeout, "handshake_timeout", noHelloMsg)
		return
	}
	if d, ok := ctx.Deadline(); ok {
		ctrl.SetDeadline(d)
	}
	var verified atomic.Bool
	stopWatch := watchEarlyStreams(ctx, conn, &verified)
	proven := provenKey(conn.TLSState())
	hello, claims, rej := r.handshake(conn.Context(), ctrl, proven)
	if rej != nil {
		stopWatch()
		r.m.handshakeFailed(hello.Role, rej.Reason)
		// Counted before the peer hears of it: its next connection
		// already meets Limits.RejectsPerSource.
		r.recordReject(conn, hello.Role, subjectOf(claims), rej)
		r.reject(conn, ctrl, rej)
		return
	}
	verified.Store(true)
	early := stopWatch()
	if conn.Context().Err() != nil {
		return // closed by the watcher: a stream came before the hello
	}
	admitted(conn)
	r.gate.familiar.add(sourceOf(conn.RemoteAddr()))
	ctrl.SetDeadline(time.Time{})
	if rej := r.subjects.startSession(claims.Subject); rej != nil {
		if early != nil {
			early.CancelRead(quicnet.StreamRefused)
			early.CancelWrite(quicnet.StreamRefused)
		}
		r.recordReject(conn, hello.Role, claims.Subject, rej)
		r.reject(conn, ctrl, rej)
		return
	}
	defer r.subjects.endSession(claims.Subject)
	init := func(s *session) {
		s.r = r
		s.id = newSessionID()
		s.conn = conn
		s.ctrl = ctrl
		s.remote = remote
		s.started = time.Now()
		s.claims.Store(claims)
		s.provenKey = proven
		s.remoteIP = sourceOf(conn.RemoteAddr())
	}
	switch hello.Role {
	case wire.RoleAgent:
		a := new(agentSession)
		init(&a.session)
		a.early = early
		a.wantsRevoke = slices.Contains(hello.GetFeatures(), wire.FeatureRevoke)
		r.serveAgent(a)
	case wire.RoleConnector:
		if r.smallConnWindow != 0 && conn.Network() == transport.NetworkQUIC && !r.limits.connectorSource(sourceOf(conn.RemoteAddr())) {
			r.log.Warn("relay: a connector connected from outside limits.connector_networks: its connection window starts small, and agents that stop reading hold a larger share of it",
				"remote", remote, "subject", claims.Subject, "conn_window", r.smallConnWindow)
		}
		if early != nil {
			early.CancelRead(quicnet.StreamRefused)
			early.CancelWrite(quicnet.StreamRefused)
		}
		c := new(connectorSession)
		init(&c.session)
		c.wantsPolicy = slices.Contains(hello.GetFeatures(), wire.FeaturePolicy)
		c.acks = slices.Contains(hello.GetFeatures(), wire.FeatureDialAck)
		c.keepsAlive = slices.Contains(hello.GetFeatures(), wire.FeatureKeepAlive)
		r.serveConnector(c, hello.GetServices())
	}
}

func subjectOf(c *identity.Claims) string {
	if c == nil {
		return ""
	}
	return c.Subject
}

// handshake reads and checks a Hello on the connection whose context is
// ctx. On failure it returns the Reject to send; hello is then what could
// be read of it.
func (r *Relay) handshake(ctx context.Context, ctrl io.Reader, proven string) (*wire.Hello, *identity.Claims, *wire.Reject) {
	hello, err := readHello(ctrl, r.limits.MaxFrameSize)
	if err != nil {
		hello = new(wire.Hello)
		switch {
		case errors.Is(err, wire.ErrFrameTooLarge):
			return hello, nil, &wire.Reject{Code: wire.CodeLimit, Reason: "frame_too_large", Message: fmt.Sprintf("hello is larger than the relay's %d-byte frame limit", r.limits.MaxFrameSize)}
		case errors.Is(err, os.ErrDeadlineExceeded):
			return hello, nil, &wire.Reject{Code: wire.CodeTimeout, Reason: "handshake_timeout", Message: noHelloMsg}
		case errors.Is(err, wire.ErrMalformed):
			return hello, nil, &wire.Reject{Code: wire.CodeProtocol, Reason: "malformed_hello", Message: err.Error()}
		}
		return hello, nil, &wire.Reject{Code: wire.CodeProtocol, Reason: "no_hello", Message: "the control stream ended before a hello"}
	}
	if hello.Version != wire.Version {
		return hello, nil, &wire.Reject{Code: wire.CodeUnsupported, Reason: "unsupported_version", Message: fmt.Sprintf("protocol version %d is not supported; this relay speaks %d", hello.Version, wire.Version)}
	}
	var role identity.Role
	switch hello.Role {
	case wire.RoleAgent:
		role = identity.RoleAgent
		if len(hello.Services) > 0 {
			return hello, nil, &wire.Reject{Code: wire.CodeProtocol, Reason: "agent_advertises", Message: "an agent cannot advertise services"}
		}
	case wire.RoleConnector:
		role = identity.RoleConnector
	default:
		return hello, nil, &wire.Reject{Code: wire.CodeUnsupported, Reason: "unsupported_role", Message: fmt.Sprintf("role %q is neither agent nor connector", hello.Role)}
	}
	if hello.Token == "" {
		return hello, nil, &wire.Reject{Code: wire.CodeUnauthenticated, Reason: "missing_token", Message: "the hello carries no token"}
	}
	// A token's signature check waits, as the TLS handshake did, for the
	// verified sessions' packets to be handled first (package idle), or
	// for its connection to end.
	idle.Wait(ctx)
	claims, rej := r.verify(hello.Token, role)
	if rej != nil {
		return hello, claims, rej // claims only for a revoked token
	}
	if rej := r.checkKey(claims, proven); rej != nil {
		return hello, claims, rej
	}
	return hello, claims, nil
}

// provenKey is the thumbprint of the key a client proved in its TLS
// handshake (its certificate's; TLS checked the signature), or "" when
// it presented none or one of a type no token binds to.
func provenKey(cs tls.ConnectionState) string {
	pub := transport.PeerKey(cs)
	if pub == nil {
		return ""
	}
	jkt, err := identity.KeyThumbprint(pub)
	if err != nil {
		return ""
	}
	return jkt
}

// checkKey refuses a bound token on a connection that did not prove its
// key, and a bearer agent token where bound tokens are required.
func (r *Relay) checkKey(c *identity.Claims, proven string) *wire.Reject {
	if err := c.CheckKey(proven); err != nil {
		return &wire.Reject{Code: wire.CodeKeyNotProven, Reason: identity.Reason(err), Message: err.Error()}
	}
	if r.cfg.RequireBoundTokens && c.Role == identity.RoleAgent && c.BoundKey == "" {
		return &wire.Reject{Code: wire.CodeKeyNotProven, Reason: "token_not_bound",
			Message: "this relay accepts only agent tokens bound to a key (postern token issue --bind-key)"}
	}
	return nil
}

// verify checks a token for role, answering a Reject that says which check
// failed and nothing of the token itself. A token that verified but is
// revoked comes back with its claims and the Reject, for the audit
// trail: whoever uses the claims checks the Reject first.
func (r *Relay) verify(token string, role identity.Role) (*identity.Claims, *wire.Reject) {
	if len(token) > r.limits.MaxTokenSize {
		r.m.tokenFailed(identity.Reason(identity.ErrTooLarge))
		return nil, &wire.Reject{Code: wire.CodeUnauthenticated, Reason: identity.Reason(identity.ErrTooLarge),
			Message: fmt.Sprintf("token is %d bytes, limit %d", len(token), r.limits.MaxTokenSize)}
	}
	claims, err := r.cfg.Verifier.Verify(token, role)
	if err != nil {
		r.m.tokenFailed(identity.Reason(err))
		return nil, &wire.Reject{Code: wire.CodeUnauthenticated, Reason: identity.Reason(err), Message: err.Error()}
	}
	if rej := r.revokedReject(claims); rej != nil {
		// The token verified, so its subject is what the audit trail
		// should name; the caller refuses the session all the same.
		return claims, rej
	}
	return claims, nil
}

// reject sends rej and closes the connection. It gives the client a moment
// to read the Reject and close first; CONNECTION_CLOSE carries the code
// and reason too, for a client that misses the frame.
func (r *Relay) reject(conn quicnet.Session, ctrl quicnet.Stream, rej *wire.Reject) {
	ctrl.SetWriteDeadline(time.Now().Add(time.Second))
	if err := wire.WriteFrame(ctrl, rej); err == nil {
		ctrl.Close()
		select {
		case <-conn.Context().Done():
		case <-time.After(time.Second):
		case <-r.ctx.Done():
		}
	}
	closeConn(conn, rej.Code, rej.Reason, rej.Message)
}

func newSessionID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// watchPolicy re-scopes every live catalog when the policy changes.
func (r *Relay) watchPolicy() {
	defer r.wg.Done()
	for {
		_, changed := r.policy.Current()
		select {
		case <-changed:
			r.log.Info("relay: policy changed; re-scoping catalogs, deciding live streams again and sending the set to connectors")
			var wg sync.WaitGroup
			wg.Go(r.pushPolicyAll)
			r.rescopeAll()
			r.redecideAll(triggerPolicy)
			wg.Wait()
		case <-r.ctx.Done():
			return
		}
	}
}

// rescopeAll has every agent's catalog recomputed, and pushed where it
// changed, each by the agent's own pusher: it does not wait for any.
func (r *Relay) rescopeAll() {
	for _, a := range r.agentList() {
		a.pushCatalog()
	}
}

// catalogFor returns the bindings that policy lets p connect to, sorted by
// name. A binding that no configuration declares and no connector serves
// now is left out: nothing could open it, and nothing vouches for it. An
// http or postgres binding on which p may only read (no permit admits a
// write or unclassified action there: policy.Set.MayWrite) is listed with
// read_only set, so that tools can say so.
func (r *Relay) catalogFor(p *policy.Principal, source netip.Addr) []*wire.Binding {
	r.mu.RLock()
	routes := make([]*route, 0, len(r.routes))
	for _, rt := range r.routes {
		if rt.declared || len(*rt.conns.Load()) > 0 {
			routes = append(routes, rt)
		}
	}
	r.mu.RUnlock()
	now := time.Now()
	var out []*wire.Binding
	for _, rt := range routes {
		meta := rt.meta.Load()
		req := policy.Request{Principal: *p, Resource: meta.resource, Time: now, SourceIP: source}
		if !r.policy.AuthorizeOpen(req).Allowed {
			continue
		}
		if meta.readOnly != nil && !r.policy.MayWrite(req) {
			out = append(out, meta.readOnly)
		} else {
			out = append(out, meta.wire)
		}
	}
	slices.SortFunc(out, func(a, b *wire.Binding) int {
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	return out
}
