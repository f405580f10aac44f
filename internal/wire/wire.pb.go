// The Postern wire protocol, version 1.
//
// This file is the protocol's documentation and its schema: every control
// message that agents, connectors and relays exchange is defined here, and
// a peer in any language gets its codec from it with protoc. The Go code
// in this directory (wire.pb.go) is generated from it; the rest of the
// package frames, caps and validates what is described below.
//
// # Connections
//
// One QUIC connection (RFC 9000, TLS 1.3) per agent or connector to each
// relay, or where UDP is blocked one TLS 1.3 connection over TCP (see
// "TLS over TCP" below), with the TLS application protocol (ALPN)
// "postern/1". A peer that
// does not offer it fails the handshake. Streams are bidirectional. The
// agent or connector opens the control stream; an agent opens one stream
// per use of a binding, and the relay opens one to a connector for each.
// A connector opens no other stream: the relay resets any it opens with
// STREAM_ERROR_REFUSED.
//
// The relay requests, and never requires, a client certificate in the
// TLS handshake. A client whose token is bound to a key (the token's
// "cnf" claim holds "jkt", the RFC 7638 SHA-256 thumbprint of a public
// key, as in RFC 9449) presents a certificate for that key, self-signed
// or not: the relay checks neither its issuer nor its dates, only that
// TLS proved possession of its private key (CertificateVerify) and that
// its public key has the token's thumbprint. A bound token on a
// connection without that proof is refused with CODE_KEY_NOT_PROVEN, in
// the Hello's Reject and in a Refresh's; so is a bearer (unbound) agent
// token when the relay requires bound tokens.
//
// # TLS over TCP
//
// Where UDP is blocked, the same protocol runs over TLS 1.3 on TCP, on
// the same port number as the relay's QUIC listener, with the same ALPN
// ("postern/1"). Streams are those of yamux
// (https://github.com/hashicorp/yamux/blob/master/spec.md) running over
// the TLS connection, the dialer as the yamux client (odd stream IDs).
// yamux gives streams, FIN (half-close) and per-stream flow control, but
// no error codes; the codes QUIC carries in RESET_STREAM, STOP_SENDING
// and CONNECTION_CLOSE travel on a stream of their own, the mux control
// stream:
//
//  1. The dialer's first yamux stream (ID 1) is the mux control stream.
//     Each side's first frame on it is a MuxSettings; nothing else is
//     sent before it. The protocol's control stream (Hello, ...) is the
//     dialer's second stream, and binding streams follow as over QUIC.
//  2. RESET_STREAM is a StreamReset{stream_id, code} on the mux control
//     stream. Its sender writes nothing more on that stream and sends no
//     FIN until the peer answers with ResetAck{stream_id}: the FIN comes
//     after the peer has seen the reset, so a reset stream never reads
//     as a clean end. A receiver discards what it had not yet read of the
//     stream and answers every StreamReset with a ResetAck, also for a
//     stream it does not know.
//  3. STOP_SENDING is a StopSending{stream_id, code}. Its receiver stops
//     writing and answers, as over QUIC, with a StreamReset of the same
//     code (unless it had already sent its FIN).
//  4. CONNECTION_CLOSE is a Close{code, reason}, the last frame its sender
//     writes; it then closes the TLS connection (close_notify, FIN). The
//     code and reason are those a relay puts in CONNECTION_CLOSE.
//  5. A refusal (rule 4 of the ordering rules) is therefore: StopSending
//     with STREAM_ERROR_REFUSED, the Result on the stream, its FIN. The
//     refused peer reads the Result as over QUIC.
//  6. Limits: mux control frames are at most 4096 bytes; a side opens at
//     most MuxSettings.max_streams streams at once (a stream counts until
//     it has ended both ways); a peer that has more than twice that many
//     open gets its surplus reset with STREAM_ERROR_REFUSED, and after
//     more than max_streams such refusals the connection is closed with
//     CODE_LIMIT. The stream
//     window is yamux's (256 KiB, growing to the configured
//     MaxStreamWindow); a peer sending beyond it breaks yamux and loses
//     the connection. An unknown frame type, or any frame before
//     MuxSettings, closes the connection with CODE_PROTOCOL.
//
// Where the protocol itself names a stream (Revoke.stream), the stream
// is numbered as QUIC numbers it: the dialer's yamux stream n (odd) is
// stream (n-1)/2*4, the listener's (even) (n/2-1)*4+1; the mux control
// stream is thus 0 and the control stream 4. Mux control frames carry
// yamux IDs.
//
// The TLS handshake is the same as over QUIC, client certificate (for
// bound tokens, above) included.
//
// Clients try QUIC first and start TCP after a short head start (300 ms
// by default) or at once when QUIC fails; the first handshake to finish
// wins, and a client remembers the winner for a relay for 10 minutes.
//
// # Protocol flow
//
//   agent/connector                        relay
//     open stream 0 (control)
//     Hello{version, role, token, services} ->
//                                           <- Welcome{session, identity, catalog, limits}
//                                           or Reject{code, reason, message} and close
//     ... control stream stays open:
//     Refresh{token}                        -> (a fresh token on the same session)
//                                           <- Refreshed{expires} or Reject
//                                           <- Catalog{bindings} (policy reload, connectors come and go)
//                                           <- Policy{version, hash, sources, declarations}
//                                              (connectors that list "policy" in Hello.features:
//                                               after the Welcome and on every reload)
//                                           <- Revoke{stream, binding, reason, policies}
//                                              (agents that list "revoke" in Hello.features: a live
//                                               binding stream is cut, see Revoke)
//                                           <- Goaway{code, message} (session ends, e.g. token expired)
//
//   agent: a new stream per use of a binding
//     Open{binding, action, details, trace} [raw bytes may follow at once] ->
//                                         relay authorizes, picks a connector,
//                                         opens a stream to it:
//                                           Dial{binding, session, identity, ack, trace} [agent's early bytes] -> connector
//                                           <- DialAck from connector (Dial.ack set: at once, before
//                                              dialing upstream, or within 1 ms in one write with
//                                              the Result; none within the relay's ack bound
//                                              and the relay tries the next connector)
//                                           <- Result{code} from connector (after dialing upstream)
//                                           <- Result{code, policies} to the agent
//     raw bytes both ways until either side closes (half-close is carried).
//
// # Ordering rules
//
//  1. The first bidirectional stream a client opens is the control stream,
//     and its first frame is a Hello. The relay answers with exactly one
//     Welcome or one Reject. After that Reject the relay closes the
//     connection; its CONNECTION_CLOSE carries the same code (see Code).
//  2. After the Welcome the control stream stays open for the session's
//     life. The client may send Refresh (answered by Refreshed or Reject,
//     in order) and Goaway. The relay may send Catalog (agents only),
//     Policy (connectors that list "policy" in Hello.features
//     only; the first right after the Welcome), Revoke (agents that list
//     "revoke" only) and Goaway at any time,
//     Refreshed or Reject only to answer a Refresh.
//     A relay that reads any other frame on the control stream ends the
//     session with a Goaway of CODE_PROTOCOL. When the control stream
//     ends, the session ends.
//  3. A binding stream starts with exactly one Open (agent to relay) or
//     one Dial (relay to connector), and its first frame back is exactly
//     one Result; on a Dial with ack set, exactly one DialAck comes first
//     and the Result follows it. A Result of CODE_OK is followed by raw
//     bytes of the binding's protocol in both directions; anything else
//     is followed by nothing, and the stream is closed.
//  4. An agent may send raw bytes right after its Open, without waiting
//     for the Result (a pipelined first request), and then says so in
//     Open.early. The relay forwards them only once the open is allowed;
//     the connector reads them only once its upstream dial succeeded,
//     except that a postgres connector reads the first startup-phase
//     message of an early stream before it logs in upstream (a cancel
//     needs no login, and nothing logs in for a stream that sends
//     nothing). When the open is refused, they are
//     discarded: the refusing side stops reading with
//     STREAM_ERROR_REFUSED, writes the Result and closes.
//  5. Half-close is carried end to end: a FIN from one side reaches the
//     upstream as a TCP half-close, and the other direction goes on.
//     RESET_STREAM and STOP_SENDING carry a StreamError.
//  6. A connector that lists "dial_ack" in Hello.features answers every
//     Dial whose ack field is set with a DialAck as soon as it has read
//     the Dial, before it dials the upstream: the ack says "this
//     connector is alive and took the stream", the Result says how the
//     upstream answered. It may hold the DialAck back for at most 1 ms
//     so that a Result ready by then goes out right behind it, in the
//     same write (one packet instead of two on every open to a nearby
//     upstream); the DialAck still comes first, and a later Result finds
//     it sent alone. A relay sets Dial.ack only for connectors that
//     listed the feature, so a connector that does not know it is never
//     asked, and a connector never sends a DialAck unasked. A relay that
//     gets no DialAck within its ack bound (relay.Limits.AckTimeout,
//     default 1 s) resets the stream with STREAM_ERROR_ABORTED and sends
//     the Dial, and the agent's bytes it kept, to the next connector
//     serving the binding; with no other connector, it waits on for the
//     open timeout. Until a Result of CODE_OK it keeps every byte
//     the agent sent, so it may also try the next connector after a
//     Result of CODE_UPSTREAM: no byte reached the upstream.
//  7. A client that lists "keepalive" in Hello.features sends a QUIC
//     packet at least once a second for the session's life (QUIC
//     keep-alives when it has nothing else to send). A relay may then
//     end the session, with CONNECTION_CLOSE CODE_TIMEOUT
//     "connector_silent", when it has received nothing from it for its
//     silence bound (relay.Limits.ConnectorSilence, default 2 s): that
//     is how it notices a dead connector within seconds, where QUIC's
//     idle timeout (at least 5 s in quic-go, 60 s by default) would take
//     longer, without pinging every session itself.
//
// # Frames
//
// Every message travels in a frame:
//
//   +--------+------------------------+-------------------+
//   | type   | length                 | payload           |
//   | 1 byte | 4 bytes, big-endian    | length bytes      |
//   +--------+------------------------+-------------------+
//
// The type is a FrameType; the payload is the protobuf encoding (proto3,
// binary) of the message that the type names: FRAME_TYPE_OPEN carries an
// Open, and so on. A frame of an unknown type is a protocol error.
//
// A captured payload decodes without the schema, as protobuf does:
//
//   protoc --decode_raw < payload.bin
//
// From a whole frame, strip the 5-byte header first:
//
//   tail -c +6 frame.bin | protoc --decode_raw
//
// or decode with the schema, naming the message that the type byte says
// (run where wire.proto is, or pass -I):
//
//   tail -c +6 frame.bin | protoc --decode=postern.wire.v1.Open wire.proto
//
// testdata/v1 beside this file holds a frame of every type.
//
// # Limits
//
//  - A reader refuses a frame whose announced length exceeds its cap
//    before it reads or allocates the payload. The default cap is 65536
//    bytes (64 KiB); a relay announces its own in Welcome.limits. Clients
//    read control frames of up to 4 MiB (a catalog of a few thousand
//    bindings), a connector a Dial of up to 1 MiB.
//  - Names (bindings, services, detail keys, actions in an Open) are 1 to
//    128 bytes of ASCII letters, digits and . _ / - (no ':', so that
//    "name:port" is unambiguous).
//  - Every repeated field holds at most 4096 entries, details at most 64.
//  - Every string has a cap, given with its field below; strings are
//    UTF-8, as proto3 requires.
//  - Setup reads have deadlines: a relay waits at most 5 s (default) for
//    the control stream and its Hello, 15 s (default) for an Open and
//    again for the connector's Result (1 s, by default, for the DialAck
//    of a connector that sends one); a connector waits 10 s for a Dial.
//    The relay answers a missed deadline with CODE_TIMEOUT, in a Reject
//    or a Result.
//
// A frame that breaks a limit, misses a required field or cannot be
// decoded is malformed: the relay answers it with CODE_PROTOCOL (or
// CODE_LIMIT for a frame over the cap).
//
// A relay reads nothing but the control stream before the Hello is
// verified: a client that opens another stream first is closed with
// CODE_PROTOCOL, reason "stream_before_hello". A relay may refuse a new
// connection before any stream, in the QUIC handshake
// (CONNECTION_REFUSED) or, over TLS over TCP, by resetting the TCP
// connection before the TLS handshake, when too many connections (of both
// transports together) wait for their Hello or when the client's address
// has had too many Hellos refused; and it may ask a QUIC client to prove
// its address with a Retry first.
//
// # Reasons of CODE_LIMIT
//
// Each limit has its own reason, so that a program can tell which it met:
//
//   frame_too_large        a frame over the reader's cap (Reject, Result)
//   sessions_per_subject   the token's subject has as many sessions as the
//                          relay allows (Reject of a Hello)
//   refresh_rate           the subject refreshed its token more often than
//                          the relay allows per minute (Reject of a
//                          Refresh; the session goes on)
//   streams_per_agent      the session has as many binding streams open as
//                          the relay allows (Result)
//   streams_per_subject    the subject has as many binding streams open,
//                          across its sessions, as the relay allows (Result)
//   upstream_connections   the connector serves as many streams of the
//                          binding as it allows (Result, from the connector)
//
// A relay configured to hide denials answers an open that policy denied
// exactly as one of a binding that does not exist: CODE_UNKNOWN_BINDING,
// "unknown_binding", no policies.
//
// # Versions
//
// Hello.version is the version the client speaks; a relay that does not
// speak it answers Reject{CODE_UNSUPPORTED, "unsupported_version"}. The
// ALPN names the major version.
//
// Version history:
//
//   1: first version (Postern 0.1). This protobuf encoding replaced, before
//      any release, a hand-written TLV encoding of the same messages; no
//      released peer spoke it, so the ALPN and the version stay 1.
//   1 + TLS over TCP: the transport frames (0x20-0x24) and the mux
//      control stream, for networks that drop UDP. Nothing changes over
//      QUIC; a relay that does not listen on TCP is simply not reached
//      that way.
//   1 + feature "policy": Hello.features (field 6) and FRAME_TYPE_POLICY
//      (0x08), the relay's policy set pushed to connectors. Added
//      without a version bump: a connector asks for Policy frames by
//      listing "policy" in Hello.features, and a relay sends them to no
//      one else, so version 1 peers that know neither go on working (a
//      relay that does not know the field ignores it and sends no
//      Policy; a connector that asked and got none holds no policy set
//      and refuses every statement and request).
//   1 + Binding.read_only (field 6): in an agent's catalog, the relay's
//      word that the agent's policy lets it only read through the
//      binding. Peers that do not know the field ignore it; it is a
//      hint for tools, never a permission (the connector decides every
//      statement and request either way).
//   1 + Open.early (field 4) and Dial.early (field 7): an agent says that
//      its first bytes follow its Open. Added without a version bump: a
//      peer that does not know the field reads false, and a connector
//      that reads false answers before it reads, which is right for
//      every agent.
//   1 + sender-constrained tokens: a client certificate in the TLS
//      handshake (see Connections) and CODE_KEY_NOT_PROVEN (12). Added
//      without a version bump: a client that sends no certificate and a
//      bearer token is served as before, and an older client only meets
//      the new code when its token is bound, which it could not prove
//      anyway.
//   1 + feature "revoke": FRAME_TYPE_REVOKE (0x09), CODE_REVOKED (13) and
//      STREAM_ERROR_REVOKED (0x103). A relay cuts a live binding stream
//      that policy no longer allows (after a policy reload or a token
//      refresh) with STREAM_ERROR_REVOKED, and a session whose token or
//      subject it has revoked with CODE_REVOKED. It tells an agent why,
//      in a Revoke frame, only when the agent's Hello.features lists
//      "revoke"; an agent of plain version 1 sees the reset or the
//      CONNECTION_CLOSE alone (an unknown code, which it keeps).
//   1 + feature "dial_ack": Dial.ack (field 8), FRAME_TYPE_DIAL_ACK (0x13)
//      and STREAM_ERROR_STALLED (0x104). Added without a version bump,
//      as "policy" was: a connector lists "dial_ack" in Hello.features,
//      the relay then sets Dial.ack, and only a Dial with ack set is
//      answered with a DialAck. A relay that does not know the feature
//      never sets the field (the connector then sends no DialAck), and a
//      relay that knows it waits for no DialAck from a connector that did
//      not list it: it waits for the Result alone, for the open timeout,
//      and cannot tell a dead connector from a slow upstream (the
//      behaviour before the feature). STREAM_ERROR_STALLED is only a new
//      reset code, which older peers show as unknown. Later, still
//      without a bump: a connector may hold the DialAck for at most 1 ms
//      and send it with the Result in one write (rule 6). Nothing changes
//      on the wire: the same frames in the same order, which every relay
//      that knows the feature reads alike; the DialAck is 1 ms late at
//      worst, against an ack bound of 1 s by default.
//   1 + feature "keepalive": no new field or frame, a promise (rule 7).
//      A relay that does not know it holds the session for QUIC's idle
//      timeout, as before; a client that does not list it is never
//      ended for silence.
//   1 + trace context: Open.trace (field 5), Dial.trace (field 9) and the
//      TraceContext message, a W3C trace context from the agent through
//      the relay to the connector. Added without a version bump: both are
//      optional fields that version 1 peers ignore (proto3 skips unknown
//      fields), and a peer that receives none traces nothing.
//
// How a later version changes the protocol:
//
//  - It adds fields with new field numbers. Never reuse or renumber a
//    field, never change its type; mark a removed field `reserved`.
//    Decoders ignore fields they do not know (proto3 does, and Postern
//    peers drop them rather than forward them), so version 1 peers go on
//    working.
//  - It adds enum values with new numbers. A Code a peer does not know is
//    kept and shown as unknown; it is not a protocol error.
//  - A new frame type is refused by older peers, so a peer sends one only
//    after the version exchanged in Hello says the other side knows it.
//
// # Codes
//
// FrameType, Code and StreamError below are the protocol's numbers. The
// application error code of a relay's CONNECTION_CLOSE is a Code (0 for
// an ordinary close), with the reason phrase "reason: message".

