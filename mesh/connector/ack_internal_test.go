package connector

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/postern/postern/internal/quicnet"
	"github.com/postern/postern/internal/wire"
	"github.com/postern/postern/transport"
)

// relayStream returns the two ends of one real QUIC stream: the relay's,
// which reads what the connector's heldAck writes, and the connector's.
func relayStream(t *testing.T) (relaySide, connectorSide quicnet.Stream) {
	t.Helper()
	cert, err := transport.SelfSigned("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	cfg := &transport.Config{Network: transport.NetworkQUIC}
	ln, err := quicnet.Listen("127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}}, cfg)
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
	relay, err := quicnet.Dial(ctx, ln.Addr().String(), tlsConf, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { relay.CloseWithError(0, "") })
	conn, err := ln.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.CloseWithError(0, "") })
	rs, err := relay.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rs.Write([]byte{0}) // the stream exists for the peer once it carries a byte
	cs, err := conn.AcceptStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(cs, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	return rs, cs
}

func frame(t *testing.T, m wire.Message) []byte {
	t.Helper()
	b, err := wire.AppendFrame(nil, m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestHeldAckWithResult: a Result written within AckHold goes out in the
// same write as the DialAck, in front of it, and the two arrive together.
func TestHeldAckWithResult(t *testing.T) {
	rs, cs := relayStream(t)
	ack := holdAck(cs, &wire.Dial{Binding: "staging-db", Ack: true})
	if err := ack.write(cs, &wire.Result{Code: wire.CodeOK}); err != nil {
		t.Fatal(err)
	}
	want := append(frame(t, &wire.DialAck{}), frame(t, &wire.Result{Code: wire.CodeOK})...)
	rs.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 256)
	n, err := rs.Read(buf) // one packet: both frames in one read
	if err != nil || !bytes.Equal(buf[:n], want) {
		t.Fatalf("first read = %x, %v; want the DialAck and the Result at once: %x", buf[:n], err, want)
	}
	time.Sleep(5 * AckHold) // the hold's timer must not send a second DialAck
	rs.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if n, err := rs.Read(buf); !errors.Is(err, context.DeadlineExceeded) && n > 0 {
		t.Fatalf("after the Result: %x, %v; want nothing", buf[:n], err)
	}
}

// TestHeldAckAlone: a Result that takes longer than AckHold finds the
// DialAck sent alone, well before it: the relay still learns at once that
// the connector is alive.
func TestHeldAckAlone(t *testing.T) {
	rs, cs := relayStream(t)
	start := time.Now()
	ack := holdAck(cs, &wire.Dial{Binding: "staging-db", Ack: true})
	rs.SetReadDeadline(time.Now().Add(10 * time.Second))
	if err := wire.ReadExpected(rs, 0, new(wire.DialAck)); err != nil {
		t.Fatal(err)
	}
	// Generous: the machine may be loaded; the relay's bound is 1 s.
	if took := time.Since(start); took > 250*time.Millisecond {
		t.Fatalf("the DialAck came alone after %s, want within about %s", took, AckHold)
	}
	if err := ack.write(cs, &wire.Result{Code: wire.CodeOK}); err != nil {
		t.Fatal(err)
	}
	var res wire.Result
	if err := wire.ReadExpected(rs, 0, &res); err != nil || res.Code != wire.CodeOK {
		t.Fatalf("after the DialAck: %v, %v; want the Result", &res, err)
	}
}

// TestHeldAckNotAsked: a Dial without ack gets no DialAck, ever.
func TestHeldAckNotAsked(t *testing.T) {
	rs, cs := relayStream(t)
	ack := holdAck(cs, &wire.Dial{Binding: "staging-db"})
	time.Sleep(5 * AckHold)
	if err := ack.write(cs, &wire.Result{Code: wire.CodeOK}); err != nil {
		t.Fatal(err)
	}
	rs.SetReadDeadline(time.Now().Add(10 * time.Second))
	var res wire.Result
	if err := wire.ReadExpected(rs, 0, &res); err != nil || res.Code != wire.CodeOK {
		t.Fatalf("first frame: %v, %v; want the Result and no DialAck", &res, err)
	}
}

// TestHeldAckRefuse: a refusal goes behind the held DialAck, stops the
// stream's reading with STREAM_ERROR_REFUSED and ends with a FIN.
func TestHeldAckRefuse(t *testing.T) {
	rs, cs := relayStream(t)
	ack := holdAck(cs, &wire.Dial{Binding: "staging-db", Ack: true})
	ack.refuse(&wire.Result{Code: wire.CodeUpstream, Reason: "upstream_refused", Message: "no"})
	rs.SetReadDeadline(time.Now().Add(10 * time.Second))
	if err := wire.ReadExpected(rs, 0, new(wire.DialAck)); err != nil {
		t.Fatal(err)
	}
	var res wire.Result
	if err := wire.ReadExpected(rs, 0, &res); err != nil || res.Code != wire.CodeUpstream {
		t.Fatalf("after the DialAck: %v, %v; want the refusal", &res, err)
	}
	if rest, err := io.ReadAll(rs); err != nil || len(rest) > 0 {
		t.Fatalf("after the refusal: %x, %v; want a clean end", rest, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := rs.Write([]byte("more"))
		if code, ok := quicnet.StreamErrorCode(err); ok && code == quicnet.StreamRefused {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("writing to the refused stream: %v, want STREAM_ERROR_REFUSED", err)
		}
		time.Sleep(time.Millisecond)
	}
}
