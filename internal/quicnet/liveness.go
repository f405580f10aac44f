package quicnet

// Received is a Session that counts what has arrived from its peer: the
// count changes whenever anything does (a keep-alive included), which is
// how a relay tells a silent peer from a quiet one without a frame of
// its own. A Session that is not one is never judged silent.
type Received interface {
	Received() uint64
}

var _ Received = QUICSession{}

// Received is the number of QUIC packets received on the connection.
func (s QUICSession) Received() uint64 { return s.Conn.ConnectionStats().PacketsReceived }
