package quicnet_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/postern/postern/internal/quicnet"
	"github.com/postern/postern/transport"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// networks are the transports every Conn and Splice test runs on.
var networks = []string{transport.NetworkQUIC, transport.NetworkTCP}

func forNetworks(t *testing.T, test func(t *testing.T, network string)) {
	for _, n := range networks {
		t.Run(n, func(t *testing.T) { test(t, n) })
	}
}

func pair(tb testing.TB) (client, server *quicnet.Conn) {
	tb.Helper()
	return pairOn(tb, transport.NetworkQUIC)
}

// pairOn connects a client and a server over network and returns the two
// ends of one stream.
func pairOn(tb testing.TB, network string) (client, server *quicnet.Conn) {
	tb.Helper()
	c, s, _, _ := sessions(tb, network, nil)
	cs, ss := streamPair(tb, c, s)
	return quicnet.NewConn(cs, c.LocalAddr(), c.RemoteAddr()), quicnet.NewConn(ss, s.LocalAddr(), s.RemoteAddr())
}

// sessions connects a client session to a listener over network, both
// with cfg (its Network set to network).
func sessions(tb testing.TB, network string, cfg *transport.Config) (client, server quicnet.Session, ln *quicnet.Listener, tlsConf *tls.Config) {
	tb.Helper()
	var c transport.Config
	if cfg != nil {
		c = *cfg
	}
	c.Network = network
	cert, err := transport.SelfSigned("127.0.0.1")
	if err != nil {
		tb.Fatal(err)
	}
	ln, err = quicnet.Listen("127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}}, &c)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	tlsConf, err = transport.Trust{Pin: transport.Pin(cert)}.ClientTLS("127.0.0.1")
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cc, err := quicnet.Dial(ctx, ln.Addr().String(), tlsConf, &c)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cc.CloseWithError(0, "") })
	sc, err := ln.Accept(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { sc.CloseWithError(0, "") })
	if network != transport.NetworkAuto && (cc.Network() != network || sc.Network() != network) {
		tb.Fatalf("sessions over %s and %s, want %s", cc.Network(), sc.Network(), network)
	}
	return cc, sc, ln, tlsConf
}

// streamPair opens a stream from c and accepts it on s.
func streamPair(tb testing.TB, c, s quicnet.Session) (cs, ss quicnet.Stream) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cs, err := c.OpenStreamSync(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	cs.Write([]byte{0}) // a stream exists for the peer once it carries a byte
	ss, err = s.AcceptStream(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	var b [1]byte
	if _, err := io.ReadFull(ss, b[:]); err != nil {
		tb.Fatal(err)
	}
	return cs, ss
}

func TestConnHalfClose(t *testing.T) { forNetworks(t, testConnHalfClose) }

func testConnHalfClose(t *testing.T, network string) {
	c, s := pairOn(t, network)
	if _, err := c.Write([]byte("request")); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(s)
	if err != nil || string(got) != "request" {
		t.Fatalf("server read %q, %v; want the request then EOF", got, err)
	}
	if _, err := s.Write([]byte("response")); err != nil {
		t.Fatalf("answering after the peer's half-close: %v", err)
	}
	s.CloseWrite()
	got, err = io.ReadAll(c)
	if err != nil || string(got) != "response" {
		t.Fatalf("client read %q, %v", got, err)
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after CloseWrite: %v, want net.ErrClosed", err)
	}
}

func TestConnCloseBothWays(t *testing.T) { forNetworks(t, testConnCloseBothWays) }

func testConnCloseBothWays(t *testing.T, network string) {
	c, s := pairOn(t, network)
	if _, err := c.Write([]byte("last words")); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	// Written data is delivered, then EOF: Close finishes the send side.
	got, err := io.ReadAll(s)
	if err != nil || string(got) != "last words" {
		t.Fatalf("peer read %q, %v", got, err)
	}
	// The receive side is closed too: the peer's writes fail.
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := s.Write([]byte("anyone there?"))
		if err != nil {
			if code, ok := quicnet.StreamErrorCode(err); !ok || code != quicnet.StreamClosed {
				t.Fatalf("peer write error %v, want a stop-sending with StreamClosed", err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("peer could still write after Close")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after Close: %v, want net.ErrClosed", err)
	}
}

func TestConnCloseDuringBlockedWrite(t *testing.T) { forNetworks(t, testConnCloseDuringBlockedWrite) }

func testConnCloseDuringBlockedWrite(t *testing.T, network string) {
	c, _ := pairOn(t, network) // the server never reads: the client's writes block on flow control
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(make([]byte, 64<<20))
		errc <- err
	}()
	time.Sleep(100 * time.Millisecond)
	c.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("blocked write ended with %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not unblock a blocked Write")
	}
}

func TestConnDeadline(t *testing.T) { forNetworks(t, testConnDeadline) }

func testConnDeadline(t *testing.T, network string) {
	c, _ := pairOn(t, network)
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past the deadline: %v, want a timeout", err)
	}
}

