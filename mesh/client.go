package mesh

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	sess "github.com/postern/postern/internal/session"
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

	// Logger receives the client's operational log (connects, reconnects,
	// refreshes). Nil means silent. Tokens are never logged.
	Logger *slog.Logger

	// ConnectTimeout bounds connecting to the relay (QUIC handshake and
	// Hello/Welcome) when the caller's context has no earlier deadline.
	// Zero means 10s.
	ConnectTimeout time.Duration

	// Transport tunes QUIC. Nil means transport's defaults.
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
	tlsConf, err := transport.Trust{RootCAs: cfg.RootCAs, Pin: cfg.Pin, ServerName: cfg.ServerName}.ClientTLS(host)
	if err != nil {
		return nil, fmt.Errorf("mesh: config: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 10 * time.Second
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
func (c *Client) Catalog(ctx context.Context) ([]Binding, error) {
	s, err := c.session(ctx)
	if err != nil {
		return nil, err
	}
	return slices.Clone(*s.catalog.Load()), nil
}

// Lookup returns the catalog entry of the binding called name, or an
// error matching ErrUnknownBinding when the catalog has none: the binding
// does not exist or policy does not let this agent open it.
func (c *Client) Lookup(ctx context.Context, name string) (Binding, error) {
	s, err := c.session(ctx)
	if err != nil {
		return Binding{}, err
	}
	for _, b := range *s.catalog.Load() {
		if b.Name == name {
			return b, nil
		}
	}
	return Binding{}, &Error{Op: "lookup", Binding: name, Err: ErrUnknownBinding,
		Message: "not in this agent's catalog (no such binding, or policy does not let this identity open it)"}
}

// Identity returns who the relay says this client is.
func (c *Client) Identity(ctx context.Context) (Identity, error) {
	s, err := c.session(ctx)
	if err != nil {
		return Identity{}, err
	}
	return s.identity, nil
}

// Dial opens a stream to the binding called name and returns it once the
// relay has authorized the open and the connector has reached the
// upstream; the returned net.Conn then carries raw bytes to and from the
// private service. network must be "tcp", "tcp4", "tcp6", "postern" or
// empty; name may carry a ":port" suffix, which is ignored, so that Dial
// can serve as http.Transport.DialContext.
//
// A refused open returns an *Error matching ErrDenied, ErrUnknownBinding,
// ErrNoConnector, ErrUpstream, ErrLimitExceeded, ... with errors.Is. When
// the relay has gone away since the last call, Dial reconnects first.
func (c *Client) Dial(ctx context.Context, network, name string) (net.Conn, error) {
	switch network {
	case "", "tcp", "tcp4", "tcp6", "postern":
	default:
		return nil, &Error{Op: "open", Binding: name, Err: ErrProtocol, Message: fmt.Sprintf("network %q is not a stream network", network)}
	}
	name = bindingName(name)
	if err := wire.ValidName(name); err != nil {
		return nil, &Error{Op: "open", Binding: name, Err: ErrUnknownBinding, Message: "not a valid binding name"}
	}
	for attempt := 0; ; attempt++ {
		s, err := c.session(ctx)
		if err != nil {
			return nil, err
		}
		conn, err := s.open(ctx, name)
		if err != nil && attempt == 0 && s.lost(err) {
			// The relay went away since the session was made (restart,
			// network change): nothing was delivered, so open again on a
			// new session.
			c.log.Info("mesh: relay connection lost, reconnecting", "relay", c.cfg.Relay, "err", err)
			s.End(err)
			continue
		}
		if err != nil {
			var me *Error
			if !errors.As(err, &me) {
				err = &Error{Op: "open", Binding: name, Err: fmt.Errorf("%w: %w", ErrUnavailable, err)}
			}
			return nil, err
		}
		return conn, nil
	}
}

// bindingName strips a ":port" suffix.
func bindingName(addr string) string {
	if i := strings.LastIndexByte(addr, ':'); i >= 0 {
		return addr[:i]
	}
	return addr
}

// Close ends the session and makes every later call fail with ErrClosed.
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
			return nil, &Error{Op: "connect", Err: ErrClosed}
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
				return nil, &Error{Op: "connect", Err: ctxErr(ctx), Message: "waiting for the relay connection"}
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
				err = &Error{Op: "connect", Err: ErrClosed}
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
		return fmt.Errorf("%w: %w", ErrTimeout, ctx.Err())
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
		OnCatalog: func(ws []wire.Binding) {
			s.setCatalog(ws)
			c.log.Info("mesh: catalog updated", "bindings", len(ws))
		},
	})
	if err != nil {
		return nil, sessionErr(ctx, "connect", "", err)
	}
	w := ss.Welcome
	s.Session = ss
	s.identity = Identity{Subject: w.Identity.Subject, Role: w.Identity.Role, Groups: w.Identity.Group}
	if s.catalog.Load() == nil {
		s.setCatalog(w.Catalog)
	}
	c.log.Info("mesh: connected", "relay", c.cfg.Relay, "session", w.Session, "subject", s.identity.Subject, "bindings", len(w.Catalog))
	return s, nil
}

