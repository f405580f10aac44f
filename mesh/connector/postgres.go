package connector

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/postern/postern/internal/quicnet"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/postern/postern/internal/pgconnstr"
	"github.com/postern/postern/internal/pgpolicy"
	"github.com/postern/postern/internal/wire"
)

// PostgreSQL brokering. For a postgres service the connector is a server
// toward the agent and a client toward the upstream:
//
//	agent                       connector                          upstream
//	  | Open ----(relay)----> Dial |                                   |
//	  |                            | pgconn login: SCRAM with the      |
//	  |                            | stored password ----------------->|
//	  |                            |<------ ParameterStatus..., key, RFQ
//	  |<------------- Result OK ---| (or Result upstream_auth_failed)  |
//	  | [SSLRequest] ------------> | 'N': the mesh already encrypts    |
//	  | StartupMessage ----------> | user, database, password ignored  |
//	  |<-- AuthenticationOk, the upstream's ParameterStatus...,        |
//	  |    BackendKeyData (the upstream's pid and key), ReadyForQuery  |
//	  |<==== messages; each statement decided (internal/pgpolicy) ===>|
//
// The login comes first so that a refused login fails the agent's open
// with postern.ErrUpstream rather than a half-made session. An agent that
// pipelines its startup message with the open (mesh.Client.DialEarly)
// finds it read only after the login. A stream whose first message is a
// CancelRequest (pgx dials the binding again to cancel a query) is
// forwarded to the upstream, on a connection of its own, unchanged: the
// key in it is the upstream's.

// pgStartupTimeout bounds the wait for the agent's startup message once
// the open has been answered.
const pgStartupTimeout = 15 * time.Second

// Startup-phase request codes (the first four bytes after the length).
const (
	pgSSLRequest    = 80877103
	pgGSSEncRequest = 80877104
	pgCancelRequest = 80877102
)

// servePostgres serves one stream of a postgres service.
// pol is the relay's policy set, by which every statement is decided.
func (c *Connector) servePostgres(st quicnet.Stream, down *quicnet.Conn, svc *Service, dial *wire.Dial, pol *relayPolicy, log *slog.Logger) {
	gate, err := newPGGate(c, svc, dial, pol)
	if err != nil {
		log.Warn("connector: the dial's identity cannot be decided on", "err", err)
		quicnet.Refuse(st, &wire.Result{Code: wire.CodeDenied, Reason: "invalid_identity",
			Message: "the connector cannot decide statements for this identity: " + err.Error()})
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), svc.DialTimeout)
	login := pgMainLogin(svc.Postgres)
	if svc.Postgres.ReadOnly != nil && !c.ungated && !gate.mayWrite(ctx) {
		login = *svc.Postgres.ReadOnly
	}
	hc, err := pgLogin(ctx, svc, login, dial.Identity.Subject)
	cancel()
	if err != nil {
		res := pgLoginFailure(svc.Name, err)
		// The error names the upstream, user and database, never the
		// password: pgconn does not print it, and Secret redacts itself.
		log.Warn("connector: upstream login failed", "upstream", svc.Upstream, "reason", res.Reason, "err", err)
		quicnet.Refuse(st, res)
		return
	}
	up := hc.Conn
	if err := wire.WriteFrame(down, &wire.Result{Code: wire.CodeOK}); err != nil {
		pgTerminate(up)
		down.Abort(quicnet.StreamAborted)
		return
	}

	down.SetReadDeadline(time.Now().Add(pgStartupTimeout))
	msg, err := pgAcceptStartup(down)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
			// The agent went away before its startup message (its connect
			// was cancelled): nothing went wrong here.
			log.Debug("connector: agent left before its PostgreSQL startup", "err", err)
		} else {
			log.Warn("connector: agent's PostgreSQL startup refused", "err", err)
		}
		pgTerminate(up)
		pgFatal(down, "08P01", "postern: "+err.Error())
		return
	}
	down.SetReadDeadline(time.Time{})

	if cr, ok := msg.(*pgproto3.CancelRequest); ok {
		// The login made for this stream is not needed: a cancel goes on a
		// connection of its own.
		pgTerminate(up)
		ctx, cancel := context.WithTimeout(context.Background(), svc.DialTimeout)
		err := pgForwardCancel(ctx, svc.Upstream, hc.TLSConfig, cr)
		cancel()
		if err != nil {
			log.Warn("connector: forwarding a cancel request failed", "upstream", svc.Upstream, "err", err)
		} else {
			log.Debug("connector: cancel request forwarded", "pid", cr.ProcessID)
		}
		down.Close()
		return
	}

	if _, err := down.Write(pgWelcome(msg.(*pgproto3.StartupMessage), hc)); err != nil {
		pgTerminate(up)
		down.Abort(quicnet.StreamAborted)
		return
	}
	start := time.Now()
	cup := &countingConn{Conn: up}
	if c.ungated {
		err = pgSplice(down, cup)
	} else {
		err = pgpolicy.Serve(context.Background(), down, cup, gate.config())
	}
	log.Debug("connector: postgres session closed", "pid", hc.PID, "bytes_up", cup.out.Load(), "bytes_down", cup.in.Load(), "duration", time.Since(start), "err", err)
}

