package quicnet

import (
	"context"
	"net"

	"github.com/quic-go/quic-go"
)

// Admission decides, from an Initial packet alone, what a listener does with
// a new connection. Both hooks run on quic-go's packet-handling goroutine:
// they must be quick and must not block.
type Admission struct {
	// VerifySourceAddress reports whether a client whose address is not
	// yet validated must first prove it with a Retry (RFC 9000, 8.1.2),
	// which costs the listener no state. Nil never asks.
	VerifySourceAddress func(net.Addr) bool
	// ConnContext is called for each connection the listener is about to
	// create state for; an error refuses it with CONNECTION_REFUSED. The
	// context it returns becomes the connection's (quic.Conn.Context), and
	// is done when the connection ends or its handshake fails. Nil admits
	// every connection.
	ConnContext func(ctx context.Context, info *quic.ClientInfo) (context.Context, error)
}