// Code generated by protoc-gen-go. DO NOT EDIT.
// versions:
// 	protoc-gen-go v1.36.12
// 	protoc        v3.21.12
// source: wire.proto

package wire

import (
	protoreflect "google.golang.org/protobuf/reflect/protoreflect"
	protoimpl "google.golang.org/protobuf/runtime/protoimpl"
	reflect "reflect"
	sync "sync"
	unsafe "unsafe"
)

const (
	// Verify that this generated code is sufficiently up-to-date.
	_ = protoimpl.EnforceVersion(20 - protoimpl.MinVersion)
	// Verify that runtime/protoimpl is sufficiently up-to-date.
	_ = protoimpl.EnforceVersion(protoimpl.MaxVersion - 20)
)

// FrameType is the first byte of a frame. Control frames (0x01-0x0f)
// travel on the control stream; Open, Dial and Result (0x10-0x1f) start a
// binding stream.
type FrameType int32

const (
	// Never sent.
	FrameType_FRAME_TYPE_UNSPECIFIED FrameType = 0
	// Hello, client to relay: the first frame of a session.
	FrameType_FRAME_TYPE_HELLO FrameType = 1
	// Welcome, relay to client: the session is accepted.
	FrameType_FRAME_TYPE_WELCOME FrameType = 2
	// Reject, relay to client: a Hello or a Refresh is refused. After a
	// refused Hello the relay closes the connection.
	FrameType_FRAME_TYPE_REJECT FrameType = 3
	// Catalog, relay to agent: replaces the agent's catalog.
	FrameType_FRAME_TYPE_CATALOG FrameType = 4
	// Refresh, client to relay: a fresh token for the live session.
	FrameType_FRAME_TYPE_REFRESH FrameType = 5
	// Refreshed, relay to client: the refresh is accepted.
	FrameType_FRAME_TYPE_REFRESHED FrameType = 6
	// Goaway, either direction: why the session ends.
	FrameType_FRAME_TYPE_GOAWAY FrameType = 7
	// Policy, relay to connector: replaces the connector's policy set.
	// Sent only to a connector whose Hello.features lists "policy".
	FrameType_FRAME_TYPE_POLICY FrameType = 8
	// Revoke, relay to agent: a live binding stream is being cut because
	// it is no longer allowed. Sent only to an agent whose Hello.features
	// lists "revoke".
	FrameType_FRAME_TYPE_REVOKE FrameType = 9
	// Open, agent to relay: starts a binding stream.
	FrameType_FRAME_TYPE_OPEN FrameType = 16
	// Dial, relay to connector: starts a binding stream.
	FrameType_FRAME_TYPE_DIAL FrameType = 17
	// Result, relay to agent (answering an Open) or connector to relay
	// (answering a Dial).
	FrameType_FRAME_TYPE_RESULT FrameType = 18
	// DialAck, connector to relay: the Dial was read, the upstream dial
	// starts. Sent only to answer a Dial whose ack field is set, before
	// its Result.
	FrameType_FRAME_TYPE_DIAL_ACK FrameType = 19
	// Transport frames (0x20-0x2f) travel only on the mux control stream of
	// a TLS-over-TCP connection (see "TLS over TCP" above); over QUIC they
	// are never sent.
	// MuxSettings, both directions: the first frame on the mux control
	// stream.
	FrameType_FRAME_TYPE_MUX_SETTINGS FrameType = 32
	// StreamReset: the sender reset its send direction of a stream.
	FrameType_FRAME_TYPE_STREAM_RESET FrameType = 33
	// StopSending: the sender stopped reading a stream.
	FrameType_FRAME_TYPE_STOP_SENDING FrameType = 34
	// ResetAck: the sender has seen a StreamReset.
	FrameType_FRAME_TYPE_RESET_ACK FrameType = 35
	// Close: the connection ends, with a Code.
	FrameType_FRAME_TYPE_CLOSE FrameType = 36
)

// Enum value maps for FrameType.
var (
	FrameType_name = map[int32]string{
		0:  "FRAME_TYPE_UNSPECIFIED",
		1:  "FRAME_TYPE_HELLO",
		2:  "FRAME_TYPE_WELCOME",
		3:  "FRAME_TYPE_REJECT",
		4:  "FRAME_TYPE_CATALOG",
		5:  "FRAME_TYPE_REFRESH",
		6:  "FRAME_TYPE_REFRESHED",
		7:  "FRAME_TYPE_GOAWAY",
		8:  "FRAME_TYPE_POLICY",
		9:  "FRAME_TYPE_REVOKE",
		16: "FRAME_TYPE_OPEN",
		17: "FRAME_TYPE_DIAL",
		18: "FRAME_TYPE_RESULT",
		19: "FRAME_TYPE_DIAL_ACK",
		32: "FRAME_TYPE_MUX_SETTINGS",
		33: "FRAME_TYPE_STREAM_RESET",
		34: "FRAME_TYPE_STOP_SENDING",
		35: "FRAME_TYPE_RESET_ACK",
		36: "FRAME_TYPE_CLOSE",
	}
	FrameType_value = map[string]int32{
		"FRAME_TYPE_UNSPECIFIED":  0,
		"FRAME_TYPE_HELLO":        1,
		"FRAME_TYPE_WELCOME":      2,
		"FRAME_TYPE_REJECT":       3,
		"FRAME_TYPE_CATALOG":      4,
		"FRAME_TYPE_REFRESH":      5,
		"FRAME_TYPE_REFRESHED":    6,
		"FRAME_TYPE_GOAWAY":       7,
		"FRAME_TYPE_POLICY":       8,
		"FRAME_TYPE_REVOKE":       9,
		"FRAME_TYPE_OPEN":         16,
		"FRAME_TYPE_DIAL":         17,
		"FRAME_TYPE_RESULT":       18,
		"FRAME_TYPE_DIAL_ACK":     19,
		"FRAME_TYPE_MUX_SETTINGS": 32,
		"FRAME_TYPE_STREAM_RESET": 33,
		"FRAME_TYPE_STOP_SENDING": 34,
		"FRAME_TYPE_RESET_ACK":    35,
		"FRAME_TYPE_CLOSE":        36,
	}
)

func (x FrameType) Enum() *FrameType {
	p := new(FrameType)
	*p = x
	return p
}

func (x FrameType) String() string {
	return protoimpl.X.EnumStringOf(x.Descriptor(), protoreflect.EnumNumber(x))
}

func (FrameType) Descriptor() protoreflect.EnumDescriptor {
	return file_wire_proto_enumTypes[0].Descriptor()
}

func (FrameType) Type() protoreflect.EnumType {
	return &file_wire_proto_enumTypes[0]
}

func (x FrameType) Number() protoreflect.EnumNumber {
	return protoreflect.EnumNumber(x)
}

// Deprecated: Use FrameType.Descriptor instead.
func (FrameType) EnumDescriptor() ([]byte, []int) {
	return file_wire_proto_rawDescGZIP(), []int{0}
}

// Code is the outcome of a handshake, a refresh, an open or a dial, and
// the application error code of a relay's CONNECTION_CLOSE. Values fit in
// a byte (0-255); a value above 255 is a protocol error.
type Code int32

const (
	// Success; in CONNECTION_CLOSE, an ordinary close.
	Code_CODE_OK Code = 0
	// The token is missing, malformed, expired or refused.
	Code_CODE_UNAUTHENTICATED Code = 1
	// Policy said no (Result.policies names the deciding policies), or the
	// token does not grant what a connector advertises.
	Code_CODE_DENIED Code = 2
	// No binding has this name.
	Code_CODE_UNKNOWN_BINDING Code = 3
	// The binding is known but no connector serves it now.
	Code_CODE_NO_CONNECTOR Code = 4
	// The connector could not reach the upstream.
	Code_CODE_UPSTREAM Code = 5
	// A step did not finish in time.
	Code_CODE_TIMEOUT Code = 6
	// A configured limit was reached (streams, frame size).
	Code_CODE_LIMIT Code = 7
	// A malformed or unexpected frame.
	Code_CODE_PROTOCOL Code = 8
	// The peer failed.
	Code_CODE_INTERNAL Code = 9
	// The peer is going away.
	Code_CODE_SHUTDOWN Code = 10
	// The version, role or binding kind is not supported.
	Code_CODE_UNSUPPORTED Code = 11
	// The token is bound to a key (its cnf claim) and the connection did
	// not prove possession of it: no client certificate ("key_not_proven"),
	// or one for another key ("key_mismatch"); or the relay requires bound
	// tokens and this agent token is a bearer one ("token_not_bound"); or
	// a Refresh would drop or change the session's binding
	// ("binding_changed"). Retrying with the same token on a connection
	// without the key will not help.
	Code_CODE_KEY_NOT_PROVEN Code = 12
	// Access was taken away from something already allowed: the token or
	// its subject is on the relay's revocation list (Reject, Goaway,
	// CONNECTION_CLOSE), or policy no longer allows a live stream (Revoke).
	Code_CODE_REVOKED Code = 13
)

