// Package quicnet is the transport machinery under Postern's relay,
// connector and agent client: listening and dialing with the settings of a
// transport.Config, over QUIC or, where UDP is blocked, over TLS 1.3 on
// TCP with yamux streams (tcp.go; wire.proto's "TLS over TCP" is the
// specification). Both are behind [Session] and [Stream], with QUIC's
// semantics and quic-go's error types whatever the transport. [Dial]
// tries QUIC first and falls back to TCP after a head start; [Listen]
// listens on both, on the same port number. On top of either: a net.Conn
// over a stream whose Close closes both directions and whose CloseWrite
// is the half-close, splicing two such connections with half-close and
// reset carried across, and refusing a stream with a protocol code.
//
// quic-go's Stream.Close closes only the send direction; [Conn.Close]
// closes both, as net.Conn users expect. [Splice] copies two half-closable
// connections into each other, passing a clean end on as a half-close and
// an error on as a reset; [StartSplice] lets the two directions start
// apart, which a relay needs to forward an agent's early bytes while it
// waits for the connector's answer.
package quicnet
