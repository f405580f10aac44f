package quicnet

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"
	"github.com/quic-go/quic-go"

	"github.com/postern/postern/internal/wire"
	"github.com/postern/postern/transport"
)

// The TLS-over-TCP transport: TLS 1.3 with the protocol's ALPN, yamux
// streams over it, and a mux control stream carrying what yamux has no
// frame for (stream error codes, the close code). wire.proto ("TLS over
// TCP") is the specification; this file follows it.
//
// yamux was chosen over HTTP/2 (golang.org/x/net/http2) because the
// protocol needs streams opened by either side (the relay opens one to a
// connector for every Dial) and half-close; HTTP/2 streams are opened by
// the client only and its Go API has no way to send an error code of our
// own in RST_STREAM.

// Defaults of the TCP transport that transport.Config does not name.
const (
	// tcpAcceptBacklog is yamux's queue of streams opened by the peer and
	// not yet taken by the session's accept loop.
	tcpAcceptBacklog = 256
	// ctlQueue bounds the mux control frames waiting to be written; a
	// peer that does not read them for ctlStall loses the session.
	ctlQueue = 4096
	ctlStall = 5 * time.Second
	// closeLinger is how long a closing side waits for its peer to read
	// the Close frame before it drops the connection.
	closeLinger = time.Second
	// closeRead is how long a session that yamux has ended waits for its
	// control reader to parse a Close frame already received.
	closeRead = 250 * time.Millisecond
	// maxDataFrame caps the data frames a stream sends.
	maxDataFrame = 64 << 10
	// maxPending bounds the stream frames kept for streams the accept
	// loop has not registered yet.
	maxPending = 1024
)

var (
	errWriteClosed = errors.New("quicnet: write on a stream whose send direction is closed")
	past           = time.Unix(1, 0)
)

// yamuxConfig is the yamux configuration that c stands for. The idle
// timeout maps to yamux's keep-alive: a ping every KeepAlive that is not
// answered within IdleTimeout-KeepAlive ends the session.
func yamuxConfig(c *transport.Config) *yamux.Config {
	var z transport.Config
	if c == nil {
		c = &z
	}
	y := yamux.DefaultConfig()
	y.LogOutput = io.Discard
	y.AcceptBacklog = tcpAcceptBacklog
	y.EnableKeepAlive = c.KeepAlive >= 0
	y.KeepAliveInterval = 15 * time.Second
	if c.KeepAlive > 0 {
		y.KeepAliveInterval = c.KeepAlive
	}
	y.ConnectionWriteTimeout = max(or(c.IdleTimeout, 60*time.Second)-y.KeepAliveInterval, time.Second)
	w := min(or(c.MaxStreamWindow, 16<<20), math.MaxUint32)
	y.MaxStreamWindowSize = uint32(max(w, 256<<10)) // yamux's initial window is its floor
	return y
}

// tcpSession is a Session over TLS over TCP.
type tcpSession struct {
	tc     *tls.Conn
	lc     *lingerConn   // tc as yamux reads it: counts what arrives
	rtt    time.Duration // an estimate, from the settings exchange
	mux    *yamux.Session
	ctl    *yamux.Stream
	ctx    context.Context
	cancel context.CancelCauseFunc

	client      bool                // we dialed
	window      int64               // yamux's largest stream window
	maxIncoming int                 // what we announced
	slots       chan struct{}       // one per stream we have open, up to the peer's limit
	accepted    *fifo[*tcpStream]   // streams the peer opened, for AcceptStream
	queue       *fifo[wire.Message] // mux control frames for writeControl
	wrote       chan struct{}       // closed when the writer has written a Close, or given up
	readDone    chan struct{}       // closed when the control reader has stopped

	// opening is held while a stream is opened and registered, so that a
	// control frame about it (the peer may refuse it at once) never finds
	// it missing.
	opening sync.RWMutex

	mu       sync.Mutex
	streams  map[uint32]*tcpStream
	pending  map[uint32]pendingFrame
	incoming int // streams the peer opened that have not ended
	refused  int // streams refused for being past the limit
	closeErr error
	closing  bool

	wg sync.WaitGroup
}

