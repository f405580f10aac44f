package pgtest_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/goleak"

	"github.com/postern/postern/internal/pgtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(pgtest.Main(m)) }

var runs atomic.Int32

// TestPasswordAuth: the server asks TCP logins for a SCRAM password, and
// the helpers make roles and databases that log in with theirs.
func TestPasswordAuth(t *testing.T) {
	s := pgtest.Shared(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Quotes and spaces in the names and password must survive the
	// helpers' quoting; the counter keeps -count=N runs apart on the one
	// shared server.
	n := runs.Add(1)
	role, db := fmt.Sprintf("app's role %d", n), fmt.Sprintf("app db %d", n)
	if err := s.CreateRole(ctx, role, "pa'ss"); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateDatabase(ctx, db, role); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, user, password, db string
		wantCode                 string // SQLSTATE; empty means the login works
	}{
		{name: "superuser", user: s.User, password: s.Password, db: "postgres"},
		{name: "new role", user: role, password: "pa'ss", db: db},
		{name: "wrong password", user: role, password: "wrong", db: db, wantCode: "28P01"},
		{name: "no password", user: role, password: "", db: db, wantCode: "28P01"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := pgconn.Connect(ctx, s.ConnString(tt.user, tt.password, tt.db))
			if tt.wantCode == "" {
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close(ctx)
				res, err := c.Exec(ctx, "SELECT current_user, current_database(), current_setting('password_encryption')").ReadAll()
				if err != nil {
					t.Fatal(err)
				}
				row := res[0].Rows[0]
				if string(row[0]) != tt.user || string(row[1]) != tt.db || string(row[2]) != "scram-sha-256" {
					t.Fatalf("logged in as %q on %q with %q", row[0], row[1], row[2])
				}
				return
			}
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != tt.wantCode {
				if c != nil {
					c.Close(ctx)
				}
				t.Fatalf("err = %v, want SQLSTATE %s", err, tt.wantCode)
			}
		})
	}
}

// TestStartStop: a server of its own starts on another port and, once
// stopped, no longer accepts logins.
func TestStartStop(t *testing.T) {
	shared := pgtest.Shared(t)
	s, err := pgtest.StartServer("")
	if err != nil {
		t.Fatal(err)
	}
	if s.Addr == shared.Addr {
		t.Fatalf("two servers on %s", s.Addr)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if c, err := pgconn.Connect(ctx, s.ConnString(s.User, s.Password, "postgres")); err == nil {
		c.Close(ctx)
		t.Fatal("a stopped server accepted a login")
	}
}

// TestTLS: the server speaks TLS to a client that asks, with a
// certificate that CertFile verifies.
func TestTLS(t *testing.T) {
	s := pgtest.Shared(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, mode := range []string{"require", "verify-full"} {
		t.Run(mode, func(t *testing.T) {
			cs := fmt.Sprintf("host=%s port=%d user=%s password=%s dbname=postgres sslmode=%s sslrootcert=%s", s.Host, s.Port, s.User, s.Password, mode, s.CertFile)
			c, err := pgconn.Connect(ctx, cs)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close(ctx)
			res, err := c.Exec(ctx, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").ReadAll()
			if err != nil {
				t.Fatal(err)
			}
			if got := string(res[0].Rows[0][0]); got != "t" {
				t.Fatalf("pg_stat_ssl.ssl = %q, want t", got)
			}
		})
	}
}
