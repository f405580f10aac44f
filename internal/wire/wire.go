// Package wire is the Postern wire protocol, version 1: the frames that
// agents, connectors and relays exchange over QUIC streams, and their
// encoding. Everything that crosses the network as a control message is
// defined in this one file (plus its codec in codec.go).
//
// # Protocol flow
//
// One QUIC connection per agent or connector to each relay, ALPN "postern/1".
//
//	agent/connector                        relay
//	  open stream 0 (control)
//	  Hello{version, role, token, services} ->
//	                                        <- Welcome{session, identity, catalog, limits}
//	                                        or Reject{code, reason, message} and close
//	  ... control stream stays open:
//	  Refresh{token}                        -> (agent: a fresh token on the same session)
//	                                        <- Refreshed{expires} or Reject
//	                                        <- Catalog{bindings} (policy reload, connectors come and go)
//	                                        <- Goaway{code, message} (session ends, e.g. token expired)
//
//	agent: a new stream per use of a binding
//	  Open{binding, action, details} [raw bytes may follow at once] ->
//	                                      relay authorizes, picks a connector,
//	                                      opens a stream to it:
//	                                        Dial{binding, session, identity} [agent's early bytes] -> connector
//	                                        <- Result{code} from connector (after dialing upstream)
//	                                        <- Result{code, policies} to the agent
//	  raw bytes both ways until either side closes (half-close is carried).
//
// # Frame layout
//
//	+--------+------------------+-------------------+
//	| type   | length           | payload           |
//	| 1 byte | 4 bytes, big end | length bytes      |
//	+--------+------------------+-------------------+
//
// The reader enforces a maximum length before it allocates anything. The
// payload is a sequence of fields:
//
//	tag (uvarint) | length (uvarint) | value (length bytes)
//
// Integers are uvarints inside the value, strings are UTF-8 bytes, repeated
// fields repeat their tag, and nested messages are a field whose value is
// itself a sequence of fields. Decoders skip tags they do not know, so a
// later version can add fields without breaking version 1 peers; a field
// that a message requires and that is missing, duplicated where it must be
// single, or malformed is an error.
//
// # Version history
//
//	1: first version (Postern 0.1).
package wire

import (
	"time"
)

// Version is the protocol version this package speaks.
const Version = 1

// ALPN is the TLS application protocol of version 1. A peer that does not
// offer it fails the handshake.
const ALPN = "postern/1"

// StreamError is the application error code of a QUIC RESET_STREAM or
// STOP_SENDING on a binding stream. It tells the peer why bytes stopped,
// where a FIN would say "all sent".
type StreamError uint64

// Stream error codes. The values are part of the protocol.
const (
	// StreamClosed: the application closed its end before reading or
	// writing everything (net.Conn.Close).
	StreamClosed StreamError = 0x100
	// StreamAborted: the other leg of a splice failed, so this one is cut.
	StreamAborted StreamError = 0x101
	// StreamRefused: the open was refused (denied, limit, unknown
	// binding); the data sent with it was discarded.
	StreamRefused StreamError = 0x102
)

// FrameType identifies a frame.
type FrameType uint8

// Frame types. Control frames travel on a session's first stream; Open,
// Dial and Result start a binding stream.
const (
	// FrameHello is the first frame of a session, client to relay.
	// Fields: 1 version (uint), 2 role (string), 3 token (string),
	// 4 service (Service, repeated; connectors only), 5 client name (string).
	FrameHello FrameType = 0x01
	// FrameWelcome accepts a session, relay to client.
	// Fields: 1 session (string), 2 identity (Identity), 3 binding
	// (Binding, repeated), 4 limits (Limits), 5 token expiry (unix ms).
	FrameWelcome FrameType = 0x02
	// FrameReject refuses a session or a refresh, relay to client, and is
	// followed by the connection's close. Fields: 1 code (uint),
	// 2 reason (string), 3 message (string).
	FrameReject FrameType = 0x03
	// FrameCatalog replaces the agent's catalog, relay to agent.
	// Fields: 3 binding (Binding, repeated).
	FrameCatalog FrameType = 0x04
	// FrameRefresh presents a fresh token on a live session, agent or
	// connector to relay. Fields: 3 token (string).
	FrameRefresh FrameType = 0x05
	// FrameRefreshed accepts a refresh. Fields: 5 token expiry (unix ms).
	FrameRefreshed FrameType = 0x06
	// FrameGoaway says why a session ends, either direction.
	// Fields: 1 code (uint), 2 reason (string), 3 message (string).
	FrameGoaway FrameType = 0x07

	// FrameOpen starts a binding stream, agent to relay. Raw bytes may
	// follow it at once; the relay forwards them only once the open is
	// allowed. Fields: 1 binding (string), 2 action (string),
	// 3 detail (KV, repeated).
	FrameOpen FrameType = 0x10
	// FrameDial starts a stream, relay to connector.
	// Fields: 1 binding (string), 2 session (string), 3 identity
	// (Identity), 4 action (string), 5 detail (KV, repeated),
	// 6 source address (string).
	FrameDial FrameType = 0x11
	// FrameResult answers an Open (relay to agent) or a Dial (connector to
	// relay). Code OK is followed by raw bytes. Fields: 1 code (uint),
	// 2 reason (string), 3 message (string), 4 policy (string, repeated),
	// 5 connector (string).
	FrameResult FrameType = 0x12
)

