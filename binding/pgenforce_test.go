package binding_test

import (
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/postern/postern"
	"github.com/postern/postern/binding"
	"github.com/postern/postern/internal/measure"
	"github.com/postern/postern/internal/meshtest"
	"github.com/postern/postern/mesh"
	"github.com/postern/postern/mesh/connector"
	"github.com/postern/postern/policy"
)

// The connector decides every SQL statement through a binding with the
// relay's policy set: these tests run a real relay and connector over QUIC
// in front of a real PostgreSQL.

const noDeletes = `
@id("no-deletes")
forbid (principal, action == Action::"sql:delete", resource);
`

type pgEnforceWorld struct {
	m     *meshtest.Mesh
	l     pgLogin
	audit *meshtest.Log
	conn  *sql.Conn // one session, held for the whole test
}

func newPGEnforceWorld(t *testing.T, policies string, opts *policy.ValidateOptions) *pgEnforceWorld {
	t.Helper()
	l := newDatabase(t)
	if err := l.pg.Exec(testCtx(t), l.database, fmt.Sprintf(
		"CREATE TABLE orders (id int PRIMARY KEY, item text); INSERT INTO orders VALUES (1, 'keyboard'), (2, 'monitor'), (3, 'mouse'); ALTER TABLE orders OWNER TO %s", l.user)); err != nil {
		t.Fatal(err)
	}
	m := meshtest.New(t, meshtest.Options{Policies: policies, PolicyOptions: opts})
	svc := l.service("staging-db", l.password)
	audit := &meshtest.Log{}
	c, _ := m.StartConnector(connector.Config{Token: m.ConnectorToken("office-1", meshtest.Describe(svc)...), Services: []connector.Service{svc},
		Audit: slog.New(slog.NewJSONHandler(audit, nil))})
	meshtest.WaitFor(t, "the connector's policy frame", func() bool { return c.Policy()[m.Addr()].Version > 0 })
	db := openSQL(t, m.Client(m.AgentToken("coding-agent", "coding-agents")), "staging-db")
	conn, err := db.Conn(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &pgEnforceWorld{m: m, l: l, audit: audit, conn: conn}
}

// denied checks that err is the connector's 42501 and its message holds want.
func denied(t *testing.T, what string, err error, want string) {
	t.Helper()
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "42501" || !strings.Contains(pgErr.Message, want) {
		t.Fatalf("%s: %v; want SQLSTATE 42501 with %q", what, err, want)
	}
}

func (w *pgEnforceWorld) count(t *testing.T) int {
	t.Helper()
	var n int
	if err := w.conn.QueryRowContext(testCtx(t), "SELECT count(*) FROM orders").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestPostgresPolicySelectAllowedDeleteDenied: a SELECT goes through; a
// DELETE is answered with 42501 naming the forbid, and the row stays;
// inside a transaction, a denial makes COMMIT roll back what came before;
// each statement is an audit event of the connector.
func TestPostgresPolicySelectAllowedDeleteDenied(t *testing.T) {
	w := newPGEnforceWorld(t, readWritePolicies+noDeletes, nil)
	ctx := testCtx(t)
	var item string
	if err := w.conn.QueryRowContext(ctx, "SELECT item FROM orders WHERE id = $1", 1).Scan(&item); err != nil || item != "keyboard" {
		t.Fatalf("SELECT: %q, %v", item, err)
	}
	_, err := w.conn.ExecContext(ctx, "DELETE FROM orders WHERE id = 1")
	denied(t, "DELETE", err, "postern: denied by policy (no-deletes)")
	if n := w.count(t); n != 3 {
		t.Fatalf("%d rows after the denied DELETE, want 3", n)
	}

	tx, err := w.conn.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO orders VALUES (4, 'cable')"); err != nil {
		t.Fatalf("INSERT in the transaction: %v", err)
	}
	_, err = tx.ExecContext(ctx, "DELETE FROM orders WHERE id = 2")
	denied(t, "DELETE in the transaction", err, "no-deletes")
	if err := tx.Commit(); !errors.Is(err, pgx.ErrTxCommitRollback) && (err == nil || !strings.Contains(err.Error(), "rolled back")) {
		t.Fatalf("COMMIT after a denial: %v; want it rolled back", err)
	}
	if n := w.count(t); n != 3 {
		t.Fatalf("%d rows after the rolled-back transaction, want 3", n)
	}

	var deny, allow map[string]any
	for _, e := range w.audit.Events("pgpolicy: statement") {
		if e["decision"] == "deny" && deny == nil {
			deny = e
		}
		if e["decision"] == "allow" && allow == nil {
			allow = e
		}
	}
	if deny == nil || allow == nil {
		t.Fatalf("audit: no deny and allow events:\n%s", w.audit)
	}
	for _, e := range []map[string]any{deny, allow} {
		if e["subject"] != "coding-agent" || e["binding"] != "staging-db" || e["session"] == "" || e["session"] == nil || e["fingerprint"] == nil {
			t.Errorf("audit event without subject, session, binding or fingerprint: %v", e)
		}
	}
	if fmt.Sprint(deny["policies"]) != "[no-deletes]" || fmt.Sprint(deny["actions"]) != "[sql:delete]" || deny["outcome"] != "denied" ||
		!strings.HasPrefix(fmt.Sprint(deny["statement"]), "DELETE FROM orders WHERE id = $1") {
		t.Errorf("the DELETE's audit event: %v", deny)
	}
	if fmt.Sprint(allow["policies"]) != "[read-staging]" || fmt.Sprint(allow["actions"]) != "[sql:select]" || allow["outcome"] != "ok" {
		t.Errorf("the SELECT's audit event: %v", allow)
	}
}

// TestPostgresPolicyReload: a reload that takes write away takes effect
// on the next statement of a live session, within the second the relay
// takes to push it, and so does the reload that gives it back.
func TestPostgresPolicyReload(t *testing.T) {
	w := newPGEnforceWorld(t, readWritePolicies, nil)
	ctx := testCtx(t)
	swap := func(src string) {
		set, err := policy.Parse("reload.cedar", []byte(src))
		if err != nil {
			t.Fatal(err)
		}
		w.m.Policy.Swap(set)
	}
	update := func() error {
		_, err := w.conn.ExecContext(ctx, "UPDATE orders SET item = 'trackball' WHERE id = 3")
		return err
	}
	if err := update(); err != nil {
		t.Fatalf("UPDATE before the reload: %v", err)
	}
	// within polls f until it returns an error (wantErr) or not, for 1s.
	within := func(what string, wantErr bool) error {
		start := time.Now()
		for {
			err := update()
			if (err != nil) == wantErr {
				return err
			}
			if time.Since(start) > 1500*time.Millisecond {
				t.Fatalf("%s: still %v after %v", what, err, time.Since(start))
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	swap(readOnlyPolicies)
	denied(t, "UPDATE after write was taken away", within("taking write away", true), "no policy permits sql:update")
	var item string
	if err := w.conn.QueryRowContext(ctx, "SELECT item FROM orders WHERE id = 3").Scan(&item); err != nil {
		t.Fatalf("SELECT in the same session after the reload: %v", err)
	}
	swap(readWritePolicies)
	within("giving write back", false)
}

// TestPostgresPolicyNoSet: a connector holding no policy set (the relay's
// does not validate) refuses every statement, saying why.
func TestPostgresPolicyNoSet(t *testing.T) {
	w := newPGEnforceWorld(t, readWritePolicies+`
@id("infra-only-writes")
forbid (principal, action in Action::"write", resource) unless { principal has team && principal.team == "infra" };
`, &policy.ValidateOptions{})
	var n int
	err := w.conn.QueryRowContext(testCtx(t), "SELECT 1").Scan(&n)
	denied(t, "SELECT without a policy set", err, "does not validate")
	e := w.audit.Events("pgpolicy: statement")
	if len(e) == 0 || e[0]["decision"] != "deny" || !strings.Contains(fmt.Sprint(e[0]["reason"]), "does not validate") {
		t.Fatalf("audit: %v", e)
	}
}

// TestPostgresPolicyPerAgent: the same statement on the same binding is
// decided per agent: the on-call agent's UPDATE goes through where policy
// lets it write, the coding agent's is denied.
func TestPostgresPolicyPerAgent(t *testing.T) {
	w := newPGEnforceWorld(t, readOnlyPolicies+`
@id("oncall-writes-staging-db")
permit (principal in Group::"oncall", action in [Action::"connect", Action::"write"], resource == Binding::"staging-db");
`, nil)
	ctx := testCtx(t)
	const update = "UPDATE orders SET item = 'trackball' WHERE id = 3"
	_, err := w.conn.ExecContext(ctx, update)
	denied(t, "the coding agent's UPDATE", err, "no policy permits sql:update")

	db := openSQL(t, w.m.Client(w.m.AgentToken("oncall-agent", "oncall")), "staging-db")
	if res, err := db.ExecContext(ctx, update); err != nil {
		t.Fatalf("the on-call agent's UPDATE: %v", err)
	} else if n, _ := res.RowsAffected(); n != 1 {
		t.Fatalf("the on-call agent's UPDATE changed %d rows", n)
	}
	var item string
	if err := w.conn.QueryRowContext(ctx, "SELECT item FROM orders WHERE id = 3").Scan(&item); err != nil || item != "trackball" {
		t.Fatalf("after the on-call agent's UPDATE: %q, %v", item, err)
	}
}

// TestPostgresReadOnlyLogin: a service with a read-only login logs an
// agent whose policy permits no write on it in as that role, and an agent
// that may write as the main one; and the read-only role itself refuses a
// write at the server, whatever the session does to lift
// default_transaction_read_only or change role.
func TestPostgresReadOnlyLogin(t *testing.T) {
	ctx := testCtx(t)
	l := newDatabase(t)
	reader := l.user + "_reader"
	readerPassword := l.password + "-r"
	if err := l.pg.CreateRole(ctx, reader, readerPassword); err != nil {
		t.Fatal(err)
	}
	if err := l.pg.Exec(ctx, l.database, fmt.Sprintf(
		"CREATE TABLE orders (id int PRIMARY KEY, item text); INSERT INTO orders VALUES (1, 'keyboard'); ALTER TABLE orders OWNER TO %s; GRANT SELECT ON orders TO %s", l.user, reader)); err != nil {
		t.Fatal(err)
	}
	m := meshtest.New(t, meshtest.Options{Policies: readOnlyPolicies + `
@id("oncall-writes-staging-db")
permit (principal in Group::"oncall", action in [Action::"read", Action::"write"], resource == Binding::"staging-db");
`})
	svc := l.service("staging-db", l.password)
	svc.Postgres.ReadOnly = &connector.PostgresLogin{User: reader, Password: connector.Secret{Value: readerPassword}}
	c, _ := m.StartConnector(connector.Config{Token: m.ConnectorToken("office-1", meshtest.Describe(svc)...), Services: []connector.Service{svc}})
	meshtest.WaitFor(t, "the connector's policy frame", func() bool { return c.Policy()[m.Addr()].Version > 0 })

	currentUser := func(t *testing.T, subject, group string) string {
		t.Helper()
		db := openSQL(t, m.Client(m.AgentToken(subject, group)), "staging-db")
		var user, item string
		if err := db.QueryRowContext(ctx, "SELECT current_user").Scan(&user); err != nil {
			t.Fatalf("%s: SELECT current_user: %v", subject, err)
		}
		if err := db.QueryRowContext(ctx, "SELECT item FROM orders WHERE id = 1").Scan(&item); err != nil || item != "keyboard" {
			t.Fatalf("%s: SELECT from orders: %q, %v", subject, item, err)
		}
		return user
	}
	if got := currentUser(t, "coding-agent", "coding-agents"); got != reader {
		t.Errorf("the coding agent (read only) is logged in as %q, want %q", got, reader)
	}
	if got := currentUser(t, "oncall-agent", "oncall"); got != l.user {
		t.Errorf("the on-call agent (may write) is logged in as %q, want %q", got, l.user)
	}

	// The backstop, with no statement policy in the way: the role itself.
	conn, err := pgx.Connect(ctx, l.pg.ConnString(reader, readerPassword, l.database))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, stmt := range []string{
		"BEGIN READ WRITE; DELETE FROM orders; COMMIT",
		"SET default_transaction_read_only = off; UPDATE orders SET item = 'x'",
		"SET ROLE " + l.user,
	} {
		var pgErr *pgconn.PgError
		_, err := conn.Exec(ctx, stmt)
		if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
			t.Errorf("%s as %s: %v; want SQLSTATE 42501 (insufficient privilege)", stmt, reader, err)
		}
		conn.Exec(ctx, "ROLLBACK")
	}
}

// TestUngatedForMeasurement: with the benchmark's switch
// (measure.Connector.Ungated), statements and requests go through
// undecided, so that the bench can measure what deciding costs. No
// deployment can set it: the type is internal.
func TestUngatedForMeasurement(t *testing.T) {
	ctx := testCtx(t)
	l := newDatabase(t)
	if err := l.pg.Exec(ctx, l.database, fmt.Sprintf(
		"CREATE TABLE orders (id int PRIMARY KEY); INSERT INTO orders VALUES (1), (2); ALTER TABLE orders OWNER TO %s", l.user)); err != nil {
		t.Fatal(err)
	}
	rec := newRecorder(t)
	m := meshtest.New(t, meshtest.Options{Policies: readOnlyPolicies})
	pg := l.service("staging-db", l.password)
	api := connector.Service{Name: "staging-api", Kind: postern.KindHTTP, Environment: "staging", Upstream: rec.Listener.Addr().String(), HTTP: &connector.HTTP{}}
	tok := m.ConnectorToken("office-1", append(meshtest.Describe(pg), meshtest.Describe(api)...)...)
	c, _ := m.StartConnector(connector.Config{Token: tok, Services: []connector.Service{pg, api}, Measure: &measure.Connector{Ungated: true}})
	meshtest.WaitFor(t, "the connector's policy frame", func() bool { return c.Policy()[m.Addr()].Version > 0 })
	agent := m.Client(m.AgentToken("coding-agent", "coding-agents"))

	db := openSQL(t, agent, "staging-db")
	if res, err := db.ExecContext(ctx, "DELETE FROM orders WHERE id = 1"); err != nil {
		t.Fatalf("DELETE, ungated: %v", err)
	} else if n, _ := res.RowsAffected(); n != 1 {
		t.Fatalf("DELETE, ungated, deleted %d rows", n)
	}

	hb, err := binding.OpenWith(agent, "staging-api")
	if err != nil {
		t.Fatal(err)
	}
	defer hb.Close()
	hc, err := hb.HTTPClient()
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Post("/v1/items", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("POST, ungated: %s", resp.Status)
	}
}

// openSQL opens the postgres binding name through c as a *sql.DB, closed
// when the test ends.
func openSQL(t *testing.T, c *mesh.Client, name string) *sql.DB {
	t.Helper()
	b, err := binding.OpenWith(c, name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	db, err := b.SQL()
	if err != nil {
		t.Fatal(err)
	}
	return db
}