// pgSplice relays a session without deciding its statements, for
// measurement only (Config.Measure): the cost of the gate is the
// difference. It returns when either side closes.
func pgSplice(down, up net.Conn) error {
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(up, down)
		up.Close()
		done <- err
	}()
	_, err := io.Copy(down, up)
	down.Close()
	up.Close()
	if e := <-done; err == nil {
		err = e
	}
	return err
}

// pgMainLogin is the login of p that may write.
func pgMainLogin(p *Postgres) PostgresLogin {
	return PostgresLogin{User: p.User, Password: p.Password}
}

// pgLogin logs in to the upstream of svc as login and returns the raw
// connection, idle, after the server's ReadyForQuery.
func pgLogin(ctx context.Context, svc *Service, login PostgresLogin, subject string) (*pgconn.HijackedConn, error) {
	cfg, err := pgUpstreamConfig(svc, login.User)
	if err != nil {
		return nil, err
	}
	if !login.Password.IsZero() {
		pw, err := login.Password.Read()
		if err != nil {
			return nil, &secretError{err}
		}
		cfg.Password = pw
	}
	if name := applicationName(subject); name != "" {
		// The upstream's DBA sees which agent a session serves in
		// pg_stat_activity.
		cfg.RuntimeParams["application_name"] = name
	}
	pc, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	// Hijack needs an idle connection with nothing buffered.
	if err := pc.SyncConn(ctx); err != nil {
		pc.Close(context.Background())
		return nil, err
	}
	hc, err := pc.Hijack()
	if err != nil {
		pc.Close(context.Background())
		return nil, err
	}
	hc.Conn.SetDeadline(time.Time{})
	if hc.TxStatus != 'I' {
		hc.Conn.Close()
		return nil, fmt.Errorf("upstream is in transaction state %q after login", hc.TxStatus)
	}
	return hc, nil
}

// pgUpstreamConfig is the pgconn configuration of the upstream login,
// as user, without the password. It dials svc.Upstream and nothing else.
func pgUpstreamConfig(svc *Service, user string) (*pgconn.Config, error) {
	p := svc.Postgres
	host, port, err := net.SplitHostPort(svc.Upstream)
	if err != nil {
		return nil, err
	}
	db := p.Database
	if db == "" {
		db = p.User // the main login's, whichever logs in
	}
	mode := p.SSLMode
	if mode == "" {
		mode = "prefer"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "host=%s port=%s user=%s dbname=%s sslmode=%s", pgconnstr.Quote(host), pgconnstr.Quote(port), pgconnstr.Quote(user), pgconnstr.Quote(db), pgconnstr.Quote(mode))
	if p.RootCAFile != "" {
		fmt.Fprintf(&b, " sslrootcert=%s", pgconnstr.Quote(p.RootCAFile))
	}
	cfg, err := pgconn.ParseConfig(b.String())
	if err != nil {
		// ParseConfig errors quote the connection string, which holds no
		// password.
		return nil, err
	}
	// Protocol 3.0 toward the upstream: it is what every agent can be
	// told, and its cancel key is the 4 bytes all clients accept.
	cfg.MinProtocolVersion, cfg.MaxProtocolVersion = "3.0", "3.0"
	cfg.ConnectTimeout = svc.DialTimeout
	cfg.LookupFunc = func(ctx context.Context, host string) ([]string, error) { return []string{host}, nil }
	cfg.DialFunc = func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{Timeout: svc.DialTimeout}).DialContext(ctx, "tcp", svc.Upstream)
	}
	return cfg, nil
}