func (t FrameType) String() string {
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
	case FrameOpen:
		return "open"
	case FrameDial:
		return "dial"
	case FrameResult:
		return "result"
	}
	return "unknown"
}

// Code is the outcome of a session handshake, an open or a dial. The values
// are part of the protocol: never renumber them.
type Code uint8

const (
	CodeOK              Code = 0
	CodeUnauthenticated Code = 1  // token missing, malformed or refused
	CodeDenied          Code = 2  // policy said no
	CodeUnknownBinding  Code = 3  // no such binding
	CodeNoConnector     Code = 4  // binding known but no connector serves it now
	CodeUpstream        Code = 5  // the connector could not reach the upstream
	CodeTimeout         Code = 6  // a step did not finish in time
	CodeLimit           Code = 7  // a configured limit was reached
	CodeProtocol        Code = 8  // malformed or unexpected frame
	CodeInternal        Code = 9  // the peer failed
	CodeShutdown        Code = 10 // the peer is going away
	CodeUnsupported     Code = 11 // version, role or binding kind not supported
	maxCode                  = CodeUnsupported
)

func (c Code) String() string {
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
	}
	return "unknown code"
}

// Roles a session can take.
const (
	RoleAgent     = "agent"
	RoleConnector = "connector"
)

// Limits are announced by the relay in its Welcome so that a client can
// stay inside them rather than find them by failing.
type Limits struct {
	MaxStreams   uint64 // 1: binding streams open at once per session
	MaxFrameSize uint64 // 2: largest frame the relay accepts
}

// Identity is a verified identity as the relay tells it to the client
// itself (Welcome) or to a connector (Dial). Attributes is the JSON object
// of the token's free attributes, passed through as is.
type Identity struct {
	Subject    string   // 1
	Role       string   // 2
	Group      []string // 3, repeated
	Attributes []byte   // 4, JSON object or empty
}

// Binding is one entry of an agent's catalog.
type Binding struct {
	Name        string   // 1
	Kind        string   // 2: "tcp", "http", "postgres"
	Environment string   // 3
	Label       []string // 4, repeated
	Description string   // 5
}

// Service is what a connector advertises in its Hello. The upstream
// address is not sent: the relay never needs it and never dials.
type Service struct {
	Name        string   // 1
	Kind        string   // 2
	Environment string   // 3
	Label       []string // 4, repeated
	Description string   // 5
}

// KV is one key/value detail of an open, handed to policy as context.
type KV struct {
	Key   string // 1
	Value string // 2
}

// Hello is FrameHello.
type Hello struct {
	Version  uint64
	Role     string
	Token    string
	Services []Service
	Client   string // free-form software name and version, for logs
}

// Welcome is FrameWelcome.
type Welcome struct {
	Session   string
	Identity  Identity
	Catalog   []Binding
	Limits    Limits
	ExpiresAt time.Time // the token's expiry; zero when unknown
}

// Reject is FrameReject; Goaway shares its fields.
type Reject struct {
	Code    Code
	Reason  string // stable snake_case reason, e.g. "token_expired"
	Message string // for people
}

// Catalog is FrameCatalog.
type Catalog struct {
	Bindings []Binding
}

// Refresh is FrameRefresh.
type Refresh struct {
	Token string
}

// Refreshed is FrameRefreshed.
type Refreshed struct {
	ExpiresAt time.Time
}

// Open is FrameOpen.
type Open struct {
	Binding string
	Action  string // empty means "connect"
	Details []KV
}

// Dial is FrameDial.
type Dial struct {
	Binding  string
	Session  string
	Identity Identity
	Action   string
	Details  []KV
	Source   string // the agent's address as the relay saw it
}

// Result is FrameResult.
type Result struct {
	Code      Code
	Reason    string
	Message   string
	Policies  []string // policy IDs that decided a denial
	Connector string   // which connector serves the stream (relay to agent)
}

// Field limits that hold whatever the frame size: they keep one frame from
// carrying thousands of tiny repeated fields.
const (
	MaxNameLen   = 128  // binding, service, group names
	MaxRepeated  = 4096 // entries of any repeated field
	MaxStringLen = 1 << 20
)
