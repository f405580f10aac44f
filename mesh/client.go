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

// Config configures a Client. Relay, one of Token and TokenSource, and one
// of RootCAs and Pin are required; every other field has a working zero
// value.
type Config struct {
	// Relay is the relay's address, host:port (UDP).
	Relay string

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
	// defaults. Its Network chooses the transport: "" or "auto" (QUIC
	// first, TLS over TCP after a 300ms head start or as soon as QUIC
	// fails, the winner remembered per relay for 10 minutes), "quic" or
	// "tcp". binding.ConfigFromEnv reads it from POSTERN_TRANSPORT.
	Transport *transport.Config
}

// Client is an agent's session with a relay. It connects on first use,
// reconnects by itself when the relay goes away, and is safe for
// concurrent use. Its Dial method has the signature of
// net.Dialer.DialContext, so it plugs into http.Transport, pgx and
// anything else that takes a dial function.
type Client struct {
	cfg Config
	tls *tls.Config
	log *slog.Logger

	mu      sync.Mutex
	sess    *session
	dialing chan struct{} // closed when the connect in progress ends
	closed  bool
	changed chan struct{} // closed, and replaced, when the catalog changes
}

// NewClient checks cfg and returns a client. It does not connect: the
// first Dial, Catalog or Connect does.
func NewClient(cfg Config) (*Client, error) {
	if cfg.Relay == "" {
		return nil, errors.New("mesh: config: Relay address is required")
	}
	host, _, err := net.SplitHostPort(cfg.Relay)
	if err != nil {
		return nil, fmt.Errorf("mesh: config: Relay %q: want host:port", cfg.Relay)
	}
	if cfg.Token == "" && cfg.TokenSource == nil {
		return nil, errors.New("mesh: config: a Token or a TokenSource is required")
	}
	if cfg.Token != "" && cfg.TokenSource != nil {
		return nil, errors.New("mesh: config: set Token or TokenSource, not both")
	}
	tlsConf, err := transport.Trust{RootCAs: cfg.RootCAs, Pin: cfg.Pin, ServerName: cfg.ServerName, Key: cfg.Key}.ClientTLS(host)
	if err != nil {
		return nil, fmt.Errorf("mesh: config: %w", err)
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
	return &Client{cfg: cfg, tls: tlsConf, log: log}, nil
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
// return the *postern.Error that Dial would have returned.
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
		if err != nil && attempt == 0 && s.lost(err) {
			// The relay went away since the session was made (restart,
			// network change): nothing was delivered, so open again on a
			// new session.
			c.log.Info("mesh: relay connection lost, reconnecting", "relay", c.cfg.Relay, "err", err)
			s.End(err)
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
	s := c.sess
	c.sess = nil
	c.mu.Unlock()
	if s != nil {
		s.Close()
	}
	return nil
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
		if s := c.sess; s != nil && s.alive() {
			c.mu.Unlock()
			return s, nil
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
	ss, err := sess.Dial(ctx, sess.Config{
		Addr:      c.cfg.Relay,
		TLS:       c.tls,
		Transport: c.cfg.Transport,
		Role:      wire.RoleAgent,
		Client:    "postern-go",
		Token:     c.token,
		Refresh:   c.cfg.TokenSource != nil,
		Log:       c.log,
		OnCatalog: func(ws []*wire.Binding) {
			s.setCatalog(ws)
			c.log.Info("mesh: catalog updated", "bindings", len(ws))
			c.catalogChanged()
		},
		Features: []string{wire.FeatureRevoke},
		OnRevoke: s.revoked.add,
	})
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
	c.log.Info("mesh: connected", "relay", c.cfg.Relay, "session", w.Session, "subject", s.identity.Subject, "bindings", len(w.Catalog))
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

// session is one QUIC connection to the relay, as an agent.
type session struct {
	*sess.Session
	c        *Client
	identity postern.Identity
	catalog  atomic.Pointer[[]postern.Binding]
	revoked  revocations // why the relay cut streams, by stream ID
}

func (s *session) setCatalog(ws []*wire.Binding) {
	cat := make([]postern.Binding, len(ws))
	for i, w := range ws {
		cat[i] = bindingFromWire(w)
	}
	s.catalog.Store(&cat)
}

func (s *session) alive() bool { return s.Alive() }

// lost reports whether err means the whole session is gone.
func (s *session) lost(err error) bool {
	return quicnet.IsConnClosed(err) || s.Conn.Context().Err() != nil
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
	conn.openFrame, err = wire.AppendFrame(nil, &wire.Open{Binding: name, Details: details, Trace: trace})
	if err != nil {
		conn.qc.Abort(quicnet.StreamClosed)
		return nil, &postern.Error{Op: "open", Binding: name, Err: postern.ErrProtocol, Message: err.Error()}
	}
	conn.pending.Store(true)
	if early {
		conn.earlyFrame, err = wire.AppendFrame(nil, &wire.Open{Binding: name, Details: details, Early: true, Trace: trace})
		if err != nil {
			conn.qc.Abort(quicnet.StreamClosed)
			return nil, &postern.Error{Op: "open", Binding: name, Err: postern.ErrProtocol, Message: err.Error()}
		}
		return conn, nil
	}
	if _, err := conn.flushOpen(nil); err != nil {
		conn.qc.Abort(quicnet.StreamClosed)
		return nil, err
	}
	rctx, cancel := context.WithTimeout(ctx, s.c.cfg.OpenTimeout)
	defer cancel()
	if err := conn.awaitResult(rctx); err != nil {
		conn.qc.Abort(quicnet.StreamClosed)
		return nil, err
	}
	return conn, nil
}

// Conn is a stream to a binding. It is a net.Conn whose Close closes both
// directions and whose CloseWrite is the half-close: the upstream reads
// EOF and can still answer.
type Conn struct {
	qc      *quicnet.Conn
	binding string
	revoked *revocations // the session's
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
	// earlyFrame is the Open saying early, sent instead of openFrame
	// when the first write carries data (DialEarly only).
	earlyFrame []byte
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
	return c.qc.Close()
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
	if frame == nil {
		return false, nil
	}
	if len(p) > 0 && len(p) <= 64<<10 && early != nil {
		_, err = c.qc.Write(append(early, p...))
		return true, err
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
