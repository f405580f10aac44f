package mesh

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/postern/postern"
	"github.com/postern/postern/internal/quicnet"

	sess "github.com/postern/postern/internal/session"
	"github.com/postern/postern/internal/tracectx"
	"github.com/postern/postern/internal/wire"
	"github.com/postern/postern/transport"
)

// Config configures a Client. Relay or Relays, one of Token and
// TokenSource, and one of RootCAs and Pin are required; every other field
// has a working zero value.
type Config struct {
	// Relay is the relay's address, host:port (UDP): the same as Relays
	// with one entry. Set Relay or Relays, not both.
	Relay string
	// Relays are the addresses of relays that serve the same mesh, in
	// order of preference. The client holds a session with one at a time:
	// it connects to the first that answers (the first in order at once,
	// each next one 250ms later), stays with it while it is healthy, and
	// moves to the next when it goes away or falls silent, retrying there
	// any open that had not been answered (see [Client.Dial]). A relay
	// that failed in the last 30s is tried after the others.
	Relays []string

	// Token is the agent's identity token (a JWT). Use it for tokens that
	// outlive the program; otherwise set TokenSource.
	Token string
	// TokenSource returns a current token. It is called to connect, and on
	// a live session before the token in use expires, so that a session
	// outlives any one token without reconnecting.
	TokenSource func(ctx context.Context) (string, error)

	// RootCAs verifies the relay's certificate against a CA pool.
	RootCAs *x509.CertPool
	// Pin trusts exactly the relay certificate with this SHA-256
	// ("sha256:<hex>", as the relay prints it); for self-signed relays.
	Pin string
	// ServerName is the name checked in the relay's certificate with
	// RootCAs. Empty means the host part of Relay.
	ServerName string

	// Key is the agent's private key (Ed25519 or ECDSA P-256; see
	// transport.GenerateClientKey and transport.ParseClientKey). The
	// client proves it in every handshake with a self-signed certificate,
	// which a token bound to the key (`postern token issue --bind-key`)
	// needs: the relay refuses a bound token without this proof
	// (postern.ErrKeyNotProven), so a stolen token is useless without the
	// key. Nil proves no key: bearer tokens only.
	Key crypto.Signer

	// Logger receives the client's operational log (connects, reconnects,
	// refreshes). Nil means silent. Tokens are never logged.
	Logger *slog.Logger

	// ConnectTimeout bounds connecting to the relay (QUIC handshake and
	// Hello/Welcome) when the caller's context has no earlier deadline.
	// Zero means 10s.
	ConnectTimeout time.Duration

	// OpenTimeout bounds Dial's wait for the relay's answer to an open
	// (which includes the connector's dial to the upstream) when the
	// caller's context has no earlier deadline. Zero means 30s.
	OpenTimeout time.Duration

	// Transport tunes QUIC and TLS over TCP. Nil means transport's
	// defaults, except two that an agent sets shorter so that a dead
	// relay is noticed in seconds: a keep-alive every second (KeepAlive
	// zero means 1s) and an idle timeout of 5s (IdleTimeout zero means
	// 5s). A relay silent for 1.25s (plus up to two round trips) gets no
	// new opens; its streams end at the idle timeout, with an error,
	// unless it is heard from again. Its Network chooses the transport:
	// "" or "auto" (QUIC first, TLS over TCP after a 300ms head start or
	// as soon as QUIC fails, the winner remembered per relay for 10
	// minutes), "quic" or "tcp". binding.ConfigFromEnv reads it from
	// POSTERN_TRANSPORT.
	Transport *transport.Config
}

// Agent defaults, shorter than a relay's (see Config.Transport).
const (
	agentKeepAlive   = time.Second
	agentIdleTimeout = 5 * time.Second
	agentSuspect     = 1250 * time.Millisecond
	failMemory       = 30 * time.Second // how long a failed relay is tried last
)

// Client is an agent's session with a relay. It connects on first use,
// reconnects by itself when the relay goes away, and is safe for
// concurrent use. Its Dial method has the signature of
// net.Dialer.DialContext, so it plugs into http.Transport, pgx and
// anything else that takes a dial function.
type Client struct {
	cfg    Config
	relays []string
	tls    map[string]*tls.Config // relay -> how to trust it
	tc     transport.Config
	log    *slog.Logger

	mu      sync.Mutex
	sess    *session
	retired map[*session]struct{} // left for new opens, carrying streams still
	failed  map[string]time.Time  // relay -> when a session with it last failed
	dialing chan struct{}         // closed when the connect in progress ends
	closed  bool
	changed chan struct{} // closed, and replaced, when the catalog changes
}

