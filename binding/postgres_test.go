package binding_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/postern/postern"
	"github.com/postern/postern/internal/meshtest"
	"github.com/postern/postern/mesh/relay"
)

// TestPostgresSQL: an agent holding no password uses a real PostgreSQL
// (scram-sha-256) through database/sql: DDL, writes, reads, a commit and a
// rollback, and 20 concurrent queries on one *sql.DB.
func TestPostgresSQL(t *testing.T) {
	l := newDatabase(t)
	w := newWorld(t, l.service("staging-db", l.password))
	db, err := w.open(t, "staging-db").SQL()
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)

	// The session is the connector's login, whatever pgx sent as user.
	var user, database, app string
	if err := db.QueryRowContext(ctx, "SELECT current_user, current_database(), current_setting('application_name')").Scan(&user, &database, &app); err != nil {
		t.Fatal(err)
	}
	if user != l.user || database != l.database || app != "postern:coding-agent" {
		t.Fatalf("session is %s on %s for %q, want %s on %s for postern:coding-agent", user, database, app, l.user, l.database)
	}

	for _, q := range []string{
		"CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL)",
		"INSERT INTO items SELECT g, 'item-' || g FROM generate_series(1, 20) g",
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}

	txs := []struct {
		name   string
		commit bool
		id     int
		want   int // rows with id after the transaction
	}{
		{name: "commit", commit: true, id: 100, want: 1},
		{name: "rollback", commit: false, id: 101, want: 0},
	}
	for _, tt := range txs {
		t.Run(tt.name, func(t *testing.T) {
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.ExecContext(ctx, "INSERT INTO items VALUES ($1, $2)", tt.id, tt.name); err != nil {
				t.Fatal(err)
			}
			var inTx int
			if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM items WHERE id = $1", tt.id).Scan(&inTx); err != nil || inTx != 1 {
				t.Fatalf("inside the transaction: %d rows, %v", inTx, err)
			}
			if tt.commit {
				err = tx.Commit()
			} else {
				err = tx.Rollback()
			}
			if err != nil {
				t.Fatal(err)
			}
			var n int
			if err := db.QueryRowContext(ctx, "SELECT count(*) FROM items WHERE id = $1", tt.id).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != tt.want {
				t.Fatalf("%d rows with id %d after %s, want %d", n, tt.id, tt.name, tt.want)
			}
		})
	}

	t.Run("20 concurrent", func(t *testing.T) {
		db.SetMaxOpenConns(20)
		var wg sync.WaitGroup
		errs := make(chan error, 20)
		start := make(chan struct{})
		for i := 1; i <= 20; i++ {
			wg.Go(func() {
				<-start
				var id int
				var name string
				var pid int
				// pg_sleep holds each connection a moment, so that the 20
				// queries overlap on distinct sessions.
				err := db.QueryRowContext(ctx, "SELECT id, name, pg_backend_pid() FROM items, pg_sleep(0.05) WHERE id = $1", i).Scan(&id, &name, &pid)
				switch {
				case err != nil:
					errs <- err
				case id != i || name != fmt.Sprintf("item-%d", i):
					errs <- fmt.Errorf("query for %d returned %d %q", i, id, name)
				}
			})
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if open := db.Stats().OpenConnections; open < 2 {
			t.Errorf("%d connections open after 20 concurrent queries: they did not run concurrently", open)
		}
	})
}

// TestPostgresPgx: the same through pgx: a pool, and a single connection
// from PgxConfig.
func TestPostgresPgx(t *testing.T) {
	l := newDatabase(t)
	w := newWorld(t, l.service("staging-db", l.password))
	b := w.open(t, "staging-db")
	ctx := testCtx(t)
	pool, err := b.PgxPool(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := b.PgxPool(ctx); err != nil || again != pool {
		t.Fatalf("second PgxPool = %p, %v; want the same pool %p", again, err, pool)
	}
	if _, err := pool.Exec(ctx, "CREATE TABLE kv (k text PRIMARY KEY, v jsonb)"); err != nil {
		t.Fatal(err)
	}
	batch := &pgx.Batch{}
	for i := range 10 {
		batch.Queue("INSERT INTO kv VALUES ($1, $2)", fmt.Sprintf("k%d", i), map[string]int{"n": i})
	}
	if err := pool.SendBatch(ctx, batch).Close(); err != nil {
		t.Fatal(err)
	}

	// A commit and a rollback, with pgx.BeginFunc.
	if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "UPDATE kv SET v = '{\"n\": 100}' WHERE k = 'k1'")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	errRollback := errors.New("roll back")
	if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "DELETE FROM kv"); err != nil {
			return err
		}
		return errRollback
	}); !errors.Is(err, errRollback) {
		t.Fatal(err)
	}
	rows, err := pool.Query(ctx, "SELECT k, (v->>'n')::int FROM kv ORDER BY k")
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
		var k string
		var n int
		err := r.Scan(&k, &n)
		return fmt.Sprintf("%s=%d", k, n), err
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := "k0=0 k1=100 k2=2 k3=3 k4=4 k5=5 k6=6 k7=7 k8=8 k9=9"; strings.Join(got, " ") != want {
		t.Fatalf("rows = %v, want %s", got, want)
	}

	cfg, err := b.PgxConfig()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var user string
	if err := conn.QueryRow(ctx, "SELECT current_user").Scan(&user); err != nil || user != l.user {
		t.Fatalf("pgx.ConnectConfig session: user %q, %v", user, err)
	}
}

