package transport

import (
	"fmt"
	"time"
)

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
	// per-connection receive windows. Zero means 2 MiB and 64 MiB. Over
	// TLS/TCP there is no connection window but TCP's own; the stream
	// windows are yamux's, starting at 256 KiB (StreamWindow does not
	// apply) and growing to MaxStreamWindow.
	ConnWindow, MaxConnWindow uint64

	// Network is how an agent or connector reaches a relay, or what a
	// relay listens on:
	//
	//   - "" or "auto" (the default): a relay listens on UDP (QUIC) and
	//     on TCP (TLS 1.3), on the same port number; a client tries QUIC
	//     first, starts TLS over TCP after FallbackDelay (or at once when
	//     QUIC fails), uses whichever handshake finishes first, and
	//     remembers the winner for that relay address for 10 minutes
	//     (trying it first next time).
	//   - "quic": QUIC only.
	//   - "tcp": TLS over TCP only, for networks that drop UDP.
	//
	// Over TCP the same protocol runs on yamux streams (see
	// internal/wire/wire.proto, "TLS over TCP").
	Network string
	// FallbackDelay is QUIC's head start before a client in "auto" mode
	// also tries TCP. Zero means 300ms.
	FallbackDelay time.Duration
}

// Networks a Config may name.
const (
	NetworkAuto = "auto"
	NetworkQUIC = "quic"
	NetworkTCP  = "tcp"
)

// CheckNetwork reports whether n is a Network value ("" counts as auto).
func CheckNetwork(n string) error {
	switch n {
	case "", NetworkAuto, NetworkQUIC, NetworkTCP:
		return nil
	}
	return fmt.Errorf("transport: network %q: want auto, quic or tcp", n)
}