// NewClient checks cfg and returns a client. It does not connect: the
// first Dial, Catalog or Connect does.
func NewClient(cfg Config) (*Client, error) {
	relays := cfg.Relays
	switch {
	case cfg.Relay != "" && len(cfg.Relays) > 0:
		return nil, errors.New("mesh: config: set Relay or Relays, not both")
	case cfg.Relay != "":
		relays = []string{cfg.Relay}
	case len(relays) == 0:
		return nil, errors.New("mesh: config: a Relay address is required")
	}
	relays = slices.Clone(relays)
	tlsConfs := make(map[string]*tls.Config, len(relays))
	for _, addr := range relays {
		host, _, err := net.SplitHostPort(addr)
		if err != nil || host == "" {
			return nil, fmt.Errorf("mesh: config: relay %q: want host:port", addr)
		}
		if _, dup := tlsConfs[addr]; dup {
			return nil, fmt.Errorf("mesh: config: relay %q listed twice", addr)
		}
		t, err := transport.Trust{RootCAs: cfg.RootCAs, Pin: cfg.Pin, ServerName: cfg.ServerName, Key: cfg.Key}.ClientTLS(host)
		if err != nil {
			return nil, fmt.Errorf("mesh: config: %w", err)
		}
		tlsConfs[addr] = t
	}
	if cfg.Token == "" && cfg.TokenSource == nil {
		return nil, errors.New("mesh: config: a Token or a TokenSource is required")
	}
	if cfg.Token != "" && cfg.TokenSource != nil {
		return nil, errors.New("mesh: config: set Token or TokenSource, not both")
	}
	if cfg.Transport != nil {
		if err := transport.CheckNetwork(cfg.Transport.Network); err != nil {
			return nil, fmt.Errorf("mesh: config: %w", err)
		}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	if cfg.OpenTimeout <= 0 {
		cfg.OpenTimeout = 30 * time.Second
	}
	var tc transport.Config
	if cfg.Transport != nil {
		tc = *cfg.Transport
	}
	if tc.KeepAlive == 0 {
		tc.KeepAlive = agentKeepAlive
	}
	if tc.IdleTimeout == 0 {
		tc.IdleTimeout = agentIdleTimeout
	}
	return &Client{cfg: cfg, relays: relays, tls: tlsConfs, tc: tc, log: log,
		retired: make(map[*session]struct{}), failed: make(map[string]time.Time)}, nil
}

// Connect connects to the relay now, if not connected already, and reports
// whether the relay accepted the token. Dial connects by itself; Connect is
// for programs that want to fail fast at start.
func (c *Client) Connect(ctx context.Context) error {
	_, err := c.session(ctx)
	return err
}

// Catalog returns the bindings this agent may open, as of the relay's last
// update (the relay pushes a new catalog when policy or connectors change).
func (c *Client) Catalog(ctx context.Context) ([]postern.Binding, error) {
	s, err := c.session(ctx)
	if err != nil {
		return nil, err
	}
	return slices.Clone(*s.catalog.Load()), nil
}

// CatalogChanged returns a channel that is closed the next time the
// catalog changes: the relay pushed a new one (policy or connectors
// changed), or a new session with the relay brought its own. Each call
// after a change returns a new channel, so a watcher loops: wait, then
// read Catalog, then wait on a fresh CatalogChanged. Reading the catalog
// after the wait, rather than before, loses no change. The channel is
// never closed for Close; select on your own context too.
func (c *Client) CatalogChanged() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.changed == nil {
		c.changed = make(chan struct{})
	}
	return c.changed
}

// catalogChanged wakes the waiters of CatalogChanged.
func (c *Client) catalogChanged() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.changed != nil {
		close(c.changed)
		c.changed = nil
	}
}

// Lookup returns the catalog entry of the binding called name, or an
// error matching postern.ErrUnknownBinding when the catalog has none: the binding
// does not exist or policy does not let this agent open it.
func (c *Client) Lookup(ctx context.Context, name string) (postern.Binding, error) {
	s, err := c.session(ctx)
	if err != nil {
		return postern.Binding{}, err
	}
	for _, b := range *s.catalog.Load() {
		if b.Name == name {
			return b, nil
		}
	}
	return postern.Binding{}, &postern.Error{Op: "lookup", Binding: name, Err: postern.ErrUnknownBinding,
		Message: "not in this agent's catalog (no such binding, or policy does not let this identity open it)"}
}