type pendingFrame struct {
	m  wire.Message
	at time.Time
}

var _ Session = (*tcpSession)(nil)

// newTCPSession runs yamux over tc and exchanges MuxSettings, within ctx.
// client is the side that dialed. The session's context descends from
// parent, for its values: parent must not end before the session does.
func newTCPSession(ctx, parent context.Context, tc *tls.Conn, client bool, cfg *transport.Config) (*tcpSession, error) {
	var z transport.Config
	if cfg == nil {
		cfg = &z
	}
	yc := yamuxConfig(cfg)
	lc := &lingerConn{Conn: tc}
	var (
		mux *yamux.Session
		err error
	)
	if client {
		mux, err = yamux.Client(lc, yc)
	} else {
		mux, err = yamux.Server(lc, yc)
	}
	if err != nil {
		tc.Close()
		return nil, fmt.Errorf("quicnet: tcp: %w", err)
	}
	fail := func(err error) (*tcpSession, error) {
		mux.Close()
		tc.Close()
		return nil, err
	}
	var ctl *yamux.Stream
	if client {
		ctl, err = mux.OpenStream()
	} else {
		ctl, err = mux.AcceptStreamWithContext(ctx)
	}
	if err != nil {
		return fail(fmt.Errorf("quicnet: tcp: mux control stream: %w", err))
	}
	if ctl.StreamID() != 1 {
		return fail(fmt.Errorf("%w: tcp: the first stream is %d, not the mux control stream", wire.ErrMalformed, ctl.StreamID()))
	}
	if d, ok := ctx.Deadline(); ok {
		ctl.SetDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { ctl.SetDeadline(past) })
	defer stop()
	maxIn := int(min(or(cfg.MaxIncomingStreams, 1024), 1<<20))
	settingsSent := time.Now()
	if err := wire.WriteFrame(ctl, &wire.MuxSettings{MaxStreams: uint64(maxIn)}); err != nil {
		return fail(fmt.Errorf("quicnet: tcp: mux settings: %w", err))
	}
	m, err := wire.ReadFrame(ctl, wire.MaxMuxFrame)
	if err != nil {
		return fail(fmt.Errorf("quicnet: tcp: mux settings: %w", err))
	}
	peer, ok := m.(*wire.MuxSettings)
	if !ok {
		return fail(fmt.Errorf("%w: tcp: a %s frame before mux settings", wire.ErrMalformed, m.FrameType().Name()))
	}
	if !stop() {
		return fail(fmt.Errorf("quicnet: tcp: mux settings: %w", ctx.Err()))
	}
	ctl.SetDeadline(time.Time{})
	s := &tcpSession{
		tc: tc, mux: mux, ctl: ctl, lc: lc, client: client, window: int64(yc.MaxStreamWindowSize),
		// The dialer's settings exchange is one round trip (the peer
		// answers its own as soon as it has the stream): the estimate
		// silence watches allow for. The accepting side sent its
		// settings after the peer's arrived, so it has none.
		rtt:         rttEstimate(client, time.Since(settingsSent)),
		maxIncoming: maxIn,
		slots:       make(chan struct{}, min(peer.MaxStreams, 1<<20)),
		accepted:    newFIFO[*tcpStream](min(2*maxIn, 4096)),
		queue:       newFIFO[wire.Message](ctlQueue),
		wrote:       make(chan struct{}),
		readDone:    make(chan struct{}),
		streams:     map[uint32]*tcpStream{},
		pending:     map[uint32]pendingFrame{},
	}
	s.ctx, s.cancel = context.WithCancelCause(parent)
	unblock := s.unblock
	lc.onClose.Store(&unblock)
	s.wg.Add(4)
	go s.readControl()
	go s.writeControl()
	go s.acceptLoop()
	go s.watch()
	return s, nil
}