// Enum value maps for Code.
var (
	Code_name = map[int32]string{
		0:  "CODE_OK",
		1:  "CODE_UNAUTHENTICATED",
		2:  "CODE_DENIED",
		3:  "CODE_UNKNOWN_BINDING",
		4:  "CODE_NO_CONNECTOR",
		5:  "CODE_UPSTREAM",
		6:  "CODE_TIMEOUT",
		7:  "CODE_LIMIT",
		8:  "CODE_PROTOCOL",
		9:  "CODE_INTERNAL",
		10: "CODE_SHUTDOWN",
		11: "CODE_UNSUPPORTED",
		12: "CODE_KEY_NOT_PROVEN",
		13: "CODE_REVOKED",
	}
	Code_value = map[string]int32{
		"CODE_OK":              0,
		"CODE_UNAUTHENTICATED": 1,
		"CODE_DENIED":          2,
		"CODE_UNKNOWN_BINDING": 3,
		"CODE_NO_CONNECTOR":    4,
		"CODE_UPSTREAM":        5,
		"CODE_TIMEOUT":         6,
		"CODE_LIMIT":           7,
		"CODE_PROTOCOL":        8,
		"CODE_INTERNAL":        9,
		"CODE_SHUTDOWN":        10,
		"CODE_UNSUPPORTED":     11,
		"CODE_KEY_NOT_PROVEN":  12,
		"CODE_REVOKED":         13,
	}
)

func (x Code) Enum() *Code {
	p := new(Code)
	*p = x
	return p
}

func (x Code) String() string {
	return protoimpl.X.EnumStringOf(x.Descriptor(), protoreflect.EnumNumber(x))
}

func (Code) Descriptor() protoreflect.EnumDescriptor {
	return file_wire_proto_enumTypes[1].Descriptor()
}

func (Code) Type() protoreflect.EnumType {
	return &file_wire_proto_enumTypes[1]
}

func (x Code) Number() protoreflect.EnumNumber {
	return protoreflect.EnumNumber(x)
}

// Deprecated: Use Code.Descriptor instead.
func (Code) EnumDescriptor() ([]byte, []int) {
	return file_wire_proto_rawDescGZIP(), []int{1}
}

// StreamError is the application error code of a RESET_STREAM or
// STOP_SENDING on a binding stream: why bytes stopped, where a FIN would
// say "all sent".
type StreamError int32

const (
	// No reason given.
	StreamError_STREAM_ERROR_UNSPECIFIED StreamError = 0
	// The application closed its end before reading or writing everything.
	StreamError_STREAM_ERROR_CLOSED StreamError = 256
	// The other leg of a splice failed, so this one is cut.
	StreamError_STREAM_ERROR_ABORTED StreamError = 257
	// The open was refused (denied, limit, unknown binding); the data sent
	// with it was discarded. A Result saying why is written before the
	// stream closes.
	StreamError_STREAM_ERROR_REFUSED StreamError = 258
	// The relay cut a live stream that is no longer allowed: policy now
	// denies its open, or its session's token was revoked. A relay that
	// knows the agent asked for it ("revoke" in Hello.features) has sent a
	// Revoke frame naming the stream first.
	StreamError_STREAM_ERROR_REVOKED StreamError = 259
	// The relay reset the stream because a reader stopped taking its
	// bytes: nothing was read of what it had for the agent (or the
	// connector) for the relay's stall timeout, or the agent had more
	// stalled streams than the relay lets one agent hold. Sent to both
	// ends.
	StreamError_STREAM_ERROR_STALLED StreamError = 260
)

// Enum value maps for StreamError.
var (
	StreamError_name = map[int32]string{
		0:   "STREAM_ERROR_UNSPECIFIED",
		256: "STREAM_ERROR_CLOSED",
		257: "STREAM_ERROR_ABORTED",
		258: "STREAM_ERROR_REFUSED",
		259: "STREAM_ERROR_REVOKED",
		260: "STREAM_ERROR_STALLED",
	}
	StreamError_value = map[string]int32{
		"STREAM_ERROR_UNSPECIFIED": 0,
		"STREAM_ERROR_CLOSED":      256,
		"STREAM_ERROR_ABORTED":     257,
		"STREAM_ERROR_REFUSED":     258,
		"STREAM_ERROR_REVOKED":     259,
		"STREAM_ERROR_STALLED":     260,
	}
)

func (x StreamError) Enum() *StreamError {
	p := new(StreamError)
	*p = x
	return p
}

func (x StreamError) String() string {
	return protoimpl.X.EnumStringOf(x.Descriptor(), protoreflect.EnumNumber(x))
}

func (StreamError) Descriptor() protoreflect.EnumDescriptor {
	return file_wire_proto_enumTypes[2].Descriptor()
}

func (StreamError) Type() protoreflect.EnumType {
	return &file_wire_proto_enumTypes[2]
}

func (x StreamError) Number() protoreflect.EnumNumber {
	return protoreflect.EnumNumber(x)
}

// Deprecated: Use StreamError.Descriptor instead.
func (StreamError) EnumDescriptor() ([]byte, []int) {
	return file_wire_proto_rawDescGZIP(), []int{2}
}

// MuxSettings is the first frame each side writes on the mux control
// stream of a TLS-over-TCP connection: FRAME_TYPE_MUX_SETTINGS.
type MuxSettings struct {
	state protoimpl.MessageState `protogen:"open.v1"`
	// How many streams the sender lets its peer have open at once (QUIC's
	// initial_max_streams_bidi). Required, 1 to 2^60.
	MaxStreams    uint64 `protobuf:"varint,1,opt,name=max_streams,json=maxStreams,proto3" json:"max_streams,omitempty"`
	unknownFields protoimpl.UnknownFields
	sizeCache     protoimpl.SizeCache
}

func (x *MuxSettings) Reset() {
	*x = MuxSettings{}
	mi := &file_wire_proto_msgTypes[0]
	ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
	ms.StoreMessageInfo(mi)
}

func (x *MuxSettings) String() string {
	return protoimpl.X.MessageStringOf(x)
}

func (*MuxSettings) ProtoMessage() {}

func (x *MuxSettings) ProtoReflect() protoreflect.Message {
	mi := &file_wire_proto_msgTypes[0]
	if x != nil {
		ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
		if ms.LoadMessageInfo() == nil {
			ms.StoreMessageInfo(mi)
		}
		return ms
	}
	return mi.MessageOf(x)
}

// Deprecated: Use MuxSettings.ProtoReflect.Descriptor instead.
func (*MuxSettings) Descriptor() ([]byte, []int) {
	return file_wire_proto_rawDescGZIP(), []int{0}
}

func (x *MuxSettings) GetMaxStreams() uint64 {
	if x != nil {
		return x.MaxStreams
	}
	return 0
}

// StreamReset is QUIC's RESET_STREAM over TCP: FRAME_TYPE_STREAM_RESET,
// on the mux control stream.
type StreamReset struct {
	state protoimpl.MessageState `protogen:"open.v1"`
	// The yamux stream ID. Required (not 0, not 1: the mux control stream
	// is never reset).
	StreamId uint32 `protobuf:"varint,1,opt,name=stream_id,json=streamId,proto3" json:"stream_id,omitempty"`
	// A StreamError; other values below 2^62 are kept, as QUIC keeps them.
	Code          uint64 `protobuf:"varint,2,opt,name=code,proto3" json:"code,omitempty"`
	unknownFields protoimpl.UnknownFields
	sizeCache     protoimpl.SizeCache
}

func (x *StreamReset) Reset() {
	*x = StreamReset{}
	mi := &file_wire_proto_msgTypes[1]
	ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
	ms.StoreMessageInfo(mi)
}

func (x *StreamReset) String() string {
	return protoimpl.X.MessageStringOf(x)
}

func (*StreamReset) ProtoMessage() {}

func (x *StreamReset) ProtoReflect() protoreflect.Message {
	mi := &file_wire_proto_msgTypes[1]
	if x != nil {
		ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
		if ms.LoadMessageInfo() == nil {
			ms.StoreMessageInfo(mi)
		}
		return ms
	}
	return mi.MessageOf(x)
}

// Deprecated: Use StreamReset.ProtoReflect.Descriptor instead.
func (*StreamReset) Descriptor() ([]byte, []int) {
	return file_wire_proto_rawDescGZIP(), []int{1}
}

func (x *StreamReset) GetStreamId() uint32 {
	if x != nil {
		return x.StreamId
	}
	return 0
}

func (x *StreamReset) GetCode() uint64 {
	if x != nil {
		return x.Code
	}
	return 0
}

// StopSending is QUIC's STOP_SENDING over TCP: FRAME_TYPE_STOP_SENDING.
type StopSending struct {
	state protoimpl.MessageState `protogen:"open.v1"`
	// As in StreamReset.
	StreamId uint32 `protobuf:"varint,1,opt,name=stream_id,json=streamId,proto3" json:"stream_id,omitempty"`
	// As in StreamReset.
	Code          uint64 `protobuf:"varint,2,opt,name=code,proto3" json:"code,omitempty"`
	unknownFields protoimpl.UnknownFields
	sizeCache     protoimpl.SizeCache
}

func (x *StopSending) Reset() {
	*x = StopSending{}
	mi := &file_wire_proto_msgTypes[2]
	ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
	ms.StoreMessageInfo(mi)
}

func (x *StopSending) String() string {
	return protoimpl.X.MessageStringOf(x)
}

func (*StopSending) ProtoMessage() {}

func (x *StopSending) ProtoReflect() protoreflect.Message {
	mi := &file_wire_proto_msgTypes[2]
	if x != nil {
		ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
		if ms.LoadMessageInfo() == nil {
			ms.StoreMessageInfo(mi)
		}
		return ms
	}
	return mi.MessageOf(x)
}

// Deprecated: Use StopSending.ProtoReflect.Descriptor instead.
func (*StopSending) Descriptor() ([]byte, []int) {
	return file_wire_proto_rawDescGZIP(), []int{2}
}

func (x *StopSending) GetStreamId() uint32 {
	if x != nil {
		return x.StreamId
	}
	return 0
}

func (x *StopSending) GetCode() uint64 {
	if x != nil {
		return x.Code
	}
	return 0
}

// ResetAck answers a StreamReset: FRAME_TYPE_RESET_ACK. Only then does the
// resetting side send the stream's FIN.
type ResetAck struct {
	state protoimpl.MessageState `protogen:"open.v1"`
	// As in StreamReset.
	StreamId      uint32 `protobuf:"varint,1,opt,name=stream_id,json=streamId,proto3" json:"stream_id,omitempty"`
	unknownFields protoimpl.UnknownFields
	sizeCache     protoimpl.SizeCache
}

func (x *ResetAck) Reset() {
	*x = ResetAck{}
	mi := &file_wire_proto_msgTypes[3]
	ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
	ms.StoreMessageInfo(mi)
}

func (x *ResetAck) String() string {
	return protoimpl.X.MessageStringOf(x)
}

func (*ResetAck) ProtoMessage() {}

func (x *ResetAck) ProtoReflect() protoreflect.Message {
	mi := &file_wire_proto_msgTypes[3]
	if x != nil {
		ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
		if ms.LoadMessageInfo() == nil {
			ms.StoreMessageInfo(mi)
		}
		return ms
	}
	return mi.MessageOf(x)
}

// Deprecated: Use ResetAck.ProtoReflect.Descriptor instead.
func (*ResetAck) Descriptor() ([]byte, []int) {
	return file_wire_proto_rawDescGZIP(), []int{3}
}

func (x *ResetAck) GetStreamId() uint32 {
	if x != nil {
		return x.StreamId
	}
	return 0
}

// Close is QUIC's CONNECTION_CLOSE over TCP: FRAME_TYPE_CLOSE, the last
// frame its sender writes.
type Close struct {
	state protoimpl.MessageState `protogen:"open.v1"`
	// A Code (0 for an ordinary close); at most 255.
	Code uint32 `protobuf:"varint,1,opt,name=code,proto3" json:"code,omitempty"`
	// "reason: message", as in CONNECTION_CLOSE. At most 1024 bytes.
	Reason        string `protobuf:"bytes,2,opt,name=reason,proto3" json:"reason,omitempty"`
	unknownFields protoimpl.UnknownFields
	sizeCache     protoimpl.SizeCache
}

func (x *Close) Reset() {
	*x = Close{}
	mi := &file_wire_proto_msgTypes[4]
	ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
	ms.StoreMessageInfo(mi)
}

func (x *Close) String() string {
	return protoimpl.X.MessageStringOf(x)
}

func (*Close) ProtoMessage() {}

