package telemetry_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/postern/postern"
	"github.com/postern/postern/binding"
	"github.com/postern/postern/internal/meshtest"
	"github.com/postern/postern/internal/pgtest"
	"github.com/postern/postern/mesh/connector"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m).Run()) }

// TestStatementMetricsAndSpans: through a real PostgreSQL, each statement
// the connector decides is counted by binding, action and outcome, and is
// a span under the connector's stream, in the agent's trace.
func TestStatementMetricsAndSpans(t *testing.T) {
	pg := pgtest.Shared(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	user, database := fmt.Sprintf("telemetry_app_%d", time.Now().UnixNano()), fmt.Sprintf("telemetry_db_%d", time.Now().UnixNano())
	if err := pg.CreateRole(ctx, user, "telemetry-s3cret"); err != nil {
		t.Fatal(err)
	}
	if err := pg.CreateDatabase(ctx, database, user); err != nil {
		t.Fatal(err)
	}
	if err := pg.Exec(ctx, database, "CREATE TABLE orders (id int PRIMARY KEY); INSERT INTO orders VALUES (1), (2); ALTER TABLE orders OWNER TO "+user); err != nil {
		t.Fatal(err)
	}
	globalTracing()
	m := meshtest.New(t, meshtest.Options{Policies: readPolicies, TracerProvider: provider})
	svc := connector.Service{Name: "staging-db", Kind: postern.KindPostgres, Upstream: pg.Addr, Environment: "staging",
		Postgres: &connector.Postgres{User: user, Database: database, Password: connector.Secret{Value: "telemetry-s3cret"}, SSLMode: "disable"}}
	reg := prometheus.NewRegistry()
	c, _ := m.StartConnector(connector.Config{Token: m.ConnectorToken("office", meshtest.Describe(svc)...), Services: []connector.Service{svc},
		Metrics: reg, TracerProvider: provider})
	meshtest.WaitFor(t, "the connector's policy set", func() bool { return c.Policy()[m.Addr()].Loaded })

	b, err := binding.OpenWith(m.Client(m.AgentToken("coding-agent", "coding-agents")), "staging-db")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	db, err := b.SQL()
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1) // one session: both statements on one stream
	tctx, root := provider.Tracer("test").Start(ctx, "agent-task")
	var n int
	if err := db.QueryRowContext(tctx, "SELECT count(*) FROM orders").Scan(&n); err != nil || n != 2 {
		t.Fatalf("SELECT: %d, %v", n, err)
	}
	if _, err := db.ExecContext(tctx, "DELETE FROM orders WHERE id = 1"); err == nil {
		t.Fatal("DELETE: allowed, want denied (no permit to write)")
	}
	root.End()
	db.Close()

	got := gather(t, reg, "coding-agent")
	for k, v := range map[string]float64{
		"postern_connector_decisions_total{action=sql:delete,binding=staging-db,kind=sql,outcome=deny}": 1,
		"postern_connector_upstream_dial_duration_seconds{binding=staging-db}":                          1,
		"postern_connector_streams_total{binding=staging-db,code=ok}":                                   1,
	} {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	if got["postern_connector_decisions_total{action=sql:select,binding=staging-db,kind=sql,outcome=allow}"] < 1 {
		t.Errorf("no allowed sql:select counted: %v", got)
	}
	if got["postern_connector_decision_duration_seconds{kind=sql}"] < 2 {
		t.Errorf("statement decision durations: %v", got["postern_connector_decision_duration_seconds{kind=sql}"])
	}

	id := root.SpanContext().TraceID()
	traceSpans(t, id, "postern.connector.stream", "postern.connector.upstream_dial", "postern.connector.statement")
	var stream, dial string
	decisions := map[string]string{}
	for _, s := range spans.GetSpans() {
		if s.SpanContext.TraceID() != id {
			continue
		}
		switch s.Name {
		case "postern.connector.stream":
			stream = s.SpanContext.SpanID().String()
		case "postern.connector.upstream_dial":
			dial = s.Parent.SpanID().String()
		}
	}
	for _, s := range spans.GetSpans() {
		if s.SpanContext.TraceID() != id || s.Name != "postern.connector.statement" {
			continue
		}
		if s.Parent.SpanID().String() != stream {
			t.Errorf("statement span's parent %s, want the stream %s", s.Parent.SpanID(), stream)
		}
		var action, decision string
		for _, a := range s.Attributes {
			switch a.Key {
			case "postern.actions":
				action = a.Value.Emit()
			case "postern.decision":
				decision = a.Value.Emit()
			}
		}
		decisions[action] = decision
	}
	if dial != stream {
		t.Errorf("upstream dial's parent %s, want the stream %s", dial, stream)
	}
	if decisions[`["sql:select"]`] != "allow" || decisions[`["sql:delete"]`] != "deny" {
		t.Errorf("statement spans' decisions: %v", decisions)
	}
}