func TestSplice(t *testing.T) { forNetworks(t, testSplice) }

func testSplice(t *testing.T, network string) {
	// agent <-> [a | relay | b] <-> upstream, all QUIC streams.
	agent, a := pairOn(t, network)
	b, upstream := pairOn(t, network)
	type result struct {
		ab, ba int64
		err    error
	}
	done := make(chan result, 1)
	go func() {
		ab, ba, err := quicnet.Splice(a, b)
		done <- result{ab, ba, err}
	}()
	go func() {
		io.Copy(upstream, upstream) // echo until EOF, then half-close
		upstream.CloseWrite()
	}()
	msg := bytes.Repeat([]byte("postern"), 100000)
	go func() {
		agent.Write(msg)
		agent.CloseWrite()
	}()
	got, err := io.ReadAll(agent)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("echo through the splice: %d bytes, %v", len(got), err)
	}
	r := <-done
	if r.err != nil || r.ab != int64(len(msg)) || r.ba != int64(len(msg)) {
		t.Fatalf("Splice = %d, %d, %v", r.ab, r.ba, r.err)
	}
}

func TestSpliceAbortPropagates(t *testing.T) { forNetworks(t, testSpliceAbortPropagates) }

func testSpliceAbortPropagates(t *testing.T, network string) {
	agent, a := pairOn(t, network)
	b, upstream := pairOn(t, network)
	done := make(chan error, 1)
	go func() {
		_, _, err := quicnet.Splice(a, b)
		done <- err
	}()
	upstream.Abort(quicnet.StreamAborted) // the upstream side fails
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Splice reported a clean end for an aborted stream")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Splice did not end after one side was reset")
	}
	// The agent sees an error, not a clean EOF.
	_, err := io.ReadAll(agent)
	if err == nil {
		t.Fatal("the agent read a clean EOF after the upstream was reset")
	}
}

// TestSpliceStopReading: a's peer closing its read side (CloseRead, a
// STOP_SENDING of STREAM_ERROR_CLOSED) ends only b to a: what it writes
// next still reaches b's peer, with its FIN, and the splice ends clean.
func TestSpliceStopReading(t *testing.T) { forNetworks(t, testSpliceStopReading) }

