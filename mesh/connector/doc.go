// Package connector is the Postern connector as a library: it runs inside
// a private network, dials out to one or more relays, advertises the
// services its token grants, and for each stream a relay opens dials that
// service's upstream.
//
// # Overview
//
// Nothing listens: the connector only dials out, so no private address is
// reachable from the internet. It keeps a session with every relay in
// [Config.Relays] and, when one goes away, reconnects by itself,
// serving again as soon as the relay is back: a relay silent for 1.5 s
// (the connector sends a keep-alive every 500 ms) has its session ended,
// and while it does not answer the connector sends it a fresh handshake
// every 500 ms, so that a relay restarted on its address is served again
// within half a second of being ready. A relay that answers and fails the
// session is backed off from, exponentially with jitter. A refusal that retrying cannot fix (a service its token does not
// grant, a token for another role) stops [Connector.Run] with that error.
//
// A connector dials nothing it did not advertise: the relay names a
// service, never an address, and a name that is not one of the connector's
// services is refused without a dial. Upstream failures are reported to
// the agent with a code and a message that do not reveal the upstream's
// address.
//
// # Policy
//
// The relay decides whether an agent may open a binding; the connector
// decides each HTTP request and each SQL statement, where the
// protocol is parsed, with the relay's own policy set. Every relay sends
// its set on the session, right after welcoming the connector and again
// within moments of every reload, with a version and a hash
// ([Connector.Policy] shows what each relay's session holds). A request
// costs a local decision, never a round trip. A connector holds no set
// until the first arrives, and none after one that fails to parse or to
// validate against the relay's declarations (logged with the reason):
// meanwhile it refuses every request through that relay, "the connector
// has no policy set from the relay yet" ([NoPolicyMessage]). A stream is
// decided by the set of the relay that opened it.
//
// An HTTP request is decided before anything of it reaches the upstream:
// its target normalized once (so /v1/../admin is judged, and sent, as
// /admin; %2e%2e is refused with 400), its action policy.HTTPAction of the
// method, the agent the relay attested as principal and the service as
// the connector serves it as resource. A denial is 403 with a JSON body,
// {"error":"denied","policies":[...],"message":...}. TRACE and CONNECT are
// always refused (405): TRACE would echo the injected credentials back to
// the agent. Injection cannot protect a credential from an upstream
// endpoint that echoes request headers; do not permit requests to one.
// Each request is one [EventHTTPRequest] audit event on [Config.Audit].
//
// A SQL statement through a postgres binding is decided before the
// upstream sees it (package internal/pgpolicy), once per action it
// performs, with context.sql, and runs only if every action is allowed.
// A denial is an ErrorResponse with SQLSTATE 42501, "postern: denied by
// policy (ID, ...)" or "postern: denied (no policy permits sql:delete)",
// followed by the statement without its constants; the session goes on.
// Each statement is one "pgpolicy: statement" audit event on
// [Config.Audit], with subject, session and binding.
//
// # Credentials
//
// Agents never hold an upstream's credentials: the connector does. For a
// postgres service, [Postgres] is the login the connector completes
// upstream before it hands the session to the agent, by SCRAM-SHA-256
// only (channel-bound over TLS) unless the server is verified
// (verify-full) or [Postgres.InsecureAuth] says otherwise, so that nobody
// on the path collects the password; the agent gets a backend PID and
// cancel key the connector minted, and a cancel is forwarded only for a
// session of the same agent; for an http service,
// [HTTP] holds the headers it sets on every request, replacing the
// agent's (and any look-alike name: X_Api_Key for X-Api-Key), in headers
// and in trailers alike. The agent's own request trailers reach the
// upstream with their values. Forwarding headers (Forwarded,
// X-Forwarded-*, X-Real-IP) from the agent are dropped, and the connector
// adds none. Each credential is a
// [Secret], read from a file or an environment variable when it is
// needed, so rotating it needs no restart, and never printed or logged.
//
// # Read-only login
//
// Statement policy rests on the connector's SQL parser. A postgres service
// may name a second layer that does not: [Postgres.ReadOnly], a role the
// DBA has granted SELECT and nothing more. At each stream, before it logs
// in upstream, the connector asks whether the agent might write through
// the binding at all (policy.Engine.MayWrite: is there a permit whose
// scope admits an action under write or unclassified for this agent and
// binding, its conditions on context.sql and context.http left out, as
// for opening a binding). If not, it logs in as the read-only role, and a
// write the parser misjudged would still fail at the server, with
// SQLSTATE 42501. It fails safe: with no policy set from the relay, or a
// condition that cannot be evaluated, the read-only role is used. An
// agent that may write logs in as [Postgres.User], and each of its
// statements is still decided.
//
// Setting default_transaction_read_only on the main login is not such a
// backstop: a session lifts it with SET or BEGIN READ WRITE. The point is
// a role without write grants (nor membership in a role that has them, so
// that SET ROLE cannot lift it either):
//
//	CREATE ROLE app_reader LOGIN PASSWORD '...';
//	GRANT CONNECT ON DATABASE app TO app_reader;
//	GRANT USAGE ON SCHEMA public TO app_reader;
//	GRANT SELECT ON ALL TABLES IN SCHEMA public TO app_reader;
//
// # Metrics, traces, readiness
//
// With [Config.Metrics] set, the connector registers postern_connector_*
// collectors: the session with each relay, streams by binding and the
// code it answered, upstream dial latency and failures by binding and
// reason, each statement and request decided by binding, kind (sql,
// http), action and outcome, decision latency, and the QUIC state of each
// relay session, sampled at each scrape. Labels come from the
// configuration (relays, services) and fixed sets, never from an agent.
//
// Spans come from [Config.TracerProvider], or the global provider: each
// stream is "postern.connector.stream", a child of the relay's routing
// span when the Dial carries a trace context, with children
// "postern.connector.upstream_dial", "postern.connector.statement" (each
// SQL statement decided) and "postern.connector.request" (each HTTP
// request). An HTTP upstream receives the request span's context as
// traceparent and tracestate; with no span of its own, the connector
// passes on the one it was given.
//
// [Connector.CheckReady] is the readiness check: nil while a session with
// at least one relay is up.
//
// # Usage
//
// [New] checks the configuration and dials nothing:
//
//	c, err := connector.New(connector.Config{
//		Relays: []string{"relay.example.com:7443"},
//		Token:  token, // role connector, services: [staging-db]
//		Pin:    pin,   // the relay certificate's pin
//		Services: []connector.Service{{
//			Name:        "staging-db",
//			Kind:        postern.KindPostgres,
//			Upstream:    "10.0.3.7:5432", // never sent to agents
//			Environment: "staging",
//			Postgres: &connector.Postgres{ // the connector logs in, not the agent
//				User:     "app",
//				Database: "app",
//				Password: connector.Secret{Env: "STAGING_DB_PASSWORD"}, // or File
//				// for agents that may not write: granted only SELECT
//				ReadOnly: &connector.PostgresLogin{User: "app_reader", Password: connector.Secret{Env: "STAGING_DB_READER_PASSWORD"}},
//			},
//		}},
//	})
//	if err != nil {
//		log.Fatal(err)
//	}
//
// [Connector.Run] serves until its context is done:
//
//	if err := c.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
//		log.Fatal(err) // the relay refused the token or a service
//	}
package connector