// Identity returns who the relay says this client is.
func (c *Client) Identity(ctx context.Context) (postern.Identity, error) {
	s, err := c.session(ctx)
	if err != nil {
		return postern.Identity{}, err
	}
	return s.identity, nil
}

// Dial opens a stream to the binding called name and returns it once the
// relay has authorized the open and the connector has reached the
// upstream; the returned net.Conn then carries raw bytes to and from the
// private service. network must be "tcp", "tcp4", "tcp6", "postern" or
// empty; name may carry a ":port" suffix (decimal digits), which is
// ignored, so that Dial can serve as http.Transport.DialContext. Names
// follow one rule everywhere (binding.OpenWith's): anything else after
// the last ':' is refused, not dropped.
//
// A refused open returns an *postern.Error matching postern.ErrDenied, postern.ErrUnknownBinding,
// postern.ErrNoConnector, postern.ErrUpstream, postern.ErrLimitExceeded, ... with errors.Is. When
// the relay has gone away since the last call, Dial reconnects first.
//
// An open whose relay goes away, or falls silent, before it answers is
// opened again through another relay (or the same one, reconnected), up
// to once per configured relay: nothing but the Open had been sent on the
// stream, so no byte of the caller's reached the upstream twice.
func (c *Client) Dial(ctx context.Context, network, name string) (net.Conn, error) {
	return c.dial(ctx, network, name, false)
}

// DialEarly is Dial without the wait for the relay's answer: it returns at
// once, and the Open goes out with the first bytes written, in the same
// packets. This saves a round trip on every open, which is what a
// request/response client (HTTP, PostgreSQL) wants. The relay holds those
// bytes, within the stream's flow-control window, until it has decided;
// a refused open discards them, and none reaches a connector.
//
// The relay's answer is read before the first byte of reply data: a
// refused open makes the first Read (and any Write after the refusal)
// return the *postern.Error that Dial would have returned. Unlike Dial's,
// an open that DialEarly sent is not retried when its relay goes away:
// the caller's first bytes went with it.
func (c *Client) DialEarly(ctx context.Context, network, name string) (net.Conn, error) {
	return c.dial(ctx, network, name, true)
}

func (c *Client) dial(ctx context.Context, network, name string, early bool) (net.Conn, error) {
	switch network {
	case "", "tcp", "tcp4", "tcp6", "postern":
	default:
		return nil, &postern.Error{Op: "open", Binding: name, Err: postern.ErrProtocol, Message: fmt.Sprintf("network %.32q is not a stream network", network)}
	}
	addr := name
	name, err := wire.DialName(addr)
	if err != nil {
		return nil, &postern.Error{Op: "open", Binding: addr, Err: postern.ErrUnknownBinding, Message: "not a valid binding name (1 to 128 of A-Z a-z 0-9 . _ / -, optionally followed by :PORT)"}
	}
	details, err := openDetails(ctx)
	if err != nil {
		return nil, &postern.Error{Op: "open", Binding: name, Err: postern.ErrProtocol, Message: err.Error()}
	}
	ctx, ot := startOpen(ctx, name)
	conn, err := c.dialSession(ctx, name, details, early)
	if err != nil || !early {
		ot.end(err)
	} else {
		conn.ot = ot // ended when the relay's answer is read
	}
	if err != nil {
		return nil, err
	}
	return conn, nil
}

func (c *Client) dialSession(ctx context.Context, name string, details []*wire.Detail, early bool) (*Conn, error) {
	for attempt := 0; ; attempt++ {
		s, err := c.session(ctx)
		if err != nil {
			return nil, err
		}
		conn, err := s.open(ctx, name, details, early)
		if err != nil && attempt < len(c.relays) && s.lost(err) && ctx.Err() == nil {
			// The relay went away (restart, crash, network change) or fell
			// silent before answering: only the Open was sent, so open
			// again, on another relay or a new session.
			c.log.Info("mesh: relay lost before answering an open; opening again", "relay", s.Addr(), "binding", name, "err", err)
			c.retire(s)
			continue
		}
		if err != nil {
			var me *postern.Error
			if !errors.As(err, &me) {
				err = sessionErr(ctx, "open", name, err)
			}
			return nil, err
		}
		return conn, nil
	}
}

