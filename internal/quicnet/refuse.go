package quicnet

import (
	"time"

	"github.com/postern/postern/internal/wire"
)

// Refuse answers an Open (relay to agent) or a Dial (connector to relay)
// with an error result, and discards whatever the peer sent after its
// frame: none of it goes further. The receive side is stopped with
// StreamRefused, which a client maps to this answer when a write
// fails; the result is written within 5 seconds, or the stream is reset.
func Refuse(st Stream, res *wire.Result) {
	st.CancelRead(StreamRefused)
	st.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err := wire.WriteFrame(st, res); err != nil {
		st.CancelWrite(StreamRefused)
		return
	}
	st.Close()
}
