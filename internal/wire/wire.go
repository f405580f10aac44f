package wire

import (
	"time"

	"google.golang.org/protobuf/proto"
)

//go:generate sh -c "protoc --plugin=protoc-gen-go=$(go tool -n protoc-gen-go) --go_out=. --go_opt=paths=source_relative wire.proto"

// Version is the protocol version this package speaks (Hello.version).
const Version = 1

// ALPN is the TLS application protocol of version 1. A peer that does not
// offer it fails the handshake.
const ALPN = "postern/1"

// Frame types, as wire.proto defines them. Control frames travel on a
// session's first stream; Open, Dial and Result start a binding stream.
const (
	FrameHello     = FrameType_FRAME_TYPE_HELLO
	FrameWelcome   = FrameType_FRAME_TYPE_WELCOME
	FrameReject    = FrameType_FRAME_TYPE_REJECT
	FrameCatalog   = FrameType_FRAME_TYPE_CATALOG
	FrameRefresh   = FrameType_FRAME_TYPE_REFRESH
	FrameRefreshed = FrameType_FRAME_TYPE_REFRESHED
	FrameGoaway    = FrameType_FRAME_TYPE_GOAWAY
	FramePolicy    = FrameType_FRAME_TYPE_POLICY
	FrameRevoke    = FrameType_FRAME_TYPE_REVOKE
	FrameOpen      = FrameType_FRAME_TYPE_OPEN
	FrameDial      = FrameType_FRAME_TYPE_DIAL
	FrameResult    = FrameType_FRAME_TYPE_RESULT
	FrameDialAck   = FrameType_FRAME_TYPE_DIAL_ACK

	// Transport frames, only on the mux control stream of a TLS-over-TCP
	// connection.
	FrameMuxSettings = FrameType_FRAME_TYPE_MUX_SETTINGS
	FrameStreamReset = FrameType_FRAME_TYPE_STREAM_RESET
	FrameStopSending = FrameType_FRAME_TYPE_STOP_SENDING
	FrameResetAck    = FrameType_FRAME_TYPE_RESET_ACK
	FrameClose       = FrameType_FRAME_TYPE_CLOSE
)

// Name is the frame type's name in messages and logs: "hello", "open", ...
// (String is protobuf's, "FRAME_TYPE_HELLO").
func (t FrameType) Name() string {
	switch t {
	case FrameHello:
		return "hello"
	case FrameWelcome:
		return "welcome"
	case FrameReject:
		return "reject"
	case FrameCatalog:
		return "catalog"
	case FrameRefresh:
		return "refresh"
	case FrameRefreshed:
		return "refreshed"
	case FrameGoaway:
		return "goaway"
	case FramePolicy:
		return "policy"
	case FrameRevoke:
		return "revoke"
	case FrameOpen:
		return "open"
	case FrameDial:
		return "dial"
	case FrameResult:
		return "result"
	case FrameDialAck:
		return "dial_ack"
	case FrameMuxSettings:
		return "mux_settings"
	case FrameStreamReset:
		return "stream_reset"
	case FrameStopSending:
		return "stop_sending"
	case FrameResetAck:
		return "reset_ack"
	case FrameClose:
		return "close"
	}
	return "unknown"
}

// Result codes, as wire.proto defines them: the outcome of a handshake,
// an open or a dial, and the application error code of a relay's
// CONNECTION_CLOSE. The values are part of the protocol.
const (
	CodeOK              = Code_CODE_OK
	CodeUnauthenticated = Code_CODE_UNAUTHENTICATED // token missing, malformed or refused
	CodeDenied          = Code_CODE_DENIED          // policy said no
	CodeUnknownBinding  = Code_CODE_UNKNOWN_BINDING // no such binding
	CodeNoConnector     = Code_CODE_NO_CONNECTOR    // binding known but no connector serves it now
	CodeUpstream        = Code_CODE_UPSTREAM        // the connector could not reach the upstream
	CodeTimeout         = Code_CODE_TIMEOUT         // a step did not finish in time
	CodeLimit           = Code_CODE_LIMIT           // a configured limit was reached
	CodeProtocol        = Code_CODE_PROTOCOL        // malformed or unexpected frame
	CodeInternal        = Code_CODE_INTERNAL        // the peer failed
	CodeShutdown        = Code_CODE_SHUTDOWN        // the peer is going away
	CodeUnsupported     = Code_CODE_UNSUPPORTED     // version, role or binding kind not supported
	CodeKeyNotProven    = Code_CODE_KEY_NOT_PROVEN  // a bound token without proof of its key
	CodeRevoked         = Code_CODE_REVOKED         // token or subject revoked; a live stream no longer allowed
)

