// Package transport is Postern's network layer: QUIC with safe defaults,
// TLS trust by CA or certificate pin, the frame codec for control
// messages, a net.Conn over a QUIC stream, and splicing with half-close.
// It knows nothing of identity, policy or bindings.
//
// # Overview
//
// [Listen] and [Dial] wrap quic-go with TLS 1.3, the ALPN "postern/1" and
// defaults sized for a relay rather than for one client ([Config]: stream
// limits, flow-control windows, keep-alive, idle timeout). A listener
// derives its QUIC stateless-reset key from its certificate's private key,
// so that clients of a relay that restarted learn at once that their old
// connection is gone.
//
// [Trust] says how a client trusts a relay: a CA pool, or the SHA-256 pin
// of a self-signed certificate ([SelfSigned], [Pin]).
//
// [Conn] adapts a QUIC stream to net.Conn. quic-go's Stream.Close closes
// only the send direction; Conn.Close closes both, and [Conn.CloseWrite]
// is the half-close. [Splice] copies two half-closable connections into
// each other, passing a clean end on as a half-close and an error on as a
// reset; [StartSplice] lets the two directions start apart.
//
// Frames are a type byte, a 4-byte big-endian length and a payload;
// [ReadFrame] refuses a frame longer than its cap before allocating.
//
// # Usage
//
//	cert, _ := transport.SelfSigned("relay.example.com")
//	ln, _ := transport.Listen(":7443", &tls.Config{Certificates: []tls.Certificate{cert}}, nil)
//	// elsewhere, trusting the relay by its pin:
//	tlsConf, _ := transport.Trust{Pin: transport.Pin(cert)}.ClientTLS("relay.example.com")
//	conn, _ := transport.Dial(ctx, "relay.example.com:7443", tlsConf, nil)
package transport