// Close ends the session and makes every later call fail with postern.ErrClosed.
// Streams already open are torn down.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	ss := []*session{c.sess}
	c.sess = nil
	for r := range c.retired {
		ss = append(ss, r)
	}
	clear(c.retired)
	c.mu.Unlock()
	for _, s := range ss {
		if s != nil {
			s.Close()
		}
	}
	return nil
}

// retire takes s out of use for new opens: its relay went away or fell
// silent. A session that is still up keeps its streams: it is closed when
// the last of them is, or when it ends.
func (c *Client) retire(s *session) {
	c.mu.Lock()
	if c.sess == s {
		c.sess = nil
	}
	c.failed[s.Addr()] = time.Now()
	if s.retired.Swap(true) || c.closed {
		c.mu.Unlock()
		return
	}
	c.retired[s] = struct{}{}
	c.mu.Unlock()
	if !s.Alive() || s.active.Load() == 0 {
		s.End(net.ErrClosed)
	}
	go func() {
		<-s.Done()
		s.Close() // waits for the session's goroutines
		c.mu.Lock()
		delete(c.retired, s)
		c.mu.Unlock()
	}()
}

// order returns the relays to try, in order of preference: as configured,
// except that those that failed lately come last, the latest failure last.
func (c *Client) order() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	recent := func(a string) (time.Time, bool) {
		t, ok := c.failed[a]
		return t, ok && now.Sub(t) < failMemory
	}
	order := slices.Clone(c.relays)
	slices.SortStableFunc(order, func(a, b string) int {
		ta, ra := recent(a)
		tb, rb := recent(b)
		switch {
		case ra && rb:
			return ta.Compare(tb)
		case ra:
			return 1
		case rb:
			return -1
		}
		return 0
	})
	return order
}

// session returns a live session, connecting if there is none. Only one
// connect runs at a time; other callers wait for it, within their own
// context.
func (c *Client) session(ctx context.Context) (*session, error) {
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return nil, &postern.Error{Op: "connect", Err: postern.ErrClosed}
		}
		if s := c.sess; s != nil {
			if s.alive() {
				c.mu.Unlock()
				return s, nil
			}
			c.mu.Unlock()
			c.retire(s)
			continue
		}
		if ch := c.dialing; ch != nil {
			c.mu.Unlock()
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return nil, &postern.Error{Op: "connect", Err: ctxErr(ctx), Message: "waiting for the relay connection"}
			}
		}
		ch := make(chan struct{})
		c.dialing = ch
		c.mu.Unlock()

		s, err := c.connect(ctx)

		c.mu.Lock()
		c.dialing = nil
		if err == nil {
			if c.closed {
				err = &postern.Error{Op: "connect", Err: postern.ErrClosed}
			} else {
				c.sess = s
			}
		}
		c.mu.Unlock()
		close(ch)
		if err != nil {
			if s != nil {
				s.Close()
			}
			return nil, err
		}
		return s, nil
	}
}

func ctxErr(ctx context.Context) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w", postern.ErrTimeout, ctx.Err())
	}
	return ctx.Err()
}

func (c *Client) token(ctx context.Context) (string, error) {
	if c.cfg.TokenSource == nil {
		return c.cfg.Token, nil
	}
	return c.cfg.TokenSource(ctx)
}

func (c *Client) connect(ctx context.Context) (*session, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.ConnectTimeout)
	defer cancel()
	s := &session{c: c}
	ss, err := sess.DialAny(ctx, c.order(), sess.Config{
		TLSFor:       func(addr string) *tls.Config { return c.tls[addr] },
		Transport:    &c.tc,
		Role:         wire.RoleAgent,
		Client:       "postern-go",
		Token:        c.token,
		Refresh:      c.cfg.TokenSource != nil,
		Log:          c.log,
		SuspectAfter: agentSuspect,
		OnCatalog: func(ws []*wire.Binding) {
			s.setCatalog(ws)
			if s.retired.Load() {
				return // a retired session's catalog is no one's
			}
			c.log.Info("mesh: catalog updated", "bindings", len(ws))
			c.catalogChanged()
		},
		Features: []string{wire.FeatureRevoke},
		OnRevoke: s.revoked.add,
	}, sess.Pace{})
	if err != nil {
		return nil, sessionErr(ctx, "connect", "", err)
	}
	w := ss.Welcome
	s.Session = ss
	s.identity = postern.Identity{Subject: w.Identity.Subject, Role: w.Identity.Role, Groups: w.Identity.Groups}
	if s.catalog.Load() == nil {
		s.setCatalog(w.Catalog)
	}
	c.catalogChanged()
	c.log.Info("mesh: connected", "relay", ss.Addr(), "session", w.Session, "subject", s.identity.Subject, "bindings", len(w.Catalog))
	return s, nil
}