func testSpliceStopReading(t *testing.T, network string) {
	agent, a := pairOn(t, network)
	b, upstream := pairOn(t, network)
	type result struct {
		ab  int64
		err error
	}
	done := make(chan result, 1)
	go func() {
		ab, _, err := quicnet.Splice(a, b)
		done <- result{ab, err}
	}()
	go func() { // the upstream talks until it is stopped
		chatter := make([]byte, 16<<10)
		for {
			if _, err := upstream.Write(chatter); err != nil {
				return
			}
		}
	}()
	if _, err := io.ReadFull(agent, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	agent.CloseRead()
	msg := bytes.Repeat([]byte("postern"), 300000)
	go func() {
		agent.Write(msg)
		agent.CloseWrite()
	}()
	upstream.SetReadDeadline(time.Now().Add(20 * time.Second))
	got, err := io.ReadAll(upstream)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("after the agent's CloseRead, the upstream read %d bytes of %d, then %v", len(got), len(msg), err)
	}
	select {
	case r := <-done:
		if r.err != nil || r.ab != int64(len(msg)) {
			t.Fatalf("Splice = %d, %v; want %d and no error", r.ab, r.err, len(msg))
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Splice did not end after the agent's CloseRead and CloseWrite")
	}
	upstream.Close()
}

// TestSplicerAnswerReadableAfterFailure: when the copy into b fails before
// Finish (b's peer stopped reading, as a connector refusing a dial does),
// what b's peer answered can still be read from b: a relay must learn why
// its connector refused, even while the agent is still sending.
func TestSplicerAnswerReadableAfterFailure(t *testing.T) {
	forNetworks(t, testSplicerAnswerReadableAfterFailure)
}

func testSplicerAnswerReadableAfterFailure(t *testing.T, network string) {
	agent, a := pairOn(t, network)
	b, connector := pairOn(t, network)
	sp := quicnet.StartSplice(a, b)
	connector.CloseRead()
	if _, err := connector.Write([]byte("refused")); err != nil {
		t.Fatal(err)
	}
	connector.CloseWrite()
	sent := make(chan error, 1)
	go func() {
		// More than any window: the copy into b must fail. yamux opens a
		// stream's window to its maximum (16 MiB) at the first read.
		size := 8 << 20
		if network == transport.NetworkTCP {
			size = 40 << 20
		}
		_, err := agent.Write(make([]byte, size))
		sent <- err
	}()
	sp.Wait()
	got, err := io.ReadAll(b)
	if err != nil || string(got) != "refused" {
		t.Fatalf("reading b's answer after the copy into b failed: %q, %v", got, err)
	}
	if _, _, err := sp.Finish(); err == nil {
		t.Fatal("Finish reported a clean end after the copy into b failed")
	}
	if err := <-sent; err == nil {
		t.Fatal("the agent's write succeeded although the splice failed")
	}
}

// TestOpenStreamNow: on QUIC, a stream at once while the peer's limit
// allows one, false once it is reached (the caller then waits in
// OpenStreamSync); false on any other transport.
func TestOpenStreamNow(t *testing.T) {
	c, _, _, _ := sessions(t, transport.NetworkQUIC, &transport.Config{MaxIncomingStreams: 2})
	for i := 0; i < 2; i++ {
		st, ok := quicnet.OpenStreamNow(c)
		if !ok || st == nil {
			t.Fatalf("stream %d of 2: OpenStreamNow = %v, %v; want a stream", i, st, ok)
		}
		defer st.CancelWrite(quicnet.StreamClosed)
	}
	if st, ok := quicnet.OpenStreamNow(c); ok || st != nil {
		t.Fatalf("past the peer's limit: OpenStreamNow = %v, %v; want none", st, ok)
	}
	tc, _, _, _ := sessions(t, transport.NetworkTCP, nil)
	if st, ok := quicnet.OpenStreamNow(tc); ok || st != nil {
		t.Fatalf("over TLS/TCP: OpenStreamNow = %v, %v; want none (OpenStreamSync)", st, ok)
	}
}

// TestHandshakeBesideBusyGoroutines: a listener's handshakes wait for the
// goroutines ready to run (package idle), but a process that never goes
// idle still completes them, over QUIC and TCP alike.
func TestHandshakeBesideBusyGoroutines(t *testing.T) {
	forNetworks(t, func(t *testing.T, network string) {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
		var stop atomic.Bool
		var wg sync.WaitGroup
		defer wg.Wait()
		defer stop.Store(true)
		for range 3 {
			wg.Go(func() {
				for !stop.Load() {
					runtime.Gosched()
				}
			})
		}
		for range 3 {
			c, s, _, _ := sessions(t, network, nil)
			cs, ss := streamPair(t, c, s)
			cs.Close()
			ss.Close()
		}
	})
}
