package mcpserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/postern/postern/internal/sqlclass"
)

// QueryInput is the query tool's input.
type QueryInput struct {
	SQL      string `json:"sql" jsonschema:"one SQL statement, PostgreSQL dialect"`
	MaxRows  int    `json:"max_rows,omitempty" jsonschema:"return at most this many rows (at most the server's limit, which is also the default)"`
	MaxBytes int    `json:"max_bytes,omitempty" jsonschema:"return at most this many bytes of values (at most the server's limit, which is also the default)"`
}

// Column is a result column: its name and its PostgreSQL type.
type Column struct {
	Name string `json:"name"`
	Type string `json:"type" jsonschema:"the PostgreSQL type, e.g. int4, text, timestamptz"`
}

// QueryOutput is the query tool's result. Values are JSON numbers for
// integer, float and numeric columns (NaN and infinities as strings),
// booleans for bool, the JSON itself for json and jsonb, null for NULL,
// and otherwise the text PostgreSQL prints.
type QueryOutput struct {
	Columns   []Column `json:"columns"`
	Rows      [][]any  `json:"rows" jsonschema:"the rows, each a list of values in column order"`
	RowCount  int      `json:"row_count" jsonschema:"the number of rows returned"`
	Truncated bool     `json:"truncated" jsonschema:"true when the statement had more rows than max_rows or max_bytes let through"`
	Command   string   `json:"command,omitempty" jsonschema:"the command tag, e.g. SELECT 2 or UPDATE 1 (empty when truncated)"`
}

// SchemaInput is the schema tool's input.
type SchemaInput struct {
	Table string `json:"table,omitempty" jsonschema:"only this table (name or schema.name); all tables, views and foreign tables when empty"`
}

// SchemaColumn is a column of a table.
type SchemaColumn struct {
	Name     string `json:"name"`
	Type     string `json:"type" jsonschema:"the type as PostgreSQL writes it, e.g. character varying(40)"`
	Nullable bool   `json:"nullable"`
}

// Table is a table, view or foreign table and its columns.
type Table struct {
	Schema  string         `json:"schema"`
	Name    string         `json:"name"`
	Kind    string         `json:"kind" jsonschema:"table, view, materialized view, partitioned table or foreign table"`
	Columns []SchemaColumn `json:"columns"`
}

// SchemaOutput is the schema tool's result.
type SchemaOutput struct {
	Tables    []Table `json:"tables"`
	Truncated bool    `json:"truncated" jsonschema:"true when there were more columns than the server's row limit"`
}

func (s *Server) addPostgres(sv *served) []string {
	q, sc := ToolName(sv.b.Name, "query"), ToolName(sv.b.Name, "schema")
	// readOnlyHint says what the relay's catalog says: that this agent's
	// policy permits it no write through the binding (the connector
	// refuses every statement that is not a read). Otherwise
	// destructiveHint is left unset (true), as MCP assumes. The world is
	// closed: one database.
	mcp.AddTool(s.mcp, &mcp.Tool{
		Name: q,
		Description: fmt.Sprintf("Run one SQL statement on the PostgreSQL database of %s "+
			"Returns the rows with column names and types, at most %d rows and %d bytes (max_rows and max_bytes lower these), within %s. "+
			"The connection is logged in by Postern's connector; policy decides whether this agent may open it.",
			about(sv.b), s.cfg.MaxRows, s.cfg.MaxBytes, s.cfg.Timeout),
		Annotations: &mcp.ToolAnnotations{Title: "Query " + sv.b.Name, ReadOnlyHint: sv.b.ReadOnly, OpenWorldHint: ptr(false)},
	}, func(ctx context.Context, _ *mcp.CallToolRequest, in QueryInput) (*mcp.CallToolResult, QueryOutput, error) {
		start := time.Now()
		out, err := s.query(ctx, sv, in)
		s.logCall(q, sv.b.Name, start, err, "rows", out.RowCount, "truncated", out.Truncated, "sql_bytes", len(in.SQL))
		return nil, out, toolError(err)
	})
	// The schema tool sends only its own catalog query, in a read-only
	// transaction: read-only by construction, whatever policy allows.
	mcp.AddTool(s.mcp, &mcp.Tool{
		Name: sc,
		Description: fmt.Sprintf("List the tables, views and foreign tables of the PostgreSQL database of %s "+
			"with their columns and types, leaving out those this agent's policy does not let it read; give table to see one.", about(sv.b)),
		Annotations: &mcp.ToolAnnotations{Title: "Schema of " + sv.b.Name, ReadOnlyHint: true, IdempotentHint: true, OpenWorldHint: ptr(false)},
	}, func(ctx context.Context, _ *mcp.CallToolRequest, in SchemaInput) (*mcp.CallToolResult, SchemaOutput, error) {
		start := time.Now()
		out, err := s.schema(ctx, sv, in)
		s.logCall(sc, sv.b.Name, start, err, "tables", len(out.Tables))
		return nil, out, toolError(err)
	})
	return []string{q, sc}
}