// lingerConn is the connection yamux runs on. yamux closes it when the
// session ends; closing only the write side (close_notify and a FIN), and
// bounding the read side, lets the peer read a Close frame that a reset
// connection would have thrown away. The watch goroutine closes it for
// good.
//
// It also joins each data frame's header to its body: yamux writes them
// apart, which would make two TLS records and two TCP segments of every
// frame. Only yamux's send loop writes, so there is no concurrency here.
type lingerConn struct {
	*tls.Conn
	onClose atomic.Pointer[func()] // the session's unblock, once there is one
	reads   atomic.Uint64          // reads that returned bytes: something arrived
	hdr     [yamuxHeaderLen]byte
	pending bool
	buf     []byte
}

// yamuxHeaderLen is the size of a yamux frame header: version, type,
// flags (2), stream ID (4), length (4). Type 0 is data, whose body
// follows in the next write.
const yamuxHeaderLen = 12

func (c *lingerConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.reads.Add(1)
	}
	return n, err
}

// Received counts the reads from the peer that returned bytes: a frame
// or a keep-alive's ping or pong (quicnet.Received), so that a relay can
// tell a silent connector over TCP as it does over QUIC.
func (s *tcpSession) Received() uint64 { return s.lc.reads.Load() }

// Heard is Received with the session's round-trip estimate, for the
// agent's silence watch (session.Hearing). yamux measures no round trip
// of its own: the estimate is the dialer's settings exchange.
func (s *tcpSession) Heard() (uint64, time.Duration) { return s.Received(), s.rtt }

func rttEstimate(client bool, exchange time.Duration) time.Duration {
	if !client {
		return 0
	}
	return exchange
}

func (c *lingerConn) Write(p []byte) (int, error) {
	if c.pending {
		c.pending = false
		c.buf = append(append(c.buf[:0], c.hdr[:]...), p...)
		// Bodies are at most maxDataFrame (tcpStream.Write), so buf is too.
		n, err := c.Conn.Write(c.buf)
		return max(n-yamuxHeaderLen, 0), err
	}
	if len(p) == yamuxHeaderLen && p[1] == 0 && binary.BigEndian.Uint32(p[8:]) > 0 {
		copy(c.hdr[:], p)
		c.pending = true
		return len(p), nil
	}
	return c.Conn.Write(p)
}

func (c *lingerConn) Close() error {
	// yamux closes its shutdown channel just before: the streams' waits
	// must end now (see unblock), not when watch gets to run.
	if f := c.onClose.Load(); f != nil {
		(*f)()
	}
	c.SetWriteDeadline(time.Now().Add(closeLinger))
	c.Conn.CloseWrite()
	c.SetReadDeadline(time.Now().Add(closeLinger))
	return nil
}

func (s *tcpSession) watch() {
	defer s.wg.Done()
	<-s.mux.CloseChan()
	s.unblock() // in case yamux closed lc before onClose was set
	// A Close frame may sit unread in the control stream: yamux ends the
	// session at the peer's close_notify, which follows it. Let the reader
	// get to it first; it reads buffered data at once, but its last read
	// only ends when yamux has torn the streams down, which a dead peer
	// delays by closeLinger: wait for less.
	select {
	case <-s.readDone:
	case <-time.After(closeRead):
	}
	s.mu.Lock()
	if s.closeErr == nil {
		s.closeErr = fmt.Errorf("quicnet: tls/tcp connection to %s ended: %w", s.tc.RemoteAddr(), net.ErrClosed)
	}
	err := s.closeErr
	s.mu.Unlock()
	s.cancel(err)
	s.mux.Close() // waits for yamux's reader, which the linger bounds
	s.tc.Close()
}