// secretError marks a failure to read a stored credential.
type secretError struct{ err error }

func (e *secretError) Error() string { return e.err.Error() }
func (e *secretError) Unwrap() error { return e.err }

// pgLoginFailure says why the upstream login failed, without the
// upstream's address or anything secret.
func pgLoginFailure(name string, err error) *wire.Result {
	var pgErr *pgconn.PgError
	var secErr *secretError
	switch {
	case errors.As(err, &secErr):
		return &wire.Result{Code: wire.CodeUpstream, Reason: "connector_secret_unavailable",
			Message: "the connector could not read its credentials for " + name}
	case errors.As(err, &pgErr) && strings.HasPrefix(pgErr.Code, "28"):
		// Class 28: invalid authorization specification, invalid password.
		return &wire.Result{Code: wire.CodeUpstream, Reason: "upstream_auth_failed",
			Message: fmt.Sprintf("the upstream of %s refused the connector's credentials (SQLSTATE %s)", name, pgErr.Code)}
	case errors.As(err, &pgErr):
		return &wire.Result{Code: wire.CodeUpstream, Reason: "upstream_login_failed",
			Message: fmt.Sprintf("the upstream of %s refused the connector's login (SQLSTATE %s)", name, pgErr.Code)}
	case strings.Contains(err.Error(), "tls error"), strings.Contains(err.Error(), "server refused TLS"):
		return &wire.Result{Code: wire.CodeUpstream, Reason: "upstream_tls_failed",
			Message: "the connector could not set up TLS with the upstream of " + name}
	}
	return upstreamFailure(name, err)
}

// pgAcceptStartup reads the agent's startup-phase messages: it declines
// SSL and GSS encryption (the mesh encrypts) and returns the
// StartupMessage or CancelRequest that follows.
func pgAcceptStartup(conn io.ReadWriter) (pgproto3.FrontendMessage, error) {
	for range 3 { // at most an SSLRequest and a GSSEncRequest first
		buf, err := pgReadStartup(conn)
		if err != nil {
			return nil, err
		}
		switch binary.BigEndian.Uint32(buf) {
		case pgSSLRequest, pgGSSEncRequest:
			if _, err := conn.Write([]byte{'N'}); err != nil {
				return nil, err
			}
		case pgCancelRequest:
			var m pgproto3.CancelRequest
			if err := m.Decode(buf); err != nil {
				return nil, err
			}
			return &m, nil
		default:
			var m pgproto3.StartupMessage
			if err := m.Decode(buf); err != nil {
				return nil, err
			}
			return &m, nil
		}
	}
	return nil, errors.New("too many encryption requests before the startup message")
}

// pgReadStartup reads one length-prefixed startup-phase message and
// returns it without its length. It reads exactly that message: whatever
// the agent sent after it stays in conn for the policy proxy.
func pgReadStartup(r io.Reader) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, fmt.Errorf("reading the startup message: %w", err)
	}
	n := binary.BigEndian.Uint32(hdr[:])
	// PostgreSQL's own bounds: 8 bytes, and 10000 for the startup packet.
	if n < 8 || n > 10000 {
		return nil, fmt.Errorf("startup message of %d bytes: not the PostgreSQL protocol (TLS? set sslmode=disable: the mesh encrypts)", n)
	}
	buf := make([]byte, n-4)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, fmt.Errorf("reading the startup message: %w", err)
	}
	return buf, nil
}

