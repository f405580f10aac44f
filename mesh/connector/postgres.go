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
//	  | [SSLRequest] ------------> | 'N': the mesh already encrypts    |
//	  | StartupMessage ----------> | read first: a cancel, or nothing, |
//	  |                            | costs no login                    |
//	  |                            | pgconn login: SCRAM with the      |
//	  |                            | stored password ----------------->|
//	  |                            |<------ ParameterStatus..., key, RFQ
//	  |<------------- Result OK ---| (or Result upstream_auth_failed)  |
//	  |<-- AuthenticationOk, the upstream's ParameterStatus...,        |
//	  |    BackendKeyData (a key the connector minted), ReadyForQuery  |
//	  |<==== messages; each statement decided (internal/pgpolicy) ===>|
//
// The agent's first startup-phase message is read before anything logs
// in upstream, so that a stream that sends nothing holds no backend and a
// CancelRequest (pgx dials the binding again to cancel a query) needs no
// login. An agent that pipelines its startup message with the open
// (Open.early: mesh.Client.DialEarly, which package binding uses) gets
// the Result after the login, so that a refused login fails its open with
// postern.ErrUpstream; an agent that waits for the Result before it sends
// (Dial) gets CODE_OK first, and a refused login as a PostgreSQL FATAL
// error.
//
// The agent never sees the upstream's backend PID and cancel key: it gets
// a PID and key the connector mints for the session (as pgbouncer does),
// and a CancelRequest is forwarded, with the real ones, only when it
// names a live session this connector opened for the same agent on the
// same binding. Anything else is dropped, as PostgreSQL drops a cancel it
// cannot match.

// pgStartupTimeout bounds the wait for the agent's startup message.
const pgStartupTimeout = 15 * time.Second

// Startup-phase request codes (the first four bytes after the length).
const (
	pgSSLRequest    = 80877103
	pgGSSEncRequest = 80877104
	pgCancelRequest = 80877102
)

// servePostgres serves one stream of a postgres service.
// pol is the relay's policy set, by which every statement is decided.
func (c *Connector) servePostgres(sctx context.Context, ack *heldAck, down *quicnet.Conn, svc *Service, dial *wire.Dial, pol *relayPolicy, log *slog.Logger) {
	gate, err := newPGGate(c, svc, dial, pol)
	if err != nil {
		log.Warn("connector: the dial's identity cannot be decided on", "err", err)
		c.refuse(ack, svc.Name, &wire.Result{Code: wire.CodeDenied, Reason: "invalid_identity",
			Message: "the connector cannot decide statements for this identity: " + err.Error()})
		return
	}
	// answered is set once the Result went out: before the first byte of
	// PostgreSQL, and before the first read of an agent that is not early.
	answered := false
	answer := func() error {
		if answered {
			return nil
		}
		answered = true
		c.m.answered(svc.Name, wire.CodeOK)
		return ack.write(down, &wire.Result{Code: wire.CodeOK})
	}
	if !dial.Early {
		if err := answer(); err != nil {
			down.Abort(quicnet.StreamAborted)
			return
		}
	}

	down.SetReadDeadline(time.Now().Add(pgStartupTimeout))
	msg, err := pgAcceptStartup(down, answer)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
			// The agent went away before its startup message (its connect
			// was cancelled): nothing went wrong here.
			log.Debug("connector: agent left before its PostgreSQL startup", "err", err)
		} else {
			log.Warn("connector: agent's PostgreSQL startup refused", "err", err)
		}
		if answer() == nil {
			pgFatal(down, "08P01", "postern: "+err.Error())
		}
		return
	}
	down.SetReadDeadline(time.Time{})

	if cr, ok := msg.(*pgproto3.CancelRequest); ok {
		// PostgreSQL answers a cancel with nothing but the close.
		answer()
		c.pgCancel(svc, dial, cr, log)
		down.Close()
		return
	}
	sm := msg.(*pgproto3.StartupMessage)
	if mode, ok := sm.Parameters["replication"]; ok && pgReplication(mode) {
		log.Info("connector: replication connection refused", "mode", mode)
		if answer() == nil {
			pgFatal(down, "0A000", fmt.Sprintf("postern: replication connections (replication=%s) are not served through the mesh: only sessions of SQL statements are", pgQuoteParam(mode)))
		}
		return
	}

	ctx, cancel := context.WithTimeout(sctx, svc.DialTimeout)
	login := pgMainLogin(svc.Postgres)
	if svc.Postgres.ReadOnly != nil && !c.ungated && !gate.mayWrite(ctx) {
		login = *svc.Postgres.ReadOnly
	}
	dctx, dialed := c.startUpstreamDial(ctx, svc.Name)
	hc, err := pgLogin(dctx, svc, login, dial.Identity.Subject)
	cancel()
	if err != nil {
		res := pgLoginFailure(svc.Name, err)
		dialed(res.Reason)
		// The error names the upstream, user and database, never the
		// password: pgconn does not print it, and Secret redacts itself.
		log.Warn("connector: upstream login failed", "upstream", svc.Upstream, "reason", res.Reason, "err", err)
		if !answered {
			c.refuse(ack, svc.Name, res)
			return
		}
		pgFatal(down, pgLoginSQLState(err), fmt.Sprintf("postern: %s (%s)", res.Message, res.Reason))
		return
	}
	dialed("")
	up := hc.Conn
	if err := answer(); err != nil {
		pgTerminate(up)
		down.Abort(quicnet.StreamAborted)
		return
	}
	key := c.pgKeys.add(pgSession{subject: dial.Identity.Subject, binding: svc.Name, pid: hc.PID, secret: hc.SecretKey, tls: hc.TLSConfig})
	defer c.pgKeys.remove(key)
	if _, err := down.Write(pgWelcome(sm, hc, key)); err != nil {
		pgTerminate(up)
		down.Abort(quicnet.StreamAborted)
		return
	}
	start := time.Now()
	cup := &countingConn{Conn: up}
	if c.ungated {
		err = pgSplice(down, cup)
	} else {
		err = pgpolicy.Serve(sctx, down, cup, gate.config())
	}
	log.Debug("connector: postgres session closed", "pid", hc.PID, "bytes_up", cup.out.Load(), "bytes_down", cup.in.Load(), "duration", time.Since(start), "err", err)
}