// sessionErr turns an error from the session layer into an *postern.Error.
func sessionErr(ctx context.Context, op, binding string, err error) error {
	rej := sess.CloseReason(err) // the relay closed the connection, saying why
	switch {
	case rej != nil || errors.As(err, &rej):
		return &postern.Error{Op: op, Binding: binding, Err: codeErr(rej.Code), Reason: rej.Reason, Message: rej.Message}
	case ctx.Err() != nil:
		return &postern.Error{Op: op, Binding: binding, Err: ctxErr(ctx), Message: "talking to the relay"}
	case errors.Is(err, sess.ErrTokenSource):
		return &postern.Error{Op: op, Binding: binding, Err: fmt.Errorf("%w: %w", postern.ErrUnauthenticated, err)}
	case errors.Is(err, wire.ErrMalformed):
		return &postern.Error{Op: op, Binding: binding, Err: fmt.Errorf("%w: %w", postern.ErrProtocol, err)}
	case errors.Is(err, os.ErrDeadlineExceeded):
		return &postern.Error{Op: op, Binding: binding, Err: fmt.Errorf("%w: %w", postern.ErrTimeout, err)}
	}
	return &postern.Error{Op: op, Binding: binding, Err: fmt.Errorf("%w: %w", postern.ErrUnavailable, err)}
}

// errSuspect ends the wait for an open's answer when the relay falls
// silent: the open is made again elsewhere.
var errSuspect = errors.New("mesh: relay silent")

// session is one QUIC connection to the relay, as an agent.
type session struct {
	*sess.Session
	c        *Client
	identity postern.Identity
	catalog  atomic.Pointer[[]postern.Binding]
	revoked  revocations  // why the relay cut streams, by stream ID
	active   atomic.Int64 // streams opened and not yet closed by the caller
	retired  atomic.Bool  // no longer given new opens (Client.retire)
}

// release counts the end of a stream; a retired session ends with its
// last.
func (s *session) release() {
	if s.active.Add(-1) == 0 && s.retired.Load() {
		s.End(net.ErrClosed)
	}
}

func (s *session) setCatalog(ws []*wire.Binding) {
	cat := make([]postern.Binding, len(ws))
	for i, w := range ws {
		cat[i] = bindingFromWire(w)
	}
	s.catalog.Store(&cat)
}

// alive reports whether s is up and its relay has not fallen silent.
func (s *session) alive() bool {
	select {
	case <-s.Suspect():
		return false
	default:
		return s.Alive()
	}
}

// lost reports whether err means the whole session is gone, or its relay
// silent.
func (s *session) lost(err error) bool {
	return errors.Is(err, errSuspect) || quicnet.IsConnClosed(err) || s.Conn.Context().Err() != nil
}