// pgWelcome is what the agent receives instead of an authentication
// exchange: the upstream session's state, as if the agent had logged in
// itself.
func pgWelcome(sm *pgproto3.StartupMessage, hc *pgconn.HijackedConn) []byte {
	var msgs []pgproto3.BackendMessage
	// The upstream session speaks 3.0. An agent asking for more, or for
	// protocol options, is told so, as a 3.0 server would.
	var unknown []string
	for k := range sm.Parameters {
		if strings.HasPrefix(k, "_pq_.") {
			unknown = append(unknown, k)
		}
	}
	if sm.ProtocolVersion != pgproto3.ProtocolVersion30 || len(unknown) > 0 {
		slices.Sort(unknown)
		msgs = append(msgs, &pgproto3.NegotiateProtocolVersion{NewestMinorProtocol: 0, UnrecognizedOptions: unknown})
	}
	msgs = append(msgs, &pgproto3.AuthenticationOk{})
	for _, k := range slices.Sorted(maps.Keys(hc.ParameterStatuses)) {
		msgs = append(msgs, &pgproto3.ParameterStatus{Name: k, Value: hc.ParameterStatuses[k]})
	}
	msgs = append(msgs,
		&pgproto3.BackendKeyData{ProcessID: hc.PID, SecretKey: hc.SecretKey},
		&pgproto3.ReadyForQuery{TxStatus: hc.TxStatus})
	var buf []byte
	for _, m := range msgs {
		// Encode fails only for oversized fields, which these cannot have.
		buf, _ = m.Encode(buf)
	}
	return buf
}

// pgForwardCancel sends a cancel request to the upstream on a new
// connection, encrypted as the login was, and waits for the server to
// close it, as libpq does.
func pgForwardCancel(ctx context.Context, upstream string, tlsConf *tls.Config, cr *pgproto3.CancelRequest) error {
	raw, err := (&net.Dialer{}).DialContext(ctx, "tcp", upstream)
	if err != nil {
		return err
	}
	defer raw.Close()
	if d, ok := ctx.Deadline(); ok {
		raw.SetDeadline(d)
	}
	conn := raw
	if tlsConf != nil {
		if _, err := raw.Write([]byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f}); err != nil { // SSLRequest
			return err
		}
		var answer [1]byte
		if _, err := io.ReadFull(raw, answer[:]); err != nil {
			return err
		}
		if answer[0] != 'S' {
			return errors.New("the upstream declined TLS for the cancel request")
		}
		tc := tls.Client(raw, tlsConf.Clone())
		defer tc.Close()
		conn = tc
	}
	buf, err := cr.Encode(nil)
	if err != nil {
		return err
	}
	if _, err := conn.Write(buf); err != nil {
		return err
	}
	io.Copy(io.Discard, conn)
	return nil
}

// pgTerminate ends an upstream session politely, so that the server logs
// no "unexpected EOF".
func pgTerminate(c net.Conn) {
	c.SetWriteDeadline(time.Now().Add(time.Second))
	c.Write([]byte{'X', 0, 0, 0, 4})
	c.Close()
}

// pgFatal sends the agent a FATAL error and closes the stream.
func pgFatal(down *quicnet.Conn, code, msg string) {
	down.SetWriteDeadline(time.Now().Add(5 * time.Second))
	buf, _ := (&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: code, Message: msg}).Encode(nil)
	down.Write(buf)
	down.Close()
}

// applicationName makes an application_name from an agent's subject:
// printable ASCII, within PostgreSQL's 63 bytes.
func applicationName(subject string) string {
	name := "postern:" + strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return '?'
		}
		return r
	}, subject)
	if len(name) > 63 {
		name = name[:63]
	}
	return name
}

// halfConn gives an upstream connection the half-close that Splice uses.
// TCP and TLS connections have one; anything else closes fully, which
// PostgreSQL, whose clients end with a Terminate message, does not mind.
func halfConn(c net.Conn) quicnet.HalfConn {
	if h, ok := c.(quicnet.HalfConn); ok {
		return h
	}
	return closeWriteByClose{c}
}

type closeWriteByClose struct{ net.Conn }

func (c closeWriteByClose) CloseWrite() error { return c.Close() }