func (x *Close) ProtoReflect() protoreflect.Message {
	mi := &file_wire_proto_msgTypes[4]
	if x != nil {
		ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
		if ms.LoadMessageInfo() == nil {
			ms.StoreMessageInfo(mi)
		}
		return ms
	}
	return mi.MessageOf(x)
}

// Deprecated: Use Close.ProtoReflect.Descriptor instead.
func (*Close) Descriptor() ([]byte, []int) {
	return file_wire_proto_rawDescGZIP(), []int{4}
}

func (x *Close) GetCode() uint32 {
	if x != nil {
		return x.Code
	}
	return 0
}

func (x *Close) GetReason() string {
	if x != nil {
		return x.Reason
	}
	return ""
}

// Hello opens a session: FRAME_TYPE_HELLO, client to relay, the first
// frame on the control stream.
type Hello struct {
	state protoimpl.MessageState `protogen:"open.v1"`
	// The protocol version the client speaks: 1. Required.
	Version uint32 `protobuf:"varint,1,opt,name=version,proto3" json:"version,omitempty"`
	// "agent" or "connector". Required, at most 128 bytes.
	Role string `protobuf:"bytes,2,opt,name=role,proto3" json:"role,omitempty"`
	// The client's token (a JWT). At most 1 MiB here; a relay caps it lower
	// (8 KiB by default) and refuses a larger one as unauthenticated.
	Token string `protobuf:"bytes,3,opt,name=token,proto3" json:"token,omitempty"`
	// What a connector serves; an agent sends none. At most 4096. The
	// upstream address is not sent: the relay never dials.
	Services []*Binding `protobuf:"bytes,4,rep,name=services,proto3" json:"services,omitempty"`
	// Free-form software name and version, for the relay's logs. At most
	// 256 bytes.
	Client string `protobuf:"bytes,5,opt,name=client,proto3" json:"client,omitempty"`
	// Optional parts of the protocol the client knows, so that the relay
	// sends it frames that version 1 does not have only when it asked:
	// "policy" (a connector that decides statements and requests itself
	// and wants Policy frames), "dial_ack" (a connector that answers a
	// Dial with ack set with a DialAck), "keepalive" (a client that sends
	// a packet at least once a second; see rule 7). Unknown features are
	// ignored. At most 64, each a valid name.
	Features      []string `protobuf:"bytes,6,rep,name=features,proto3" json:"features,omitempty"`
	unknownFields protoimpl.UnknownFields
	sizeCache     protoimpl.SizeCache
}

func (x *Hello) Reset() {
	*x = Hello{}
	mi := &file_wire_proto_msgTypes[5]
	ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
	ms.StoreMessageInfo(mi)
}

func (x *Hello) String() string {
	return protoimpl.X.MessageStringOf(x)
}

func (*Hello) ProtoMessage() {}

func (x *Hello) ProtoReflect() protoreflect.Message {
	mi := &file_wire_proto_msgTypes[5]
	if x != nil {
		ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
		if ms.LoadMessageInfo() == nil {
			ms.StoreMessageInfo(mi)
		}
		return ms
	}
	return mi.MessageOf(x)
}

// Deprecated: Use Hello.ProtoReflect.Descriptor instead.
func (*Hello) Descriptor() ([]byte, []int) {
	return file_wire_proto_rawDescGZIP(), []int{5}
}

func (x *Hello) GetVersion() uint32 {
	if x != nil {
		return x.Version
	}
	return 0
}

func (x *Hello) GetRole() string {
	if x != nil {
		return x.Role
	}
	return ""
}

func (x *Hello) GetToken() string {
	if x != nil {
		return x.Token
	}
	return ""
}

func (x *Hello) GetServices() []*Binding {
	if x != nil {
		return x.Services
	}
	return nil
}

func (x *Hello) GetClient() string {
	if x != nil {
		return x.Client
	}
	return ""
}

func (x *Hello) GetFeatures() []string {
	if x != nil {
		return x.Features
	}
	return nil
}

// Welcome accepts a session: FRAME_TYPE_WELCOME, relay to client.
type Welcome struct {
	state protoimpl.MessageState `protogen:"open.v1"`
	// The session's ID, for logs. Required, at most 128 bytes.
	Session string `protobuf:"bytes,1,opt,name=session,proto3" json:"session,omitempty"`
	// Who the relay says the client is. Required.
	Identity *Identity `protobuf:"bytes,2,opt,name=identity,proto3" json:"identity,omitempty"`
	// An agent's catalog: the bindings policy lets it open, sorted by name.
	// At most 4096.
	Catalog []*Binding `protobuf:"bytes,3,rep,name=catalog,proto3" json:"catalog,omitempty"`
	// What the relay accepts, so that a client can stay inside it.
	Limits *Limits `protobuf:"bytes,4,opt,name=limits,proto3" json:"limits,omitempty"`
	// When the session's token expires, in milliseconds since the Unix
	// epoch; 0 when unknown. At most 2^53. The relay ends the session with
	// a Goaway then, unless a Refresh came first.
	ExpiresUnixMs uint64 `protobuf:"varint,5,opt,name=expires_unix_ms,json=expiresUnixMs,proto3" json:"expires_unix_ms,omitempty"`
	unknownFields protoimpl.UnknownFields
	sizeCache     protoimpl.SizeCache
}

func (x *Welcome) Reset() {
	*x = Welcome{}
	mi := &file_wire_proto_msgTypes[6]
	ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
	ms.StoreMessageInfo(mi)
}

func (x *Welcome) String() string {
	return protoimpl.X.MessageStringOf(x)
}

func (*Welcome) ProtoMessage() {}

func (x *Welcome) ProtoReflect() protoreflect.Message {
	mi := &file_wire_proto_msgTypes[6]
	if x != nil {
		ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
		if ms.LoadMessageInfo() == nil {
			ms.StoreMessageInfo(mi)
		}
		return ms
	}
	return mi.MessageOf(x)
}

// Deprecated: Use Welcome.ProtoReflect.Descriptor instead.
func (*Welcome) Descriptor() ([]byte, []int) {
	return file_wire_proto_rawDescGZIP(), []int{6}
}

func (x *Welcome) GetSession() string {
	if x != nil {
		return x.Session
	}
	return ""
}

func (x *Welcome) GetIdentity() *Identity {
	if x != nil {
		return x.Identity
	}
	return nil
}

func (x *Welcome) GetCatalog() []*Binding {
	if x != nil {
		return x.Catalog
	}
	return nil
}

func (x *Welcome) GetLimits() *Limits {
	if x != nil {
		return x.Limits
	}
	return nil
}

func (x *Welcome) GetExpiresUnixMs() uint64 {
	if x != nil {
		return x.ExpiresUnixMs
	}
	return 0
}

// Reject refuses a Hello or a Refresh: FRAME_TYPE_REJECT, relay to
// client.
type Reject struct {
	state protoimpl.MessageState `protogen:"open.v1"`
	// Why. Never CODE_OK.
	Code Code `protobuf:"varint,1,opt,name=code,proto3,enum=postern.wire.v1.Code" json:"code,omitempty"`
	// A stable snake_case reason a program can branch on, e.g.
	// "token_expired". At most 128 bytes.
	Reason string `protobuf:"bytes,2,opt,name=reason,proto3" json:"reason,omitempty"`
	// For people. At most 4096 bytes.
	Message       string `protobuf:"bytes,3,opt,name=message,proto3" json:"message,omitempty"`
	unknownFields protoimpl.UnknownFields
	sizeCache     protoimpl.SizeCache
}

func (x *Reject) Reset() {
	*x = Reject{}
	mi := &file_wire_proto_msgTypes[7]
	ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
	ms.StoreMessageInfo(mi)
}

func (x *Reject) String() string {
	return protoimpl.X.MessageStringOf(x)
}

func (*Reject) ProtoMessage() {}

func (x *Reject) ProtoReflect() protoreflect.Message {
	mi := &file_wire_proto_msgTypes[7]
	if x != nil {
		ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
		if ms.LoadMessageInfo() == nil {
			ms.StoreMessageInfo(mi)
		}
		return ms
	}
	return mi.MessageOf(x)
}

// Deprecated: Use Reject.ProtoReflect.Descriptor instead.
func (*Reject) Descriptor() ([]byte, []int) {
	return file_wire_proto_rawDescGZIP(), []int{7}
}

func (x *Reject) GetCode() Code {
	if x != nil {
		return x.Code
	}
	return Code_CODE_OK
}

func (x *Reject) GetReason() string {
	if x != nil {
		return x.Reason
	}
	return ""
}

func (x *Reject) GetMessage() string {
	if x != nil {
		return x.Message
	}
	return ""
}

// Catalog replaces an agent's catalog: FRAME_TYPE_CATALOG, relay to agent,
// when policy is reloaded or connectors bring or take bindings.
type Catalog struct {
	state protoimpl.MessageState `protogen:"open.v1"`
	// The whole catalog, sorted by name. At most 4096.
	Bindings      []*Binding `protobuf:"bytes,1,rep,name=bindings,proto3" json:"bindings,omitempty"`
	unknownFields protoimpl.UnknownFields
	sizeCache     protoimpl.SizeCache
}

func (x *Catalog) Reset() {
	*x = Catalog{}
	mi := &file_wire_proto_msgTypes[8]
	ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
	ms.StoreMessageInfo(mi)
}

func (x *Catalog) String() string {
	return protoimpl.X.MessageStringOf(x)
}

func (*Catalog) ProtoMessage() {}

func (x *Catalog) ProtoReflect() protoreflect.Message {
	mi := &file_wire_proto_msgTypes[8]
	if x != nil {
		ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
		if ms.LoadMessageInfo() == nil {
			ms.StoreMessageInfo(mi)
		}
		return ms
	}
	return mi.MessageOf(x)
}

// Deprecated: Use Catalog.ProtoReflect.Descriptor instead.
func (*Catalog) Descriptor() ([]byte, []int) {
	return file_wire_proto_rawDescGZIP(), []int{8}
}

func (x *Catalog) GetBindings() []*Binding {
	if x != nil {
		return x.Bindings
	}
	return nil
}

// Refresh presents a fresh token on a live session: FRAME_TYPE_REFRESH,
// client to relay. Its subject must be the session's.
type Refresh struct {
	state protoimpl.MessageState `protogen:"open.v1"`
	// Required, at most 1 MiB (a relay caps it lower, as in Hello).
	Token         string `protobuf:"bytes,1,opt,name=token,proto3" json:"token,omitempty"`
	unknownFields protoimpl.UnknownFields
	sizeCache     protoimpl.SizeCache
}

func (x *Refresh) Reset() {
	*x = Refresh{}
	mi := &file_wire_proto_msgTypes[9]
	ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
	ms.StoreMessageInfo(mi)
}

func (x *Refresh) String() string {
	return protoimpl.X.MessageStringOf(x)
}

func (*Refresh) ProtoMessage() {}

func (x *Refresh) ProtoReflect() protoreflect.Message {
	mi := &file_wire_proto_msgTypes[9]
	if x != nil {
		ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
		if ms.LoadMessageInfo() == nil {
			ms.StoreMessageInfo(mi)
		}
		return ms
	}
	return mi.MessageOf(x)
}

// Deprecated: Use Refresh.ProtoReflect.Descriptor instead.
func (*Refresh) Descriptor() ([]byte, []int) {
	return file_wire_proto_rawDescGZIP(), []int{9}
}

func (x *Refresh) GetToken() string {
	if x != nil {
		return x.Token
	}
	return ""
}

// Refreshed accepts a Refresh: FRAME_TYPE_REFRESHED, relay to client.
type Refreshed struct {
	state protoimpl.MessageState `protogen:"open.v1"`
	// The new token's expiry, as in Welcome.
	ExpiresUnixMs uint64 `protobuf:"varint,1,opt,name=expires_unix_ms,json=expiresUnixMs,proto3" json:"expires_unix_ms,omitempty"`
	unknownFields protoimpl.UnknownFields
	sizeCache     protoimpl.SizeCache
}

func (x *Refreshed) Reset() {
	*x = Refreshed{}
	mi := &file_wire_proto_msgTypes[10]
	ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
	ms.StoreMessageInfo(mi)
}

func (x *Refreshed) String() string {
	return protoimpl.X.MessageStringOf(x)
}

func (*Refreshed) ProtoMessage() {}

func (x *Refreshed) ProtoReflect() protoreflect.Message {
	mi := &file_wire_proto_msgTypes[10]
	if x != nil {
		ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
		if ms.LoadMessageInfo() == nil {
			ms.StoreMessageInfo(mi)
		}
		return ms
	}
	return mi.MessageOf(x)
}

// Deprecated: Use Refreshed.ProtoReflect.Descriptor instead.
func (*Refreshed) Descriptor() ([]byte, []int) {
	return file_wire_proto_rawDescGZIP(), []int{10}
}

func (x *Refreshed) GetExpiresUnixMs() uint64 {
	if x != nil {
		return x.ExpiresUnixMs
	}
	return 0
}