// open opens a binding stream. Unless early, it sends the Open and waits
// for the relay's result; early, it leaves both to the first I/O.
func (s *session) open(ctx context.Context, name string, details []*wire.Detail, early bool) (*Conn, error) {
	st, err := s.Conn.OpenStreamSync(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil, &postern.Error{Op: "open", Binding: name, Err: ctxErr(ctx), Message: "waiting for a free stream"}
		}
		return nil, err
	}
	conn := &Conn{qc: quicnet.NewConn(st, s.Conn.LocalAddr(), Addr{Binding: name}), binding: name, revoked: &s.revoked}
	trace := tracectx.Inject(ctx)
	// One encoding now, which checks what the caller gave: a DialEarly
	// stream's says early, and the other one is made only for a first
	// I/O without data (flushOpen), which is rare.
	frame, err := wire.AppendFrame(nil, &wire.Open{Binding: name, Details: details, Early: early, Trace: trace})
	if err != nil {
		conn.qc.Abort(quicnet.StreamClosed)
		return nil, &postern.Error{Op: "open", Binding: name, Err: postern.ErrProtocol, Message: err.Error()}
	}
	conn.pending.Store(true)
	s.active.Add(1)
	conn.sess = s
	if early {
		conn.earlyFrame, conn.details, conn.trace = frame, details, trace
		return conn, nil
	}
	conn.openFrame = frame
	fail := func(err error) (*Conn, error) {
		conn.qc.Abort(quicnet.StreamClosed)
		conn.releaseOnce.Do(s.release)
		return nil, err
	}
	if _, err := conn.flushOpen(nil); err != nil {
		return fail(err)
	}
	rctx, cancel := context.WithTimeout(ctx, s.c.cfg.OpenTimeout)
	defer cancel()
	// A relay that falls silent while the open waits ends the wait: the
	// open is made again elsewhere.
	wctx, wcancel := context.WithCancelCause(rctx)
	defer wcancel(nil)
	defer s.AfterSuspect(func() { wcancel(errSuspect) })()
	if err := conn.awaitResult(wctx); err != nil {
		if rctx.Err() == nil && errors.Is(context.Cause(wctx), errSuspect) {
			err = errSuspect
		}
		return fail(err)
	}
	return conn, nil
}

// Conn is a stream to a binding. It is a net.Conn whose Close closes both
// directions and whose CloseWrite is the half-close: the upstream reads
// EOF and can still answer.
type Conn struct {
	qc          *quicnet.Conn
	binding     string
	revoked     *revocations // the session's
	sess        *session
	releaseOnce sync.Once
	// cut is the revocation this stream met, once a Read or Write has
	// returned it: a revoked stream is cut both ways, so every later
	// Read and Write returns it too, whichever of the relay's reset
	// frames has arrived yet (over TLS/TCP they come one after another).
	cut atomic.Pointer[postern.Error]

	// Until the relay's result has been read (pending), the first Write
	// carries the Open frame (openFrame, until sent) and the first Read
	// reads the result before any data.
	pending   atomic.Bool
	frameMu   sync.Mutex // guards openFrame, held while it is written
	openFrame []byte
	// earlyFrame is the Open saying early, sent when the first write
	// carries data (DialEarly only; openFrame is nil then, and made from
	// details and trace if the first I/O has none).
	earlyFrame []byte
	details    []*wire.Detail
	trace      *wire.TraceContext
	resMu      sync.Mutex // guards resultErr and connector
	resultErr  error
	connector  string

	otMu sync.Mutex // guards ot
	ot   openTrace  // a DialEarly's open, until its answer is read
}

// endOpen ends a DialEarly's open span with its outcome, once.
func (c *Conn) endOpen(err error) {
	c.otMu.Lock()
	defer c.otMu.Unlock()
	c.ot.end(err)
}

// Binding returns the name of the binding the stream reaches.
func (c *Conn) Binding() string { return c.binding }

// Close closes both directions. Data already written is still delivered
// unless a Write is in flight, in which case the stream is reset. It is
// safe to call more than once, and concurrently with Read and Write.
func (c *Conn) Close() error {
	if c.pending.Load() {
		c.endOpen(postern.ErrClosed) // closed before the relay answered
	}
	err := c.qc.Close()
	c.releaseOnce.Do(c.sess.release)
	return err
}

// CloseRead stops the receive direction: the upstream is told to stop
// sending.
func (c *Conn) CloseRead() error { return c.qc.CloseRead() }

// LocalAddr returns the agent's address on its QUIC connection to the
// relay.
func (c *Conn) LocalAddr() net.Addr { return c.qc.LocalAddr() }

// RemoteAddr returns an [Addr] naming the binding.
func (c *Conn) RemoteAddr() net.Addr { return c.qc.RemoteAddr() }

// SetDeadline sets the read and write deadlines, as net.Conn does.
func (c *Conn) SetDeadline(t time.Time) error { return c.qc.SetDeadline(t) }

// SetReadDeadline sets the read deadline, as net.Conn does.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.qc.SetReadDeadline(t) }

// SetWriteDeadline sets the write deadline, as net.Conn does.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.qc.SetWriteDeadline(t) }

// Connector returns the ID of the connector serving the stream, once the
// relay's answer has been read (at once for Dial; after the first Read for
// DialEarly).
func (c *Conn) Connector() string {
	c.resMu.Lock()
	defer c.resMu.Unlock()
	return c.connector
}

