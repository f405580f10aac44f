package quicnet

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"

	"github.com/quic-go/quic-go"
)

// HalfConn is a connection whose send direction can be closed on its own:
// *net.TCPConn, *net.UnixConn and *Conn all are.
type HalfConn interface {
	io.ReadWriteCloser
	CloseWrite() error
}

// SpliceBufferSize is the size of the pooled buffers Splice copies with.
// quic-go hands out stream data in frames of about a packet; a buffer this
// size lets one Read drain many of them and one Write fill many packets,
// which is what keeps the per-byte cost down.
const SpliceBufferSize = 64 << 10

var spliceBufs = sync.Pool{New: func() any { b := make([]byte, SpliceBufferSize); return &b }}

// Splice copies a to b and b to a until both directions have ended, then
// closes both. A clean end of one direction (EOF) is passed on as a
// half-close of the other side's send direction, so request/response
// protocols that signal "done" by closing their write side keep working.
// An error in either direction aborts both (a stream reset, a TCP RST), so
// that neither peer mistakes a failure for a clean end.
//
// One end is not an error: a's peer closing its read side in order
// (STOP_SENDING with STREAM_ERROR_CLOSED, what [Conn.Close] and
// [Conn.CloseRead] send). Nothing more can reach it, so the splice stops
// reading b (b's CloseRead, when it has one), and a to b goes on to its
// own end: what a's peer wrote before it closed is still delivered, with
// its FIN.
//
// It returns the bytes copied each way and the first error other than EOF.
func Splice(a, b HalfConn) (aToB, bToA int64, err error) {
	return StartSplice(a, b).Finish()
}

// A Splicer is a splice whose two directions start at different times:
// a to b at once, b to a when Finish is called. A relay uses it to forward
// an agent's first bytes to the connector while it still waits for the
// connector's answer, which it must write to the agent before any byte
// from b.
type Splicer struct {
	a, b HalfConn
	done chan struct{} // closed when the a-to-b copy ends
	aToB int64

	mu        sync.Mutex
	err       error
	finishing bool
	stopped   bool // a's peer closed its read side in order: b to a is over
	aDone     bool // a to b ended cleanly

	unwatch func() bool     // stops watching a's stream for a reset
	actx    context.Context // a's send context, when a is a QUIC stream
}

// StartSplice starts copying a to b in the background. Until Finish is
// called, a failure of that copy resets only what goes into b, and leaves
// a alone: the caller can still read b's answer (why its peer refused)
// and answer on a.
func StartSplice(a, b HalfConn) *Splicer {
	s := &Splicer{a: a, b: b, done: make(chan struct{}), unwatch: func() bool { return false }}
	if ctx, ok := sendContext(a); ok {
		s.actx = ctx
		// A reset of a's stream (the peer's STOP_SENDING, its connection
		// gone) must end the splice even when neither copy touches a: one
		// blocked writing to b (a TCP upstream that stopped reading), the
		// other reading b (an upstream with nothing to say) would wait
		// forever, and hold b open.
		s.unwatch = context.AfterFunc(ctx, func() {
			switch err := context.Cause(ctx); {
			case errors.Is(err, quic.ErrStreamClosed): // our own FIN
			case PeerClosedRead(err):
				s.stopBack()
			default:
				s.fail(err)
			}
		})
	}
	go func() {
		defer close(s.done)
		n, err := CopyHalf(b, a)
		s.aToB = n
		if err != nil {
			s.fail(err)
			return
		}
		s.mu.Lock()
		s.aDone = true
		now := s.stopped && s.finishing
		s.mu.Unlock()
		if now {
			// Right behind the FIN, in the same packet as a rule.
			stopReading(b)
		}
	}()
	return s
}

func (s *Splicer) fail(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	finishing := s.finishing
	s.mu.Unlock()
	if !finishing {
		abortWrite(s.b)
		return
	}
	Abort(s.b)
	Abort(s.a)
}

// stopBack ends b to a because a's peer closed its read side in order.
// b's reading is stopped once a to b has ended too (a peer's Close sends
// its FIN with the STOP_SENDING, and the FIN goes on first), or at once
// when b to a has nothing left to do (stopBackNow). Before Finish it only
// says so: the owner may still be reading b's answer.
func (s *Splicer) stopBack() {
	s.mu.Lock()
	s.stopped = true
	now := s.finishing && s.aDone
	s.mu.Unlock()
	if now {
		stopReading(s.b)
	}
}

// stopBackNow ends b to a at once: nothing reads b any more, and what
// b's peer sends would only hold flow-control credit.
func (s *Splicer) stopBackNow() {
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	stopReading(s.b)
}