// Goaway says why a session ends: FRAME_TYPE_GOAWAY, either direction,
// followed by the connection's close.
type Goaway struct {
	state protoimpl.MessageState `protogen:"open.v1"`
	// Why; as in Reject, but CODE_OK is allowed (an ordinary end).
	Code Code `protobuf:"varint,1,opt,name=code,proto3,enum=postern.wire.v1.Code" json:"code,omitempty"`
	// As in Reject.
	Reason string `protobuf:"bytes,2,opt,name=reason,proto3" json:"reason,omitempty"`
	// As in Reject.
	Message       string `protobuf:"bytes,3,opt,name=message,proto3" json:"message,omitempty"`
	unknownFields protoimpl.UnknownFields
	sizeCache     protoimpl.SizeCache
}

func (x *Goaway) Reset() {
	*x = Goaway{}
	mi := &file_wire_proto_msgTypes[11]
	ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
	ms.StoreMessageInfo(mi)
}

func (x *Goaway) String() string {
	return protoimpl.X.MessageStringOf(x)
}

func (*Goaway) ProtoMessage() {}

func (x *Goaway) ProtoReflect() protoreflect.Message {
	mi := &file_wire_proto_msgTypes[11]
	if x != nil {
		ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
		if ms.LoadMessageInfo() == nil {
			ms.StoreMessageInfo(mi)
		}
		return ms
	}
	return mi.MessageOf(x)
}

// Deprecated: Use Goaway.ProtoReflect.Descriptor instead.
func (*Goaway) Descriptor() ([]byte, []int) {
	return file_wire_proto_rawDescGZIP(), []int{11}
}

func (x *Goaway) GetCode() Code {
	if x != nil {
		return x.Code
	}
	return Code_CODE_OK
}

func (x *Goaway) GetReason() string {
	if x != nil {
		return x.Reason
	}
	return ""
}

func (x *Goaway) GetMessage() string {
	if x != nil {
		return x.Message
	}
	return ""
}

// Policy replaces a connector's policy set: FRAME_TYPE_POLICY, relay to
// connector, right after the Welcome and again whenever the relay's
// policies change. The connector parses sources, in order, into one set
// (an @id is unique across them) and decides every statement and HTTP
// request through the relay's binding streams with it. A set that fails
// to parse, or to validate against the declarations, leaves the
// connector with no set, and a connector with no set refuses every
// statement and request (fail closed), as it does until the first
// Policy arrives.
type Policy struct {
	state protoimpl.MessageState `protogen:"open.v1"`
	// Increases with every set the relay sends during its life (the first
	// is 1), so that logs and audit events tell sets apart. Required. A
	// connector applies the frames in the order they arrive.
	Version uint64 `protobuf:"varint,1,opt,name=version,proto3" json:"version,omitempty"`
	// The SHA-256 of the set's content (sources and declarations), in
	// lower-case hex, for comparing the sets of two relays. 64 bytes.
	// Required.
	Hash string `protobuf:"bytes,2,opt,name=hash,proto3" json:"hash,omitempty"`
	// The policy documents, in the order the relay loaded them. At most
	// 4096; the frame cap (4 MiB from relay to client) bounds their text.
	// None is a set that denies everything.
	Sources []*PolicySource `protobuf:"bytes,3,rep,name=sources,proto3" json:"sources,omitempty"`
	// What the relay validated the set against; absent when the relay did
	// not validate it, and the connector then only parses it.
	Declarations *PolicyDeclarations `protobuf:"bytes,4,opt,name=declarations,proto3" json:"declarations,omitempty"`
	// When not empty, the relay could not send its set (e.g. it is larger
	// than a frame): sources is then empty, and the connector holds no
	// set. For people, at most 4096 bytes.
	Withheld      string `protobuf:"bytes,5,opt,name=withheld,proto3" json:"withheld,omitempty"`
	unknownFields protoimpl.UnknownFields
	sizeCache     protoimpl.SizeCache
}

func (x *Policy) Reset() {
	*x = Policy{}
	mi := &file_wire_proto_msgTypes[12]
	ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
	ms.StoreMessageInfo(mi)
}

func (x *Policy) String() string {
	return protoimpl.X.MessageStringOf(x)
}

func (*Policy) ProtoMessage() {}

func (x *Policy) ProtoReflect() protoreflect.Message {
	mi := &file_wire_proto_msgTypes[12]
	if x != nil {
		ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
		if ms.LoadMessageInfo() == nil {
			ms.StoreMessageInfo(mi)
		}
		return ms
	}
	return mi.MessageOf(x)
}

// Deprecated: Use Policy.ProtoReflect.Descriptor instead.
func (*Policy) Descriptor() ([]byte, []int) {
	return file_wire_proto_rawDescGZIP(), []int{12}
}

func (x *Policy) GetVersion() uint64 {
	if x != nil {
		return x.Version
	}
	return 0
}

func (x *Policy) GetHash() string {
	if x != nil {
		return x.Hash
	}
	return ""
}

func (x *Policy) GetSources() []*PolicySource {
	if x != nil {
		return x.Sources
	}
	return nil
}

func (x *Policy) GetDeclarations() *PolicyDeclarations {
	if x != nil {
		return x.Declarations
	}
	return nil
}

func (x *Policy) GetWithheld() string {
	if x != nil {
		return x.Withheld
	}
	return ""
}

// PolicySource is one Cedar policy document of a Policy.
type PolicySource struct {
	state protoimpl.MessageState `protogen:"open.v1"`
	// The document's name, as the relay loaded it ("staging.cedar"), for
	// positions in errors. Required, at most 4096 bytes.
	Filename string `protobuf:"bytes,1,opt,name=filename,proto3" json:"filename,omitempty"`
	// The Cedar text, UTF-8.
	Text          string `protobuf:"bytes,2,opt,name=text,proto3" json:"text,omitempty"`
	unknownFields protoimpl.UnknownFields
	sizeCache     protoimpl.SizeCache
}

func (x *PolicySource) Reset() {
	*x = PolicySource{}
	mi := &file_wire_proto_msgTypes[13]
	ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
	ms.StoreMessageInfo(mi)
}

func (x *PolicySource) String() string {
	return protoimpl.X.MessageStringOf(x)
}

func (*PolicySource) ProtoMessage() {}

func (x *PolicySource) ProtoReflect() protoreflect.Message {
	mi := &file_wire_proto_msgTypes[13]
	if x != nil {
		ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
		if ms.LoadMessageInfo() == nil {
			ms.StoreMessageInfo(mi)
		}
		return ms
	}
	return mi.MessageOf(x)
}

// Deprecated: Use PolicySource.ProtoReflect.Descriptor instead.
func (*PolicySource) Descriptor() ([]byte, []int) {
	return file_wire_proto_rawDescGZIP(), []int{13}
}

func (x *PolicySource) GetFilename() string {
	if x != nil {
		return x.Filename
	}
	return ""
}

func (x *PolicySource) GetText() string {
	if x != nil {
		return x.Text
	}
	return ""
}

// PolicyDeclarations are what a relay validated its policies against
// beyond the built-in schema (policy.ValidateOptions).
type PolicyDeclarations struct {
	state protoimpl.MessageState `protogen:"open.v1"`
	// Token attributes policies may read: name -> Cedar type ("String",
	// "Set<String>", ...). At most 4096 entries, names at most 128 bytes,
	// types at most 4096.
	PrincipalAttributes map[string]string `protobuf:"bytes,1,rep,name=principal_attributes,json=principalAttributes,proto3" json:"principal_attributes,omitempty" protobuf_key:"bytes,1,opt,name=key" protobuf_val:"bytes,2,opt,name=value"`
	// Keys of context.details. At most 4096, each at most 128 bytes.
	DetailKeys []string `protobuf:"bytes,2,rep,name=detail_keys,json=detailKeys,proto3" json:"detail_keys,omitempty"`
	// Actions besides the built-in hierarchy. At most 4096, each at most
	// 128 bytes.
	Actions       []string `protobuf:"bytes,3,rep,name=actions,proto3" json:"actions,omitempty"`
	unknownFields protoimpl.UnknownFields
	sizeCache     protoimpl.SizeCache
}

func (x *PolicyDeclarations) Reset() {
	*x = PolicyDeclarations{}
	mi := &file_wire_proto_msgTypes[14]
	ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
	ms.StoreMessageInfo(mi)
}

func (x *PolicyDeclarations) String() string {
	return protoimpl.X.MessageStringOf(x)
}

func (*PolicyDeclarations) ProtoMessage() {}

func (x *PolicyDeclarations) ProtoReflect() protoreflect.Message {
	mi := &file_wire_proto_msgTypes[14]
	if x != nil {
		ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
		if ms.LoadMessageInfo() == nil {
			ms.StoreMessageInfo(mi)
		}
		return ms
	}
	return mi.MessageOf(x)
}

// Deprecated: Use PolicyDeclarations.ProtoReflect.Descriptor instead.
func (*PolicyDeclarations) Descriptor() ([]byte, []int) {
	return file_wire_proto_rawDescGZIP(), []int{14}
}

func (x *PolicyDeclarations) GetPrincipalAttributes() map[string]string {
	if x != nil {
		return x.PrincipalAttributes
	}
	return nil
}

func (x *PolicyDeclarations) GetDetailKeys() []string {
	if x != nil {
		return x.DetailKeys
	}
	return nil
}

func (x *PolicyDeclarations) GetActions() []string {
	if x != nil {
		return x.Actions
	}
	return nil
}

// Open starts a binding stream: FRAME_TYPE_OPEN, agent to relay. Raw bytes
// may follow it at once (see the ordering rules).
type Open struct {
	state protoimpl.MessageState `protogen:"open.v1"`
	// The binding's name. Required, a valid name.
	Binding string `protobuf:"bytes,1,opt,name=binding,proto3" json:"binding,omitempty"`
	// What the agent means to do; empty means "connect". A valid name when
	// set. It can only narrow the open: the relay always decides the open
	// itself, and a named action must be allowed as well. Statements and
	// requests are decided by the connector from its own parse, never from
	// this field.
	Action string `protobuf:"bytes,2,opt,name=action,proto3" json:"action,omitempty"`
	// Request details handed to policy as context. At most 64.
	Details []*Detail `protobuf:"bytes,3,rep,name=details,proto3" json:"details,omitempty"`
	// The agent's first bytes follow this Open at once, in the same write
	// (mesh.Client.DialEarly): it reads the Result with the first reply
	// instead of waiting for it before it sends. A connector may then read
	// those bytes before it answers (see Dial.early).
	Early bool `protobuf:"varint,4,opt,name=early,proto3" json:"early,omitempty"`
	// The W3C trace context of the agent's open (see TraceContext); unset
	// when the agent's context carries no span.
	Trace         *TraceContext `protobuf:"bytes,5,opt,name=trace,proto3" json:"trace,omitempty"`
	unknownFields protoimpl.UnknownFields
	sizeCache     protoimpl.SizeCache
}

func (x *Open) Reset() {
	*x = Open{}
	mi := &file_wire_proto_msgTypes[15]
	ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
	ms.StoreMessageInfo(mi)
}

func (x *Open) String() string {
	return protoimpl.X.MessageStringOf(x)
}

func (*Open) ProtoMessage() {}

func (x *Open) ProtoReflect() protoreflect.Message {
	mi := &file_wire_proto_msgTypes[15]
	if x != nil {
		ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
		if ms.LoadMessageInfo() == nil {
			ms.StoreMessageInfo(mi)
		}
		return ms
	}
	return mi.MessageOf(x)
}

// Deprecated: Use Open.ProtoReflect.Descriptor instead.
func (*Open) Descriptor() ([]byte, []int) {
	return file_wire_proto_rawDescGZIP(), []int{15}
}

func (x *Open) GetBinding() string {
	if x != nil {
		return x.Binding
	}
	return ""
}

func (x *Open) GetAction() string {
	if x != nil {
		return x.Action
	}
	return ""
}

func (x *Open) GetDetails() []*Detail {
	if x != nil {
		return x.Details
	}
	return nil
}

func (x *Open) GetEarly() bool {
	if x != nil {
		return x.Early
	}
	return false
}

func (x *Open) GetTrace() *TraceContext {
	if x != nil {
		return x.Trace
	}
	return nil
}

// Dial starts a binding stream: FRAME_TYPE_DIAL, relay to connector, after
// the relay allowed an Open.
type Dial struct {
	state protoimpl.MessageState `protogen:"open.v1"`
	// The binding's name. Required, a valid name.
	Binding string `protobuf:"bytes,1,opt,name=binding,proto3" json:"binding,omitempty"`
	// The agent's session ID, for logs. At most 128 bytes.
	Session string `protobuf:"bytes,2,opt,name=session,proto3" json:"session,omitempty"`
	// The agent's verified identity. Required.
	Identity *Identity `protobuf:"bytes,3,opt,name=identity,proto3" json:"identity,omitempty"`
	// The action the relay authorized. At most 128 bytes.
	Action string `protobuf:"bytes,4,opt,name=action,proto3" json:"action,omitempty"`
	// The Open's details. At most 64.
	Details []*Detail `protobuf:"bytes,5,rep,name=details,proto3" json:"details,omitempty"`
	// The agent's address as the relay saw it, "ip:port". At most 256
	// bytes.
	Source string `protobuf:"bytes,6,opt,name=source,proto3" json:"source,omitempty"`
	// The Open's early: the agent's first bytes follow this Dial without
	// waiting for a Result. A postgres connector then reads the agent's
	// first startup-phase message before it logs in upstream and answers,
	// so that a login it refuses is a Result; without early it answers
	// CODE_OK first (the agent sends nothing before), and a login that
	// fails afterwards is a PostgreSQL FATAL error on the stream.
	Early bool `protobuf:"varint,7,opt,name=early,proto3" json:"early,omitempty"`
	// The relay waits for a DialAck before the Result: answer one as soon
	// as this Dial is read. Set only for connectors whose Hello.features
	// lists "dial_ack".
	Ack bool `protobuf:"varint,8,opt,name=ack,proto3" json:"ack,omitempty"`
	// The W3C trace context of the relay's routing of the open, a child of
	// the Open's (see TraceContext); unset when the Open carried none and
	// the relay does not trace.
	Trace         *TraceContext `protobuf:"bytes,9,opt,name=trace,proto3" json:"trace,omitempty"`
	unknownFields protoimpl.UnknownFields
	sizeCache     protoimpl.SizeCache
}

