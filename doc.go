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
// package policy; QUIC settings and TLS trust in package transport. The
// wire protocol is documented in one proto3 file, internal/wire/wire.proto.
//
// # Where to start
//
// Run the quickstart, which starts a whole mesh in one process:
//
//	go run ./examples/quickstart
//
// Agent code needs two lines (see package binding):
//
//	db, err := binding.Open("staging-db") // POSTERN_RELAY, POSTERN_TOKEN, ...
//	rows, err := db.DB().QueryContext(ctx, "select ...")
//
// The postern command (cmd/postern) runs a relay, a connector, mints keys
// and tokens, and checks policies before they are deployed.
package postern