// yamux v0.1.2 spins, at a full core, in a stream's Read, or a Write
// waiting for window, that is blocked when its session shuts down: the
// wait sees the closed shutdown channel and starts over, until the
// streams are force-closed, which waits for yamux's reader, which the
// linger bounds (hashicorp/yamux#176). A peer that never closes its side
// would make every closing session cost a core-second per blocked
// reader. Deadlines in the past end those waits at once; data already
// received is still read first.

// unblock puts every stream's deadlines in the past once yamux has shut
// down: lc.Close calls it, right after yamux closed its shutdown channel.
// Streams registered after it look for themselves (shutDown).
func (s *tcpSession) unblock() {
	s.ctl.SetDeadline(past)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, st := range s.streams {
		st.y.SetDeadline(past)
	}
}

// setDeadline sets a yamux deadline through set, or leaves it in the past
// if yamux has shut down meanwhile (unblock set it, and must win).
func (s *tcpSession) setDeadline(set func(time.Time) error, t time.Time) error {
	err := set(t)
	if s.mux.IsClosed() {
		set(past)
	}
	return err
}

// shutDown is unblock for one stream registered after it may have run.
func (s *tcpSession) shutDown(y *yamux.Stream) {
	if s.mux.IsClosed() {
		y.SetDeadline(past)
	}
}

// Network is "tcp".
func (s *tcpSession) Network() string { return "tcp" }

func (s *tcpSession) Context() context.Context { return s.ctx }
func (s *tcpSession) LocalAddr() net.Addr      { return s.tc.LocalAddr() }
func (s *tcpSession) RemoteAddr() net.Addr     { return s.tc.RemoteAddr() }

func (s *tcpSession) err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closeErr != nil {
		return s.closeErr
	}
	return fmt.Errorf("quicnet: tls/tcp connection to %s ended: %w", s.tc.RemoteAddr(), net.ErrClosed)
}

// goneErr is err for a stream that found the session gone. A Close frame
// saying why (a relay's CODE_REVOKED, say) may still sit unread on the
// control stream when a stream notices: watch gives its reader a moment,
// then ends the session's context, and the reason is known by then.
func (s *tcpSession) goneErr() error {
	t := time.NewTimer(2 * closeRead)
	select {
	case <-s.ctx.Done():
	case <-t.C:
	}
	t.Stop()
	return s.err()
}

// CloseWithError sends a Close frame and closes the connection. It waits
// at most closeLinger for the frame to be written.
func (s *tcpSession) CloseWithError(code quic.ApplicationErrorCode, msg string) error {
	s.closeWith(&quic.ApplicationError{ErrorCode: code, ErrorMessage: msg}, true)
	return nil
}

// closeWith ends the session with err as its cause; with send, the peer
// is told code and reason in a Close frame first.
func (s *tcpSession) closeWith(err *quic.ApplicationError, send bool) {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return
	}
	s.closing = true
	s.closeErr = err
	s.mu.Unlock()
	s.cancel(err)
	if send {
		reason := err.ErrorMessage
		if len(reason) > 1024 {
			reason = reason[:1024]
		}
		code := uint32(min(err.ErrorCode, 255))
		if s.queue.tryPush(&wire.Close{Code: code, Reason: reason}) {
			t := time.NewTimer(closeLinger)
			select {
			case <-s.wrote:
			case <-t.C:
			}
			t.Stop()
		}
	}
	go s.mux.Close()
}

// send queues a mux control frame. A peer that leaves the queue full for
// ctlStall loses the session.
func (s *tcpSession) send(m wire.Message) {
	if s.ctx.Err() != nil || s.queue.tryPush(m) {
		return
	}
	t := time.NewTimer(ctlStall)
	defer t.Stop()
	for {
		select {
		case <-s.queue.space:
			if s.queue.tryPush(m) {
				return
			}
		case <-s.ctx.Done():
			return
		case <-t.C:
			s.closeWith(&quic.ApplicationError{ErrorCode: quic.ApplicationErrorCode(wire.CodeLimit), ErrorMessage: "mux_control_stalled: the peer does not read its mux control stream"}, false)
			return
		}
	}
}