// maxCode is the largest value a Code may have on the wire: codes fit in a
// byte. Codes this version does not know are kept; Text says so.
const maxCode = 255

// Text is the code in words, for errors and audit logs: "denied",
// "unknown binding", ... (String is protobuf's, "CODE_DENIED").
func (c Code) Text() string {
	switch c {
	case CodeOK:
		return "ok"
	case CodeUnauthenticated:
		return "unauthenticated"
	case CodeDenied:
		return "denied"
	case CodeUnknownBinding:
		return "unknown binding"
	case CodeNoConnector:
		return "no connector"
	case CodeUpstream:
		return "upstream failure"
	case CodeTimeout:
		return "timeout"
	case CodeLimit:
		return "limit exceeded"
	case CodeProtocol:
		return "protocol error"
	case CodeInternal:
		return "internal error"
	case CodeShutdown:
		return "shutting down"
	case CodeUnsupported:
		return "unsupported"
	case CodeKeyNotProven:
		return "key not proven"
	case CodeRevoked:
		return "revoked"
	}
	return "unknown code"
}

// Stream error codes of RESET_STREAM and STOP_SENDING on a binding stream,
// as wire.proto defines them: quic.StreamErrorCode(wire.StreamRefused).
const (
	// StreamClosed: the application closed its end before reading or
	// writing everything (net.Conn.Close).
	StreamClosed = StreamError_STREAM_ERROR_CLOSED
	// StreamAborted: the other leg of a splice failed, so this one is cut.
	StreamAborted = StreamError_STREAM_ERROR_ABORTED
	// StreamRefused: the open was refused (denied, limit, unknown
	// binding); the data sent with it was discarded.
	StreamRefused = StreamError_STREAM_ERROR_REFUSED
	// StreamRevoked: the relay cut a live stream that is no longer
	// allowed (policy now denies it, or its token was revoked).
	StreamRevoked = StreamError_STREAM_ERROR_REVOKED
	// StreamStalled: the relay cut the stream because a reader stopped
	// taking its bytes (its stall timeout, or the agent's share of
	// stalled streams).
	StreamStalled = StreamError_STREAM_ERROR_STALLED
)

// FeaturePolicy, in Hello.features, asks the relay for Policy frames: the
// connector decides statements and requests with the relay's policy set.
const FeaturePolicy = "policy"

// FeatureRevoke, in an agent's Hello.features, asks the relay for Revoke
// frames: why a live binding stream was cut.
const FeatureRevoke = "revoke"

// FeatureDialAck, in Hello.features, says that the connector answers a
// Dial whose ack field is set with a DialAck before it dials the
// upstream, so that the relay can tell a dead connector from a slow
// upstream within a second.
const FeatureDialAck = "dial_ack"

// FeatureKeepAlive, in Hello.features, promises a QUIC packet from the
// client at least once a second, so that a relay may end the session
// after a short silence (ordering rule 7 of wire.proto).
const FeatureKeepAlive = "keepalive"

// maxFeatures caps Hello.features.
const maxFeatures = 64

// Roles a session can take (Hello.role, Identity.role).
const (
	RoleAgent     = "agent"
	RoleConnector = "connector"
)

