package quicnet

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/postern/postern/internal/wire"
)

// Stream error codes sent in RESET_STREAM and STOP_SENDING, as quic-go
// types. The protocol defines them: see [wire.StreamError].
const (
	StreamClosed  = quic.StreamErrorCode(wire.StreamClosed)
	StreamAborted = quic.StreamErrorCode(wire.StreamAborted)
	StreamRefused = quic.StreamErrorCode(wire.StreamRefused)
	StreamRevoked = quic.StreamErrorCode(wire.StreamRevoked)
	StreamStalled = quic.StreamErrorCode(wire.StreamStalled)
)

// Conn adapts a QUIC stream to net.Conn.
//
// quic-go's Stream.Close closes only the send direction; Conn.Close closes
// both, as net.Conn users expect, and CloseWrite is the half-close. Writes
// are serialized with Close because quic-go forbids calling Close
// concurrently with Write: a Close that finds a Write in flight resets the
// stream instead of finishing it, which is what closing a connection
// under a writer means anyway.
type Conn struct {
	s             Stream
	local, remote net.Addr

	wmu     sync.Mutex // held by Write, CloseWrite and the FIN in Close
	closed  atomic.Bool
	wclosed atomic.Bool
	aborted atomic.Bool // the first Abort's code is the one the peer reads
	// writing is when the Write in flight began, in Unix nanoseconds; 0
	// when none is. A Write returns once the peer's flow control took its
	// bytes, so a Write that has lasted long is a reader that stopped.
	writing atomic.Int64
}

// NewConn wraps s. local and remote are what LocalAddr and RemoteAddr
// return.
func NewConn(s Stream, local, remote net.Addr) *Conn {
	return &Conn{s: s, local: local, remote: remote}
}

// Stream returns the underlying stream.
func (c *Conn) Stream() Stream { return c.s }

// Read reads from the stream. After Close it returns net.ErrClosed.
func (c *Conn) Read(p []byte) (int, error) {
	n, err := c.s.Read(p)
	if err != nil && err != io.EOF {
		err = c.mapErr("read", err)
	}
	return n, err
}

// Write writes to the stream. After Close or CloseWrite it returns
// net.ErrClosed.
func (c *Conn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.wclosed.Load() {
		return 0, &net.OpError{Op: "write", Net: "postern", Source: c.local, Addr: c.remote, Err: net.ErrClosed}
	}
	c.writing.Store(time.Now().UnixNano())
	n, err := c.s.Write(p)
	c.writing.Store(0)
	if err != nil {
		err = c.mapErr("write", err)
	}
	return n, err
}

// WriteBlockedSince returns when the Write in flight began, and false
// when no Write is in flight.
func (c *Conn) WriteBlockedSince() (time.Time, bool) {
	ns := c.writing.Load()
	if ns == 0 {
		return time.Time{}, false
	}
	return time.Unix(0, ns), true
}

// CloseWrite finishes the send direction (QUIC FIN): the peer reads EOF
// after everything written so far, and can still answer.
func (c *Conn) CloseWrite() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.wclosed.Swap(true) {
		return nil
	}
	return c.s.Close()
}

// CloseRead stops the receive direction: the peer is told to stop sending.
func (c *Conn) CloseRead() error {
	c.s.CancelRead(StreamClosed)
	return nil
}

// Close closes both directions. Data already written is still delivered
// (the send side ends with a FIN) unless a Write is in flight, in which
// case the stream is reset. Close is safe to call more than once and
// concurrently with Read and Write.
func (c *Conn) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	c.s.CancelRead(StreamClosed)
	if c.wmu.TryLock() {
		if !c.wclosed.Swap(true) {
			c.s.Close()
		}
		c.wmu.Unlock()
	} else {
		c.wclosed.Store(true)
		c.s.CancelWrite(StreamClosed)
	}
	return nil
}

// Abort resets both directions with code: the peer sees an error rather
// than a clean end.
func (c *Conn) Abort(code quic.StreamErrorCode) {
	if c.aborted.Swap(true) {
		return
	}
	c.closed.Store(true)
	c.wclosed.Store(true)
	// The send side first: the peer reads this code, and a splice that
	// the read side's cancel wakes must not reset it with its own first.
	// Later Aborts (the splice's, with STREAM_ERROR_ABORTED) change
	// nothing.
	c.s.CancelWrite(code)
	c.s.CancelRead(code)
}

// AbortWrite resets the send direction alone with code; what the peer
// still sends can be read.
func (c *Conn) AbortWrite(code quic.StreamErrorCode) {
	c.wclosed.Store(true)
	c.s.CancelWrite(code)
}

func (c *Conn) mapErr(op string, err error) error {
	if c.closed.Load() {
		err = net.ErrClosed
	}
	return &net.OpError{Op: op, Net: "postern", Source: c.local, Addr: c.remote, Err: err}
}

func (c *Conn) LocalAddr() net.Addr                { return c.local }
func (c *Conn) RemoteAddr() net.Addr               { return c.remote }
func (c *Conn) SetDeadline(t time.Time) error      { return c.s.SetDeadline(t) }
func (c *Conn) SetReadDeadline(t time.Time) error  { return c.s.SetReadDeadline(t) }
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.s.SetWriteDeadline(t) }

// StreamErrorCode returns the code of a stream reset or stop-sending in
// err, and whether there was one.
func StreamErrorCode(err error) (quic.StreamErrorCode, bool) {
	var se *quic.StreamError
	if errors.As(err, &se) {
		return se.ErrorCode, true
	}
	return 0, false
}
