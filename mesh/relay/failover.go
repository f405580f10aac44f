package relay

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/postern/postern/internal/quicnet"
	"github.com/postern/postern/internal/wire"
)

// keptLimit bounds what the relay keeps of an agent's bytes while its open
// may still move to another connector: a pipelined first request fits;
// beyond it the relay stops reading the agent until a connector answers.
const keptLimit = 64 << 10

// suspectFor is how many AckTimeouts a connector that missed a DialAck
// is passed over while others serve the binding. A dead one is gone by
// then (its idle timeout); a live one that was slow gets opens again, and
// is cleared by its next DialAck.
const suspectFor = 10

// suspected reports whether c should get opens only when no other
// connector is left: it missed a DialAck lately, or dials to it have
// waited for a quarter of the ack bound.
func (c *connectorSession) suspected() bool {
	if until := c.suspect.Load(); until != 0 && time.Now().UnixNano() < until {
		return true
	}
	return c.acks && c.ackWatch.silent(c.r.limits.AckTimeout/4)
}

// upstream is the relay's end of an open's stream to a connector while
// the open may still move to another one. Until release it keeps every
// byte the agent sent (the splice writes them here), so that a move hands
// the next connector the Dial and all of them; a connector that failed
// never passed any to an upstream, since a connector reads them only
// after its Result of CODE_OK.
type upstream struct {
	mu      sync.Mutex
	room    sync.Cond // on mu: a Write waits while kept is full
	cur     *quicnet.Conn
	gen     int // moves so far
	keeping bool
	kept    []byte
	fin     bool // the agent's FIN came while keeping
	broken  bool // a write to cur failed while keeping: keep, do not send
	closed  bool
}

func newUpstream(c *quicnet.Conn) *upstream {
	u := &upstream{cur: c, keeping: true}
	u.room.L = &u.mu
	return u
}

// conn returns the current stream.
func (u *upstream) conn() *quicnet.Conn {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.cur
}

// Write forwards p to the current connector at once, and keeps it until
// release. While the open may still move, a write that fails succeeds: p
// is kept, and the owner either moves the open, and the move replays it,
// or refuses it.
func (u *upstream) Write(p []byte) (int, error) {
	u.mu.Lock()
	for u.keeping && !u.closed && len(u.kept)+len(p) > keptLimit {
		u.room.Wait()
	}
	keeping := u.keeping && !u.closed
	if keeping {
		u.kept = append(u.kept, p...)
	}
	c, gen, broken := u.cur, u.gen, u.broken
	u.mu.Unlock()
	if keeping && broken {
		return len(p), nil
	}
	n, err := c.Write(p)
	if err != nil && u.swallow(gen) {
		return len(p), nil
	}
	return n, err
}

// swallow reports whether a failed write to the stream of move gen is
// not the splice's failure: the open moved since, or may still move.
func (u *upstream) swallow(gen int) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	switch {
	case u.closed:
		return false
	case u.gen != gen:
		return true
	case u.keeping:
		u.broken = true
		return true
	}
	return false
}

// CloseWrite passes the agent's FIN on, and keeps it for a move.
func (u *upstream) CloseWrite() error {
	u.mu.Lock()
	keeping := u.keeping && !u.closed
	if keeping {
		u.fin = true
	}
	c, gen, broken := u.cur, u.gen, u.broken
	u.mu.Unlock()
	if keeping && broken {
		return nil
	}
	err := c.CloseWrite()
	if err != nil && u.swallow(gen) {
		return nil
	}
	return err
}

// Read reads the current connector's stream: its frames, then the
// upstream's bytes. Only the owner reads.
func (u *upstream) Read(p []byte) (int, error) { return u.conn().Read(p) }

// CloseRead stops the current stream's receive direction: the splice
// calls it when the agent stopped reading.
func (u *upstream) CloseRead() error { return u.conn().CloseRead() }

func (u *upstream) Close() error {
	u.stop()
	return u.conn().Close()
}

func (u *upstream) Abort(code quic.StreamErrorCode) {
	u.stop()
	u.conn().Abort(code)
}

func (u *upstream) AbortWrite(code quic.StreamErrorCode) {
	u.stop()
	u.conn().AbortWrite(code)
}

func (u *upstream) stop() {
	u.mu.Lock()
	u.closed = true
	u.room.Broadcast()
	u.mu.Unlock()
}