// Field limits that hold whatever the frame size: they keep one frame from
// carrying thousands of tiny repeated fields. wire.proto gives each
// field's.
const (
	MaxNameLen     = 128        // binding, service, group names, and most short strings
	MaxRepeated    = 4096       // entries of any repeated field
	MaxDetails     = 64         // details of an Open or a Dial
	MaxDetailValue = maxTextLen // bytes of a detail's value
	MaxStringLen   = 1 << 20
	maxTextLen     = 4096 // messages, descriptions, detail values
	maxAddrLen     = 256  // Hello.client, Dial.source
	maxPolicyLen   = 1024 // one policy ID of Result.policies
	maxUnixMs      = 1 << 53
)

// UnixMs is t as a protocol time (milliseconds since the Unix epoch); the
// zero time, and any time not after the epoch, is 0, "unknown".
func UnixMs(t time.Time) uint64 {
	if t.IsZero() {
		return 0
	}
	if ms := t.UnixMilli(); ms > 0 {
		return uint64(ms)
	}
	return 0
}

func timeOf(ms uint64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(int64(ms))
}

// ExpiresAt is the session's token expiry; zero when unknown.
func (m *Welcome) ExpiresAt() time.Time { return timeOf(m.GetExpiresUnixMs()) }

// ExpiresAt is the refreshed token's expiry; zero when unknown.
func (m *Refreshed) ExpiresAt() time.Time { return timeOf(m.GetExpiresUnixMs()) }

// Message is any frame this package defines: one of the generated message
// types that a FrameType names.
type Message interface {
	proto.Message
	// FrameType is the type of the frame that carries the message.
	FrameType() FrameType
	// validate checks what the protocol requires beyond the encoding.
	validate() error
}

func (*Hello) FrameType() FrameType     { return FrameHello }
func (*Welcome) FrameType() FrameType   { return FrameWelcome }
func (*Reject) FrameType() FrameType    { return FrameReject }
func (*Catalog) FrameType() FrameType   { return FrameCatalog }
func (*Refresh) FrameType() FrameType   { return FrameRefresh }
func (*Refreshed) FrameType() FrameType { return FrameRefreshed }
func (*Goaway) FrameType() FrameType    { return FrameGoaway }
func (*Policy) FrameType() FrameType    { return FramePolicy }
func (*Revoke) FrameType() FrameType    { return FrameRevoke }
func (*Open) FrameType() FrameType      { return FrameOpen }
func (*Dial) FrameType() FrameType      { return FrameDial }
func (*Result) FrameType() FrameType    { return FrameResult }
func (*DialAck) FrameType() FrameType   { return FrameDialAck }

func (*MuxSettings) FrameType() FrameType { return FrameMuxSettings }
func (*StreamReset) FrameType() FrameType { return FrameStreamReset }
func (*StopSending) FrameType() FrameType { return FrameStopSending }
func (*ResetAck) FrameType() FrameType    { return FrameResetAck }
func (*Close) FrameType() FrameType       { return FrameClose }

// newMessage returns a new message of frame type typ; nil for a type this
// version does not know.
func newMessage(typ FrameType) Message {
	switch typ {
	case FrameHello:
		return new(Hello)
	case FrameWelcome:
		return new(Welcome)
	case FrameReject:
		return new(Reject)
	case FrameCatalog:
		return new(Catalog)
	case FrameRefresh:
		return new(Refresh)
	case FrameRefreshed:
		return new(Refreshed)
	case FrameGoaway:
		return new(Goaway)
	case FramePolicy:
		return new(Policy)
	case FrameRevoke:
		return new(Revoke)
	case FrameOpen:
		return new(Open)
	case FrameDial:
		return new(Dial)
	case FrameResult:
		return new(Result)
	case FrameDialAck:
		return new(DialAck)
	case FrameMuxSettings:
		return new(MuxSettings)
	case FrameStreamReset:
		return new(StreamReset)
	case FrameStopSending:
		return new(StopSending)
	case FrameResetAck:
		return new(ResetAck)
	case FrameClose:
		return new(Close)
	}
	return nil
}
