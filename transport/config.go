package transport

import "time"

// ALPN is the application protocol Postern negotiates in TLS. A peer that
// does not offer it fails the handshake.
const ALPN = "postern/1"

// Config tunes a QUIC endpoint. A nil *Config is valid and means every
// default below. The defaults are chosen for a relay carrying many agents,
// not quic-go's, which suit a single client.
type Config struct {
	// HandshakeTimeout bounds the QUIC and TLS handshake. Zero means 10s.
	HandshakeTimeout time.Duration
	// IdleTimeout closes a connection that has received nothing for this
	// long. Zero means 60s. Keep-alives (below) keep healthy idle sessions
	// open.
	IdleTimeout time.Duration
	// KeepAlive is how often an idle connection sends a keep-alive. Zero
	// means 15s; negative disables keep-alives.
	KeepAlive time.Duration
	// MaxIncomingStreams is how many bidirectional streams the peer may
	// have open at once. Zero means 1024 (quic-go's default is 100).
	MaxIncomingStreams int64
	// StreamWindow and MaxStreamWindow are the initial and largest
	// per-stream receive windows. Zero means 1 MiB and 16 MiB.
	StreamWindow, MaxStreamWindow uint64
	// ConnWindow and MaxConnWindow are the initial and largest
	// per-connection receive windows. Zero means 2 MiB and 64 MiB.
	ConnWindow, MaxConnWindow uint64
}
