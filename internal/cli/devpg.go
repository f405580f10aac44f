package cli

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/postern/postern"
	"github.com/postern/postern/internal/pgserver"
	"github.com/postern/postern/mesh/connector"
)

// devPostgres starts a PostgreSQL server for postern dev, when PostgreSQL
// is installed, with two databases: staging (an orders table) and finance
// (a ledger, labelled financial). The connector logs in as role "app"
// with a password from a file in the dev directory; agents never see it.
// It returns no services, and a note saying so, when PostgreSQL is
// missing or disabled.
func devPostgres(ctx context.Context, o devOptions) (svcs []connector.Service, note string, stop func(), err error) {
	if !o.postgres {
		return nil, "PostgreSQL: skipped (--no-postgres); prod-finance is an HTTP stand-in.", nil, nil
	}
	srv, err := pgserver.Start("")
	if errors.Is(err, pgserver.ErrNotInstalled) {
		return nil, "PostgreSQL: skipped, it is not installed (apt-get install postgresql); staging-db is absent and prod-finance is an HTTP stand-in.", nil, nil
	}
	if err != nil {
		return nil, "", nil, fmt.Errorf("postgres: %w", err)
	}
	stop = func() { srv.Stop() }
	fail := func(err error) ([]connector.Service, string, func(), error) {
		stop()
		return nil, "", nil, fmt.Errorf("postgres: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	password := randomHex(16)
	passFile := filepath.Join(o.dir, "postgres-password")
	if err := writeFileAtomic(passFile, []byte(password+"\n"), 0o600); err != nil {
		return fail(err)
	}
	if err := srv.CreateRole(ctx, "app", password); err != nil {
		return fail(err)
	}
	for _, db := range []struct{ name, sql string }{
		{"staging", `CREATE TABLE orders (id int PRIMARY KEY, item text NOT NULL, quantity int NOT NULL, status text NOT NULL);
INSERT INTO orders VALUES (1, 'keyboard', 2, 'shipped'), (2, 'monitor', 1, 'processing'), (3, 'cable', 5, 'delivered');
ALTER TABLE orders OWNER TO app;`},
		{"finance", `CREATE TABLE ledger (account text PRIMARY KEY, balance_cents bigint NOT NULL);
INSERT INTO ledger VALUES ('4000-revenue', 125430000), ('5000-payroll', -80210000);
ALTER TABLE ledger OWNER TO app;`},
	} {
		if err := srv.CreateDatabase(ctx, db.name, "app"); err != nil {
			return fail(err)
		}
		if err := srv.Exec(ctx, db.name, db.sql); err != nil {
			return fail(err)
		}
	}
	pg := func(db string) *connector.Postgres {
		return &connector.Postgres{User: "app", Database: db, Password: connector.Secret{File: passFile}, SSLMode: "disable"}
	}
	svcs = []connector.Service{
		{Name: "staging-db", Kind: postern.KindPostgres, Upstream: srv.Addr, Environment: "staging",
			Description: "staging PostgreSQL (demo): table orders", Postgres: pg("staging")},
		{Name: "prod-finance", Kind: postern.KindPostgres, Upstream: srv.Addr, Environment: "prod", Labels: []string{"financial"},
			Description: "production financial records (demo): table ledger", Postgres: pg("finance")},
	}
	return svcs, fmt.Sprintf("PostgreSQL: running at %s (databases staging and finance; the connector logs in as app, with the password in %s).", srv.Addr, passFile), stop, nil
}