func (s *tcpSession) writeControl() {
	defer s.wg.Done()
	defer close(s.wrote)
	for {
		m, ok := s.queue.tryPop()
		if !ok {
			select {
			case <-s.queue.ready:
				continue
			case <-s.mux.CloseChan():
				return
			}
		}
		s.setDeadline(s.ctl.SetWriteDeadline, time.Now().Add(ctlStall))
		err := wire.WriteFrame(s.ctl, m)
		if _, last := m.(*wire.Close); last || err != nil {
			return
		}
	}
}

func (s *tcpSession) protocolError(msg string) {
	s.closeWith(&quic.ApplicationError{ErrorCode: quic.ApplicationErrorCode(wire.CodeProtocol), ErrorMessage: "mux_control: " + msg}, true)
}

func (s *tcpSession) readControl() {
	defer s.wg.Done()
	defer close(s.readDone)
	for {
		m, err := wire.ReadFrame(s.ctl, wire.MaxMuxFrame)
		if err != nil {
			if !s.mux.IsClosed() && s.ctx.Err() == nil {
				s.protocolError(err.Error())
			}
			return
		}
		switch m := m.(type) {
		case *wire.StreamReset:
			if st := s.stream(m.StreamId, m); st != nil {
				st.remoteReset(quic.StreamErrorCode(m.Code))
			}
			s.send(&wire.ResetAck{StreamId: m.StreamId})
		case *wire.StopSending:
			if st := s.stream(m.StreamId, m); st != nil {
				st.remoteStop(quic.StreamErrorCode(m.Code))
			}
		case *wire.ResetAck:
			if st := s.stream(m.StreamId, nil); st != nil {
				st.acked()
			}
		case *wire.Close:
			s.closeWith(&quic.ApplicationError{Remote: true, ErrorCode: quic.ApplicationErrorCode(m.Code), ErrorMessage: m.Reason}, false)
			return
		default:
			s.protocolError("unexpected " + m.FrameType().Name() + " frame")
			return
		}
	}
}

