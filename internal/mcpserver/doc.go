// Package mcpserver is the Model Context Protocol server behind
// "postern mcp": it turns an agent's catalog of bindings into MCP tools,
// so that any MCP client (an LLM with tools, in any language) reaches
// private databases and APIs with the agent's own identity, decided by
// the relay's Cedar policies, without ever holding a credential.
//
// # Overview
//
// A [Server] holds one mesh client, that is one agent identity, and an
// [mcp.Server] from the official Go SDK. [Server.Sync] reads the catalog
// and makes the tool set match it; [Server.Watch] calls it again whenever
// the relay pushes a new catalog (mesh.Client.CatalogChanged), and the
// SDK then tells connected clients with notifications/tools/list_changed.
// A binding the agent may not open is not in its catalog, so it has no
// tool. A binding on which the agent's policy permits no write (the
// catalog's ReadOnly, which the relay computes) gives tools annotated
// readOnlyHint, and their descriptions say so; the connector refuses
// every write either way.
//
// Each binding gives tools named after it (see [ToolName]):
//
//   - postgres: NAME_query runs one SQL statement and returns its rows
//     with column names and types, bounded in rows, bytes and time;
//     NAME_schema lists tables and columns from pg_catalog, leaving out
//     the tables the connector would not let the agent read (each is
//     probed with a prepared, never run, SELECT, in one pipeline).
//   - http: NAME_request sends one HTTP request and returns the status,
//     headers and body (text, or base64 when the body is not UTF-8),
//     bounded in bytes.
//   - tcp: nothing; a byte stream is no tool an LLM can call.
//
// # Errors
//
// A refused open, an upstream failure or an SQL error is a tool result
// with IsError set and the message (a denial names the deciding policy),
// not a protocol error: the model reads it and can change course.
//
// # Pooling
//
// A postgres binding keeps a pgx pool per tool, reused by every call of
// that tool: a stream per call would cost a relay decision, a connector
// dial and a PostgreSQL login (a backend process) each time. Every stream
// a tool opens carries the tool's name in its Open (the detail
// [DetailTool], "mcp_tool"), so the relay's open and close events and the
// connector's event for every statement and request name the tool;
// policy can read it too, as context.details.mcp_tool. Since a pooled
// connection serves many calls, the relay records one open per pooled
// connection rather than per call; each call is logged here (tool,
// binding, duration, outcome), and the connector's trail has every
// statement. Pooled connections are retired after a few minutes idle and
// an hour in all, so every connection is decided anew regularly, and a
// binding that leaves the catalog has its pool closed at once. A connection
// is returned to the pool only after a call that surely left its session
// alone (plain SELECT, INSERT, UPDATE, DELETE, MERGE or EXPLAIN, no
// set_config), so no setting leaks from one call into the next, and a
// connection left inside a transaction is discarded, not reused.
package mcpserver