// move resets the current stream and makes next, on which the Dial is
// already written, the open's stream: everything kept is written to it
// within timeout. It fails when u was closed meanwhile (the agent gave
// up), or when next does not take the bytes in time.
func (u *upstream) move(next *quicnet.Conn, timeout time.Duration) error {
	u.conn().Abort(quicnet.StreamAborted) // unblocks a Write stuck on it
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		return net.ErrClosed
	}
	u.cur = next
	u.gen++
	u.broken = false
	next.SetWriteDeadline(time.Now().Add(timeout))
	defer next.SetWriteDeadline(time.Time{})
	if len(u.kept) > 0 {
		if _, err := next.Write(u.kept); err != nil {
			return err
		}
	}
	if u.fin {
		return next.CloseWrite()
	}
	return nil
}

// release ends keeping: the open stays on the current connector.
func (u *upstream) release() {
	u.mu.Lock()
	u.keeping = false
	u.kept = nil
	u.room.Broadcast()
	u.mu.Unlock()
}

// connect finds the open a connector: it sends the Dial to one serving
// rt and waits for its answer, and moves the open to the next connector
// while the one it tried shows no life (no DialAck within AckTimeout,
// its connection gone) or could not reach the upstream, as long as
// another one is left and the open's time is not up. The splice from the
// agent runs from the first Dial on, so that a pipelined first request
// travels with it.
//
// It returns the connector's Result, the upstream and splice when a Dial
// was sent, and how many connectors it tried; on a Result other than
// CODE_OK the caller refuses the open and cuts them.
func (r *Relay) connect(rt *route, down *quicnet.Conn, dial *wire.Dial) (*upstream, *quicnet.Splicer, *connectorSession, *wire.Result, int) {
	deadline := time.Now().Add(r.limits.OpenTimeout)
	var (
		tried []*connectorSession
		up    *upstream
		sp    *quicnet.Splicer
		last  *wire.Result // why the last connector tried failed
		lastC *connectorSession
		upRes *wire.Result // a connector's CODE_UPSTREAM: says more than a later timeout
		upC   *connectorSession
	)
	for {
		cs := rt.pick(tried)
		if cs == nil || !time.Now().Before(deadline) {
			switch {
			case upRes != nil:
				return up, sp, upC, upRes, len(tried)
			case last != nil:
				return up, sp, lastC, last, len(tried)
			case len(tried) == 0:
				return nil, nil, nil, &wire.Result{Code: wire.CodeNoConnector, Reason: "no_connector", Message: "no connector serving this binding is connected to the relay"}, len(tried)
			}
			return up, sp, nil, &wire.Result{Code: wire.CodeNoConnector, Reason: "connectors_failed", Message: fmt.Sprintf("%d connectors serve this binding but none took the stream", len(tried))}, len(tried)
		}
		tried = append(tried, cs)
		lastC = cs
		// The ack bound holds while another connector could take the
		// open; the last one left gets the open's whole time, since a
		// slow connector is better than none.
		wait := time.Until(deadline)
		others := func() bool { return rt.hasOther(append(tried[:len(tried):len(tried)], cs)) }
		if cs.acks && others() {
			wait = min(wait, r.limits.AckTimeout)
		}
		st, err := r.sendDial(cs, dial, wait)
		if err != nil {
			r.log.Warn("relay: cannot send a dial to connector", "connector", cs.name(), "err", err)
			if cs.acks {
				cs.suspect.Store(time.Now().Add(suspectFor * r.limits.AckTimeout).UnixNano())
			}
			last = &wire.Result{Code: wire.CodeTimeout, Reason: "connector_timeout", Message: "the connector did not take the stream in time"}
			continue
		}
		if up == nil {
			up = newUpstream(st)
			sp = quicnet.StartSplice(down, up)
		} else if err := up.move(st, wait); err != nil {
			st.Abort(quicnet.StreamAborted)
			if errors.Is(err, net.ErrClosed) {
				// The agent gave up: no connector will help.
				return up, sp, cs, &wire.Result{Code: wire.CodeUpstream, Reason: "connector_failed", Message: "the open was abandoned while it moved to another connector"}, len(tried)
			}
			last = &wire.Result{Code: wire.CodeTimeout, Reason: "connector_timeout", Message: "the connector did not take the stream in time"}
			continue
		}
		if cs.acks {
			cs.ackWatch.sent()
			err := readAck(st, r.limits.MaxFrameSize, time.Now().Add(wait), deadline, others)
			cs.ackWatch.done(err == nil)
			if err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) {
					// Alive connectors answer within a round trip: stop
					// sending it opens while another one answers.
					cs.suspect.Store(time.Now().Add(suspectFor * r.limits.AckTimeout).UnixNano())
					r.log.Warn("relay: connector did not acknowledge a dial; trying the next", "connector", cs.name(), "binding", dial.Binding, "within", r.limits.AckTimeout)
					last = &wire.Result{Code: wire.CodeTimeout, Reason: "connector_timeout", Message: fmt.Sprintf("the connector did not acknowledge the dial within %s", r.limits.AckTimeout)}
				} else {
					last = &wire.Result{Code: wire.CodeUpstream, Reason: "connector_failed", Message: "the connector did not answer the dial"}
				}
				continue
			}
			cs.suspect.Store(0)
		}
		st.SetReadDeadline(deadline)
		res := new(wire.Result)
		err = wire.ReadExpected(st, r.limits.MaxFrameSize, res)
		st.SetReadDeadline(time.Time{})
		switch {
		case err == nil && res.Code == wire.CodeUpstream:
			// The connector is alive but did not reach the upstream; it
			// read none of the agent's bytes, so another connector, which
			// may reach it from elsewhere, can take the open whole.
			upRes, upC = res, cs
			continue
		case err == nil:
			return up, sp, cs, res, len(tried)
		case errors.Is(err, os.ErrDeadlineExceeded):
			return up, sp, cs, &wire.Result{Code: wire.CodeTimeout, Reason: "connector_timeout", Message: fmt.Sprintf("the connector did not answer within %s", r.limits.OpenTimeout)}, len(tried)
		}
		// The stream or the connector's connection failed before the
		// Result: nothing reached the upstream, so the next one may try.
		last = &wire.Result{Code: wire.CodeUpstream, Reason: "connector_failed", Message: "the connector did not answer the dial"}
	}
}

