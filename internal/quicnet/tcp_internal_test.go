package quicnet

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/yamux"
	"github.com/quic-go/quic-go"

	"github.com/postern/postern/internal/wire"
	"github.com/postern/postern/transport"
)

// tcpPair is a client and a server tcpSession with the server's config.
func tcpPair(t *testing.T, server *transport.Config) (c, s *tcpSession) {
	t.Helper()
	cert, err := transport.SelfSigned("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	cfg := transport.Config{Network: transport.NetworkTCP}
	if server != nil {
		cfg = *server
		cfg.Network = transport.NetworkTCP
	}
	ln, err := Listen("127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}}, &cfg)
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
	cs, err := Dial(ctx, ln.Addr().String(), tlsConf, &transport.Config{Network: transport.NetworkTCP})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.CloseWithError(0, "") })
	ss, err := ln.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ss.CloseWithError(0, "") })
	return cs.(*tcpSession), ss.(*tcpSession)
}

// TestTCPPeerOverLimit: a peer that ignores the stream limit it was given
// has its surplus streams refused, and loses the session when it goes far
// past it.
func TestTCPPeerOverLimit(t *testing.T) {
	const limit = 2
	c, _ := tcpPair(t, &transport.Config{MaxIncomingStreams: limit})
	c.slots = make(chan struct{}, 100) // ignore the server's settings
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var streams []Stream
	for i := range 2*limit + 1 {
		st, err := c.OpenStreamSync(ctx)
		if err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
		st.Write([]byte{1})
		streams = append(streams, st)
	}
	last := streams[len(streams)-1]
	last.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := last.Read(make([]byte, 1))
	if code, ok := StreamErrorCode(err); !ok || code != StreamRefused {
		t.Fatalf("stream past twice the limit: %v, want a reset with StreamRefused", err)
	}
	for range 2 * limit {
		st, err := c.OpenStreamSync(ctx)
		if err != nil {
			break
		}
		st.Write([]byte{1})
	}
	select {
	case <-c.Context().Done():
	case <-time.After(10 * time.Second):
		t.Fatal("a peer at four times the limit kept its session")
	}
	var ae *quic.ApplicationError
	if err := context.Cause(c.Context()); !errors.As(err, &ae) || wire.Code(ae.ErrorCode) != wire.CodeLimit {
		t.Fatalf("session ended with %v, want CODE_LIMIT", err)
	}
}

// TestTCPMuxFrameCap: a mux control frame over the cap ends the session
// with CODE_PROTOCOL before the payload is read.
func TestTCPMuxFrameCap(t *testing.T) {
	c, _ := tcpPair(t, nil)
	hdr := make([]byte, wire.FrameHeaderLen)
	hdr[0] = byte(wire.FrameStreamReset)
	binary.BigEndian.PutUint32(hdr[1:], wire.MaxMuxFrame+1)
	// The peer may close before yamux reports the write done: its error
	// says nothing.
	c.ctl.Write(hdr)
	select {
	case <-c.Context().Done():
	case <-time.After(10 * time.Second):
		t.Fatal("an oversized mux control frame did not end the session")
	}
	var ae *quic.ApplicationError
	if err := context.Cause(c.Context()); !errors.As(err, &ae) || !ae.Remote || wire.Code(ae.ErrorCode) != wire.CodeProtocol {
		t.Fatalf("session ended with %v, want CODE_PROTOCOL from the peer", err)
	}
}

// TestTCPConnectionLossIsNotEOF: when the TCP connection dies under a
// stream, its reader gets an error, never a clean EOF.
func TestTCPConnectionLossIsNotEOF(t *testing.T) {
	c, s := tcpPair(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cs, err := c.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cs.Write([]byte("some of the data"))
	ss, err := s.AcceptStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c.tc.NetConn().Close() // the network's view of a kill -9
	ss.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(ss)
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, errDeadline) {
		t.Fatalf("read %q then %v, want an error saying the connection is gone", got, err)
	}
	if !IsConnClosed(err) {
		t.Fatalf("IsConnClosed(%v) = false", err)
	}
}

var errDeadline = context.DeadlineExceeded

// TestTCPCloseDoesNotSpin: closing a session whose peer never closes its
// side costs no CPU while the relay lingers for it. yamux v0.1.2 spins in
// every Read blocked when its session shuts down, until its reader ends
// (hashicorp/yamux#176): a core-second per blocked reader, which a peer
// that ignores the close could have asked of a relay at will.
func TestTCPCloseDoesNotSpin(t *testing.T) {
	cert, err := transport.SelfSigned("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := Listen("127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}}, &transport.Config{Network: transport.NetworkTCP})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	tlsConf, err := transport.Trust{Pin: transport.Pin(cert)}.ClientTLS("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	tlsConf.NextProtos = []string{wire.ALPN}
	// The peer: yamux over a connection it never closes.
	tc, err := tls.Dial("tcp", ln.Addr().String(), tlsConf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tc.Close() })
	yc := yamux.DefaultConfig()
	yc.EnableKeepAlive = false
	yc.LogOutput = io.Discard
	peer, err := yamux.Client(neverClosed{tc}, yc)
	if err != nil {
		t.Fatal(err)
	}
	ctl, err := peer.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	if err := wire.WriteFrame(ctl, &wire.MuxSettings{MaxStreams: 16}); err != nil {
		t.Fatal(err)
	}
	if _, err := wire.ReadFrame(ctl, wire.MaxMuxFrame); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var peerStreams []*yamux.Stream
	for range 2 {
		st, err := peer.OpenStream()
		if err != nil {
			t.Fatal(err)
		}
		st.Write([]byte{1})
		peerStreams = append(peerStreams, st)
	}
	s, err := ln.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 2)
	for range 2 {
		st, err := s.AcceptStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			_, err := io.ReadAll(st) // the byte, then blocked
			done <- err
		}()
	}
	time.Sleep(100 * time.Millisecond) // both readers wait in yamux
	start, began := processCPU(), time.Now()
	s.CloseWithError(0, "")
	for range 2 {
		select {
		case err := <-done:
			if err == nil || errors.Is(err, os.ErrDeadlineExceeded) || !IsConnClosed(err) {
				t.Fatalf("read of a closed session: %v, want it closed", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a reader of a closed session did not return")
		}
	}
	time.Sleep(time.Until(began.Add(closeLinger + 500*time.Millisecond))) // past the linger
	used := processCPU() - start
	t.Logf("%s of CPU in the %s after the close", used, time.Since(began).Round(time.Millisecond))
	if used > 300*time.Millisecond {
		t.Fatalf("closing a session whose peer does not close used %s of CPU in %s, want next to none", used, time.Since(began))
	}
}

// neverClosed is a peer that does not close its connection when yamux
// ends: it sends no FIN.
type neverClosed struct{ net.Conn }

func (neverClosed) Close() error { return nil }

func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
