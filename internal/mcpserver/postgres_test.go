package mcpserver

import (
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/postern/postern"
	"github.com/postern/postern/internal/meshtest"
	"github.com/postern/postern/internal/pgtest"
	"github.com/postern/postern/mesh/connector"
	"github.com/postern/postern/policy"
)

var dbSeq atomic.Int64

// postgresWorld is a world whose connector also serves staging-db, a
// database of its own on the shared PostgreSQL, holding 20 items.
func postgresWorld(t *testing.T, cfg Config) *world {
	t.Helper()
	pg := pgtest.Shared(t) // skips without PostgreSQL, fails under CI
	n := dbSeq.Add(1)
	user, db, password := fmt.Sprintf("mcp_%d", n), fmt.Sprintf("mcpdb_%d", n), fmt.Sprintf("pw-%d", n)
	ctx := testCtx(t)
	if err := pg.CreateRole(ctx, user, password); err != nil {
		t.Fatal(err)
	}
	if err := pg.CreateDatabase(ctx, db, user); err != nil {
		t.Fatal(err)
	}
	if err := pg.Exec(ctx, db, fmt.Sprintf(`CREATE TABLE items (id int PRIMARY KEY, name varchar(40) NOT NULL, price numeric, tags jsonb, seen timestamptz, ok bool);
INSERT INTO items SELECT g, 'item-' || g, g * 1.5, '{"g": 1}', '2026-01-02 03:04:05+00', g %% 2 = 0 FROM generate_series(1, 20) g;
CREATE VIEW cheap AS SELECT id, name FROM items WHERE price < 10;
ALTER TABLE items OWNER TO %s; ALTER VIEW cheap OWNER TO %s;`, user, user)); err != nil {
		t.Fatal(err)
	}
	return newWorld(t, cfg, connector.Service{
		Name: "staging-db", Kind: postern.KindPostgres, Upstream: pg.Addr, Environment: "staging", Description: "staging PostgreSQL",
		Postgres: &connector.Postgres{User: user, Database: db, Password: connector.Secret{Value: password}, SSLMode: "disable"},
	})
}