func (x *Dial) Reset() {
	*x = Dial{}
	mi := &file_wire_proto_msgTypes[16]
	ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
	ms.StoreMessageInfo(mi)
}

func (x *Dial) String() string {
	return protoimpl.X.MessageStringOf(x)
}

func (*Dial) ProtoMessage() {}

func (x *Dial) ProtoReflect() protoreflect.Message {
	mi := &file_wire_proto_msgTypes[16]
	if x != nil {
		ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
		if ms.LoadMessageInfo() == nil {
			ms.StoreMessageInfo(mi)
		}
		return ms
	}
	return mi.MessageOf(x)
}

// Deprecated: Use Dial.ProtoReflect.Descriptor instead.
func (*Dial) Descriptor() ([]byte, []int) {
	return file_wire_proto_rawDescGZIP(), []int{16}
}

func (x *Dial) GetBinding() string {
	if x != nil {
		return x.Binding
	}
	return ""
}

func (x *Dial) GetSession() string {
	if x != nil {
		return x.Session
	}
	return ""
}

func (x *Dial) GetIdentity() *Identity {
	if x != nil {
		return x.Identity
	}
	return nil
}

func (x *Dial) GetAction() string {
	if x != nil {
		return x.Action
	}
	return ""
}

func (x *Dial) GetDetails() []*Detail {
	if x != nil {
		return x.Details
	}
	return nil
}

func (x *Dial) GetSource() string {
	if x != nil {
		return x.Source
	}
	return ""
}

func (x *Dial) GetEarly() bool {
	if x != nil {
		return x.Early
	}
	return false
}

func (x *Dial) GetAck() bool {
	if x != nil {
		return x.Ack
	}
	return false
}

func (x *Dial) GetTrace() *TraceContext {
	if x != nil {
		return x.Trace
	}
	return nil
}

// TraceContext carries a W3C Trace Context (https://www.w3.org/TR/trace-context/)
// from one hop of an open to the next: agent to relay in Open.trace, relay
// to connector in Dial.trace; the connector sends it on to an HTTP upstream
// as the traceparent and tracestate headers. It is advisory: a peer that
// cannot parse it ignores it (as the W3C specification asks of a malformed
// traceparent header) and the open goes on; it never affects a decision.
type TraceContext struct {
	state protoimpl.MessageState `protogen:"open.v1"`
	// The traceparent header's value, "00-<32 hex trace-id>-<16 hex
	// parent-id>-<2 hex flags>". At most 128 bytes, printable ASCII.
	Traceparent string `protobuf:"bytes,1,opt,name=traceparent,proto3" json:"traceparent,omitempty"`
	// The tracestate header's value, vendor key=value pairs. At most 512
	// bytes, printable ASCII.
	Tracestate    string `protobuf:"bytes,2,opt,name=tracestate,proto3" json:"tracestate,omitempty"`
	unknownFields protoimpl.UnknownFields
	sizeCache     protoimpl.SizeCache
}

func (x *TraceContext) Reset() {
	*x = TraceContext{}
	mi := &file_wire_proto_msgTypes[17]
	ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
	ms.StoreMessageInfo(mi)
}

func (x *TraceContext) String() string {
	return protoimpl.X.MessageStringOf(x)
}

func (*TraceContext) ProtoMessage() {}

func (x *TraceContext) ProtoReflect() protoreflect.Message {
	mi := &file_wire_proto_msgTypes[17]
	if x != nil {
		ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
		if ms.LoadMessageInfo() == nil {
			ms.StoreMessageInfo(mi)
		}
		return ms
	}
	return mi.MessageOf(x)
}

// Deprecated: Use TraceContext.ProtoReflect.Descriptor instead.
func (*TraceContext) Descriptor() ([]byte, []int) {
	return file_wire_proto_rawDescGZIP(), []int{17}
}

func (x *TraceContext) GetTraceparent() string {
	if x != nil {
		return x.Traceparent
	}
	return ""
}

func (x *TraceContext) GetTracestate() string {
	if x != nil {
		return x.Tracestate
	}
	return ""
}

// Revoke says why the relay is cutting one of an agent's live binding
// streams: FRAME_TYPE_REVOKE, relay to agent, on the control stream, just
// before the relay resets the stream (both directions, and the
// connector's side) with STREAM_ERROR_REVOKED. The relay re-decides every
// live stream's open whenever its policies change and whenever the
// session's token is refreshed; a stream whose open is now denied is cut.
// Sent only to an agent whose Hello.features lists "revoke". The reset
// and this frame travel on different streams, so either may arrive
// first; an agent matches them by stream.
type Revoke struct {
	state protoimpl.MessageState `protogen:"open.v1"`
	// The QUIC stream ID of the binding stream being cut. Required (a
	// client-initiated bidirectional stream: ID mod 4 is 0).
	Stream uint64 `protobuf:"varint,1,opt,name=stream,proto3" json:"stream,omitempty"`
	// The binding the stream reaches. Required, a valid name.
	Binding string `protobuf:"bytes,2,opt,name=binding,proto3" json:"binding,omitempty"`
	// A stable snake_case reason: "policy" (policy now denies the open).
	// At most 128 bytes.
	Reason string `protobuf:"bytes,3,opt,name=reason,proto3" json:"reason,omitempty"`
	// For people. At most 4096 bytes.
	Message string `protobuf:"bytes,4,opt,name=message,proto3" json:"message,omitempty"`
	// The IDs of the policies that decided the denial. At most 4096, each
	// at most 1024 bytes.
	Policies      []string `protobuf:"bytes,5,rep,name=policies,proto3" json:"policies,omitempty"`
	unknownFields protoimpl.UnknownFields
	sizeCache     protoimpl.SizeCache
}

func (x *Revoke) Reset() {
	*x = Revoke{}
	mi := &file_wire_proto_msgTypes[18]
	ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
	ms.StoreMessageInfo(mi)
}

func (x *Revoke) String() string {
	return protoimpl.X.MessageStringOf(x)
}

func (*Revoke) ProtoMessage() {}

func (x *Revoke) ProtoReflect() protoreflect.Message {
	mi := &file_wire_proto_msgTypes[18]
	if x != nil {
		ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
		if ms.LoadMessageInfo() == nil {
			ms.StoreMessageInfo(mi)
		}
		return ms
	}
	return mi.MessageOf(x)
}

// Deprecated: Use Revoke.ProtoReflect.Descriptor instead.
func (*Revoke) Descriptor() ([]byte, []int) {
	return file_wire_proto_rawDescGZIP(), []int{18}
}

func (x *Revoke) GetStream() uint64 {
	if x != nil {
		return x.Stream
	}
	return 0
}

func (x *Revoke) GetBinding() string {
	if x != nil {
		return x.Binding
	}
	return ""
}

func (x *Revoke) GetReason() string {
	if x != nil {
		return x.Reason
	}
	return ""
}

func (x *Revoke) GetMessage() string {
	if x != nil {
		return x.Message
	}
	return ""
}

func (x *Revoke) GetPolicies() []string {
	if x != nil {
		return x.Policies
	}
	return nil
}

// DialAck says that a connector read a Dial and is dialing the upstream:
// FRAME_TYPE_DIAL_ACK, connector to relay, the first frame back on a
// binding stream whose Dial had ack set, before the Result. It carries
// nothing: its arrival is the message. The relay tells a live connector
// from a dead one by it within its ack bound, without waiting for the
// upstream. A connector may send it at most 1 ms late, together with a
// Result that was ready by then (ordering rule 6).
type DialAck struct {
	state         protoimpl.MessageState `protogen:"open.v1"`
	unknownFields protoimpl.UnknownFields
	sizeCache     protoimpl.SizeCache
}

func (x *DialAck) Reset() {
	*x = DialAck{}
	mi := &file_wire_proto_msgTypes[19]
	ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
	ms.StoreMessageInfo(mi)
}

func (x *DialAck) String() string {
	return protoimpl.X.MessageStringOf(x)
}

func (*DialAck) ProtoMessage() {}

func (x *DialAck) ProtoReflect() protoreflect.Message {
	mi := &file_wire_proto_msgTypes[19]
	if x != nil {
		ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
		if ms.LoadMessageInfo() == nil {
			ms.StoreMessageInfo(mi)
		}
		return ms
	}
	return mi.MessageOf(x)
}

// Deprecated: Use DialAck.ProtoReflect.Descriptor instead.
func (*DialAck) Descriptor() ([]byte, []int) {
	return file_wire_proto_rawDescGZIP(), []int{19}
}

// Result answers an Open (relay to agent) or a Dial (connector to relay):
// FRAME_TYPE_RESULT. CODE_OK is followed by raw bytes.
type Result struct {
	state protoimpl.MessageState `protogen:"open.v1"`
	// The outcome.
	Code Code `protobuf:"varint,1,opt,name=code,proto3,enum=postern.wire.v1.Code" json:"code,omitempty"`
	// A stable snake_case reason, e.g. "policy", "upstream_refused". At
	// most 128 bytes.
	Reason string `protobuf:"bytes,2,opt,name=reason,proto3" json:"reason,omitempty"`
	// For people. At most 4096 bytes.
	Message string `protobuf:"bytes,3,opt,name=message,proto3" json:"message,omitempty"`
	// The IDs of the policies that decided a denial. At most 4096, each at
	// most 1024 bytes.
	Policies []string `protobuf:"bytes,4,rep,name=policies,proto3" json:"policies,omitempty"`
	// Which connector serves the stream (relay to agent). At most 128
	// bytes.
	Connector     string `protobuf:"bytes,5,opt,name=connector,proto3" json:"connector,omitempty"`
	unknownFields protoimpl.UnknownFields
	sizeCache     protoimpl.SizeCache
}

func (x *Result) Reset() {
	*x = Result{}
	mi := &file_wire_proto_msgTypes[20]
	ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
	ms.StoreMessageInfo(mi)
}

func (x *Result) String() string {
	return protoimpl.X.MessageStringOf(x)
}

func (*Result) ProtoMessage() {}

func (x *Result) ProtoReflect() protoreflect.Message {
	mi := &file_wire_proto_msgTypes[20]
	if x != nil {
		ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
		if ms.LoadMessageInfo() == nil {
			ms.StoreMessageInfo(mi)
		}
		return ms
	}
	return mi.MessageOf(x)
}

// Deprecated: Use Result.ProtoReflect.Descriptor instead.
func (*Result) Descriptor() ([]byte, []int) {
	return file_wire_proto_rawDescGZIP(), []int{20}
}

func (x *Result) GetCode() Code {
	if x != nil {
		return x.Code
	}
	return Code_CODE_OK
}

func (x *Result) GetReason() string {
	if x != nil {
		return x.Reason
	}
	return ""
}

func (x *Result) GetMessage() string {
	if x != nil {
		return x.Message
	}
	return ""
}

func (x *Result) GetPolicies() []string {
	if x != nil {
		return x.Policies
	}
	return nil
}

func (x *Result) GetConnector() string {
	if x != nil {
		return x.Connector
	}
	return ""
}

// Identity is a verified identity, as the relay tells it to the client
// itself (Welcome) or to a connector (Dial).
type Identity struct {
	state protoimpl.MessageState `protogen:"open.v1"`
	// The token's subject. Required, at most 1 MiB.
	Subject string `protobuf:"bytes,1,opt,name=subject,proto3" json:"subject,omitempty"`
	// "agent" or "connector". At most 128 bytes.
	Role string `protobuf:"bytes,2,opt,name=role,proto3" json:"role,omitempty"`
	// The token's groups. At most 4096, each at most 128 bytes.
	Groups []string `protobuf:"bytes,3,rep,name=groups,proto3" json:"groups,omitempty"`
	// The token's free attributes, a JSON object passed through as is;
	// empty when there are none.
	Attributes    []byte `protobuf:"bytes,4,opt,name=attributes,proto3" json:"attributes,omitempty"`
	unknownFields protoimpl.UnknownFields
	sizeCache     protoimpl.SizeCache
}

func (x *Identity) Reset() {
	*x = Identity{}
	mi := &file_wire_proto_msgTypes[21]
	ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
	ms.StoreMessageInfo(mi)
}

func (x *Identity) String() string {
	return protoimpl.X.MessageStringOf(x)
}

func (*Identity) ProtoMessage() {}