// TestPostgresCancel: a query whose context ends is cancelled on the
// server (a CancelRequest through the mesh), and the session survives it.
// Cutting the connection instead would leave pg_sleep running.
func TestPostgresCancel(t *testing.T) {
	l := newDatabase(t)
	w := newWorld(t, l.service("staging-db", l.password))
	db, err := w.open(t, "staging-db").SQL()
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	ctx := testCtx(t)
	var pid int
	if err := db.QueryRowContext(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}

	qctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = db.ExecContext(qctx, "SELECT pg_sleep(30)")
	if err == nil {
		t.Fatal("pg_sleep(30) returned without error under a 300ms context")
	}
	if took := time.Since(start); took > 4*time.Second {
		t.Fatalf("the cancelled query returned after %v", took)
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "57014" {
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want query_canceled (57014) or the context's deadline", err)
		}
	}
	// The server ended the query ...
	super := superuser(t, l)
	meshtest.WaitFor(t, "pg_sleep to end on the server", func() bool {
		var n int
		err := super.QueryRowContext(ctx, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND state = 'active'", pid).Scan(&n)
		return err == nil && n == 0
	})
	// ... and the session is still the one the pool holds.
	var again int
	if err := db.QueryRowContext(ctx, "SELECT pg_backend_pid()").Scan(&again); err != nil {
		t.Fatal(err)
	}
	if again != pid {
		t.Fatalf("session %d replaced by %d: the cancel cut the connection instead of cancelling the query", pid, again)
	}
	// The cancel went through the relay as a stream of its own.
	if n := len(w.Audit.Events(relay.EventOpenAllow)); n < 2 {
		t.Fatalf("%d opens: want the session's and the cancel's", n)
	}
}

// superuser is a direct connection to the test server as its superuser,
// for checks behind the agent's back.
func superuser(t *testing.T, l pgLogin) *sql.DB {
	t.Helper()
	cfg, err := pgx.ParseConfig(l.pg.ConnString(l.pg.User, l.pg.Password, "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	db := stdlib.OpenDB(*cfg)
	t.Cleanup(func() { db.Close() })
	return db
}

// TestPostgresWrongPassword: when the connector's stored password is
// wrong, the agent's connect fails with postern.ErrUpstream, and the password
// is in no log line and no error.
func TestPostgresWrongPassword(t *testing.T) {
	l := newDatabase(t)
	const wrong = "definitely-not-the-password-7f3a"
	w := newWorld(t, l.service("staging-db", wrong))
	b := w.open(t, "staging-db")
	ctx := testCtx(t)

	db, err := b.SQL()
	if err != nil {
		t.Fatal(err)
	}
	pool, err := b.PgxPool(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := b.PgxConfig()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		use  func() error
	}{
		{"database/sql", func() error { _, err := db.QueryContext(ctx, "SELECT 1"); return err }},
		{"pgxpool", func() error { _, err := pool.Exec(ctx, "SELECT 1"); return err }},
		{"pgx.ConnectConfig", func() error {
			c, err := pgx.ConnectConfig(ctx, cfg)
			if err == nil {
				c.Close(ctx)
			}
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.use()
			if !errors.Is(err, postern.ErrUpstream) {
				t.Fatalf("err = %v, want postern.ErrUpstream", err)
			}
			var me *postern.Error
			if !errors.As(err, &me) || me.Reason != "upstream_auth_failed" || me.Binding != "staging-db" {
				t.Fatalf("error = %#v, want reason upstream_auth_failed for staging-db", me)
			}
			for _, secret := range []string{wrong, l.password, l.pg.Addr} {
				if strings.Contains(err.Error(), secret) {
					t.Fatalf("error %q reveals %q", err, secret)
				}
			}
		})
	}
	logs := w.logged.String()
	if !strings.Contains(logs, "upstream login failed") {
		t.Fatalf("the connector did not log the failure:\n%s", logs)
	}
	for _, secret := range []string{wrong, l.password} {
		if strings.Contains(logs, secret) || strings.Contains(w.Audit.String(), secret) {
			t.Fatalf("a log line reveals the password %q:\n%s", secret, logs)
		}
	}
}

// TestPostgresTLSUpstream: the connector speaks TLS to the upstream when
// the service says so (the agent's side stays plain: the mesh encrypts),
// and a cancel reaches the server over TLS too.
func TestPostgresTLSUpstream(t *testing.T) {
	l := newDatabase(t)
	tests := []struct {
		name, mode string
		rootCA     bool
	}{
		{name: "require", mode: "require"},
		{name: "verify-full", mode: "verify-full", rootCA: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc := l.service("staging-db", l.password)
			svc.Postgres.SSLMode = tt.mode
			if tt.rootCA {
				svc.Postgres.RootCAFile = l.pg.CertFile
			}
			w := newWorld(t, svc)
			db, err := w.open(t, "staging-db").SQL()
			if err != nil {
				t.Fatal(err)
			}
			db.SetMaxOpenConns(1)
			ctx := testCtx(t)
			var ssl bool
			var pid int
			if err := db.QueryRowContext(ctx, "SELECT ssl, pid FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl, &pid); err != nil {
				t.Fatal(err)
			}
			if !ssl {
				t.Fatal("the upstream session is not encrypted")
			}
			qctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			defer cancel()
			start := time.Now()
			if _, err := db.ExecContext(qctx, "SELECT pg_sleep(30)"); err == nil || time.Since(start) > 4*time.Second {
				t.Fatalf("cancelled query: err %v after %v", err, time.Since(start))
			}
			var again int
			if err := db.QueryRowContext(ctx, "SELECT pg_backend_pid()").Scan(&again); err != nil || again != pid {
				t.Fatalf("after the cancel: session %d (%v), want %d still", again, err, pid)
			}
		})
	}
}