// Read reads the relay's answer first, if not read yet.
func (c *Conn) Read(p []byte) (int, error) {
	if c.pending.Load() {
		if _, err := c.flushOpen(nil); err != nil {
			return 0, err
		}
		if err := c.awaitResult(context.Background()); err != nil {
			return 0, err
		}
	}
	if e := c.cut.Load(); e != nil {
		return 0, withOp(e, "read")
	}
	n, err := c.qc.Read(p)
	if err != nil && err != io.EOF {
		err = c.revokedErr("read", err)
	}
	return n, err
}

// Write sends the Open frame with the first bytes. A write refused because
// the relay refused the open returns the relay's answer as the error.
func (c *Conn) Write(p []byte) (int, error) {
	if c.pending.Load() {
		sent, err := c.flushOpen(p)
		if sent {
			if err != nil {
				return 0, c.refusal(err)
			}
			return len(p), nil
		}
	}
	if e := c.cut.Load(); e != nil {
		return 0, withOp(e, "write")
	}
	n, err := c.qc.Write(p)
	if err != nil {
		err = c.revokedErr("write", c.refusal(err))
	}
	return n, err
}

// CloseWrite half-closes the stream: the upstream reads EOF and can still
// answer. On a DialEarly stream nothing has been written to, the Open goes
// out first.
func (c *Conn) CloseWrite() error {
	if c.pending.Load() {
		if _, err := c.flushOpen(nil); err != nil {
			return c.refusal(err)
		}
	}
	return c.qc.CloseWrite()
}

// refusal returns the relay's answer when err is the stream being refused.
func (c *Conn) refusal(err error) error {
	if code, ok := quicnet.StreamErrorCode(err); ok && code == quicnet.StreamRefused {
		if rerr := c.awaitResult(context.Background()); rerr != nil {
			return rerr
		}
	}
	return err
}

// flushOpen sends the Open frame if it has not been sent, with p after it
// in the same write. sent reports whether p went out with it.
func (c *Conn) flushOpen(p []byte) (sent bool, err error) {
	// The lock is held across the write so that no other write can get
	// ahead of the Open frame.
	c.frameMu.Lock()
	defer c.frameMu.Unlock()
	frame, early := c.openFrame, c.earlyFrame
	c.openFrame, c.earlyFrame = nil, nil
	if frame == nil && early == nil {
		return false, nil
	}
	if len(p) > 0 && len(p) <= 64<<10 && early != nil {
		_, err = c.qc.Write(append(early, p...))
		return true, err
	}
	if frame == nil {
		// A DialEarly stream's first I/O carries no data (a Read, a
		// CloseWrite) or more than one write should: the Open says it
		// is not early. Its strings were checked by the early one.
		if frame, err = wire.AppendFrame(early[:0], &wire.Open{Binding: c.binding, Details: c.details, Trace: c.trace}); err != nil {
			return false, err
		}
	}
	_, err = c.qc.Write(frame)
	return false, err
}

// awaitResult reads the relay's answer once; later calls return the same.
func (c *Conn) awaitResult(ctx context.Context) error {
	c.resMu.Lock()
	defer c.resMu.Unlock()
	if !c.pending.Load() {
		return c.resultErr
	}
	c.resultErr = c.readResult(ctx)
	c.pending.Store(false)
	c.endOpen(c.resultErr)
	return c.resultErr
}

func (c *Conn) readResult(ctx context.Context) error {
	// Dial bounds the read with its context. The first Read or Write of a
	// DialEarly stream passes a context that never ends: the caller's own
	// deadlines bound the read then, and must be left as the caller set
	// them, not cleared.
	if ctx.Done() != nil {
		stop := sess.DeadlineFromContext(ctx, c.qc)
		defer stop()
	}
	var res wire.Result
	if err := wire.ReadExpected(c.qc, sess.MaxControlFrame, &res); err != nil {
		if quicnet.IsConnClosed(err) {
			return err // the caller decides whether to reconnect
		}
		return sessionErr(ctx, "open", c.binding, err)
	}
	if res.Code != wire.CodeOK {
		return &postern.Error{Op: "open", Binding: c.binding, Err: codeErr(res.Code), Reason: res.Reason, Message: res.Message, Policies: res.Policies}
	}
	c.connector = res.Connector // under resMu, held by awaitResult
	return nil
}
