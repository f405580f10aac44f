package quicnet

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"time"

	"github.com/quic-go/quic-go"
)

// Session is one connection between two Postern endpoints, carrying the
// control stream and the binding streams. *quic.Conn is one, through
// [QUICSession]; relay, connector and client code uses only this.
//
// Errors follow quic-go's types whatever the transport: a closed session
// reports a *quic.ApplicationError with the closer's code and reason, a
// reset stream a *quic.StreamError, so that [IsConnClosed],
// [StreamErrorCode] and session.CloseReason read both the same way.
type Session interface {
	// OpenStreamSync opens a bidirectional stream, waiting while the peer's
	// stream limit is reached, at most until ctx ends.
	OpenStreamSync(ctx context.Context) (Stream, error)
	// AcceptStream waits for the next stream the peer opens.
	AcceptStream(ctx context.Context) (Stream, error)
	// CloseWithError closes the session, telling the peer code and msg.
	CloseWithError(code quic.ApplicationErrorCode, msg string) error
	// Context ends when the session does; its cause says why.
	Context() context.Context
	LocalAddr() net.Addr
	RemoteAddr() net.Addr
	// Network is "quic" or "tcp" (TLS over TCP).
	Network() string
	// TLSState is the state of the session's TLS handshake; on a server,
	// its PeerCertificates are the client certificate, whose key TLS
	// proved (a sender-constrained token's proof). Every transport must
	// report it: a relay that cannot see it refuses bound tokens.
	TLSState() tls.ConnectionState
}

// Stream is one bidirectional stream of a Session, with QUIC's
// semantics: Close finishes the send direction only (FIN), CancelWrite
// resets it with a code, CancelRead asks the peer to stop sending.
// *quic.Stream is one.
type Stream interface {
	io.Reader
	io.Writer
	// Close finishes the send direction: the peer reads EOF after
	// everything written. It must not be called concurrently with Write.
	Close() error
	CancelRead(code quic.StreamErrorCode)
	CancelWrite(code quic.StreamErrorCode)
	SetDeadline(t time.Time) error
	SetReadDeadline(t time.Time) error
	SetWriteDeadline(t time.Time) error
	StreamID() quic.StreamID
}

// QUICSession is a Session over a QUIC connection.
type QUICSession struct{ *quic.Conn }

var (
	_ Session = QUICSession{}
	_ Stream  = (*quic.Stream)(nil)
)

// Network is "quic".
func (s QUICSession) Network() string { return "quic" }

func (s QUICSession) TLSState() tls.ConnectionState { return s.Conn.ConnectionState().TLS }

func (s QUICSession) OpenStreamSync(ctx context.Context) (Stream, error) {
	st, err := s.Conn.OpenStreamSync(ctx)
	if err != nil {
		return nil, err
	}
	return st, nil
}

// OpenStreamNow opens a stream on s without waiting, when s is a QUIC
// session whose peer's stream limit allows one more; it reports false
// otherwise (a limit reached, a closed session, another transport), and
// the caller then waits in OpenStreamSync, which says why. The common
// case costs no context and no timer.
func OpenStreamNow(s Session) (Stream, bool) {
	qs, ok := s.(QUICSession)
	if !ok {
		return nil, false
	}
	st, err := qs.Conn.OpenStream()
	if err != nil {
		return nil, false
	}
	return st, true
}

func (s QUICSession) AcceptStream(ctx context.Context) (Stream, error) {
	st, err := s.Conn.AcceptStream(ctx)
	if err != nil {
		return nil, err
	}
	return st, nil
}
