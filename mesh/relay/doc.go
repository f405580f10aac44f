// Package relay is the Postern relay as a library: the one component with
// a public address. It accepts agents and connectors over QUIC and over
// TLS 1.3 on TCP (for networks that drop UDP), verifies
// each one's identity token, authorizes every binding open with Cedar,
// routes it to a connector and splices the two streams. It never dials a
// private address itself, and needs no state beyond its configuration, so
// relays scale out side by side.
//
// # Overview
//
// [Listen] starts a relay on one UDP port and the TCP port of the same
// number ([Config].Transport.Network chooses one or both). For each
// connection, whichever its transport:
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
// # Failover and isolation
//
// A connector acknowledges each dial as soon as it has read it, before it
// dials the upstream (within a millisecond, with its answer when that is
// ready by then). An open whose connector has not acknowledged within
// [Limits.AckTimeout] (1 s) moves to the next connector serving the
// binding, with every byte the agent sent with it, and so does an open
// whose connector could not reach the upstream (none of the agent's bytes
// reached any upstream then). The relay stops choosing a connector that
// missed an acknowledgement, or whose dials have waited a quarter of the
// bound, while another one serves the binding. It ends the session of a
// connector that promised keep-alives and has sent nothing for
// [Limits.ConnectorSilence] (2 s), and the streams through it end in an
// error for their agents.
//
// All agents' streams to a connector share one QUIC connection. A stream's
// receive window starts at 32 KiB and grows to at most 2 MiB of the
// connection's 64 MiB, granted whole from the start; at most
// [Limits.StalledStreamsPerAgent] (4) of one agent's streams may be
// stalled (a write to the agent or the connector waiting a second or
// more), the others are reset at once; and a stream stalled for
// [Limits.StallTimeout] (60 s) is reset: an agent that stops reading, or
// dies without closing, cannot hold the credit other agents' opens and
// streams need.
//
// # Hostile peers
//
// The relay is on the internet, and an agent is code an LLM steers: what a
// peer may cost it is bounded, before and after its token is verified.
//
// Before the Hello is verified ([Limits]), over QUIC and TLS over TCP
// alike, in one count:
//
//   - At most MaxUnverified connections (default 1024) wait for their
//     Hello, and at most MaxUnverifiedPerSource (32) from one IP address,
//     both transports together; one more is refused before the relay
//     keeps any state for it: CONNECTION_REFUSED over QUIC, and over TCP
//     a reset as soon as the connection is accepted, before any TLS work
//     (a TCP connection takes its place when it is accepted). Once
//     RetryAbove (128) connections wait, or a source has its share
//     waiting, a new QUIC client must first prove its address with a
//     Retry: spoofed Initials then cost nothing but the Retry packet. A
//     client whose address is validated, by a Retry or by the TCP
//     handshake, is counted against validated connections only, so
//     spoofed packets cannot lock it out. [Stats] and the metrics count
//     the refusals by transport.
//   - The Hello must arrive within HandshakeTimeout (5s). Nothing but the
//     control stream is read before it is verified: a peer that opens
//     another stream first is closed (CODE_PROTOCOL, stream_before_hello),
//     and the Hello is read into a buffer that grows with what arrives,
//     not with what its header announces.
//   - Flow control: the relay grants each stream 32 KiB at the handshake
//     (InitialStreamWindow), what an unverified peer can make it buffer
//     on its control stream; quic-go's auto-tuning doubles the window of
//     a stream read faster than a window per round trip, up to 2 MiB, so
//     verified flows reach full speed within a few round trips (the first
//     MiB of a fresh stream takes about three round trips more than with
//     512 KiB), and the at most MaxFrameSize (64 KiB) the relay reads of
//     a Hello lets the control stream's double twice at most, to 128
//     KiB. The connection window is 64 MiB from the start,
//     since the connection a connector shares among agents needs it whole
//     and the relay cannot tell a connector from an agent before the
//     handshake; what an unverified peer's other streams may hold until
//     the relay closes its connection is then bounded by the stream
//     limit times 32 KiB. A relay that knows where its connectors connect
//     from lists those networks in ConnectorNetworks: connections from
//     elsewhere then get a 128 KiB connection window (InitialConnWindow),
//     grown by auto-tuning for verified flows, and that bounds what an
//     unverified peer's streams can hold (quic-go keeps it at least 1.5
//     times the largest stream window, so a control stream grown to 128
//     KiB takes it to 192 KiB).
//   - A source whose Hellos were refused RejectsPerSource times (16) in
//     the last [Config.RejectInterval] (a sliding one), over either
//     transport, has its new connections refused until its refusals age
//     below that, at once and before any TLS work (over QUIC with no
//     Retry first, which would only add a round trip before the same
//     refusal): switching transports does not escape it. Its verified
//     sessions go on. A connection that reaches the Hello deadline
//     without a Hello, or a TCP connection without a finished TLS
//     handshake, counts as a refused one (reason handshake_timeout), in
//     the trail too.
//   - A flood spread over many sources, each under RejectsPerSource:
//     while the refusals from all sources together reach FloodRejects
//     (256) in the last interval, the relay is flooded, and a new
//     connection from a source that had no Hello verified in the last
//     half hour (an hour at most) takes a place in HandshakeBudget (32 a
//     second, QUIC and TCP together), over QUIC after a Retry, or is
//     refused before any TLS work. Sources that had a Hello verified
//     lately, or in ConnectorNetworks, come in as before; the trail says when a flood starts,
//     goes on and ends (relay.flood).
//   - CPU: a handshake's key exchange, its signature, and a Hello's
//     token check each go after the packets of the sessions already
//     running: each waits until the Go scheduler has polled the network
//     and run what that poll made ready (internal/idle; the first two in
//     the TLS configuration's GetConfigForClient and GetCertificate). The
//     scheduler polls only when it has nothing else to run, so without
//     this a flood of handshakes on a relay with one CPU kept an agent's
//     packet unread until every handshake queued ahead of it was done. A
//     relay that never idles still polls every 10 ms, so handshakes slow
//     down under load but are not starved. (The postern binary also
//     gives its garbage collector a floor of headroom, gc_headroom_mib:
//     a handshake flood allocates fast, and each collection's mark phase
//     is in the way of those packets too.)
//
// After it, per subject (the token's sub, across all its sessions):
// SessionsPerSubject (64), StreamsPerSubject (4096) and
// RefreshesPerMinute (60). Each refusal has code CODE_LIMIT and its own
// reason: [ReasonSessionsPerSubject], [ReasonStreamsPerSubject],
// [ReasonRefreshRate] (beside [ReasonStreamsPerAgent]); a refused refresh
// leaves the session on its current token. With [Config.HideDenied] a
// denied open is answered exactly as an unknown binding.
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
// # Revocation
//
// Access taken away is taken from live streams too, not only from the
// next open. Whenever [Config.Policy]'s set is swapped, and whenever an
// agent refreshes its token, the relay decides every live stream's open
// again (its binding, action and details, with the current principal,
// set and time); a stream now denied is reset on both legs with
// STREAM_ERROR_REVOKED, within milliseconds, and audited as
// [EventStreamRevoked]. The agent's Read and Write return a
// *postern.Error matching postern.ErrRevoked whose Policies name the
// policies that now deny it. Deciding again takes no relay-wide lock and
// decides once per session, binding and action: opens go on while
// thousands of streams are decided.
//
// [Config.Revocations] lists token IDs (jti) and subjects the relay
// refuses whatever their signature and expiry say: at the Hello and at a
// Refresh (CODE_REVOKED, reason token_revoked or subject_revoked), and,
// when the list changes, every live session it names ends at once, its
// streams cut. [Revocations] is a two-method interface, the seam for a
// store shared by a cluster of relays; [RevocationList] is the one in
// memory, and [ParseRevocations] reads the file format postern relay
// loads from tokens.revocation_file. A token's lifetime is capped by the
// verifier (identity.VerifierConfig.MaxLifetime, tokens.max_ttl), and a
// session ends when the verifier would start refusing its token: at exp
// plus the verifier's leeway.
//
// Catalog pushes are sent by each agent session's own goroutine, latest
// wins: an agent that stops reading its control stream delays no one
// else's catalog. A binding that no configuration declares and no
// connector serves leaves the catalogs.
//
// # Audit
//
// With [Config.Audit] set, every decision is one slog record: the constants
// [EventSessionStart], [EventSessionReject], [EventSessionEnd],
// [EventOpenAllow], [EventOpenDeny], [EventOpenFail], [EventStreamClose]
// and [EventStreamRevoked] document their attributes. A denial names the policies that decided it. No token or
// secret is ever logged.
//
// Events never are written on the path of an open: they go through a
// bounded queue ([Config.AuditQueue], 8192 events) that one goroutine
// hands to the handler in batches. When the queue is full, the default
// blocks the emitter (nothing is lost; a collector that stops reading
// stalls opens once the queue is full); AuditQueue.Drop drops the event
// instead, counts it, and reports the count in the trail
// ([EventAuditDropped]) once the queue drains. [Relay.Close] writes every
// event accepted before it returns. Refused handshakes are summed per
// source address, whatever their transport: one event per source and
// [Config.RejectInterval] (10s) with a count, and the first of each
// interval at once.
//
// # Metrics, traces, readiness
//
// With [Config.Metrics] set (a prometheus.Registerer), the relay registers
// its collectors there: postern_relay_* counters, gauges and histograms of
// sessions by role, opens by binding and code, open latency by stage
// (decision, connector, first_byte), bytes by binding and direction, live
// streams, policy decisions and cache hits, denials by deciding policy,
// token and handshake failures by reason, connections waiting for their
// Hello and those refused before it (by transport and reason), audit
// events, and the QUIC state
// of live sessions (RTT, congestion window, packets sent and lost), sampled
// at each scrape. Nil registers nothing and costs nothing. Labels are
// bounded: a binding the relay does not know is counted as
// [UnknownBinding], and no subject, session or token ID is ever a label.
// The full list is in metrics.go and the README.
//
// Spans come from [Config.TracerProvider], or OpenTelemetry's global
// provider when nil: "postern.relay.open", a child of the agent's open when
// its Open carries a W3C trace context, with children
// "postern.relay.decide" and "postern.relay.route", whose context goes to
// the connector in the Dial. A relay that traces nothing passes the
// agent's context on unchanged.
//
// [Relay.CheckReady] is the readiness check: nil while the relay listens,
// is not draining, and holds at least one policy and one token key.
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