// sessionErr turns an error from the session layer into an *Error.
func sessionErr(ctx context.Context, op, binding string, err error) error {
	var rej *sess.RejectError
	switch {
	case errors.As(err, &rej):
		return &Error{Op: op, Binding: binding, Err: codeErr(rej.Code), Reason: rej.Reason, Message: rej.Message}
	case ctx.Err() != nil:
		return &Error{Op: op, Binding: binding, Err: ctxErr(ctx), Message: "talking to the relay"}
	case errors.Is(err, sess.ErrTokenSource):
		return &Error{Op: op, Binding: binding, Err: fmt.Errorf("%w: %w", ErrUnauthenticated, err)}
	case errors.Is(err, wire.ErrMalformed):
		return &Error{Op: op, Binding: binding, Err: fmt.Errorf("%w: %w", ErrProtocol, err)}
	case errors.Is(err, os.ErrDeadlineExceeded):
		return &Error{Op: op, Binding: binding, Err: fmt.Errorf("%w: %w", ErrTimeout, err)}
	}
	return &Error{Op: op, Binding: binding, Err: fmt.Errorf("%w: %w", ErrUnavailable, err)}
}

// session is one QUIC connection to the relay, as an agent.
type session struct {
	*sess.Session
	c        *Client
	identity Identity
	catalog  atomic.Pointer[[]Binding]
}

func (s *session) setCatalog(ws []wire.Binding) {
	cat := make([]Binding, len(ws))
	for i, w := range ws {
		cat[i] = bindingFromWire(w)
	}
	s.catalog.Store(&cat)
}

func (s *session) alive() bool { return s.Alive() }

// lost reports whether err means the whole session is gone.
func (s *session) lost(err error) bool {
	return transport.IsConnClosed(err) || s.Conn.Context().Err() != nil
}

// open opens a binding stream and waits for the relay's result.
func (s *session) open(ctx context.Context, name string) (net.Conn, error) {
	st, err := s.Conn.OpenStreamSync(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil, &Error{Op: "open", Binding: name, Err: ctxErr(ctx), Message: "waiting for a free stream"}
		}
		return nil, err
	}
	if err := wire.WriteFrame(st, &wire.Open{Binding: name}); err != nil {
		st.CancelRead(transport.StreamClosed)
		st.CancelWrite(transport.StreamClosed)
		return nil, err
	}
	conn := &Conn{Conn: transport.NewConn(st, s.Conn.LocalAddr(), Addr{Binding: name}), binding: name}
	if err := conn.readResult(ctx); err != nil {
		conn.Abort(transport.StreamClosed)
		return nil, err
	}
	return conn, nil
}

// Conn is a stream to a binding. It is a net.Conn whose Close closes both
// directions and whose CloseWrite is the half-close: the upstream reads
// EOF and can still answer.
type Conn struct {
	*transport.Conn
	binding   string
	connector string
}

// Binding returns the name of the binding the stream reaches.
func (c *Conn) Binding() string { return c.binding }

// Connector returns the ID of the connector serving the stream.
func (c *Conn) Connector() string { return c.connector }

func (c *Conn) readResult(ctx context.Context) error {
	stop := sess.DeadlineFromContext(ctx, c.Conn)
	defer stop()
	var res wire.Result
	if err := wire.ReadExpected(c.Conn, sess.MaxControlFrame, &res); err != nil {
		if transport.IsConnClosed(err) {
			return err // the caller decides whether to reconnect
		}
		return sessionErr(ctx, "open", c.binding, err)
	}
	if res.Code != wire.CodeOK {
		return &Error{Op: "open", Binding: c.binding, Err: codeErr(res.Code), Reason: res.Reason, Message: res.Message, Policies: res.Policies}
	}
	c.connector = res.Connector
	return nil
}
