// Package pgpolicy decides every statement of a PostgreSQL session before
// the upstream server sees it. The connector runs it between the agent
// and the upstream connection it logged in with.
//
// # Overview
//
// [Serve] speaks the PostgreSQL protocol 3.0 toward both sides, after the
// startup phase. It reads each message of the agent, bounded by
// [Config.MaxMessage] before anything is allocated, and asks
// [Config.Decide] about the statements in it, as [sqlclass.Classify]
// finds them:
//
//   - a simple Query runs only if every one of its statements is allowed:
//     if one is denied, none runs;
//   - the extended protocol is decided at Parse, and the prepared
//     statement, named or unnamed, keeps its decision for each Bind and
//     Execute; a Bind of a statement that was not allowed (its Parse was
//     denied, or it was not prepared through the proxy, e.g. by SQL
//     PREPARE) and an Execute of a portal that was not bound through it
//     are refused;
//   - a FunctionCall message is refused;
//   - CopyData, CopyDone and CopyFail reach the upstream only inside an
//     allowed COPY FROM STDIN (elsewhere PostgreSQL ignores them too);
//   - text the parser rejects is denied, with the parser's message;
//   - Describe, Close, Flush and Sync are forwarded, in order with the
//     rest: pipelined messages stay pipelined.
//
// A malformed message (an unknown type, a length out of bounds, a body its
// type cannot hold) ends the session with a FATAL ErrorResponse, SQLSTATE
// 08P01, and is not forwarded; Serve returns an error wrapping
// [ErrProtocol].
//
// # Denials
//
// A denied statement gets an ErrorResponse with SQLSTATE 42501
// (insufficient_privilege) naming the policies that decided:
//
//	postern: denied by policy (no-ddl-anywhere): DROP TABLE x
//	postern: denied (no policy permits sql:delete): DELETE FROM orders WHERE id = $1
//
// and the session goes on as after any error. So that it does exactly,
// the proxy does not answer for the upstream: it sends the upstream, in
// place of the refused message, one that fails harmlessly, and replaces
// the error that comes back. A refused Query or FunctionCall becomes a
// Query that is a syntax error (PostgreSQL reports it even in a failed
// transaction); a refused Parse, Bind or Execute becomes a Describe of a
// prepared statement that does not exist (which touches neither the
// unnamed statement nor the unnamed portal). Both name a random marker
// and a sequence number, by which the error is recognized and matched
// with its denial. The upstream's own error handling then does the rest,
// and its later answers are genuine: inside a transaction block the
// transaction is failed (statements get 25P02 until ROLLBACK, and COMMIT
// answers ROLLBACK); in a pipeline, the messages up to Sync are skipped
// and the implicit transaction rolled back; ReadyForQuery carries the
// upstream's transaction status. A denied statement in a failed
// transaction gets the denial rather than 25P02, and a refusal costs a
// round trip to the upstream, as the error it stands for would. A
// refusal the upstream skips (it came after an error, before Sync) is
// never answered, as PostgreSQL answers no skipped message.
//
// # Usage
//
//	err := pgpolicy.Serve(ctx, agent, upstream, pgpolicy.Config{
//		Decide: func(ctx context.Context, st sqlclass.Statement) pgpolicy.Verdict {
//			if st.Class == sqlclass.ClassRead {
//				return pgpolicy.Verdict{Allowed: true, Policies: []string{"reads"}}
//			}
//			return pgpolicy.Verdict{Reason: "no policy permits " + st.Class}
//		},
//		Audit: logger.With("agent", subject, "session", sessionID),
//	})
//
// # Audit
//
// With [Config.Audit] set, each statement is one Info record, message
// "pgpolicy: statement", logged when its outcome is known (denied at
// once; otherwise when the upstream completes it), with the attributes:
//
//	protocol        "simple", "extended" or "function_call"
//	decision        "allow" or "deny"
//	policies        the ids of the deciding policies (maybe empty)
//	reason          why, when denied without a policy ("no policy permits
//	                sql:insert", "cannot parse", "statement not prepared")
//	fingerprint     pg_query's fingerprint              } absent when the
//	statement       normalized: literals replaced by $n } text does not
//	class, actions, kinds, tables_read, tables_written  } parse
//	outcome         "ok", "error" (the upstream failed it), "suspended"
//	                (a row limit was reached), "not_run" (skipped after an
//	                error, or its Query held a denied statement), "denied"
//	command         the CommandComplete tag: "SELECT 2", "INSERT 0 1"
//	rows            the row count in the tag, when it has one
//	sqlstate        the upstream's error code, with outcome "error"
//	duration        from forwarding to completion (nanoseconds in JSON)
//
// No literal, parameter value, parser message or password is logged. The
// caller adds the agent and the session with [slog.Logger.With]. Each run
// of a prepared statement is a record of its own.
//
// # Performance
//
// Messages are forwarded as read, and written out when nothing more is
// waiting to be read, so a pipeline stays one write each way. Classify
// results are kept by text for every session (a fixed number of slots),
// so a simple Query sent again is not parsed again; a prepared statement
// is decided once. Decide should cache its decisions by fingerprint, as
// the policy package does.
//
// # Limits
//
// The audit matches the upstream's answers to statements by counting
// ReadyForQuery messages. A client that sends a Query after an
// extended-protocol error without a Sync first (PostgreSQL skips it and
// sends no ReadyForQuery), or a Sync during a COPY FROM STDIN begun by
// Execute (PostgreSQL ignores it), shifts that count: later records may say
// "not_run" for statements that ran. Decisions do not depend on it.
//
// A prepared statement or portal made by SQL (PREPARE, DECLARE) is not
// reachable through Bind or Execute, since the proxy did not decide it
// there: use EXECUTE and FETCH, which are statements. CancelRequest and the
// startup phase are the connector's; COPY BOTH (replication) is not
// supported.
package pgpolicy
