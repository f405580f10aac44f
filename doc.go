// Package postern is the root of Postern: an embeddable Go SDK, a relay and
// a connector that let AI agents reach private resources (databases,
// internal HTTP APIs, any TCP service) with a signed identity per agent and
// a Cedar policy deciding every access. It is the open, self-hostable
// counterpart of a hosted mesh with VPC bindings.
//
// # The system in a page
//
// Three roles take part:
//
//	agent process                relay (public, one UDP port)          private network
//	binding.Open("staging-db") --QUIC--> verify the agent's token  <--QUIC-- connector --TCP--> staging-db
//	  (package binding, mesh)           authorize with Cedar                 (dials out;
//	                                    route to a connector                  dials only what
//	                                    splice, audit                         it advertises)
//
// In more words:
//
//   - An agent is any Go program. It holds one QUIC connection to a relay,
//     presents its identity token (a JWT signed for that agent alone),
//     receives its catalog (the bindings policy lets it use), and opens one
//     QUIC stream per use of a binding. Package mesh is the client; package
//     binding turns a binding into a typed handle (*sql.DB, *http.Client,
//     net.Conn).
//   - The relay (package mesh/relay) is the only component with a public
//     address. It verifies tokens, authorizes every open with Cedar
//     (default deny, forbid beats permit), picks a connector serving the
//     binding, and splices the agent's stream to the connector's. It never
//     dials a private address. Every decision is one structured audit event
//     naming the policies that made it.
//   - A connector (package mesh/connector) runs inside the private network.
//     It dials out to one or more relays, so nothing private listens on the
//     internet, advertises the services its token grants, and for each
//     stream dials that service's upstream. It is never an open proxy.
//
// Identity tokens are issued and verified by package mesh/identity; the
// Cedar entity model, policy loading, validation and decisions live in
// package policy; the QUIC settings and TLS trust that a user configures are in
// package transport. The wire protocol is one protobuf schema,
// internal/wire/wire.proto, whose comments are its documentation.
//
// # The shared vocabulary
//
// This package holds the words that agents, the relay and the connector
// share, so that neither server side depends on the agent client nor the
// client on a server: a [Binding] (a private service by name, with its
// kind, environment and labels), the binding kinds [KindTCP], [KindHTTP]
// and [KindPostgres], a verified [Identity], and the errors an agent
// branches on. A refused session or open is an [*Error] that names the
// binding and matches one sentinel with errors.Is (a live stream that the
// relay cut because access was taken away returns one matching
// [ErrRevoked]):
//
//	if errors.Is(err, postern.ErrDenied) {
//		var e *postern.Error
//		errors.As(err, &e) // e.Policies names the policies that decided
//	}
//
// # Where to start
//
// Run the quickstart, which starts a whole mesh in one process:
//
//	go run ./examples/quickstart
//
// Agent code opens a binding by name and uses the handle it asks for, here
// a *sql.DB (see package binding):
//
//	db, err := binding.Open("staging-db") // POSTERN_RELAY, POSTERN_TOKEN, ...
//	if err != nil {
//		log.Fatal(err)
//	}
//	sqlDB, err := db.SQL() // a *sql.DB; the connector logs in, not the agent
//	if err != nil {
//		log.Fatal(err)
//	}
//	rows, err := sqlDB.QueryContext(ctx, "select id, item from orders")
//
// The postern command (cmd/postern) runs a relay, a connector, mints keys
// and tokens, and checks policies before they are deployed.
//
// # Packages
//
//   - [github.com/postern/postern/binding]: typed handles for agents
//   - [github.com/postern/postern/mesh]: the agent client
//   - [github.com/postern/postern/mesh/relay]: the relay as a library
//   - [github.com/postern/postern/mesh/connector]: the connector as a library
//   - [github.com/postern/postern/mesh/identity]: identity tokens
//   - [github.com/postern/postern/policy]: Cedar policies and decisions
//   - [github.com/postern/postern/transport]: QUIC settings and TLS trust
package postern