// pool returns the binding's pool for tool, made at first use and closed
// when the binding leaves the catalog (see served.close). Each tool has a
// pool of its own, whose streams carry the tool's name (the mcp_tool
// detail) in their Open, so that the relay's and the connector's audit
// events name the tool of every connection and statement, and policy may
// read it as context.details.mcp_tool. Its connections are retired after
// poolIdle idle and poolLifetime in all, so that the relay decides every
// connection anew regularly.
func (s *Server) pool(ctx context.Context, sv *served, tool string) (*pgxpool.Pool, error) {
	sv.mu.Lock()
	defer sv.mu.Unlock()
	if sv.closed {
		return nil, fmt.Errorf("binding %s left the catalog", sv.b.Name)
	}
	if p := sv.pools[tool]; p != nil {
		return p, nil
	}
	cc, err := sv.h.PgxConfig()
	if err != nil {
		return nil, err
	}
	dial := cc.DialFunc
	cc.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		return dial(withTool(ctx, tool), network, addr)
	}
	pc, err := pgxpool.ParseConfig("")
	if err != nil {
		return nil, err
	}
	pc.ConnConfig = cc
	pc.MaxConns = poolSize
	pc.MaxConnIdleTime = poolIdle
	pc.MaxConnLifetime = poolLifetime
	p, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, err
	}
	if sv.pools == nil {
		sv.pools = map[string]*pgxpool.Pool{}
	}
	sv.pools[tool] = p
	return p, nil
}

// The pool of a postgres binding: a few connections (an MCP client
// calls tools one or a few at a time), each retired after a while.
const (
	poolSize     = 4
	poolIdle     = 5 * time.Minute
	poolLifetime = time.Hour
)

// conn acquires a pooled connection and sets this call's statement
// timeout. The session is clean: a call that may have changed it is not
// returned to the pool (see keepsSession). RESET ALL is not an option:
// the connector decides every statement, and RESET ALL, which resets
// search_path and default_transaction_read_only, is sql:set_privileged.
func (s *Server) conn(ctx context.Context, sv *served, tool string) (*pgxpool.Conn, error) {
	p, err := s.pool(ctx, sv, tool)
	if err != nil {
		return nil, err
	}
	c, err := p.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	ms := s.cfg.Timeout.Milliseconds()
	if _, err := c.Exec(ctx, "SET statement_timeout = "+strconv.FormatInt(ms, 10), pgx.QueryExecModeSimpleProtocol); err != nil {
		c.Release()
		return nil, err
	}
	return c, nil
}

// release returns c to the pool, unless the call left it inside a
// transaction (an explicit BEGIN, or a failed one) or may have changed
// its session (keep false): the next call must not run in this call's
// transaction or with its settings.
func release(c *pgxpool.Conn, keep bool) {
	if !keep || c.Conn().PgConn().TxStatus() != 'I' {
		c.Conn().Close(context.Background())
	}
	c.Release()
}

// callCtx bounds a call: the statement timeout, plus a grace for the
// network, after which pgx cancels the statement itself.
func (s *Server) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.cfg.Timeout+5*time.Second)
}