// stream returns the registered stream id. A frame m for a stream the
// peer opened and the accept loop has not registered yet is kept for it.
func (s *tcpSession) stream(id uint32, m wire.Message) *tcpStream {
	if s.ours(id) {
		s.opening.RLock()
		defer s.opening.RUnlock()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.streams[id]; st != nil {
		return st
	}
	if m == nil || s.ours(id) {
		return nil
	}
	now := time.Now()
	if len(s.pending) >= maxPending {
		for k, p := range s.pending {
			if now.Sub(p.at) > 30*time.Second {
				delete(s.pending, k)
			}
		}
		if len(s.pending) >= maxPending {
			go s.protocolError("too many frames for unknown streams")
			return nil
		}
	}
	if prev, ok := s.pending[id]; ok && prev.m.FrameType() == wire.FrameStreamReset {
		return nil // a reset says more than a stop
	}
	s.pending[id] = pendingFrame{m, now}
	return nil
}

// ours reports whether we opened stream id: the dialer (yamux client)
// opens odd IDs.
func (s *tcpSession) ours(id uint32) bool {
	return (id%2 == 1) == s.client
}

func (s *tcpSession) OpenStreamSync(ctx context.Context) (Stream, error) {
	select {
	case s.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-s.ctx.Done():
		return nil, s.err()
	}
	s.opening.Lock()
	defer s.opening.Unlock()
	y, err := s.mux.OpenStream()
	if err != nil {
		<-s.slots
		if s.ctx.Err() != nil || s.mux.IsClosed() {
			return nil, s.err()
		}
		return nil, fmt.Errorf("quicnet: tcp: open stream: %w", err)
	}
	st := &tcpStream{y: y, sess: s, id: y.StreamID()}
	s.mu.Lock()
	s.streams[st.id] = st
	s.mu.Unlock()
	s.shutDown(y)
	return st, nil
}

func (s *tcpSession) AcceptStream(ctx context.Context) (Stream, error) {
	for {
		if st, ok := s.accepted.tryPop(); ok {
			return st, nil
		}
		select {
		case <-s.accepted.ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.ctx.Done():
			return nil, s.err()
		}
	}
}

// acceptLoop registers every stream the peer opens as soon as yamux has
// it, so that mux control frames find it, and queues it for
// AcceptStream. It refuses the streams of a peer that has more than twice
// the limit it was given open, and ends the session of one that has been
// refused more than the limit's worth of streams.
func (s *tcpSession) acceptLoop() {
	defer s.wg.Done()
	for {
		y, err := s.mux.AcceptStream()
		if err != nil {
			return
		}
		st := &tcpStream{y: y, sess: s, id: y.StreamID(), incoming: true}
		s.mu.Lock()
		s.streams[st.id] = st
		s.incoming++
		over := s.incoming > 2*s.maxIncoming
		if over {
			s.refused++
		}
		abuse := s.refused > s.maxIncoming
		p, hasPending := s.pending[st.id]
		delete(s.pending, st.id)
		s.mu.Unlock()
		s.shutDown(y)
		if abuse {
			s.closeWith(&quic.ApplicationError{ErrorCode: quic.ApplicationErrorCode(wire.CodeLimit), ErrorMessage: "stream_limit: the peer opened far more streams than it may"}, true)
			return
		}
		if hasPending {
			switch m := p.m.(type) {
			case *wire.StreamReset:
				st.remoteReset(quic.StreamErrorCode(m.Code))
			case *wire.StopSending:
				st.remoteStop(quic.StreamErrorCode(m.Code))
			}
		}
		if over {
			st.CancelRead(StreamRefused)
			st.CancelWrite(StreamRefused)
			continue
		}
		for !s.accepted.tryPush(st) {
			select {
			case <-s.accepted.space:
			case <-s.ctx.Done():
				st.CancelRead(StreamAborted)
				st.CancelWrite(StreamAborted)
				return
			}
		}
	}
}

// release forgets st once it has ended both ways.
func (s *tcpSession) release(st *tcpStream) {
	s.mu.Lock()
	delete(s.streams, st.id)
	if st.incoming {
		s.incoming--
	}
	s.mu.Unlock()
	if !st.incoming {
		<-s.slots
	}
}

// tcpStream is a yamux stream with QUIC's stream semantics: codes on
// reset and stop-sending travel on the mux control stream, and a reset
// direction's FIN waits for the peer's ResetAck.
type tcpStream struct {
	y        *yamux.Stream
	sess     *tcpSession
	id       uint32
	incoming bool

	rmu sync.Mutex // held around yamux reads, so that drain takes over from the last one

	mu        sync.Mutex
	readErr   error // what Read returns: a reset by the peer, or CancelRead
	writeErr  error // what Write returns: CancelWrite, or a stop by the peer
	readEnded bool  // EOF read, or the peer reset its side
	finSent   bool
	awaitAck  bool // our StreamReset is out; the FIN waits for its ResetAck
	released  bool
}

var _ Stream = (*tcpStream)(nil)

// StreamID numbers the stream as QUIC would, so that a stream ID the
// protocol carries (Revoke.stream) means the same on both transports: the
// dialer's yamux streams 1, 3, 5, ... are QUIC's client-initiated
// bidirectional streams 0, 4, 8, ..., the listener's 2, 4, ... its
// server-initiated ones 1, 5, .... Mux control frames carry yamux IDs.
func (s *tcpStream) StreamID() quic.StreamID { return quicStreamID(s.id) }

func quicStreamID(id uint32) quic.StreamID {
	if id%2 == 1 {
		return quic.StreamID(id-1) / 2 * 4
	}
	return (quic.StreamID(id)/2-1)*4 + 1
}

func (s *tcpStream) streamError(code quic.StreamErrorCode, remote bool) error {
	return &quic.StreamError{StreamID: s.StreamID(), ErrorCode: code, Remote: remote}
}

func (s *tcpStream) Read(p []byte) (int, error) {
	s.mu.Lock()
	err, ended := s.readErr, s.readEnded
	s.mu.Unlock()
	if err != nil {
		return 0, err
	}
	if ended {
		return 0, io.EOF
	}
	s.rmu.Lock()
	n, err := s.y.Read(p)
	s.rmu.Unlock()
	if err != nil {
		err = s.readFailed(err)
	}
	return n, err
}

func (s *tcpStream) readFailed(err error) error {
	s.mu.Lock()
	if s.readErr != nil {
		defer s.mu.Unlock()
		return s.readErr
	}
	switch {
	case errors.Is(err, yamux.ErrTimeout) && !s.sess.mux.IsClosed():
		s.mu.Unlock()
		return os.ErrDeadlineExceeded
	case err == io.EOF && !s.sess.mux.IsClosed():
		// A FIN. A reset would have come first, and been acknowledged
		// before the peer sent it.
		s.readEnded = true
		s.mu.Unlock()
		s.maybeRelease()
		return io.EOF
	case errors.Is(err, yamux.ErrConnectionReset):
		// yamux's own RST: its accept backlog was full, or a stream
		// outlived StreamCloseTimeout.
		s.readErr = s.streamError(StreamAborted, true)
		s.readEnded = true
		s.mu.Unlock()
		s.maybeRelease()
		return s.readErr
	}
	s.mu.Unlock()
	// The session is gone: an EOF now does not mean the peer finished.
	return s.sess.goneErr()
}

func (s *tcpStream) Write(p []byte) (int, error) {
	s.mu.Lock()
	err, fin := s.writeErr, s.finSent
	s.mu.Unlock()
	if err != nil {
		return 0, err
	}
	if fin {
		return 0, errWriteClosed
	}
	// In frames of at most maxDataFrame: yamux would send the whole window
	// in one, which holds the connection for every other stream as long
	// as it takes to send, and a CancelWrite waits for it.
	var n int
	for len(p) > 0 {
		chunk := p[:min(len(p), maxDataFrame)]
		m, err := s.y.Write(chunk)
		n += m
		if err != nil {
			return n, s.writeFailed(err)
		}
		p = p[m:]
		if len(p) > 0 {
			s.mu.Lock()
			err := s.writeErr
			s.mu.Unlock()
			if err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

func (s *tcpStream) writeFailed(err error) error {
	s.mu.Lock()
	werr := s.writeErr
	s.mu.Unlock()
	switch {
	case werr != nil:
		return werr
	case errors.Is(err, yamux.ErrTimeout) && !s.sess.mux.IsClosed():
		return os.ErrDeadlineExceeded
	case errors.Is(err, yamux.ErrConnectionReset):
		return s.streamError(StreamAborted, true)
	case errors.Is(err, yamux.ErrStreamClosed) && !s.sess.mux.IsClosed():
		return errWriteClosed
	}
	return s.sess.goneErr()
}

// Close sends the FIN. After CancelWrite it does nothing.
func (s *tcpStream) Close() error {
	s.mu.Lock()
	if s.finSent || s.writeErr != nil {
		s.mu.Unlock()
		return nil
	}
	s.finSent = true
	s.mu.Unlock()
	err := s.y.Close()
	s.maybeRelease()
	if err != nil && s.sess.mux.IsClosed() {
		return s.sess.err()
	}
	return nil
}

// CancelWrite resets the send direction with code: nothing more is
// written, and the peer's reads fail with code. After Close it does
// nothing.
func (s *tcpStream) CancelWrite(code quic.StreamErrorCode) {
	s.mu.Lock()
	if s.finSent || s.writeErr != nil {
		s.mu.Unlock()
		return
	}
	s.writeErr = s.streamError(code, false)
	s.awaitAck = true
	s.y.SetWriteDeadline(past)
	s.mu.Unlock()
	s.sess.send(&wire.StreamReset{StreamId: s.id, Code: uint64(code)})
}

// CancelRead tells the peer to stop sending, with code. What it sends
// meanwhile is read and thrown away, up to a bound, so that the stream
// can end.
func (s *tcpStream) CancelRead(code quic.StreamErrorCode) {
	s.mu.Lock()
	if s.readErr != nil || s.readEnded {
		s.mu.Unlock()
		return
	}
	s.readErr = s.streamError(code, false)
	s.y.SetReadDeadline(past)
	s.mu.Unlock()
	s.sess.send(&wire.StopSending{StreamId: s.id, Code: uint64(code)})
	go s.drain()
}

// drain reads what the peer still sends after a CancelRead until its
// FIN or reset; a peer that sends more than two windows' worth is left
// blocked on the window, and the stream ends with the session.
func (s *tcpStream) drain() {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	s.mu.Lock()
	if s.readEnded {
		s.mu.Unlock()
		return
	}
	s.sess.setDeadline(s.y.SetReadDeadline, time.Time{})
	s.mu.Unlock()
	buf := make([]byte, 16<<10)
	limit := 2 * s.sess.window
	for n := int64(0); n < limit; {
		m, err := s.y.Read(buf)
		n += int64(m)
		if err == nil {
			continue
		}
		s.mu.Lock()
		ended := s.readEnded
		if err == io.EOF && !s.sess.mux.IsClosed() {
			s.readEnded = true
		}
		s.mu.Unlock()
		if !ended {
			s.maybeRelease()
		}
		return
	}
}

func (s *tcpStream) remoteReset(code quic.StreamErrorCode) {
	s.mu.Lock()
	if s.readEnded {
		s.mu.Unlock()
		return
	}
	if s.readErr == nil {
		s.readErr = s.streamError(code, true)
	}
	s.readEnded = true
	s.y.SetReadDeadline(past)
	s.mu.Unlock()
	s.maybeRelease()
}

func (s *tcpStream) remoteStop(code quic.StreamErrorCode) {
	s.mu.Lock()
	if s.finSent || s.writeErr != nil {
		s.mu.Unlock()
		return
	}
	s.writeErr = s.streamError(code, true)
	s.awaitAck = true
	s.y.SetWriteDeadline(past)
	s.mu.Unlock()
	s.sess.send(&wire.StreamReset{StreamId: s.id, Code: uint64(code)})
}

func (s *tcpStream) acked() {
	s.mu.Lock()
	if !s.awaitAck {
		s.mu.Unlock()
		return
	}
	s.awaitAck = false
	s.finSent = true
	s.mu.Unlock()
	s.y.Close()
	s.maybeRelease()
}

func (s *tcpStream) maybeRelease() {
	s.mu.Lock()
	done := s.finSent && s.readEnded && !s.released
	if done {
		s.released = true
	}
	s.mu.Unlock()
	if done {
		s.sess.release(s)
	}
}

func (s *tcpStream) SetDeadline(t time.Time) error {
	s.SetReadDeadline(t)
	return s.SetWriteDeadline(t)
}

func (s *tcpStream) SetReadDeadline(t time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.readErr != nil || s.readEnded {
		return nil
	}
	return s.sess.setDeadline(s.y.SetReadDeadline, t)
}

func (s *tcpStream) SetWriteDeadline(t time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.writeErr != nil {
		return nil
	}
	return s.sess.setDeadline(s.y.SetWriteDeadline, t)
}

// TLSState is the TLS connection's state: the client certificate a
// bound token's key is proven by, as over QUIC.
func (s *tcpSession) TLSState() tls.ConnectionState { return s.tc.ConnectionState() }
