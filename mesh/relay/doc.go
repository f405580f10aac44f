// Package relay is the Postern relay as a library: the one component with
// a public address. It accepts agents and connectors over QUIC, verifies
// each one's identity token, authorizes every binding open with Cedar,
// routes it to a connector and splices the two streams. It never dials a
// private address itself, and needs no state beyond its configuration, so
// relays scale out side by side.
//
// # Overview
//
// [Listen] starts a relay on one UDP port. For each connection:
//
//   - The first stream must carry a Hello within [Limits.HandshakeTimeout],
//     no larger than [Limits.MaxFrameSize], with a token no larger than
//     [Limits.MaxTokenSize]. The token is verified for the role the client
//     claims; a connector's advertised services must all be granted by its
//     token, and described as their authority describes them (see "Who
//     may say what"). The answer is a Welcome or a Reject with a code and
//     a reason.
//   - An agent's Welcome carries its catalog: the known bindings that
//     policy lets it connect to. Swapping the policy Engine's Set
//     re-scopes every live catalog without reconnecting anyone.
//   - Each stream an agent opens starts with an Open. The relay counts it
//     against [Limits.StreamsPerAgent], authorizes it (default deny), picks
//     a connector serving the binding (round-robin), sends the connector
//     the binding name and the agent's verified identity, and splices.
//     Bytes the agent sent with its Open go to the connector at once; a
//     denied open discards them.
//
// A token bound to a key (identity.Claims.BoundKey, the cnf claim) is
// accepted only on a connection whose TLS handshake proved that key: the
// relay asks every client for a certificate, never requires one, and
// compares the thumbprint of the certificate's key with the token's. A
// bound token without that proof, and with [Config.RequireBoundTokens] a
// bearer agent token, is refused with CODE_KEY_NOT_PROVEN; a refresh is
// checked alike and may not change the session's binding.
//
// The messages (Hello, Welcome, Reject, Open and the rest) and their
// fields are defined in one protobuf schema, internal/wire/wire.proto,
// whose comments are the protocol's documentation.
//
// # Policy for connectors
//
// The relay decides opens; connectors decide each statement and request
// with the same policies. The relay sends its current Set (its sources,
// and [Config.PolicyOptions], what it was validated against) to every
// connector that asks, on the control stream: when the connector's
// session starts and after every [policy.Engine.Swap], each Set with the
// next version and a SHA-256 of its content. A reload reaches connected
// connectors as fast as one control frame travels.
//
// # Who may say what
//
// Policy decides on a binding's kind, environment and labels, so those
// come from someone allowed to say them, never from a connector's Hello
// alone. For each service a connector advertises, the relay takes them
// from, in order:
//
//  1. its configuration: a binding declared in [Config.Bindings];
//  2. the connector's token: a service its services claim describes
//     (identity.Service, `postern token issue --service
//     NAME:KIND:ENVIRONMENT[:LABELS]`).
//
// The Hello must agree with that authority, field by field (labels as a
// set); only the free-text description may come from the Hello, for a
// binding that is not declared. A token that describes a declared binding
// must agree with the declaration too. Each refusal is a Reject with code
// denied (the connector is not allowed to say it: retrying with the same
// token and configuration cannot help, and connectors stop):
//
//	service_mismatch     the Hello, or a token, disagrees with the authority;
//	                     the message names the service, the field, what was
//	                     said and what the authority says
//	service_undescribed  a name-only grant for a binding the relay does not
//	                     declare: nothing trusted says what it is; the
//	                     message says how to issue a describing token or
//	                     declare the binding in relay.yaml
//
// A binding keeps the first description the relay accepted for it until
// the relay restarts, whether or not a connector serves it now: once the
// last connector of prod-finance (prod, labelled financial) has gone, a
// token that describes prod-finance as staging without labels, stolen or
// mistaken, is refused (service_mismatch) rather than taking the binding
// out of a forbid. To change what a binding is, re-issue its connectors'
// tokens alike and restart the relays, or declare it in their
// configuration. A refreshed connector token must describe every served
// service as the session began, or the refresh is refused.
//
// # Audit
//
// With [Config.Audit] set, every decision is one slog record: the constants
// [EventSessionStart], [EventSessionReject], [EventSessionEnd],
// [EventOpenAllow], [EventOpenDeny], [EventOpenFail] and [EventStreamClose]
// document their attributes. A denial names the policies that decided it. No token or
// secret is ever logged.
//
// # Usage
//
// A relay needs a certificate (its pin, [transport.Pin], is what agents and
// connectors trust when it is self-signed), a token verifier and policies:
//
//	r, err := relay.Listen(relay.Config{
//		Addr:        ":7443",
//		Certificate: cert,
//		Verifier:    verifier,              // identity.NewVerifier
//		Policy:      policy.NewEngine(set), // policy.LoadDir
//		Audit:       slog.New(slog.NewJSONHandler(os.Stdout, nil)),
//	})
//	if err != nil {
//		log.Fatal(err)
//	}
//
// On SIGTERM, [Relay.Shutdown] stops accepting opens and lets the open
// streams finish, for as long as its context allows:
//
//	if err := r.Shutdown(ctx); err != nil { // drains open streams, bounded by ctx
//		log.Print(err)
//	}
package relay