func (x *Identity) ProtoReflect() protoreflect.Message {
	mi := &file_wire_proto_msgTypes[21]
	if x != nil {
		ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
		if ms.LoadMessageInfo() == nil {
			ms.StoreMessageInfo(mi)
		}
		return ms
	}
	return mi.MessageOf(x)
}

// Deprecated: Use Identity.ProtoReflect.Descriptor instead.
func (*Identity) Descriptor() ([]byte, []int) {
	return file_wire_proto_rawDescGZIP(), []int{21}
}

func (x *Identity) GetSubject() string {
	if x != nil {
		return x.Subject
	}
	return ""
}

func (x *Identity) GetRole() string {
	if x != nil {
		return x.Role
	}
	return ""
}

func (x *Identity) GetGroups() []string {
	if x != nil {
		return x.Groups
	}
	return nil
}

func (x *Identity) GetAttributes() []byte {
	if x != nil {
		return x.Attributes
	}
	return nil
}

// Binding describes a private service: an entry of an agent's catalog
// (Welcome, Catalog) or a service a connector advertises (Hello).
type Binding struct {
	state protoimpl.MessageState `protogen:"open.v1"`
	// Required, a valid name.
	Name string `protobuf:"bytes,1,opt,name=name,proto3" json:"name,omitempty"`
	// "tcp", "http" or "postgres". At most 128 bytes.
	Kind string `protobuf:"bytes,2,opt,name=kind,proto3" json:"kind,omitempty"`
	// E.g. "staging". At most 128 bytes.
	Environment string `protobuf:"bytes,3,opt,name=environment,proto3" json:"environment,omitempty"`
	// Labels policy can match, e.g. "pii". At most 4096, each at most 128
	// bytes.
	Labels []string `protobuf:"bytes,4,rep,name=labels,proto3" json:"labels,omitempty"`
	// For people. At most 4096 bytes.
	Description string `protobuf:"bytes,5,opt,name=description,proto3" json:"description,omitempty"`
	// Set only in an agent's catalog, by the relay: the agent's policy
	// permits no action under write or unclassified on this binding, so
	// every statement or request it sends that is not a read will be
	// refused. Only for "http" and "postgres" bindings. A hint (an MCP
	// tool's readOnlyHint), never a permission: the connector decides each
	// statement and request from its own parse regardless. Connectors never
	// set it, and a relay ignores it in a connector's Hello.
	ReadOnly      bool `protobuf:"varint,6,opt,name=read_only,json=readOnly,proto3" json:"read_only,omitempty"`
	unknownFields protoimpl.UnknownFields
	sizeCache     protoimpl.SizeCache
}

func (x *Binding) Reset() {
	*x = Binding{}
	mi := &file_wire_proto_msgTypes[22]
	ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
	ms.StoreMessageInfo(mi)
}

func (x *Binding) String() string {
	return protoimpl.X.MessageStringOf(x)
}

func (*Binding) ProtoMessage() {}

func (x *Binding) ProtoReflect() protoreflect.Message {
	mi := &file_wire_proto_msgTypes[22]
	if x != nil {
		ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
		if ms.LoadMessageInfo() == nil {
			ms.StoreMessageInfo(mi)
		}
		return ms
	}
	return mi.MessageOf(x)
}

// Deprecated: Use Binding.ProtoReflect.Descriptor instead.
func (*Binding) Descriptor() ([]byte, []int) {
	return file_wire_proto_rawDescGZIP(), []int{22}
}

func (x *Binding) GetName() string {
	if x != nil {
		return x.Name
	}
	return ""
}

func (x *Binding) GetKind() string {
	if x != nil {
		return x.Kind
	}
	return ""
}

func (x *Binding) GetEnvironment() string {
	if x != nil {
		return x.Environment
	}
	return ""
}

func (x *Binding) GetLabels() []string {
	if x != nil {
		return x.Labels
	}
	return nil
}

func (x *Binding) GetDescription() string {
	if x != nil {
		return x.Description
	}
	return ""
}

func (x *Binding) GetReadOnly() bool {
	if x != nil {
		return x.ReadOnly
	}
	return false
}

// Detail is one key/value detail of an open, handed to policy as context.
type Detail struct {
	state protoimpl.MessageState `protogen:"open.v1"`
	// Required, a valid name.
	Key string `protobuf:"bytes,1,opt,name=key,proto3" json:"key,omitempty"`
	// At most 4096 bytes.
	Value         string `protobuf:"bytes,2,opt,name=value,proto3" json:"value,omitempty"`
	unknownFields protoimpl.UnknownFields
	sizeCache     protoimpl.SizeCache
}

func (x *Detail) Reset() {
	*x = Detail{}
	mi := &file_wire_proto_msgTypes[23]
	ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
	ms.StoreMessageInfo(mi)
}

func (x *Detail) String() string {
	return protoimpl.X.MessageStringOf(x)
}

func (*Detail) ProtoMessage() {}

func (x *Detail) ProtoReflect() protoreflect.Message {
	mi := &file_wire_proto_msgTypes[23]
	if x != nil {
		ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
		if ms.LoadMessageInfo() == nil {
			ms.StoreMessageInfo(mi)
		}
		return ms
	}
	return mi.MessageOf(x)
}

// Deprecated: Use Detail.ProtoReflect.Descriptor instead.
func (*Detail) Descriptor() ([]byte, []int) {
	return file_wire_proto_rawDescGZIP(), []int{23}
}

func (x *Detail) GetKey() string {
	if x != nil {
		return x.Key
	}
	return ""
}

func (x *Detail) GetValue() string {
	if x != nil {
		return x.Value
	}
	return ""
}

// Limits are what a relay accepts, announced in its Welcome.
type Limits struct {
	state protoimpl.MessageState `protogen:"open.v1"`
	// Binding streams an agent may have open at once.
	MaxStreams uint64 `protobuf:"varint,1,opt,name=max_streams,json=maxStreams,proto3" json:"max_streams,omitempty"`
	// The largest frame payload the relay reads, in bytes.
	MaxFrameSize  uint64 `protobuf:"varint,2,opt,name=max_frame_size,json=maxFrameSize,proto3" json:"max_frame_size,omitempty"`
	unknownFields protoimpl.UnknownFields
	sizeCache     protoimpl.SizeCache
}

func (x *Limits) Reset() {
	*x = Limits{}
	mi := &file_wire_proto_msgTypes[24]
	ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
	ms.StoreMessageInfo(mi)
}

func (x *Limits) String() string {
	return protoimpl.X.MessageStringOf(x)
}

func (*Limits) ProtoMessage() {}

func (x *Limits) ProtoReflect() protoreflect.Message {
	mi := &file_wire_proto_msgTypes[24]
	if x != nil {
		ms := protoimpl.X.MessageStateOf(protoimpl.Pointer(x))
		if ms.LoadMessageInfo() == nil {
			ms.StoreMessageInfo(mi)
		}
		return ms
	}
	return mi.MessageOf(x)
}

// Deprecated: Use Limits.ProtoReflect.Descriptor instead.
func (*Limits) Descriptor() ([]byte, []int) {
	return file_wire_proto_rawDescGZIP(), []int{24}
}

func (x *Limits) GetMaxStreams() uint64 {
	if x != nil {
		return x.MaxStreams
	}
	return 0
}

func (x *Limits) GetMaxFrameSize() uint64 {
	if x != nil {
		return x.MaxFrameSize
	}
	return 0
}

var File_wire_proto protoreflect.FileDescriptor