// pgCancel forwards a cancel request, with the upstream's real PID and
// key, when it names a live session this connector opened for the same
// agent on the same binding; otherwise it drops it.
func (c *Connector) pgCancel(svc *Service, dial *wire.Dial, cr *pgproto3.CancelRequest, log *slog.Logger) {
	sess, ok := c.pgKeys.match(pgKey{pid: cr.ProcessID, secret: cr.SecretKey}, dial.Identity.Subject, svc.Name)
	if !ok {
		// Never said to the agent: PostgreSQL does not say either, and
		// whether a PID is live is not the agent's to learn.
		log.Warn("connector: cancel request dropped: it names no session of this agent's on this binding", "pid", cr.ProcessID)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), svc.DialTimeout)
	defer cancel()
	err := pgForwardCancel(ctx, svc.Upstream, sess.tls, &pgproto3.CancelRequest{ProcessID: sess.pid, SecretKey: sess.secret})
	if err != nil {
		log.Warn("connector: forwarding a cancel request failed", "upstream", svc.Upstream, "err", err)
		return
	}
	log.Debug("connector: cancel request forwarded", "pid", cr.ProcessID, "upstream_pid", sess.pid)
}

// pgReplication reports whether a startup's replication parameter asks
// for a replication connection ("database", or a true boolean as the
// server spells them).
func pgReplication(v string) bool {
	switch strings.ToLower(v) {
	case "", "false", "off", "no", "0":
		return false
	}
	return true
}

// pgQuoteParam bounds and sanitizes an agent's parameter value for a
// message.
func pgQuoteParam(v string) string {
	if len(v) > 32 {
		v = v[:32] + "..."
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return '?'
		}
		return r
	}, v)
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
// connection, idle, after the server's ReadyForQuery. With sslmode prefer
// (or allow) it tries TLS first, channel binding required, and plain TCP
// only when the server says it has no TLS.
func pgLogin(ctx context.Context, svc *Service, login PostgresLogin, subject string) (*pgconn.HijackedConn, error) {
	var password string
	if !login.Password.IsZero() {
		pw, err := login.Password.Read()
		if err != nil {
			return nil, &secretError{err}
		}
		password = pw
	}
	modes := []string{svc.Postgres.SSLMode}
	switch modes[0] {
	case "", "prefer", "allow":
		modes = []string{"require", "disable"}
	}
	var err error
	for i, mode := range modes {
		var hc *pgconn.HijackedConn
		hc, err = pgLoginMode(ctx, svc, login.User, password, mode, subject)
		if err == nil {
			return hc, nil
		}
		if i+1 < len(modes) && !pgRefusedTLS(err) {
			break
		}
	}
	return nil, err
}

// pgRefusedTLS reports whether a login failed because the server answered
// the SSLRequest with 'N' (it has no TLS).
func pgRefusedTLS(err error) bool { return strings.Contains(err.Error(), "server refused TLS") }

