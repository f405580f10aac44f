package quicnet_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/postern/postern/internal/quicnet"
	"github.com/postern/postern/internal/wire"
	"github.com/postern/postern/transport"
)

// TestStreamCodes: the codes of a reset and a stop-sending reach the peer
// the same way over both transports, and a reset stream never reads as a
// clean end, even when the reader comes after the stream has ended.
func TestStreamCodes(t *testing.T) { forNetworks(t, testStreamCodes) }

func testStreamCodes(t *testing.T, network string) {
	c, s, _, _ := sessions(t, network, nil)

	t.Run("stream IDs as QUIC numbers them", func(t *testing.T) {
		for range 2 {
			cs, ss := streamPair(t, c, s)
			if cs.StreamID() != ss.StreamID() || cs.StreamID()%4 != 0 {
				t.Fatalf("client stream %d, server %d: want the same client-initiated bidirectional ID", cs.StreamID(), ss.StreamID())
			}
			cs.CancelWrite(quicnet.StreamClosed)
			ss.CancelWrite(quicnet.StreamClosed)
		}
		ss, cs := streamPair(t, s, c) // opened by the listener's side
		if cs.StreamID() != ss.StreamID() || ss.StreamID()%4 != 1 {
			t.Fatalf("server stream %d, client %d: want the same server-initiated bidirectional ID", ss.StreamID(), cs.StreamID())
		}
	})

	t.Run("reset", func(t *testing.T) {
		cs, ss := streamPair(t, c, s)
		if _, err := cs.Write([]byte("partial")); err != nil {
			t.Fatal(err)
		}
		cs.CancelWrite(quicnet.StreamAborted)
		time.Sleep(100 * time.Millisecond) // let the reset and anything after it arrive first
		_, err := io.ReadAll(ss)
		if code, ok := quicnet.StreamErrorCode(err); !ok || code != quicnet.StreamAborted {
			t.Fatalf("read of a reset stream: %v, want a reset with StreamAborted", err)
		}
		var se *quic.StreamError
		if !errors.As(err, &se) || !se.Remote {
			t.Fatalf("reset error %v does not say the peer reset", err)
		}
		if _, err := cs.Write([]byte("x")); err == nil {
			t.Fatal("write after CancelWrite succeeded")
		}
	})

	t.Run("stop sending", func(t *testing.T) {
		cs, ss := streamPair(t, c, s)
		ss.CancelRead(quicnet.StreamRefused)
		deadline := time.Now().Add(10 * time.Second)
		for {
			_, err := cs.Write(make([]byte, 1024))
			if err != nil {
				if code, ok := quicnet.StreamErrorCode(err); !ok || code != quicnet.StreamRefused {
					t.Fatalf("write after the peer stopped reading: %v, want StreamRefused", err)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("writes went on after the peer stopped reading")
			}
			time.Sleep(10 * time.Millisecond)
		}
		// The other direction is untouched.
		if _, err := ss.Write([]byte("still here")); err != nil {
			t.Fatal(err)
		}
		ss.Close()
		got, err := io.ReadAll(cs)
		if err != nil || string(got) != "still here" {
			t.Fatalf("reading the open direction: %q, %v", got, err)
		}
	})

	t.Run("refuse", func(t *testing.T) {
		// An agent pipelines bytes after its Open; the relay refuses.
		cs, ss := streamPair(t, c, s)
		go cs.Write(bytes.Repeat([]byte("early"), 100000))
		quicnet.Refuse(ss, &wire.Result{Code: wire.CodeDenied, Reason: "policy", Message: "denied by test"})
		cs.SetReadDeadline(time.Now().Add(10 * time.Second))
		m, err := wire.ReadFrame(cs, 4096)
		if err != nil {
			t.Fatalf("reading the refusal: %v", err)
		}
		if r, ok := m.(*wire.Result); !ok || r.Code != wire.CodeDenied || r.Message != "denied by test" {
			t.Fatalf("got %v, want the denial", m)
		}
	})
}

// TestCloseCode: the code and reason of CloseWithError reach the peer as
// QUIC's CONNECTION_CLOSE does.
func TestCloseCode(t *testing.T) { forNetworks(t, testCloseCode) }

func testCloseCode(t *testing.T, network string) {
	c, s, _, _ := sessions(t, network, nil)
	s.CloseWithError(quic.ApplicationErrorCode(wire.CodeUnauthenticated), "token_expired: identity: token expired")
	select {
	case <-c.Context().Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the client did not see the close")
	}
	var ae *quic.ApplicationError
	if err := context.Cause(c.Context()); !errors.As(err, &ae) || !ae.Remote ||
		wire.Code(ae.ErrorCode) != wire.CodeUnauthenticated || ae.ErrorMessage != "token_expired: identity: token expired" {
		t.Fatalf("close cause %v, want the server's code and reason", err)
	}
	if !quicnet.IsConnClosed(context.Cause(c.Context())) {
		t.Fatal("IsConnClosed does not recognise the close")
	}
}

// TestStreamLimit: a side opens no more streams than its peer allows; a
// slot comes back once a stream has ended both ways.
func TestStreamLimit(t *testing.T) { forNetworks(t, testStreamLimit) }

func testStreamLimit(t *testing.T, network string) {
	const limit = 4
	c, s, _, _ := sessions(t, network, &transport.Config{MaxIncomingStreams: limit})
	var open []quicnet.Stream
	var accepted []quicnet.Stream
	for range limit {
		cs, ss := streamPair(t, c, s)
		open, accepted = append(open, cs), append(accepted, ss)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if st, err := c.OpenStreamSync(ctx); err == nil {
		// QUIC hands out a stream ID only within the limit; the stream
		// opens but the peer does not see it yet.
		if network == transport.NetworkTCP {
			t.Fatal("opened a stream past the peer's limit")
		}
		st.CancelWrite(quicnet.StreamClosed)
	}
	// End one stream both ways: the next open goes through.
	open[0].Close()
	io.ReadAll(accepted[0])
	accepted[0].Close()
	io.ReadAll(open[0])
	ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	if network == transport.NetworkTCP {
		if _, err := c.OpenStreamSync(ctx2); err != nil {
			t.Fatalf("open after a stream ended: %v", err)
		}
	}
}

// TestStreamWindow: a writer to a peer that does not read is held at the
// configured window.
func TestStreamWindow(t *testing.T) {
	const window = 1 << 20
	c, s, _, _ := sessions(t, transport.NetworkTCP, &transport.Config{MaxStreamWindow: window})
	cs, _ := streamPair(t, c, s)
	cs.SetWriteDeadline(time.Now().Add(time.Second))
	n, err := cs.Write(make([]byte, 8*window))
	if err == nil {
		t.Fatal("wrote 8 windows to a peer that reads nothing")
	}
	if n > window+window/2 {
		t.Fatalf("wrote %d bytes to a peer that reads nothing, window %d", n, window)
	}
}

// TestDialFallback: against a relay that listens on TCP only, an auto
// dial gets through over TCP after QUIC's head start, and the next dial
// goes to TCP first; against one that listens on both, QUIC wins.
func TestDialFallback(t *testing.T) {
	const delay = 2 * time.Second
	_, _, tcpOnly, tcpTLS := sessions(t, transport.NetworkTCP, nil)
	auto := &transport.Config{FallbackDelay: delay, HandshakeTimeout: 20 * time.Second}
	dial := func(addr string, tlsConf *tls.Config) (quicnet.Session, time.Duration) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		start := time.Now()
		sess, err := quicnet.Dial(ctx, addr, tlsConf, auto)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sess.CloseWithError(0, "") })
		return sess, time.Since(start)
	}
	addr := tcpOnly.Addr().String()
	sess, d := dial(addr, tcpTLS)
	if sess.Network() != "tcp" || d < delay {
		t.Fatalf("first dial: over %s after %v, want tcp after QUIC's head start of %v", sess.Network(), d, delay)
	}
	sess, d = dial(addr, tcpTLS)
	if sess.Network() != "tcp" || d >= delay {
		t.Fatalf("second dial: over %s after %v, want tcp at once (remembered)", sess.Network(), d)
	}

	_, _, both, bothTLS := sessions(t, transport.NetworkAuto, nil)
	if both.TCPAddr() == nil || both.TCPAddr().String() != both.Addr().String() {
		t.Fatalf("listening on UDP %v and TCP %v, want the same address", both.Addr(), both.TCPAddr())
	}
	sess, _ = dial(both.Addr().String(), bothTLS)
	if sess.Network() != "quic" {
		t.Fatalf("dial to a relay on both: over %s, want quic", sess.Network())
	}
}