// Finish copies b to a until it ends, waits for the other direction, closes
// both and returns the bytes copied each way and the first error.
func (s *Splicer) Finish() (aToB, bToA int64, err error) {
	s.mu.Lock()
	s.finishing = true
	failed, stopped := s.err != nil, s.stopped
	s.mu.Unlock()
	switch {
	case failed:
		Abort(s.a)
		Abort(s.b)
	case stopped:
		s.stopBackNow()
	default:
		n, err := copyData(s.a, s.b)
		if err == nil {
			// Our FIN ends a's send context, and nothing can be heard
			// on it after that: the watch stops first, so that the FIN
			// does not start its goroutine for nothing.
			s.unwatch()
			err = s.a.CloseWrite()
		}
		bToA = n
		if err == nil {
			break
		}
		s.mu.Lock()
		stopped = s.stopped
		s.mu.Unlock()
		if stopped || PeerClosedRead(err) || s.actx != nil && PeerClosedRead(context.Cause(s.actx)) {
			// A write to a, or its FIN, met its peer's STOP_SENDING
			// (perhaps before the watch said so), or b's read ended
			// because of it: the end of b to a, not a failure.
			s.stopBackNow()
			break
		}
		s.fail(err)
	}
	<-s.done
	s.unwatch()
	s.a.Close()
	s.b.Close()
	s.mu.Lock()
	err = s.err
	s.mu.Unlock()
	return s.aToB, bToA, err
}

// Wait waits for the a-to-b copy to end, without starting b to a. The
// caller ends that copy first, by closing a's read side or aborting b.
func (s *Splicer) Wait() {
	<-s.done
	s.unwatch()
}

// PeerClosedRead reports whether err is the peer's orderly end of its
// read side: a STOP_SENDING with STREAM_ERROR_CLOSED, which a peer's
// [Conn.Close] and [Conn.CloseRead] send. What it wrote still arrives.
func PeerClosedRead(err error) bool {
	// Unwrapped by hand: errors.As would allocate on every stream's end.
	for err != nil {
		if se, ok := err.(*quic.StreamError); ok {
			return se.Remote && se.ErrorCode == StreamClosed
		}
		err = errors.Unwrap(err)
	}
	return false
}

// stopReading stops c's receive direction where it can, so that a copy
// reading it ends: a *Conn's STOP_SENDING, a TCP shutdown of reading.
func stopReading(c HalfConn) {
	if c, ok := c.(interface{ CloseRead() error }); ok {
		c.CloseRead()
	}
}

// sendContext returns the context of c's QUIC send side, which ends
// when it is finished (quic.ErrStreamClosed), reset, stopped by the peer
// or its connection goes.
func sendContext(c HalfConn) (context.Context, bool) {
	qc, ok := c.(*Conn)
	if !ok {
		return nil, false
	}
	sc, ok := qc.s.(interface{ Context() context.Context })
	if !ok {
		return nil, false
	}
	return sc.Context(), true
}

// CopyHalf copies src to dst and, at a clean EOF, half-closes dst. It is
// one direction of Splice, for callers that start the two directions at
// different times.
func CopyHalf(dst, src HalfConn) (int64, error) {
	n, err := copyData(dst, src)
	if err != nil {
		return n, err
	}
	return n, dst.CloseWrite()
}

// copyData copies src to dst until src's clean EOF (a nil error) or the
// first error.
func copyData(dst, src HalfConn) (int64, error) {
	bp := spliceBufs.Get().(*[]byte)
	defer spliceBufs.Put(bp)
	buf := *bp
	var n int64
	for {
		nr, rerr := src.Read(buf)
		if nr > 0 {
			nw, werr := dst.Write(buf[:nr])
			n += int64(nw)
			if werr != nil {
				return n, werr
			}
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
	}
}

// Abort ends c with an error the peer can tell from a clean close: a
// stream reset for a *Conn, a TCP RST for a *net.TCPConn.
func Abort(c HalfConn) {
	switch c := c.(type) {
	case Aborter:
		c.Abort(StreamAborted)
	case *net.TCPConn:
		c.SetLinger(0) // RST instead of FIN
		c.Close()
	default:
		c.Close()
	}
}

// abortWrite resets c's send direction alone where it can (a *Conn), so
// that what c's peer still sends can be read; anything else is aborted
// whole.
func abortWrite(c HalfConn) {
	if c, ok := c.(Aborter); ok {
		c.AbortWrite(StreamAborted)
		return
	}
	Abort(c)
}

// An Aborter is a HalfConn that can be reset rather than closed, whole or
// its send direction alone: a *Conn, or a wrapper of one.
type Aborter interface {
	Abort(code quic.StreamErrorCode)
	AbortWrite(code quic.StreamErrorCode)
}

// IsClosed reports whether err is the ordinary end of a connection that a
// splice or a reader should not report as a failure.
func IsClosed(err error) bool {
	return err == nil || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed)
}