// TestQueryTool: a SELECT returns rows with column names and types and
// values as JSON; the row limit holds, a caller lowers it and cannot
// raise it; an SQL error is a tool error with its SQLSTATE; a
// transaction a call leaves open does not reach the next call, nor does
// a setting; writes go through (read-only is policy's to say).
func TestQueryTool(t *testing.T) {
	w := postgresWorld(t, Config{MaxRows: 5})
	tools := w.tools(t)
	for _, name := range []string{"staging-db_query", "staging-db_schema", "staging-api_request"} {
		if tools[name] == nil {
			t.Fatalf("no %s in %v", name, tools)
		}
	}
	if q := tools["staging-db_query"]; q.Annotations.ReadOnlyHint || !strings.Contains(q.Description, "staging PostgreSQL") || !strings.Contains(q.Description, "at most 5 rows") {
		t.Errorf("query tool: readOnlyHint %v, description %q", q.Annotations.ReadOnlyHint, q.Description)
	}
	if s := tools["staging-db_schema"]; !s.Annotations.ReadOnlyHint {
		t.Error("the schema tool, read-only by construction, lacks readOnlyHint")
	}

	var out QueryOutput
	if e := w.call(t, "staging-db_query", map[string]any{"sql": "SELECT id, name, price, tags, seen, ok, NULL::text AS nothing FROM items WHERE id <= 2 ORDER BY id"}, &out); e != "" {
		t.Fatal(e)
	}
	wantCols := []Column{{"id", "int4"}, {"name", "varchar"}, {"price", "numeric"}, {"tags", "jsonb"}, {"seen", "timestamptz"}, {"ok", "bool"}, {"nothing", "text"}}
	if fmt.Sprint(out.Columns) != fmt.Sprint(wantCols) {
		t.Errorf("columns = %v, want %v", out.Columns, wantCols)
	}
	if got := fmt.Sprint(out.Rows); got != "[[1 item-1 1.5 map[g:1] 2026-01-02 03:04:05+00 false <nil>] [2 item-2 3 map[g:1] 2026-01-02 03:04:05+00 true <nil>]]" || out.RowCount != 2 || out.Truncated || out.Command != "SELECT 2" {
		t.Errorf("rows = %s, count %d, truncated %v, command %q", got, out.RowCount, out.Truncated, out.Command)
	}

	for _, tt := range []struct {
		name    string
		maxRows int
		want    int
	}{
		{"server limit", 0, 5},
		{"lowered", 3, 3},
		{"not raised", 100, 5},
	} {
		if e := w.call(t, "staging-db_query", map[string]any{"sql": "SELECT id FROM items ORDER BY id", "max_rows": tt.maxRows}, &out); e != "" || out.RowCount != tt.want || len(out.Rows) != tt.want || !out.Truncated {
			t.Errorf("%s: %d rows, truncated %v, %s", tt.name, out.RowCount, out.Truncated, e)
		}
	}
	if e := w.call(t, "staging-db_query", map[string]any{"sql": "SELECT name FROM items ORDER BY id", "max_bytes": 20}, &out); e != "" || out.RowCount != 2 || !out.Truncated {
		t.Errorf("max_bytes 20: %d rows, truncated %v, %s", out.RowCount, out.Truncated, e)
	}
	// The pool still works after a truncated (cancelled) statement.
	if e := w.call(t, "staging-db_query", map[string]any{"sql": "SELECT count(*) AS n FROM items"}, &out); e != "" || fmt.Sprint(out.Rows) != "[[20]]" {
		t.Errorf("count after truncations: %v, %s", out.Rows, e)
	}

	if e := w.call(t, "staging-db_query", map[string]any{"sql": "SELECT * FROM nowhere"}, &out); !strings.Contains(e, `relation "nowhere" does not exist`) || !strings.Contains(e, "42P01") {
		t.Errorf("an SQL error: %q", e)
	}
	if e := w.call(t, "staging-db_query", map[string]any{"sql": "SELECT 1; SELECT 2"}, &out); e == "" {
		t.Error("two statements in one call went through")
	}

	// The next call meets nothing this one left: a BEGIN, a SET. (With
	// one connection in use at a time, the pool hands out the same one.)
	// (SET search_path is sql:set_privileged, which the connector denies.)
	if e := w.call(t, "staging-db_query", map[string]any{"sql": "SET search_path = nowhere"}, &out); !strings.Contains(e, "42501") {
		t.Errorf("SET search_path: %q, want a 42501 denial", e)
	}
	for _, sql := range []string{"BEGIN", "SET work_mem = '1MB'"} {
		if e := w.call(t, "staging-db_query", map[string]any{"sql": sql}, &out); e != "" {
			t.Fatalf("%s: %s", sql, e)
		}
		if e := w.call(t, "staging-db_query", map[string]any{"sql": "SAVEPOINT probe"}, &out); !strings.Contains(e, "can only be used in transaction blocks") {
			t.Errorf("after %s, the next call is inside a transaction: %q", sql, e)
		}
		if e := w.call(t, "staging-db_query", map[string]any{"sql": "SELECT current_setting('work_mem') AS mem, current_setting('statement_timeout') AS timeout"}, &out); e != "" || fmt.Sprint(out.Rows) != `[[4MB 30s]]` {
			t.Errorf("after %s: %v, %s", sql, out.Rows, e)
		}
	}
	if e := w.call(t, "staging-db_query", map[string]any{"sql": "UPDATE items SET name = 'renamed' WHERE id = 1"}, &out); e != "" || out.Command != "UPDATE 1" {
		t.Errorf("an UPDATE: %+v, %s", out, e)
	}
}

