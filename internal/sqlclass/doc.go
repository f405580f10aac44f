// Package sqlclass says what a SQL statement does, so that the connector
// can decide every statement an agent sends with Cedar.
//
// # Overview
//
// [Classify] parses the text with PostgreSQL's own parser (libpg_query,
// through pg_query_go) and walks the whole parse tree: a subquery, CTE,
// VALUES list, RETURNING list or function argument anywhere in a statement
// counts, never only the top node. For each statement it returns a
// [Statement]: the fine actions it performs, the strongest class among
// them, the relations it reads and writes, the functions it calls, and
// pg_query's fingerprint and normalized text (literals replaced by $n,
// comments blanked out: safe to log; the connector caches decisions by
// fingerprint).
//
// A parse error is an error wrapping [ErrParse]; the caller denies. So is
// a NUL byte, at which the C parser would stop reading.
//
// # Usage
//
//	stmts, err := sqlclass.Classify(query)
//	if err != nil {
//		fmt.Println("deny:", err) // fail closed
//		return
//	}
//	for _, st := range stmts {
//		// Ask Cedar about each of st.Actions, or about st.Class.
//		fmt.Println(st.Class, st.Actions)
//	}
//
// The package's example classifies a SELECT whose CTE deletes.
//
// # Classes
//
// Every action has a class; [ActionClass] maps each to it, and the policy
// package builds its Cedar action hierarchy from that map.
//
//   - read ([ClassRead]): may run for an agent allowed only to read.
//   - write ([ClassWrite]): changes data, or calls a function that is not
//     known to be read-only.
//   - ddl ([ClassDDL]): changes the schema; a kind of write.
//   - unclassified ([ClassUnclassified]): cannot be classified safely
//     (it runs code the tree does not show, reaches outside the database,
//     or changes who the session is or whether it may write): only an
//     explicit permit allows it.
//
// A statement's Class is the strongest among its actions: unclassified >
// ddl > write > read.
//
// # Actions
//
// read:
//
//   - sql:select: SELECT, VALUES, TABLE (without INTO or FOR UPDATE/SHARE).
//   - sql:show: SHOW.
//   - sql:copy_to: COPY ... TO STDOUT.
//   - sql:explain: EXPLAIN. Without ANALYZE the statement is only planned:
//     its own actions are dropped and its tables are read, but its function
//     calls stay (the planner evaluates immutable and stable calls while
//     folding constants and estimating) and so do its unclassified actions.
//     With ANALYZE (any value but an explicit false, off or 0) it runs, and
//     has the statement's actions besides sql:explain.
//   - sql:transaction: BEGIN and START TRANSACTION (without READ WRITE),
//     COMMIT, ROLLBACK, SAVEPOINT, RELEASE, ROLLBACK TO.
//   - sql:set: SET and RESET of ordinary settings (statement_timeout,
//     work_mem, TimeZone, application_name, ...), SET TRANSACTION ISOLATION
//     LEVEL / READ ONLY / DEFERRABLE / SNAPSHOT, SET SESSION
//     CHARACTERISTICS AS TRANSACTION READ ONLY, SET CONSTRAINTS, DISCARD
//     PLANS / SEQUENCES / TEMP.
//   - sql:prepare: PREPARE (its inner statement is classified with it) and
//     DEALLOCATE.
//   - sql:cursor: DECLARE (its query is classified with it), FETCH, MOVE,
//     CLOSE.
//   - sql:listen: LISTEN, UNLISTEN (they only receive).
//
// write:
//
//   - sql:insert, sql:update, sql:delete, sql:merge, sql:truncate.
//     INSERT ... ON CONFLICT DO UPDATE is sql:insert and sql:update. The
//     VALUES list of an INSERT is not a sql:select of its own.
//   - sql:copy_from: COPY ... FROM STDIN.
//   - sql:select_into: SELECT ... INTO.
//   - sql:lock_rows: SELECT ... FOR UPDATE / NO KEY UPDATE / SHARE / KEY
//     SHARE, in any subquery.
//   - sql:function: a call of a function not on the read-only allow-list,
//     an operator that is not built in, a cast to a type that is not built
//     in (nextval and setval are here).
//   - sql:notify: NOTIFY (it reaches other sessions).
//   - sql:vacuum: VACUUM. sql:analyze: ANALYZE (it writes pg_statistic).
//   - sql:maintain: CLUSTER, REINDEX, REFRESH MATERIALIZED VIEW.
//
// ddl:
//
//   - sql:create: CREATE TABLE, VIEW, INDEX, SEQUENCE, SCHEMA, FUNCTION,
//     PROCEDURE, TRIGGER, RULE, TYPE, DOMAIN, AGGREGATE, OPERATOR, CAST,
//     POLICY, STATISTICS, PUBLICATION, FOREIGN TABLE, IMPORT FOREIGN
//     SCHEMA, ...
//   - sql:create_table_as: CREATE TABLE ... AS, CREATE MATERIALIZED VIEW.
//   - sql:alter: ALTER of any schema object, RENAME, SET SCHEMA, OWNER TO,
//     REASSIGN OWNED.
//   - sql:drop: DROP of any schema object, DROP OWNED.
//   - sql:grant, sql:revoke: GRANT and REVOKE of privileges on objects;
//     ALTER DEFAULT PRIVILEGES is sql:grant besides its GRANT or REVOKE.
//   - sql:comment: COMMENT ON.
//
// unclassified:
//
//   - sql:do: DO (its body is a string the tree does not show).
//   - sql:call: CALL (its procedure is also a sql:function).
//   - sql:copy_program: COPY to or from PROGRAM or a server file.
//   - sql:lock: LOCK TABLE.
//   - sql:set_privileged: SET or RESET of role, session_authorization,
//     default_transaction_read_only, transaction_read_only, search_path,
//     session_replication_role, session/local_preload_libraries or any
//     custom setting with a dot in its name; RESET ALL; SET TRANSACTION /
//     SESSION CHARACTERISTICS ... READ WRITE; DISCARD ALL.
//   - sql:begin_read_write: BEGIN or START TRANSACTION ... READ WRITE.
//   - sql:two_phase: PREPARE TRANSACTION, COMMIT PREPARED, ROLLBACK
//     PREPARED.
//   - sql:execute: EXECUTE of a prepared statement, which the tree names
//     but does not show: the caller tracks what each name was prepared as
//     (by the PREPARE's Statement) and decides on that.
//   - sql:admin: roles (CREATE/ALTER/DROP ROLE, GRANT role TO role),
//     databases, tablespaces, extensions, languages, foreign data wrappers,
//     servers and user mappings, subscriptions, event triggers, access
//     methods, SECURITY LABEL, ALTER SYSTEM, LOAD, CHECKPOINT.
//   - sql:other: any statement node this package does not know: fail
//     closed.
//
// Kinds lists the statement nodes found anywhere in the tree, named after
// pg_query's node types: SelectStmt is "select", CreateTableAsStmt is
// "create_table_as", VariableSetStmt is "set".
//
// # Relations
//
// TablesWritten holds the relations a statement changes, in data or in
// definition: the target of INSERT, UPDATE, DELETE, MERGE, COPY FROM,
// SELECT INTO, TRUNCATE, VACUUM, ANALYZE, CLUSTER, REINDEX, REFRESH, LOCK,
// GRANT/REVOKE on tables, and of CREATE, ALTER and DROP of tables, views,
// indexes and sequences (an index is named by its table when created, by
// itself when dropped). Every other relation in the tree is in TablesRead,
// including those locked by FOR UPDATE, those referenced by a foreign key,
// and all those of an EXPLAIN without ANALYZE. Names are as written:
// schema-qualified only if the statement qualifies them, since the
// search_path that resolves an unqualified name is the server's; a policy
// on tables should name both forms, or the connector should pin
// search_path. Identifiers are as PostgreSQL folds them, quoted where
// needed: orders, public.orders, public."Order Items". A CTE's name is not
// a relation where the CTE is in scope (in a non-recursive WITH, a CTE's
// own body sees only the CTEs before it).
//
// # The read-only allow-list
//
// A function call is sql:function unless its name, unqualified or
// qualified with pg_catalog, is on the allow-list in allowlist.go:
// aggregates (count, sum, avg, min, max, ...), window functions, math,
// strings (lower, upper, length, concat, substring, regexp_*, ...), dates
// (now, date_trunc, to_char, extract, ...), jsonb and json constructors
// and accessors, arrays, and a few informational functions. Some built-ins
// are off the list whatever volatility they declare: nextval, setval,
// currval, set_config, pg_sleep, pg_terminate_backend, pg_cancel_backend,
// pg_advisory_lock, pg_notify, txid_current, dblink*, lo_*, the
// pg_read_file and pg_ls_dir family, query_to_xml (it runs a query
// string). A schema-qualified call outside pg_catalog is a user function.
// CASE, COALESCE, NULLIF, GREATEST, LEAST and CURRENT_DATE-style values
// are expressions of their own, not calls.
//
// To extend the list, add the name to readOnlyFunctions with its
// documentation section, after checking that it is built in, changes
// nothing, reads no file and runs no SQL string; and add a corpus case.
// TestAllowListExcludesWriters keeps the known writers out.
//
// Operators: a symbol outside the built-in set (builtinOperators), or an
// OPERATOR(schema.op) with a schema other than pg_catalog, is a call of
// its user function, reported as "OPERATOR(sym)". Casts: a cast to a type
// outside the built-in set (builtinTypes), or qualified with another
// schema, may run a domain's CHECK, a user cast or a type's input
// function, and is reported as "::type".
//
// # Limits
//
// The parse tree shows the text, not the catalog. What it cannot tell:
//
//   - A function's body, a view's query, a trigger, a rule, a row-level
//     security policy, a column default or a domain CHECK run by a
//     statement. Reading a view that calls a volatile function is
//     sql:select; writes that fire triggers are already writes.
//   - Which function a name resolves to. An allow-listed name is trusted
//     to be the built-in: a user function of the same name in a schema
//     placed before pg_catalog on search_path (which is why SET
//     search_path is privileged), or an overload for a user type in any
//     schema on the path (lower(mytype)), would run instead. Keep agents'
//     databases free of schemas that untrusted roles may CREATE in on the
//     search_path, or pin search_path to pg_catalog.
//   - The same for operators and casts: a user may overload a built-in
//     symbol (=, +) for a type of their own, or define a cast between
//     types the tree shows as built in; and attribute notation (t.f for
//     f(t)) looks like a column.
//   - What EXECUTE runs: unclassified, the caller tracks it.
//   - Settings the role or database sets by default (ALTER ROLE ... SET):
//     the connector should fix the session's settings itself.
//
// Classify costs three parses of the statement (the tree, the
// fingerprint, the normalized text); see BenchmarkClassify.
package sqlclass