// readAck reads a DialAck from st by first. When none has come by then
// and others says no other connector could take the open, it waits on
// until last: the frame is read by hand, so that a part of it that came
// before the first deadline is kept.
func readAck(st *quicnet.Conn, max int, first, last time.Time, others func() bool) error {
	var hdr [wire.FrameHeaderLen]byte
	st.SetReadDeadline(first)
	defer st.SetReadDeadline(time.Time{})
	extended := false
	for n := 0; n < len(hdr); {
		k, err := st.Read(hdr[n:])
		n += k
		if err == nil {
			continue
		}
		if errors.Is(err, os.ErrDeadlineExceeded) && !extended && last.After(first) && !others() {
			extended = true
			st.SetReadDeadline(last)
			continue
		}
		if errors.Is(err, io.EOF) && n > 0 {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n == 0 && wire.FrameType(hdr[0]) == wire.FrameDialAck {
		// A DialAck of this version: no payload, nothing to decode.
		return nil
	}
	if !extended {
		st.SetReadDeadline(last)
	}
	// The rest of the frame; a DialAck of this version has no payload,
	// a later one may.
	frame := append(hdr[:], make([]byte, 0, 16)...)
	if n > 0 {
		if uint64(n) > uint64(max) {
			return fmt.Errorf("%w: %d bytes, limit %d", wire.ErrFrameTooLarge, n, max)
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(st, payload); err != nil {
			return err
		}
		frame = append(frame, payload...)
	}
	return wire.ReadExpected(bytes.NewReader(frame), max, new(wire.DialAck))
}

// sendDial opens a stream to cs and writes the Dial, within wait.
func (r *Relay) sendDial(cs *connectorSession, dial *wire.Dial, wait time.Duration) (*quicnet.Conn, error) {
	st, ok := quicnet.OpenStreamNow(cs.conn)
	if !ok {
		ctx, cancel := context.WithTimeout(r.ctx, wait)
		var err error
		st, err = cs.conn.OpenStreamSync(ctx)
		cancel()
		if err != nil {
			return nil, err
		}
	}
	dial.Ack = cs.acks
	st.SetWriteDeadline(time.Now().Add(wait))
	err := wire.WriteFrame(st, dial)
	st.SetWriteDeadline(time.Time{})
	if err != nil {
		st.CancelRead(quicnet.StreamAborted)
		st.CancelWrite(quicnet.StreamAborted)
		return nil, err
	}
	return quicnet.NewConn(st, cs.conn.LocalAddr(), cs.conn.RemoteAddr()), nil
}
