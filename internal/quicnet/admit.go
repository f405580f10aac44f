package quicnet

import (
	"context"
	"net"

	"github.com/quic-go/quic-go"

	"github.com/postern/postern/transport"
)

// Admission decides, before the listener does any cryptographic work for
// a new connection, whether it takes it, and a QUIC connection's
// configuration: from a QUIC Initial packet alone, or from a TCP
// connection just accepted. The hooks run on the listener's
// packet-handling and accept goroutines: they must be quick and must not
// block.
type Admission struct {
	// VerifySourceAddress reports whether a client whose address is not
	// yet validated must first prove it with a Retry (RFC 9000, 8.1.2),
	// which costs the listener no state. Nil never asks.
	VerifySourceAddress func(net.Addr) bool
	// ConnContext is called for each QUIC connection the listener is
	// about to create state for; an error refuses it with
	// CONNECTION_REFUSED. The context it returns becomes the connection's
	// (quic.Conn.Context), and is done when the connection ends or its
	// handshake fails. Nil admits every connection.
	ConnContext func(ctx context.Context, info *quic.ClientInfo) (context.Context, error)
	// Transport, when it returns a configuration, is what a new QUIC
	// connection from the address runs on instead of the listener's: the
	// only way to grant a connection other flow-control windows, which
	// are fixed at the handshake. It sees the address the Initial came
	// from, which may be spoofed until the handshake completes. It must
	// return one of a few configurations that live as long as the
	// listener (the listener keeps the quic-go configuration of each).
	// Nil, or a nil result, means the listener's configuration.
	Transport func(remote net.Addr) *transport.Config
	// TCPConnContext is ConnContext for TLS over TCP: it is called for
	// each TCP connection the listener accepts, with the peer's address
	// (which the TCP handshake proved), before the TLS handshake. An
	// error closes the connection at once, with a reset: no TLS work is
	// done and no state kept. The context it returns, which must be
	// derived from ctx, becomes the parent of the session's
	// (Session.Context carries its values), and is done when the session
	// ends or its TLS handshake or mux setup fails. Nil admits every
	// connection; either way at most 1024 TLS handshakes run at once.
	TCPConnContext func(ctx context.Context, remote net.Addr) (context.Context, error)
	// TCPHandshakeTimeout, when set, is called for each TCP connection
	// whose TLS handshake did not complete within the handshake timeout
	// (transport.Config.HandshakeTimeout), with the peer's address: a
	// peer that connected and then sent too little, which held its place
	// in the admission all that time. It is not called for a handshake
	// that failed sooner, nor for one cut by Close.
	TCPHandshakeTimeout func(remote net.Addr)
}