// TestSchemaTool: the schema lists tables and views with their columns
// in declared order and their types as PostgreSQL writes them; a table
// filter narrows it; an unknown table is a tool error.
func TestSchemaTool(t *testing.T) {
	w := postgresWorld(t, Config{})
	var out SchemaOutput
	if e := w.call(t, "staging-db_schema", nil, &out); e != "" {
		t.Fatal(e)
	}
	var got []string
	for _, tb := range out.Tables {
		got = append(got, tb.Schema+"."+tb.Name+" "+tb.Kind)
	}
	if fmt.Sprint(got) != "[public.cheap view public.items table]" || out.Truncated {
		t.Fatalf("tables = %v, truncated %v", got, out.Truncated)
	}
	if e := w.call(t, "staging-db_schema", map[string]any{"table": "public.items"}, &out); e != "" || len(out.Tables) != 1 {
		t.Fatalf("table public.items: %+v, %s", out, e)
	}
	want := "[{id integer false} {name character varying(40) false} {price numeric true} {tags jsonb true} {seen timestamp with time zone true} {ok boolean true}]"
	if got := fmt.Sprint(out.Tables[0].Columns); got != want {
		t.Errorf("columns of items = %s, want %s", got, want)
	}
	if e := w.call(t, "staging-db_schema", map[string]any{"table": "missing"}, &out); !strings.Contains(e, `no table, view or foreign table "missing"`) {
		t.Errorf("an unknown table: %q", e)
	}

	// A table policy forbids reading is not in the schema, whichever
	// name the forbid uses: the bare one here, or the qualified one.
	for _, name := range []string{"items", "public.cheap"} {
		set, err := policy.Parse("test.cedar", []byte(meshtest.Policies+fmt.Sprintf(`
@id("hide-%s") forbid (principal, action, resource) when { context has sql && context.sql.tables_read.contains(%q) };`, name, name)))
		if err != nil {
			t.Fatal(err)
		}
		w.Policy.Swap(set) // reaches the connector in a moment
		hidden := name[strings.LastIndexByte(name, '.')+1:]
		var tables []string
		meshtest.WaitFor(t, "the schema without "+name, func() bool {
			if e := w.call(t, "staging-db_schema", nil, &out); e != "" {
				t.Fatal(e)
			}
			tables = nil
			for _, tb := range out.Tables {
				tables = append(tables, tb.Name)
			}
			return !slices.Contains(tables, hidden)
		})
		if len(tables) != 1 {
			t.Errorf("forbidding %s: tables %v, want only the other", name, tables)
		}
		if e := w.call(t, "staging-db_schema", map[string]any{"table": hidden}, &out); !strings.Contains(e, "that this agent may read") {
			t.Errorf("the schema of %s, forbidden: %q", hidden, e)
		}
	}
}