func (s *Server) query(ctx context.Context, sv *served, in QueryInput) (QueryOutput, error) {
	out := QueryOutput{Columns: []Column{}, Rows: [][]any{}}
	if in.SQL == "" {
		return out, errors.New("sql is empty")
	}
	maxRows, maxBytes := limit(in.MaxRows, s.cfg.MaxRows), limit(in.MaxBytes, s.cfg.MaxBytes)
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	c, err := s.conn(ctx, sv, ToolName(sv.b.Name, "query"))
	if err != nil {
		return out, err
	}
	defer release(c, keepsSession(in.SQL))

	// QueryExecModeExec: one statement (the extended protocol refuses
	// several), nothing prepared and cached per connection, and every
	// value in text format, rendered below without a Go detour.
	qctx, stop := context.WithCancel(ctx)
	defer stop()
	rows, err := c.Query(qctx, in.SQL, pgx.QueryExecModeExec)
	if err != nil {
		return out, err
	}
	defer rows.Close()
	fields := rows.FieldDescriptions()
	tm := c.Conn().TypeMap()
	for _, f := range fields {
		typ := "oid:" + strconv.FormatUint(uint64(f.DataTypeOID), 10)
		if t, ok := tm.TypeForOID(f.DataTypeOID); ok {
			typ = t.Name
		}
		out.Columns = append(out.Columns, Column{Name: f.Name, Type: typ})
	}
	size := 0
	for rows.Next() {
		raw := rows.RawValues()
		n := 0
		for _, v := range raw {
			n += len(v) + 1
		}
		if len(out.Rows) >= maxRows || size+n > maxBytes {
			out.Truncated = true
			break
		}
		size += n
		row := make([]any, len(raw))
		for i, v := range raw {
			row[i] = value(fields[i].DataTypeOID, v)
		}
		out.Rows = append(out.Rows, row)
	}
	out.RowCount = len(out.Rows)
	if out.Truncated {
		// The rest of the result is not wanted: cancel the statement
		// rather than read it all.
		stop()
		rows.Close()
		return out, nil
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return out, err
	}
	out.Command = rows.CommandTag().String()
	return out, nil
}

// limit is what the caller asked for, within the server's maximum.
func limit(asked, max int) int {
	if asked <= 0 || asked > max {
		return max
	}
	return asked
}

// PostgreSQL type OIDs rendered as JSON rather than text.
const (
	oidBool    = 16
	oidInt8    = 20
	oidInt2    = 21
	oidInt4    = 23
	oidOID     = 26
	oidJSON    = 114
	oidFloat4  = 700
	oidFloat8  = 701
	oidNumeric = 1700
	oidJSONB   = 3802
)

// value renders a text-format value for JSON.
func value(oid uint32, v []byte) any {
	if v == nil {
		return nil
	}
	switch oid {
	case oidBool:
		return string(v) == "t"
	case oidInt2, oidInt4, oidInt8, oidOID, oidFloat4, oidFloat8, oidNumeric:
		// NaN and Infinity are no JSON numbers: they stay strings.
		if n := json.Number(v); json.Valid(v) {
			return n
		}
	case oidJSON, oidJSONB:
		if json.Valid(v) {
			return json.RawMessage(v)
		}
	}
	if !utf8.Valid(v) {
		return strconv.Quote(string(v)) // a non-UTF-8 database; JSON strings are UTF-8
	}
	return string(v)
}

// schemaSQL lists the columns of relations a user would query, in the
// order a table declares them. It reads pg_catalog rather than
// information_schema, which shows only what the user owns or has a
// privilege on column by column, and is far slower.
const schemaSQL = `
SELECT n.nspname, c.relname,
       CASE c.relkind WHEN 'r' THEN 'table' WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view'
                      WHEN 'p' THEN 'partitioned table' WHEN 'f' THEN 'foreign table' END,
       a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), NOT a.attnotnull
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE c.relkind IN ('r', 'v', 'm', 'p', 'f')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_toast%'
  AND ($1::text = '' OR c.relname = $1::text OR n.nspname || '.' || c.relname = $1::text)
ORDER BY n.nspname, c.relname, a.attnum
LIMIT $2::int`