// TestTCPNeedsALPN: a TLS client that does not speak the protocol gets
// no session.
func TestTCPNeedsALPN(t *testing.T) {
	_, _, ln, tlsConf := sessions(t, transport.NetworkTCP, nil)
	for _, protos := range [][]string{nil, {"h2"}} {
		c := tlsConf.Clone()
		c.NextProtos = protos
		conn, err := tls.Dial("tcp", ln.Addr().String(), c)
		if err != nil {
			continue // refused in the handshake
		}
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := conn.Read(make([]byte, 1)); err == nil {
			t.Fatalf("ALPN %q: the relay sent data", protos)
		}
		conn.Close()
	}
}

// TestTCPIdleTimeout: a peer that goes silent without closing (a frozen
// path, a machine gone) ends the session within IdleTimeout, as over
// QUIC: keep-alive pings go unanswered.
func TestTCPIdleTimeout(t *testing.T) {
	const idle = time.Second
	cfg := &transport.Config{KeepAlive: 200 * time.Millisecond, IdleTimeout: idle}
	_, _, ln, tlsConf := sessions(t, transport.NetworkTCP, cfg)
	// A proxy in between that can stop forwarding while keeping both
	// connections open.
	front, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer front.Close()
	frozen, stop := make(chan struct{}), make(chan struct{})
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	defer wg.Wait()
	defer func() {
		close(stop)
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := front.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			c.Close()
			return
		}
		mu.Lock()
		conns = append(conns, c, s)
		mu.Unlock()
		pipe := func(dst, src net.Conn) {
			defer wg.Done()
			buf := make([]byte, 32<<10)
			for {
				n, err := src.Read(buf)
				select {
				case <-frozen:
					<-stop // hold the connection open, silent
					return
				default:
				}
				if err != nil {
					return
				}
				dst.Write(buf[:n])
			}
		}
		wg.Add(2)
		go pipe(s, c)
		go pipe(c, s)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := *cfg
	c.Network = transport.NetworkTCP
	sess, err := quicnet.Dial(ctx, front.Addr().String(), tlsConf, &c)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.CloseWithError(0, "")
	time.Sleep(3 * idle) // alive: pings are answered
	if sess.Context().Err() != nil {
		t.Fatalf("session ended while the path was up: %v", context.Cause(sess.Context()))
	}
	close(frozen)
	start := time.Now()
	select {
	case <-sess.Context().Done():
	case <-time.After(10 * idle):
		t.Fatal("a silent peer kept the session up")
	}
	if d := time.Since(start); d < idle/2 {
		t.Fatalf("ended %v after the freeze, before the idle timeout could pass", d)
	}
	if !quicnet.IsConnClosed(context.Cause(sess.Context())) {
		t.Fatalf("cause %v is not a closed connection", context.Cause(sess.Context()))
	}
	t.Logf("a silent peer was noticed %v after the freeze (idle timeout %v)", time.Since(start), idle)
}