const file_wire_proto_rawDesc = "" +
	"\n" +
	"\n" +
	"wire.proto\x12\x0fpostern.wire.v1\".\n" +
	"\vMuxSettings\x12\x1f\n" +
	"\vmax_streams\x18\x01 \x01(\x04R\n" +
	"maxStreams\">\n" +
	"\vStreamReset\x12\x1b\n" +
	"\tstream_id\x18\x01 \x01(\rR\bstreamId\x12\x12\n" +
	"\x04code\x18\x02 \x01(\x04R\x04code\">\n" +
	"\vStopSending\x12\x1b\n" +
	"\tstream_id\x18\x01 \x01(\rR\bstreamId\x12\x12\n" +
	"\x04code\x18\x02 \x01(\x04R\x04code\"'\n" +
	"\bResetAck\x12\x1b\n" +
	"\tstream_id\x18\x01 \x01(\rR\bstreamId\"3\n" +
	"\x05Close\x12\x12\n" +
	"\x04code\x18\x01 \x01(\rR\x04code\x12\x16\n" +
	"\x06reason\x18\x02 \x01(\tR\x06reason\"\xb5\x01\n" +
	"\x05Hello\x12\x18\n" +
	"\aversion\x18\x01 \x01(\rR\aversion\x12\x12\n" +
	"\x04role\x18\x02 \x01(\tR\x04role\x12\x14\n" +
	"\x05token\x18\x03 \x01(\tR\x05token\x124\n" +
	"\bservices\x18\x04 \x03(\v2\x18.postern.wire.v1.BindingR\bservices\x12\x16\n" +
	"\x06client\x18\x05 \x01(\tR\x06client\x12\x1a\n" +
	"\bfeatures\x18\x06 \x03(\tR\bfeatures\"\xe7\x01\n" +
	"\aWelcome\x12\x18\n" +
	"\asession\x18\x01 \x01(\tR\asession\x125\n" +
	"\bidentity\x18\x02 \x01(\v2\x19.postern.wire.v1.IdentityR\bidentity\x122\n" +
	"\acatalog\x18\x03 \x03(\v2\x18.postern.wire.v1.BindingR\acatalog\x12/\n" +
	"\x06limits\x18\x04 \x01(\v2\x17.postern.wire.v1.LimitsR\x06limits\x12&\n" +
	"\x0fexpires_unix_ms\x18\x05 \x01(\x04R\rexpiresUnixMs\"e\n" +
	"\x06Reject\x12)\n" +
	"\x04code\x18\x01 \x01(\x0e2\x15.postern.wire.v1.CodeR\x04code\x12\x16\n" +
	"\x06reason\x18\x02 \x01(\tR\x06reason\x12\x18\n" +
	"\amessage\x18\x03 \x01(\tR\amessage\"?\n" +
	"\aCatalog\x124\n" +
	"\bbindings\x18\x01 \x03(\v2\x18.postern.wire.v1.BindingR\bbindings\"\x1f\n" +
	"\aRefresh\x12\x14\n" +
	"\x05token\x18\x01 \x01(\tR\x05token\"3\n" +
	"\tRefreshed\x12&\n" +
	"\x0fexpires_unix_ms\x18\x01 \x01(\x04R\rexpiresUnixMs\"e\n" +
	"\x06Goaway\x12)\n" +
	"\x04code\x18\x01 \x01(\x0e2\x15.postern.wire.v1.CodeR\x04code\x12\x16\n" +
	"\x06reason\x18\x02 \x01(\tR\x06reason\x12\x18\n" +
	"\amessage\x18\x03 \x01(\tR\amessage\"\xd4\x01\n" +
	"\x06Policy\x12\x18\n" +
	"\aversion\x18\x01 \x01(\x04R\aversion\x12\x12\n" +
	"\x04hash\x18\x02 \x01(\tR\x04hash\x127\n" +
	"\asources\x18\x03 \x03(\v2\x1d.postern.wire.v1.PolicySourceR\asources\x12G\n" +
	"\fdeclarations\x18\x04 \x01(\v2#.postern.wire.v1.PolicyDeclarationsR\fdeclarations\x12\x1a\n" +
	"\bwithheld\x18\x05 \x01(\tR\bwithheld\">\n" +
	"\fPolicySource\x12\x1a\n" +
	"\bfilename\x18\x01 \x01(\tR\bfilename\x12\x12\n" +
	"\x04text\x18\x02 \x01(\tR\x04text\"\x88\x02\n" +
	"\x12PolicyDeclarations\x12o\n" +
	"\x14principal_attributes\x18\x01 \x03(\v2<.postern.wire.v1.PolicyDeclarations.PrincipalAttributesEntryR\x13principalAttributes\x12\x1f\n" +
	"\vdetail_keys\x18\x02 \x03(\tR\n" +
	"detailKeys\x12\x18\n" +
	"\aactions\x18\x03 \x03(\tR\aactions\x1aF\n" +
	"\x18PrincipalAttributesEntry\x12\x10\n" +
	"\x03key\x18\x01 \x01(\tR\x03key\x12\x14\n" +
	"\x05value\x18\x02 \x01(\tR\x05value:\x028\x01\"\xb6\x01\n" +
	"\x04Open\x12\x18\n" +
	"\abinding\x18\x01 \x01(\tR\abinding\x12\x16\n" +
	"\x06action\x18\x02 \x01(\tR\x06action\x121\n" +
	"\adetails\x18\x03 \x03(\v2\x17.postern.wire.v1.DetailR\adetails\x12\x14\n" +
	"\x05early\x18\x04 \x01(\bR\x05early\x123\n" +
	"\x05trace\x18\x05 \x01(\v2\x1d.postern.wire.v1.TraceContextR\x05trace\"\xb1\x02\n" +
	"\x04Dial\x12\x18\n" +
	"\abinding\x18\x01 \x01(\tR\abinding\x12\x18\n" +
	"\asession\x18\x02 \x01(\tR\asession\x125\n" +
	"\bidentity\x18\x03 \x01(\v2\x19.postern.wire.v1.IdentityR\bidentity\x12\x16\n" +
	"\x06action\x18\x04 \x01(\tR\x06action\x121\n" +
	"\adetails\x18\x05 \x03(\v2\x17.postern.wire.v1.DetailR\adetails\x12\x16\n" +
	"\x06source\x18\x06 \x01(\tR\x06source\x12\x14\n" +
	"\x05early\x18\a \x01(\bR\x05early\x12\x10\n" +
	"\x03ack\x18\b \x01(\bR\x03ack\x123\n" +
	"\x05trace\x18\t \x01(\v2\x1d.postern.wire.v1.TraceContextR\x05trace\"P\n" +
	"\fTraceContext\x12 \n" +
	"\vtraceparent\x18\x01 \x01(\tR\vtraceparent\x12\x1e\n" +
	"\n" +
	"tracestate\x18\x02 \x01(\tR\n" +
	"tracestate\"\x88\x01\n" +
	"\x06Revoke\x12\x16\n" +
	"\x06stream\x18\x01 \x01(\x04R\x06stream\x12\x18\n" +
	"\abinding\x18\x02 \x01(\tR\abinding\x12\x16\n" +
	"\x06reason\x18\x03 \x01(\tR\x06reason\x12\x18\n" +
	"\amessage\x18\x04 \x01(\tR\amessage\x12\x1a\n" +
	"\bpolicies\x18\x05 \x03(\tR\bpolicies\"\t\n" +
	"\aDialAck\"\x9f\x01\n" +
	"\x06Result\x12)\n" +
	"\x04code\x18\x01 \x01(\x0e2\x15.postern.wire.v1.CodeR\x04code\x12\x16\n" +
	"\x06reason\x18\x02 \x01(\tR\x06reason\x12\x18\n" +
	"\amessage\x18\x03 \x01(\tR\amessage\x12\x1a\n" +
	"\bpolicies\x18\x04 \x03(\tR\bpolicies\x12\x1c\n" +
	"\tconnector\x18\x05 \x01(\tR\tconnector\"p\n" +
	"\bIdentity\x12\x18\n" +
	"\asubject\x18\x01 \x01(\tR\asubject\x12\x12\n" +
	"\x04role\x18\x02 \x01(\tR\x04role\x12\x16\n" +
	"\x06groups\x18\x03 \x03(\tR\x06groups\x12\x1e\n" +
	"\n" +
	"attributes\x18\x04 \x01(\fR\n" +
	"attributes\"\xaa\x01\n" +
	"\aBinding\x12\x12\n" +
	"\x04name\x18\x01 \x01(\tR\x04name\x12\x12\n" +
	"\x04kind\x18\x02 \x01(\tR\x04kind\x12 \n" +
	"\venvironment\x18\x03 \x01(\tR\venvironment\x12\x16\n" +
	"\x06labels\x18\x04 \x03(\tR\x06labels\x12 \n" +
	"\vdescription\x18\x05 \x01(\tR\vdescription\x12\x1b\n" +
	"\tread_only\x18\x06 \x01(\bR\breadOnly\"0\n" +
	"\x06Detail\x12\x10\n" +
	"\x03key\x18\x01 \x01(\tR\x03key\x12\x14\n" +
	"\x05value\x18\x02 \x01(\tR\x05value\"O\n" +
	"\x06Limits\x12\x1f\n" +
	"\vmax_streams\x18\x01 \x01(\x04R\n" +
	"maxStreams\x12$\n" +
	"\x0emax_frame_size\x18\x02 \x01(\x04R\fmaxFrameSize*\xdc\x03\n" +
	"\tFrameType\x12\x1a\n" +
	"\x16FRAME_TYPE_UNSPECIFIED\x10\x00\x12\x14\n" +
	"\x10FRAME_TYPE_HELLO\x10\x01\x12\x16\n" +
	"\x12FRAME_TYPE_WELCOME\x10\x02\x12\x15\n" +
	"\x11FRAME_TYPE_REJECT\x10\x03\x12\x16\n" +
	"\x12FRAME_TYPE_CATALOG\x10\x04\x12\x16\n" +
	"\x12FRAME_TYPE_REFRESH\x10\x05\x12\x18\n" +
	"\x14FRAME_TYPE_REFRESHED\x10\x06\x12\x15\n" +
	"\x11FRAME_TYPE_GOAWAY\x10\a\x12\x15\n" +
	"\x11FRAME_TYPE_POLICY\x10\b\x12\x15\n" +
	"\x11FRAME_TYPE_REVOKE\x10\t\x12\x13\n" +
	"\x0fFRAME_TYPE_OPEN\x10\x10\x12\x13\n" +
	"\x0fFRAME_TYPE_DIAL\x10\x11\x12\x15\n" +
	"\x11FRAME_TYPE_RESULT\x10\x12\x12\x17\n" +
	"\x13FRAME_TYPE_DIAL_ACK\x10\x13\x12\x1b\n" +
	"\x17FRAME_TYPE_MUX_SETTINGS\x10 \x12\x1b\n" +
	"\x17FRAME_TYPE_STREAM_RESET\x10!\x12\x1b\n" +
	"\x17FRAME_TYPE_STOP_SENDING\x10\"\x12\x18\n" +
	"\x14FRAME_TYPE_RESET_ACK\x10#\x12\x14\n" +
	"\x10FRAME_TYPE_CLOSE\x10$*\x9e\x02\n" +
	"\x04Code\x12\v\n" +
	"\aCODE_OK\x10\x00\x12\x18\n" +
	"\x14CODE_UNAUTHENTICATED\x10\x01\x12\x0f\n" +
	"\vCODE_DENIED\x10\x02\x12\x18\n" +
	"\x14CODE_UNKNOWN_BINDING\x10\x03\x12\x15\n" +
	"\x11CODE_NO_CONNECTOR\x10\x04\x12\x11\n" +
	"\rCODE_UPSTREAM\x10\x05\x12\x10\n" +
	"\fCODE_TIMEOUT\x10\x06\x12\x0e\n" +
	"\n" +
	"CODE_LIMIT\x10\a\x12\x11\n" +
	"\rCODE_PROTOCOL\x10\b\x12\x11\n" +
	"\rCODE_INTERNAL\x10\t\x12\x11\n" +
	"\rCODE_SHUTDOWN\x10\n" +
	"\x12\x14\n" +
	"\x10CODE_UNSUPPORTED\x10\v\x12\x17\n" +
	"\x13CODE_KEY_NOT_PROVEN\x10\f\x12\x10\n" +
	"\fCODE_REVOKED\x10\r*\xb1\x01\n" +
	"\vStreamError\x12\x1c\n" +
	"\x18STREAM_ERROR_UNSPECIFIED\x10\x00\x12\x18\n" +
	"\x13STREAM_ERROR_CLOSED\x10\x80\x02\x12\x19\n" +
	"\x14STREAM_ERROR_ABORTED\x10\x81\x02\x12\x19\n" +
	"\x14STREAM_ERROR_REFUSED\x10\x82\x02\x12\x19\n" +
	"\x14STREAM_ERROR_REVOKED\x10\x83\x02\x12\x19\n" +
	"\x14STREAM_ERROR_STALLED\x10\x84\x02B/Z-github.com/postern/postern/internal/wire;wireb\x06proto3"

var (
	file_wire_proto_rawDescOnce sync.Once
	file_wire_proto_rawDescData []byte
)

func file_wire_proto_rawDescGZIP() []byte {
	file_wire_proto_rawDescOnce.Do(func() {
		file_wire_proto_rawDescData = protoimpl.X.CompressGZIP(unsafe.Slice(unsafe.StringData(file_wire_proto_rawDesc), len(file_wire_proto_rawDesc)))
	})
	return file_wire_proto_rawDescData
}

var file_wire_proto_enumTypes = make([]protoimpl.EnumInfo, 3)
var file_wire_proto_msgTypes = make([]protoimpl.MessageInfo, 26)
var file_wire_proto_goTypes = []any{
	(FrameType)(0),             // 0: postern.wire.v1.FrameType
	(Code)(0),                  // 1: postern.wire.v1.Code
	(StreamError)(0),           // 2: postern.wire.v1.StreamError
	(*MuxSettings)(nil),        // 3: postern.wire.v1.MuxSettings
	(*StreamReset)(nil),        // 4: postern.wire.v1.StreamReset
	(*StopSending)(nil),        // 5: postern.wire.v1.StopSending
	(*ResetAck)(nil),           // 6: postern.wire.v1.ResetAck
	(*Close)(nil),              // 7: postern.wire.v1.Close
	(*Hello)(nil),              // 8: postern.wire.v1.Hello
	(*Welcome)(nil),            // 9: postern.wire.v1.Welcome
	(*Reject)(nil),             // 10: postern.wire.v1.Reject
	(*Catalog)(nil),            // 11: postern.wire.v1.Catalog
	(*Refresh)(nil),            // 12: postern.wire.v1.Refresh
	(*Refreshed)(nil),          // 13: postern.wire.v1.Refreshed
	(*Goaway)(nil),             // 14: postern.wire.v1.Goaway
	(*Policy)(nil),             // 15: postern.wire.v1.Policy
	(*PolicySource)(nil),       // 16: postern.wire.v1.PolicySource
	(*PolicyDeclarations)(nil), // 17: postern.wire.v1.PolicyDeclarations
	(*Open)(nil),               // 18: postern.wire.v1.Open
	(*Dial)(nil),               // 19: postern.wire.v1.Dial
	(*TraceContext)(nil),       // 20: postern.wire.v1.TraceContext
	(*Revoke)(nil),             // 21: postern.wire.v1.Revoke
	(*DialAck)(nil),            // 22: postern.wire.v1.DialAck
	(*Result)(nil),             // 23: postern.wire.v1.Result
	(*Identity)(nil),           // 24: postern.wire.v1.Identity
	(*Binding)(nil),            // 25: postern.wire.v1.Binding
	(*Detail)(nil),             // 26: postern.wire.v1.Detail
	(*Limits)(nil),             // 27: postern.wire.v1.Limits
	nil,                        // 28: postern.wire.v1.PolicyDeclarations.PrincipalAttributesEntry
}
var file_wire_proto_depIdxs = []int32{
	25, // 0: postern.wire.v1.Hello.services:type_name -> postern.wire.v1.Binding
	24, // 1: postern.wire.v1.Welcome.identity:type_name -> postern.wire.v1.Identity
	25, // 2: postern.wire.v1.Welcome.catalog:type_name -> postern.wire.v1.Binding
	27, // 3: postern.wire.v1.Welcome.limits:type_name -> postern.wire.v1.Limits
	1,  // 4: postern.wire.v1.Reject.code:type_name -> postern.wire.v1.Code
	25, // 5: postern.wire.v1.Catalog.bindings:type_name -> postern.wire.v1.Binding
	1,  // 6: postern.wire.v1.Goaway.code:type_name -> postern.wire.v1.Code
	16, // 7: postern.wire.v1.Policy.sources:type_name -> postern.wire.v1.PolicySource
	17, // 8: postern.wire.v1.Policy.declarations:type_name -> postern.wire.v1.PolicyDeclarations
	28, // 9: postern.wire.v1.PolicyDeclarations.principal_attributes:type_name -> postern.wire.v1.PolicyDeclarations.PrincipalAttributesEntry
	26, // 10: postern.wire.v1.Open.details:type_name -> postern.wire.v1.Detail
	20, // 11: postern.wire.v1.Open.trace:type_name -> postern.wire.v1.TraceContext
	24, // 12: postern.wire.v1.Dial.identity:type_name -> postern.wire.v1.Identity
	26, // 13: postern.wire.v1.Dial.details:type_name -> postern.wire.v1.Detail
	20, // 14: postern.wire.v1.Dial.trace:type_name -> postern.wire.v1.TraceContext
	1,  // 15: postern.wire.v1.Result.code:type_name -> postern.wire.v1.Code
	16, // [16:16] is the sub-list for method output_type
	16, // [16:16] is the sub-list for method input_type
	16, // [16:16] is the sub-list for extension type_name
	16, // [16:16] is the sub-list for extension extendee
	0,  // [0:16] is the sub-list for field type_name
}

func init() { file_wire_proto_init() }
func file_wire_proto_init() {
	if File_wire_proto != nil {
		return
	}
	type x struct{}
	out := protoimpl.TypeBuilder{
		File: protoimpl.DescBuilder{
			GoPackagePath: reflect.TypeOf(x{}).PkgPath(),
			RawDescriptor: unsafe.Slice(unsafe.StringData(file_wire_proto_rawDesc), len(file_wire_proto_rawDesc)),
			NumEnums:      3,
			NumMessages:   26,
			NumExtensions: 0,
			NumServices:   0,
		},
		GoTypes:           file_wire_proto_goTypes,
		DependencyIndexes: file_wire_proto_depIdxs,
		EnumInfos:         file_wire_proto_enumTypes,
		MessageInfos:      file_wire_proto_msgTypes,
	}.Build()
	File_wire_proto = out.File
	file_wire_proto_goTypes = nil
	file_wire_proto_depIdxs = nil
}