func (s *Server) schema(ctx context.Context, sv *served, in SchemaInput) (SchemaOutput, error) {
	out := SchemaOutput{Tables: []Table{}}
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	c, err := s.conn(ctx, sv, ToolName(sv.b.Name, "schema"))
	if err != nil {
		return out, err
	}
	defer release(c, true)
	tx, err := c.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return out, err
	}
	defer tx.Rollback(ctx)
	rows, err := tx.Query(ctx, schemaSQL, pgx.QueryExecModeExec, in.Table, s.cfg.MaxRows+1)
	if err != nil {
		return out, err
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		if n++; n > s.cfg.MaxRows {
			out.Truncated = true
			break
		}
		var schema, table, kind string
		var col SchemaColumn
		if err := rows.Scan(&schema, &table, &kind, &col.Name, &col.Type, &col.Nullable); err != nil {
			return out, err
		}
		if l := len(out.Tables); l == 0 || out.Tables[l-1].Schema != schema || out.Tables[l-1].Name != table {
			out.Tables = append(out.Tables, Table{Schema: schema, Name: table, Kind: kind, Columns: []SchemaColumn{}})
		}
		t := &out.Tables[len(out.Tables)-1]
		t.Columns = append(t.Columns, col)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return out, err
	}
	var path []string
	if err := tx.QueryRow(ctx, "SELECT current_schemas(false)", pgx.QueryExecModeExec).Scan(&path); err != nil {
		return out, err
	}
	if err := tx.Rollback(ctx); err != nil {
		return out, err
	}
	if out.Tables, err = readable(ctx, c.Conn().PgConn(), out.Tables, path); err != nil {
		return out, err
	}
	if in.Table != "" && len(out.Tables) == 0 {
		return out, fmt.Errorf("no table, view or foreign table %q that this agent may read", in.Table)
	}
	return out, nil
}

// readable keeps the tables that policy lets the agent read. The agent
// cannot evaluate policy; the connector can, for each statement. So each
// table is probed with a statement that reads it, SELECT * FROM it,
// sent as a Parse (prepared, never run) under its own Sync, all in one
// pipeline: one round trip. A table is left out when the connector
// denies the probe under its qualified name or, for a schema on the
// search path (path), its bare name, since policy sees tables as written
// (context.sql.tables_read) and an agent may write either. Errors other
// than a denial (a bare name that resolves elsewhere) say nothing of
// policy and hide nothing. Outside a transaction, so that a denial,
// which aborts a transaction, does not affect the next probe.
func readable(ctx context.Context, pc *pgconn.PgConn, tables []Table, path []string) ([]Table, error) {
	if len(tables) == 0 {
		return tables, nil
	}
	type probe struct{ table int }
	var probes []probe
	p := pc.StartPipeline(ctx)
	for i, t := range tables {
		names := []string{pgx.Identifier{t.Schema, t.Name}.Sanitize()}
		if slices.Contains(path, t.Schema) {
			names = append(names, pgx.Identifier{t.Name}.Sanitize())
		}
		for _, n := range names {
			p.SendPrepare("", "SELECT * FROM "+n, nil)
			p.SendPipelineSync()
			probes = append(probes, probe{i})
		}
	}
	if err := p.Flush(); err != nil {
		p.Close()
		return nil, err
	}
	denied := make([]bool, len(tables))
	for _, pr := range probes {
		_, err := p.GetResults() // the Parse's description, or its error
		var pgErr *pgconn.PgError
		switch {
		case err == nil:
		case errors.As(err, &pgErr):
			if isDenial(pgErr) {
				denied[pr.table] = true
			}
		default:
			p.Close()
			return nil, err
		}
		if _, err := p.GetResults(); err != nil { // its Sync
			p.Close()
			return nil, err
		}
	}
	if err := p.Close(); err != nil {
		return nil, err
	}
	kept := tables[:0]
	for i, t := range tables {
		if !denied[i] {
			kept = append(kept, t)
		}
	}
	return kept, nil
}

// isDenial reports whether err is the connector's refusal of a statement
// (SQLSTATE 42501 with a "postern:" message), not PostgreSQL's own error.
func isDenial(err *pgconn.PgError) bool {
	return err.Code == "42501" && strings.HasPrefix(err.Message, "postern:")
}

// sessionNeutral are the statement kinds that leave a session as they
// found it (outside a transaction, which release checks).
var sessionNeutral = map[string]bool{"select": true, "insert": true, "update": true, "delete": true, "merge": true, "explain": true}

// keepsSession reports whether sql surely leaves the session's state
// (settings, prepared statements, temporary tables, listens) alone: every
// statement of a kind in sessionNeutral, calling no set_config. Anything
// else, or SQL that does not parse, may not.
func keepsSession(sql string) bool {
	stmts, err := sqlclass.Classify(sql)
	if err != nil {
		return false
	}
	for _, st := range stmts {
		for _, k := range st.Kinds {
			if !sessionNeutral[k] {
				return false
			}
		}
		for _, f := range st.Functions {
			if strings.HasSuffix(strings.ToLower(f), "set_config") {
				return false
			}
		}
	}
	return true
}
