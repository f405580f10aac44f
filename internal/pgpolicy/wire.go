package pgpolicy

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/jackc/pgx/v5/pgproto3"
)

// The wire protocol, as the proxy sees it (PostgreSQL protocol 3.0, after
// the startup phase, which the connector has already done). Every message
// is
//
//	type    byte     'Q', 'P', ...
//	length  uint32   big-endian, counting itself and the body, not the type
//	body    [length-4]byte
//
// Messages from the agent (frontend), and what the proxy does with each:
//
//	'Q' Query         text: decided statement by statement, all or nothing
//	'P' Parse         name, text, parameter types: decided
//	'B' Bind          portal, statement, parameters: allowed statements only
//	'E' Execute       portal, row limit: allowed portals only
//	'D' Describe      'S' or 'P', name: forwarded (metadata only)
//	'C' Close         'S' or 'P', name: forwarded, forgets the name
//	'S' Sync          empty: forwarded
//	'H' Flush         empty: forwarded
//	'X' Terminate     empty: forwarded, ends the session
//	'F' FunctionCall  refused
//	'd' CopyData      forwarded inside an allowed COPY FROM STDIN, else dropped
//	'c' CopyDone      as CopyData (PostgreSQL ignores both outside a COPY)
//	'f' CopyFail      as CopyData
//
// Anything else ('p' password messages, unknown types), a length under 4
// or over [Config.MaxMessage], or a body its type cannot hold ends the
// session with a FATAL ErrorResponse, SQLSTATE 08P01, and is not
// forwarded.
//
// Messages from the upstream are forwarded unchanged, except the error
// that a refusal provokes (see "Denials" in the package documentation),
// which is replaced. The proxy reads ReadyForQuery ('Z'), CommandComplete
// ('C'), ErrorResponse ('E'), EmptyQueryResponse ('I') and PortalSuspended
// ('s') for the audit log.

// DefaultMaxMessage is the largest message body the proxy accepts from the
// agent when [Config.MaxMessage] is zero.
const DefaultMaxMessage = 1 << 20

// Frontend message types.
const (
	msgQuery        = 'Q'
	msgParse        = 'P'
	msgBind         = 'B'
	msgExecute      = 'E'
	msgDescribe     = 'D'
	msgClose        = 'C'
	msgSync         = 'S'
	msgFlush        = 'H'
	msgTerminate    = 'X'
	msgFunctionCall = 'F'
	msgCopyData     = 'd'
	msgCopyDone     = 'c'
	msgCopyFail     = 'f'
)

// Backend message types the proxy looks at.
const (
	msgReadyForQuery    = 'Z'
	msgCommandComplete  = 'C'
	msgErrorResponse    = 'E'
	msgEmptyQuery       = 'I'
	msgPortalSuspended  = 's'
	msgCopyInResponse   = 'G'
	msgCopyBothResponse = 'W'
)

// protocolError is a malformed message from the agent.
type protocolError struct{ msg string }

func (e *protocolError) Error() string { return "pgpolicy: protocol violation: " + e.msg }

// reader reads whole messages. Its buffer is reused: a body is valid until
// the next read.
type reader struct {
	r   *bufio.Reader
	max int // the largest body accepted; 0 means no limit (the upstream)
	hdr [5]byte
	buf []byte
}

// next reads one message. The length is checked before anything is
// allocated for the body.
func (r *reader) next() (typ byte, body []byte, err error) {
	if _, err := io.ReadFull(r.r, r.hdr[:]); err != nil {
		return 0, nil, err
	}
	n := int64(binary.BigEndian.Uint32(r.hdr[1:]))
	if n < 4 {
		return 0, nil, &protocolError{fmt.Sprintf("message %q of length %d", r.hdr[0], n)}
	}
	n -= 4
	if r.max > 0 && n > int64(r.max) {
		return 0, nil, &protocolError{fmt.Sprintf("message %q of %d bytes, over the limit of %d", r.hdr[0], n, r.max)}
	}
	if int64(cap(r.buf)) < n {
		r.buf = make([]byte, n)
	}
	body = r.buf[:n]
	if _, err := io.ReadFull(r.r, body); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	// A large buffer is not kept for the rest of the session.
	if cap(r.buf) > 64<<10 {
		r.buf = nil
	}
	return r.hdr[0], body, nil
}

// appendMessage appends a message of type typ with body to dst.
func appendMessage(dst []byte, typ byte, body []byte) []byte {
	dst = append(dst, typ, 0, 0, 0, 0)
	binary.BigEndian.PutUint32(dst[len(dst)-4:], uint32(len(body)+4))
	return append(dst, body...)
}

// frontendMessage decodes the body of a frontend message of type typ,
// checking that it is well formed. It returns nil for the types whose
// body must be empty.
func frontendMessage(typ byte, body []byte) (pgproto3.FrontendMessage, error) {
	var m pgproto3.FrontendMessage
	switch typ {
	case msgQuery:
		m = &pgproto3.Query{}
	case msgParse:
		m = &pgproto3.Parse{}
	case msgBind:
		m = &pgproto3.Bind{}
	case msgExecute:
		m = &pgproto3.Execute{}
	case msgDescribe:
		m = &pgproto3.Describe{}
	case msgClose:
		m = &pgproto3.Close{}
	case msgFunctionCall:
		m = &pgproto3.FunctionCall{}
	case msgCopyData:
		return nil, nil // any bytes
	case msgCopyFail:
		m = &pgproto3.CopyFail{}
	case msgSync, msgFlush, msgTerminate, msgCopyDone:
		if len(body) != 0 {
			return nil, &protocolError{fmt.Sprintf("message %q with a body of %d bytes", typ, len(body))}
		}
		return nil, nil
	default:
		return nil, &protocolError{fmt.Sprintf("unexpected message type %q", typ)}
	}
	if err := m.Decode(body); err != nil {
		return nil, &protocolError{fmt.Sprintf("malformed message %q: %v", typ, err)}
	}
	return m, nil
}
