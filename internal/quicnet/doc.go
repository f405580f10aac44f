// Package quicnet is the QUIC machinery under Postern's relay, connector
// and agent client: listening and dialing with the settings of a
// transport.Config, a net.Conn over a QUIC stream whose Close closes both
// directions and whose CloseWrite is the half-close, splicing two such
// connections with half-close and reset carried across, and refusing a
// stream with a protocol code.
//
// quic-go's Stream.Close closes only the send direction; [Conn.Close]
// closes both, as net.Conn users expect. [Splice] copies two half-closable
// connections into each other, passing a clean end on as a half-close and
// an error on as a reset; [StartSplice] lets the two directions start
// apart, which a relay needs to forward an agent's early bytes while it
// waits for the connector's answer.
package quicnet