func pgLoginMode(ctx context.Context, svc *Service, user, password, mode, subject string) (*pgconn.HijackedConn, error) {
	cfg, err := pgUpstreamConfig(svc, user, mode, password != "")
	if err != nil {
		return nil, err
	}
	cfg.Password = password
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

// pgAuth is the require_auth and channel_binding of a login in sslmode
// mode: a password goes out only by SCRAM-SHA-256, bound to the TLS
// session whenever there is one, unless the server is verified
// (verify-full) or the service opted out (InsecureAuth). A login without a
// password has nothing to reveal and is not restricted.
func pgAuth(p *Postgres, mode string, hasPassword bool) (requireAuth, channelBinding string) {
	if !hasPassword || mode == "verify-full" || p.InsecureAuth {
		return "", "prefer"
	}
	if mode == "disable" {
		return "scram-sha-256", "disable"
	}
	return "scram-sha-256", "require"
}

// pgUpstreamConfig is the pgconn configuration of the upstream login,
// as user in sslmode mode, without the password. It dials svc.Upstream
// and nothing else.
func pgUpstreamConfig(svc *Service, user, mode string, hasPassword bool) (*pgconn.Config, error) {
	p := svc.Postgres
	host, port, err := net.SplitHostPort(svc.Upstream)
	if err != nil {
		return nil, err
	}
	db := p.Database
	if db == "" {
		db = p.User // the main login's, whichever logs in
	}
	requireAuth, channelBinding := pgAuth(p, mode, hasPassword)
	var b strings.Builder
	fmt.Fprintf(&b, "host=%s port=%s user=%s dbname=%s sslmode=%s channel_binding=%s", pgconnstr.Quote(host), pgconnstr.Quote(port), pgconnstr.Quote(user), pgconnstr.Quote(db), pgconnstr.Quote(mode), channelBinding)
	if requireAuth != "" {
		fmt.Fprintf(&b, " require_auth=%s", requireAuth)
	}
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
	case strings.Contains(err.Error(), "require_auth check failed"):
		return &wire.Result{Code: wire.CodeUpstream, Reason: "upstream_auth_insecure",
			Message: fmt.Sprintf("the upstream of %s asked for %s; the connector sends its password only by SCRAM-SHA-256 unless sslmode is verify-full or postgres.insecure_auth is set", name, pgAskedFor(err))}
	case strings.Contains(err.Error(), "channel binding"):
		return &wire.Result{Code: wire.CodeUpstream, Reason: "upstream_channel_binding",
			Message: fmt.Sprintf("the upstream of %s did not authenticate by SCRAM-SHA-256 with channel binding over TLS (it asked for another method, or has no SCRAM-SHA-256-PLUS); the connector requires it over TLS unless sslmode is verify-full or postgres.insecure_auth is set", name)}
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

// pgAskedFor names the method a require_auth refusal is about, from
// pgconn's "server requested md5 authentication".
func pgAskedFor(err error) string {
	msg := err.Error()
	if _, rest, ok := strings.Cut(msg, "server requested "); ok {
		if method, _, ok := strings.Cut(rest, " authentication"); ok {
			switch method {
			case "password":
				return "a cleartext password"
			case "md5":
				return "an MD5 password digest"
			}
			return pgQuoteParam(method) + " authentication"
		}
	}
	return "no authentication the connector accepts"
}

// pgLoginSQLState is the SQLSTATE of a FATAL telling the agent that the
// login failed: the server's own for its refusals, 28000
// (invalid_authorization_specification) for the connector's, 08006
// (connection_failure) otherwise.
func pgLoginSQLState(err error) string {
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr):
		return pgErr.Code
	case strings.Contains(err.Error(), "require_auth check failed"), strings.Contains(err.Error(), "channel binding"):
		return "28000"
	}
	return "08006"
}

// pgAcceptStartup reads the agent's startup-phase messages: it declines
// SSL and GSS encryption (the mesh encrypts) and returns the
// StartupMessage or CancelRequest that follows. before is called before
// its first write (the stream's Result goes first).
func pgAcceptStartup(conn io.ReadWriter, before func() error) (pgproto3.FrontendMessage, error) {
	for range 3 { // at most an SSLRequest and a GSSEncRequest first
		buf, err := pgReadStartup(conn)
		if err != nil {
			return nil, err
		}
		switch binary.BigEndian.Uint32(buf) {
		case pgSSLRequest, pgGSSEncRequest:
			if err := before(); err != nil {
				return nil, err
			}
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
func pgWelcome(sm *pgproto3.StartupMessage, hc *pgconn.HijackedConn, key pgKey) []byte {
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
		&pgproto3.BackendKeyData{ProcessID: key.pid, SecretKey: key.secret},
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