// TestStatementPolicyThroughTools: the tools are decided as a Go agent's
// statements and requests are. Under a policy that lets coding agents
// only read staging, the relay marks the bindings read-only in the
// catalog, so the query and request tools carry readOnlyHint and say so;
// a SELECT goes through and a DELETE is a tool error with the
// connector's 42501 and its reason. A forbid on deletes names itself in
// the error. Every open, and every statement the connector decides,
// names the tool it came from in the audit trails.
func TestStatementPolicyThroughTools(t *testing.T) {
	w := postgresWorld(t, Config{})
	tools := w.tools(t)
	if tools["staging-db_query"].Annotations.ReadOnlyHint || tools["staging-api_request"].Annotations.ReadOnlyHint {
		t.Fatal("readOnlyHint under a policy that permits writes")
	}
	// swap reloads the policies and waits for the notification, then for
	// the tools to be as readOnly says (several notifications may come),
	// and for the connector to hold the new set: a DELETE that touches
	// nothing is denied with deleteDenial in the message.
	swap := func(src string, readOnly bool, deleteDenial string) {
		t.Helper()
		set, err := policy.Parse("test.cedar", []byte(src))
		if err != nil {
			t.Fatal(err)
		}
		w.Policy.Swap(set)
		select {
		case <-w.changed:
		case <-testCtx(t).Done():
			t.Fatal("no tools/list_changed after a policy reload")
		}
		meshtest.WaitFor(t, "the tools after the reload", func() bool {
			tools = w.tools(t)
			q, r := tools["staging-db_query"], tools["staging-api_request"]
			return q != nil && r != nil && q.Annotations.ReadOnlyHint == readOnly && r.Annotations.ReadOnlyHint == readOnly
		})
		meshtest.WaitFor(t, "the connector's policy set", func() bool {
			var out QueryOutput
			return strings.Contains(w.call(t, "staging-db_query", map[string]any{"sql": "DELETE FROM items WHERE false"}, &out), deleteDenial)
		})
	}
	swap(`
@id("staging-for-coding-agents")
permit (principal in Group::"coding-agents", action == Action::"connect", resource in Environment::"staging");
@id("coding-agents-read-staging")
permit (principal in Group::"coding-agents", action in Action::"read", resource in Environment::"staging");
`, true, "no policy permits sql:delete")
	for _, name := range []string{"staging-db_query", "staging-api_request"} {
		tl := tools[name]
		if tl == nil {
			t.Fatalf("no %s after the reload: %v", name, tools)
		}
		if !tl.Annotations.ReadOnlyHint || !strings.Contains(tl.Description, "only read") {
			t.Errorf("%s under a read-only policy: readOnlyHint %v, description %q", name, tl.Annotations.ReadOnlyHint, tl.Description)
		}
	}

	var out QueryOutput
	if e := w.call(t, "staging-db_query", map[string]any{"sql": "SELECT count(*) AS n FROM items"}, &out); e != "" || fmt.Sprint(out.Rows) != "[[20]]" {
		t.Fatalf("a SELECT under the read-only policy: %v, %s", out.Rows, e)
	}
	e := w.call(t, "staging-db_query", map[string]any{"sql": "DELETE FROM items WHERE id = 1"}, &out)
	if !strings.Contains(e, "42501") || !strings.Contains(e, "sql:delete") {
		t.Errorf("a DELETE under the read-only policy: %q, want a 42501 naming sql:delete", e)
	}
	if strings.Contains(e, "pw-") {
		t.Errorf("the tool error holds the database password: %q", e)
	}
	if e := w.call(t, "staging-db_query", map[string]any{"sql": "SELECT count(*) AS n FROM items"}, &out); e != "" || fmt.Sprint(out.Rows) != "[[20]]" {
		t.Errorf("the DELETE went through, or broke the pool: %v, %s", out.Rows, e)
	}
	var rout RequestOutput
	if e := w.call(t, "staging-api_request", map[string]any{"method": "POST", "path": "/echo", "body": "x"}, &rout); !strings.Contains(e, "403") || !strings.Contains(e, "no policy permits http:POST") {
		t.Errorf("a POST under the read-only policy: %q, %+v", e, rout)
	}

	// Writes permitted, deletes forbidden: the forbid names itself.
	swap(meshtest.Policies+`
@id("no-deletes-on-staging")
forbid (principal, action == Action::"sql:delete", resource in Environment::"staging");
`, false, "no-deletes-on-staging")
	e = w.call(t, "staging-db_query", map[string]any{"sql": "DELETE FROM items WHERE id = 1"}, &out)
	if !strings.Contains(e, "42501") || !strings.Contains(e, "no-deletes-on-staging") {
		t.Errorf("a DELETE under a forbid: %q, want a 42501 naming no-deletes-on-staging", e)
	}
	if e := w.call(t, "staging-db_query", map[string]any{"sql": "UPDATE items SET name = 'x' WHERE id = 2"}, &out); e != "" || out.Command != "UPDATE 1" {
		t.Errorf("an UPDATE with writes permitted: %+v, %s", out, e)
	}

	// The relay's open events and the connector's statement events name
	// the tool.
	tool := func(ev map[string]any) any {
		d, _ := ev["details"].(map[string]any)
		return d[DetailTool]
	}
	opens := map[any]int{}
	for _, ev := range w.Audit.Events("open.allow") {
		if ev["binding"] == "staging-db" {
			opens[tool(ev)]++
		}
	}
	if opens["staging-db_query"] == 0 || opens[nil] != 0 {
		t.Errorf("the relay's open events of staging-db, by tool: %v", opens)
	}
	var deleteDenials int
	for _, ev := range w.connAudit.Events("pgpolicy: statement") {
		if tool(ev) != "staging-db_query" {
			t.Errorf("a statement event without the tool: %v", ev)
		}
		if ev["decision"] == "deny" && strings.HasPrefix(fmt.Sprint(ev["statement"]), "DELETE") {
			deleteDenials++
		}
	}
	if deleteDenials < 4 { // two calls, and at least one probe after each reload
		t.Errorf("%d DELETE denials in the connector's trail, want at least 4", deleteDenials)
	}
	var requests int
	for _, ev := range w.connAudit.Events("http.request") {
		if tool(ev) != "staging-api_request" {
			t.Errorf("a request event without the tool: %v", ev)
		}
		requests++
	}
	if requests == 0 {
		t.Error("no http.request event in the connector's trail")
	}
}
