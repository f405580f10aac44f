package binding_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/postern/postern"
	"github.com/postern/postern/internal/meshtest"
	"github.com/postern/postern/internal/pgtest"
	"github.com/postern/postern/mesh/connector"
)

// connectPgx is a pgx connection to a postgres binding, through the mesh.
func connectPgx(t *testing.T, w *world, name string) *pgx.Conn {
	t.Helper()
	cfg, err := w.open(t, name).PgxConfig()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.ConnectConfig(testCtx(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// sendCancel sends a CancelRequest for pid and key on a stream of its own
// opened by the agent with token tok, and waits for the connector to
// close it, as pgx does.
func sendCancel(t *testing.T, w *world, tok string, pid uint32, key []byte) {
	t.Helper()
	c, err := w.Client(tok).Dial(testCtx(t), "tcp", "staging-db")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf, err := (&pgproto3.CancelRequest{ProcessID: pid, SecretKey: key}).Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(buf); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if rest, err := io.ReadAll(c); err != nil || len(rest) > 0 {
		t.Fatalf("the cancel stream answered %q, %v; want a close and nothing else", rest, err)
	}
}

// TestPostgresCancelKeys: the agent is handed a backend PID and key the
// connector minted, never the upstream's, and a cancel is forwarded only
// when it names a session this connector opened for the same agent: a
// forged cancel (another agent presenting the key, the upstream's real
// PID, a wrong secret) leaves the query running; the agent's own cancel,
// sent by hand on a stream of its own, stops it.
func TestPostgresCancelKeys(t *testing.T) {
	l := newDatabase(t)
	w := newWorld(t, l.service("staging-db", l.password))
	conn := connectPgx(t, w, "staging-db")
	ctx := testCtx(t)
	var realPID uint32
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&realPID); err != nil {
		t.Fatal(err)
	}
	pid, key := conn.PgConn().PID(), conn.PgConn().SecretKey()
	if pid == realPID {
		t.Fatalf("the agent was handed the upstream's backend PID %d", realPID)
	}

	// run starts pg_sleep(secs) on the agent's session.
	run := func(secs float64) chan error {
		done := make(chan error, 1)
		go func() {
			_, err := conn.Exec(ctx, fmt.Sprintf("SELECT pg_sleep(%g)", secs))
			done <- err
		}()
		super := superuser(t, l)
		meshtest.WaitFor(t, "pg_sleep to run", func() bool {
			var n int
			// state: an idle backend's query is its last one, and a
			// cancel that reaches it idle cancels nothing.
			err := super.QueryRowContext(ctx, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND state = 'active' AND query = $2",
				realPID, fmt.Sprintf("SELECT pg_sleep(%g)", secs)).Scan(&n)
			return err == nil && n == 1
		})
		return done
	}

	done := run(1.5)
	other := w.AgentToken("other-agent", "coding-agents")
	mine := w.AgentToken("coding-agent", "coding-agents")
	wrong := append([]byte(nil), key...)
	wrong[0] ^= 0xff
	sendCancel(t, w, other, pid, key)    // another agent, the right key
	sendCancel(t, w, mine, realPID, key) // the upstream's PID
	sendCancel(t, w, mine, pid, wrong)   // a wrong secret
	if err := <-done; err != nil {
		t.Fatalf("a forged cancel stopped the query: %v", err)
	}
	if n := strings.Count(w.logged.String(), "cancel request dropped"); n != 3 {
		t.Fatalf("the connector logged %d dropped cancels, want 3:\n%s", n, w.logged)
	}

	done = run(30)
	start := time.Now()
	sendCancel(t, w, mine, pid, key)
	err := <-done
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "57014" {
		t.Fatalf("after the agent's cancel: %v, want query_canceled (57014)", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("the cancel took %v", took)
	}
	var again uint32
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&again); err != nil || again != realPID {
		t.Fatalf("after the cancel: backend %d (%v), want %d still", again, err, realPID)
	}
}

// TestPostgresNothingSentNoBackend: a stream that is opened and sends
// nothing holds no upstream backend: the connector reads the startup
// message before it logs in. A CancelRequest stream logs in nowhere
// either.
func TestPostgresNothingSentNoBackend(t *testing.T) {
	l := newDatabase(t)
	w := newWorld(t, l.service("staging-db", l.password))
	idle := w.Client(w.AgentToken("idle-agent", "coding-agents"))
	c, err := idle.Dial(testCtx(t), "tcp", "staging-db") // answered; then nothing
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sendCancel(t, w, w.AgentToken("idle-agent", "coding-agents"), 12345, []byte{1, 2, 3, 4})

	super := superuser(t, l)
	ctx := testCtx(t)
	count := func() int {
		var n int
		if err := super.QueryRowContext(ctx, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'postern:idle-agent'").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for range 10 {
		if n := count(); n != 0 {
			t.Fatalf("%d backends for an agent that sent nothing", n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The same stream logs in once it sends its startup message.
	cfg, err := w.open(t, "staging-db").PgxConfig()
	if err != nil {
		t.Fatal(err)
	}
	cfg.DialFunc = func(context.Context, string, string) (net.Conn, error) { return c, nil }
	pc, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close(ctx)
	if n := count(); n != 1 {
		t.Fatalf("%d backends once the startup message came, want 1", n)
	}
}

// TestPostgresReplicationRefused: a replication startup gets a FATAL that
// says replication is not served, not a session on which replication
// commands fail as syntax errors.
func TestPostgresReplicationRefused(t *testing.T) {
	l := newDatabase(t)
	w := newWorld(t, l.service("staging-db", l.password))
	for _, mode := range []string{"database", "true"} {
		t.Run(mode, func(t *testing.T) {
			cfg, err := w.open(t, "staging-db").PgxConfig()
			if err != nil {
				t.Fatal(err)
			}
			cfg.RuntimeParams["replication"] = mode
			conn, err := pgx.ConnectConfig(testCtx(t), cfg)
			if err == nil {
				conn.Close(context.Background())
				t.Fatal("a replication connection was served")
			}
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "0A000" || pgErr.Severity != "FATAL" ||
				!strings.Contains(pgErr.Message, "replication connections (replication="+mode+") are not served") {
				t.Fatalf("err = %v, want FATAL 0A000 saying replication is not served", err)
			}
		})
	}
}

// TestPostgresNeverRevealsThePassword: an upstream (or whoever is on the
// path to it) that asks for a cleartext password or an MD5 digest is
// refused before anything is sent, with a reason saying so, unless the
// server is verified (verify-full) or the service opted in
// (insecure_auth). Over TLS, the login must be channel-bound.
func TestPostgresNeverRevealsThePassword(t *testing.T) {
	pg := pgtest.Shared(t)
	ctx := testCtx(t)
	n := dbSeq.Add(1)
	clear, md5 := fmt.Sprintf("clear_user_%d", n), fmt.Sprintf("md5_user_%d", n)
	const password = "never-on-the-wire-3c1f"
	if err := pg.CreateRole(ctx, clear, password); err != nil {
		t.Fatal(err)
	}
	if err := pg.Exec(ctx, "postgres", fmt.Sprintf("SET password_encryption = 'md5'; CREATE ROLE %s LOGIN PASSWORD '%s'", md5, password)); err != nil {
		t.Fatal(err)
	}
	if err := pg.PrependHBA(ctx, "host all "+clear+" 127.0.0.1/32 password", "host all "+md5+" 127.0.0.1/32 md5"); err != nil {
		t.Fatal(err)
	}
	// The reload is asynchronous: wait until the server asks clear for a
	// cleartext password.
	meshtest.WaitFor(t, "the server to ask for a cleartext password", func() bool {
		c, err := pgconn.Connect(ctx, pg.ConnString(clear, password, "postgres")+" require_auth=password")
		if err == nil {
			c.Close(ctx)
		}
		return err == nil
	})

	tests := []struct {
		name, user, mode string
		insecure         bool
		reason           string // "" when the login succeeds
		says             string
	}{
		{name: "cleartext, no TLS", user: clear, mode: "disable", reason: "upstream_auth_insecure", says: "asked for a cleartext password"},
		{name: "MD5, no TLS", user: md5, mode: "disable", reason: "upstream_auth_insecure", says: "asked for an MD5 password digest"},
		{name: "cleartext, TLS by default", user: clear, mode: "", reason: "upstream_channel_binding", says: "channel binding"},
		{name: "MD5, TLS not verified", user: md5, mode: "require", reason: "upstream_channel_binding", says: "channel binding"},
		{name: "cleartext, verified server", user: clear, mode: "verify-full"},
		{name: "MD5, opted in", user: md5, mode: "disable", insecure: true},
		{name: "cleartext, TLS, opted in", user: clear, mode: "require", insecure: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc := connector.Service{Name: "staging-db", Kind: postern.KindPostgres, Upstream: pg.Addr, Environment: "staging",
				Postgres: &connector.Postgres{User: tt.user, Database: "postgres", Password: connector.Secret{Value: password},
					SSLMode: tt.mode, InsecureAuth: tt.insecure}}
			if tt.mode == "verify-full" {
				svc.Postgres.RootCAFile = pg.CertFile
			}
			w := newWorld(t, svc)
			db, err := w.open(t, "staging-db").SQL()
			if err != nil {
				t.Fatal(err)
			}
			var user string
			err = db.QueryRowContext(ctx, "SELECT current_user").Scan(&user)
			if tt.reason == "" {
				if err != nil || user != tt.user {
					t.Fatalf("login: user %q, %v", user, err)
				}
				return
			}
			var me *postern.Error
			if !errors.As(err, &me) || !errors.Is(err, postern.ErrUpstream) || me.Reason != tt.reason || !strings.Contains(me.Message, tt.says) {
				t.Fatalf("err = %v, want postern.ErrUpstream %s saying %q", err, tt.reason, tt.says)
			}
			if strings.Contains(err.Error(), password) || strings.Contains(w.logged.String(), password) {
				t.Fatal("the password is in an error or a log line")
			}
		})
	}
}

// TestPostgresLoginRefusedAfterAnswer: an agent that waits for the open's
// answer before it sends (Dial, as postern forward does) is answered
// first, so a login the connector then refuses reaches it as a
// PostgreSQL FATAL error naming the reason.
func TestPostgresLoginRefusedAfterAnswer(t *testing.T) {
	l := newDatabase(t)
	w := newWorld(t, l.service("staging-db", "not-the-password"))
	cfg, err := w.open(t, "staging-db").PgxConfig()
	if err != nil {
		t.Fatal(err)
	}
	cfg.DialFunc = func(ctx context.Context, _, _ string) (net.Conn, error) {
		return w.agent.Dial(ctx, "tcp", "staging-db")
	}
	_, err = pgx.ConnectConfig(testCtx(t), cfg)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Severity != "FATAL" || pgErr.Code != "28P01" || !strings.Contains(pgErr.Message, "upstream_auth_failed") {
		t.Fatalf("err = %v, want FATAL 28P01 naming upstream_auth_failed", err)
	}
}
