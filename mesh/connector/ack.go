package connector

import (
	"io"
	"sync"
	"time"

	"github.com/postern/postern/internal/quicnet"
	"github.com/postern/postern/internal/wire"
)

// AckHold is how long a connector holds a Dial's DialAck back for its
// Result to catch up. A Result that comes within it (a nearby upstream's
// dial; an http stream's, which needs no dial first) goes out in the same
// write, right behind the DialAck: one packet, and one wakeup of the
// relay, where the two frames alone cost two of each on every open. A
// slower Result finds the DialAck sent alone when the hold ran out. It is
// far below the relay's ack bound (relay.Limits.AckTimeout, 1 s by
// default), so the relay tells a live connector from a dead one as fast
// as ever (wire.proto, ordering rule 6).
const AckHold = time.Millisecond

// ackWriteTimeout bounds the write of a DialAck, alone or with the Result.
const ackWriteTimeout = 5 * time.Second

// dialAckFrame is the frame of a DialAck, which has no fields.
var dialAckFrame = func() []byte {
	b, err := wire.AppendFrame(nil, &wire.DialAck{})
	if err != nil {
		panic(err)
	}
	return b
}()

// heldAck is a Dial's DialAck until it is written: in front of the first
// frame the connector writes on the stream, or alone once AckHold has
// passed, whichever comes first.
type heldAck struct {
	mu    sync.Mutex
	st    quicnet.Stream
	timer *time.Timer
	done  bool  // written, or not asked for
	err   error // the DialAck's write failed: the stream is reset
}

// holdAck starts holding the DialAck that dial asks for; when it asks for
// none, the heldAck writes frames as they are.
func holdAck(st quicnet.Stream, dial *wire.Dial) *heldAck {
	a := &heldAck{st: st, done: !dial.Ack}
	if dial.Ack {
		a.mu.Lock() // the timer may fire before it is stored
		a.timer = time.AfterFunc(AckHold, a.flush)
		a.mu.Unlock()
	}
	return a
}

// flush writes the DialAck alone, if it is still held.
func (a *heldAck) flush() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.done {
		return
	}
	a.done = true
	a.st.SetWriteDeadline(time.Now().Add(ackWriteTimeout))
	_, err := a.st.Write(dialAckFrame)
	a.st.SetWriteDeadline(time.Time{})
	if err != nil {
		a.err = err
		a.st.CancelRead(quicnet.StreamAborted)
		a.st.CancelWrite(quicnet.StreamAborted)
	}
}

// write writes m as one frame on w (the stream, or a Conn over it), behind
// the DialAck when that is still held, in one Write. It fails without
// writing when the DialAck's own write failed.
func (a *heldAck) write(w io.Writer, m wire.Message) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.err != nil {
		return a.err
	}
	if a.done {
		return wire.WriteFrame(w, m)
	}
	a.done = true
	a.timer.Stop()
	b, err := wire.AppendFrame(append(make([]byte, 0, 64), dialAckFrame...), m)
	if err != nil {
		return err
	}
	a.st.SetWriteDeadline(time.Now().Add(ackWriteTimeout))
	_, err = w.Write(b)
	a.st.SetWriteDeadline(time.Time{})
	return err
}

// refuse answers the Dial with res, behind the DialAck when that is still
// held: the stream's reading stops (STREAM_ERROR_REFUSED), and it is
// closed after the Result, as quicnet.Refuse does.
func (a *heldAck) refuse(res *wire.Result) {
	a.st.CancelRead(quicnet.StreamRefused)
	if err := a.write(a.st, res); err != nil {
		a.st.CancelWrite(quicnet.StreamRefused)
		return
	}
	a.st.Close()
}