// TestTCPHearing: over TLS/TCP, as over QUIC, an idle session counts what
// arrives from its peer (the keep-alives' pings and pongs), which the
// relay's and the agent's silence watches read; the dialer also has a
// round-trip estimate.
func TestTCPHearing(t *testing.T) {
	client, server, _, _ := sessions(t, transport.NetworkTCP, &transport.Config{KeepAlive: 50 * time.Millisecond})
	type hearing interface {
		quicnet.Received
		Heard() (uint64, time.Duration)
	}
	c, ok1 := client.(hearing)
	s, ok2 := server.(hearing)
	if !ok1 || !ok2 {
		t.Fatalf("a TLS/TCP session does not count what it hears: %T, %T", client, server)
	}
	c0, s0 := c.Received(), s.Received()
	time.Sleep(500 * time.Millisecond) // about ten keep-alives each way
	if c.Received() < c0+2 || s.Received() < s0+2 {
		t.Errorf("idle for 500ms with keep-alives every 50ms: the client heard %d, the server %d more", c.Received()-c0, s.Received()-s0)
	}
	if _, rtt := c.Heard(); rtt <= 0 || rtt > 5*time.Second {
		t.Errorf("the dialer's round-trip estimate is %v", rtt)
	}
}

// TestTCPAdmission: Admission.TCPConnContext decides on a TCP connection
// before its TLS handshake. Refused, it is reset at once; admitted, its
// context is the parent of the session's, and ends when the session
// ends, or when there is no session (a failed TLS handshake).
func TestTCPAdmission(t *testing.T) {
	type key struct{}
	cert, err := transport.SelfSigned("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu     sync.Mutex
		refuse bool
		seen   []net.Addr
		ended  = make(chan net.Addr, 8)
	)
	adm := quicnet.Admission{TCPConnContext: func(ctx context.Context, remote net.Addr) (context.Context, error) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, remote)
		if refuse {
			return nil, errors.New("refused")
		}
		context.AfterFunc(ctx, func() { ended <- remote })
		return context.WithValue(ctx, key{}, remote), nil
	}}
	ln, err := quicnet.ListenAdmit("127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}}, &transport.Config{Network: transport.NetworkTCP}, adm)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	tlsConf, err := transport.Trust{Pin: transport.Pin(cert)}.ClientTLS("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	waitEnded := func(what string) net.Addr {
		t.Helper()
		select {
		case a := <-ended:
			return a
		case <-time.After(10 * time.Second):
			t.Fatalf("the admission context did not end %s", what)
			return nil
		}
	}

	c, err := quicnet.Dial(ctx, ln.Addr().String(), tlsConf, &transport.Config{Network: transport.NetworkTCP})
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Context().Value(key{}).(net.Addr); got == nil || got.String() != c.LocalAddr().String() {
		t.Fatalf("the session's context carries %v, want the admission's value, the client's address %v", got, c.LocalAddr())
	}
	select {
	case <-ended:
		t.Fatal("the admission context ended while the session is up")
	default:
	}
	c.CloseWithError(0, "")
	if a := waitEnded("when the session ended"); a.String() != c.LocalAddr().String() {
		t.Fatalf("ended %v, want %v", a, c.LocalAddr())
	}

	// A TLS handshake that fails (no ALPN) ends it too.
	noALPN := tlsConf.Clone()
	noALPN.NextProtos = []string{"h2"}
	if conn, err := tls.Dial("tcp", ln.Addr().String(), noALPN); err == nil {
		conn.Close()
	}
	waitEnded("after a failed TLS handshake")

	mu.Lock()
	refuse = true
	mu.Unlock()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err == nil {
		raw.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = raw.Read(make([]byte, 1))
		raw.Close()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatal("a refused connection was not closed at once: the listener waits for a ClientHello")
		}
	}
	if _, err := quicnet.Dial(ctx, ln.Addr().String(), tlsConf, &transport.Config{Network: transport.NetworkTCP}); err == nil {
		t.Fatal("a refused connection got a session")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 4 {
		t.Fatalf("TCPConnContext saw %d connections, want 4", len(seen))
	}
}
