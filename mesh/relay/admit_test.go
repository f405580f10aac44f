package relay_test

import (
	"context"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/postern/postern"

	"github.com/postern/postern/internal/meshtest"
	"github.com/postern/postern/internal/quicnet"
	"github.com/postern/postern/internal/wire"
	"github.com/postern/postern/mesh/relay"
	"github.com/postern/postern/transport"
)

// rawDial completes a QUIC handshake with the relay and sends nothing.
func rawDial(t *testing.T, m *meshtest.Mesh) (quicnet.Session, error) {
	t.Helper()
	tlsConf, err := transport.Trust{Pin: m.Pin}.ClientTLS("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// QUIC only: the gate admits QUIC connections (a dial that falls back
	// to TLS over TCP meets the listener's own handshake cap instead).
	conn, err := quicnet.Dial(ctx, m.Addr(), tlsConf, &transport.Config{Network: transport.NetworkQUIC})
	if err == nil {
		t.Cleanup(func() { conn.CloseWithError(0, "") })
	}
	return conn, err
}

func isRefused(err error) bool {
	var te *quic.TransportError
	return errors.As(err, &te) && te.ErrorCode == quic.ConnectionRefused
}

// TestUnverifiedConnectionsCapped: connections that finish the handshake
// and send no Hello are capped; the one over the cap is refused before the
// relay keeps state for it, and a place comes back when one ends or is
// verified.
func TestUnverifiedConnectionsCapped(t *testing.T) {
	m := meshtest.New(t, meshtest.Options{Limits: relay.Limits{MaxUnverified: 4, MaxUnverifiedPerSource: 100, RetryAbove: 2}})
	var conns []quicnet.Session
	for i := range 4 {
		c, err := rawDial(t, m)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		conns = append(conns, c)
		// (An Initial that spans two packets is asked twice.)
		if st := m.Relay().Stats(); (i < 2) != (st.Retried == 0) {
			t.Fatalf("after connection %d: %+v, want a Retry asked from the third, past RetryAbove, on", i, st)
		}
	}
	if st := m.Relay().Stats(); st.Unverified != 4 {
		t.Fatalf("stats %+v, want 4 unverified", st)
	}
	if _, err := rawDial(t, m); !isRefused(err) {
		t.Fatalf("fifth unverified connection: %v, want CONNECTION_REFUSED", err)
	}
	if st := m.Relay().Stats(); st.Refused == 0 || st.Unverified != 4 {
		t.Fatalf("stats %+v, want the refusal counted and still 4 unverified", st)
	}
	conns[0].CloseWithError(0, "")
	meshtest.WaitFor(t, "the closed connection's place to come back", func() bool { return m.Relay().Stats().Unverified == 3 })
	// An agent takes the free place and gives it back once verified.
	agent := m.Client(m.AgentToken("coding-agent", "coding-agents"))
	if err := agent.Connect(context.Background()); err != nil {
		t.Fatalf("agent with a place free: %v", err)
	}
	meshtest.WaitFor(t, "the verified agent to leave the count", func() bool { return m.Relay().Stats().Unverified == 3 })
	if _, err := rawDial(t, m); err != nil {
		t.Fatalf("after the agent was verified: %v", err)
	}
}

// TestUnverifiedPerSource: one source address gets its share; beyond it a
// new client must prove its address with a Retry, and validated clients
// have a share of their own, so that spoofed Initials cannot lock a real
// client out.
func TestUnverifiedPerSource(t *testing.T) {
	m := meshtest.New(t, meshtest.Options{Limits: relay.Limits{MaxUnverified: 100, MaxUnverifiedPerSource: 2, RetryAbove: 50}})
	for i := range 4 {
		if _, err := rawDial(t, m); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		if st := m.Relay().Stats(); (i < 2) != (st.Retried == 0) {
			t.Fatalf("after connection %d: %+v, want a Retry asked from the third on", i, st)
		}
	}
	if st := m.Relay().Stats(); st.Unverified != 4 {
		t.Fatalf("stats %+v, want 4 unverified", st)
	}
	if _, err := rawDial(t, m); !isRefused(err) {
		t.Fatalf("fifth connection from one address: %v, want CONNECTION_REFUSED", err)
	}
}

// TestHelloDeadline: a connection that opens its control stream and never
// finishes a Hello is closed at Limits.HandshakeTimeout with CODE_TIMEOUT.
func TestHelloDeadline(t *testing.T) {
	for _, tc := range []struct {
		name string
		send []byte // on the control stream; nil opens none
	}{
		{"no control stream", nil},
		{"a hello header and no payload", helloHeader(60 << 10)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := meshtest.New(t, meshtest.Options{Limits: relay.Limits{HandshakeTimeout: 700 * time.Millisecond}})
			conn, err := rawDial(t, m)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			if tc.send != nil {
				st, err := conn.OpenStreamSync(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				st.Write(tc.send)
			}
			select {
			case <-conn.Context().Done():
			case <-time.After(20 * time.Second):
				t.Fatal("the relay did not close a connection that sent no hello")
			}
			if el := time.Since(start); el < 500*time.Millisecond {
				t.Fatalf("closed after %s, before the deadline", el)
			}
			var ae *quic.ApplicationError
			if err := context.Cause(conn.Context()); !errors.As(err, &ae) || ae.ErrorCode != quic.ApplicationErrorCode(wire.CodeTimeout) {
				t.Fatalf("close: %v, want CODE_TIMEOUT", err)
			}
			meshtest.WaitFor(t, "the place to come back", func() bool { return m.Relay().Stats().Unverified == 0 })
		})
	}
}

func helloHeader(n uint32) []byte {
	b := []byte{byte(wire.FrameHello), 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[1:], n)
	return b
}

// TestStreamBeforeHello: nothing but the control stream is read before the
// Hello is verified; a peer that opens another stream and piles data on it
// is closed.
func TestStreamBeforeHello(t *testing.T) {
	m := meshtest.New(t, meshtest.Options{})
	conn, err := rawDial(t, m)
	if err != nil {
		t.Fatal(err)
	}
	ctrl, err := conn.OpenStreamSync(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ctrl.Write(helloHeader(60 << 10))
	other, err := conn.OpenStreamSync(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	other.SetWriteDeadline(time.Now().Add(10 * time.Second))
	n, _ := other.Write(make([]byte, 4<<20))
	select {
	case <-conn.Context().Done():
	case <-time.After(10 * time.Second):
		t.Fatal("a stream before the hello did not close the connection")
	}
	var ae *quic.ApplicationError
	if err := context.Cause(conn.Context()); !errors.As(err, &ae) || ae.ErrorCode != quic.ApplicationErrorCode(wire.CodeProtocol) ||
		!strings.Contains(ae.ErrorMessage, "stream_before_hello") {
		t.Fatalf("close: %v, want CODE_PROTOCOL stream_before_hello", err)
	}
	// The relay granted no more than a stream's initial window.
	if n > 1<<20 {
		t.Fatalf("the relay took %d bytes on an unaccepted stream of an unverified peer, want at most its 512 KiB window", n)
	}
}

// TestRejectsPerSource: a source whose Hellos are refused too often in an
// interval has its new connections refused before the handshake; a
// session it had verified goes on.
func TestRejectsPerSource(t *testing.T) {
	m := meshtest.New(t, meshtest.Options{Limits: relay.Limits{RejectsPerSource: 3}})
	good := m.Client(m.AgentToken("coding-agent", "coding-agents"))
	if err := good.Connect(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		bad := m.Client("not-a-jwt")
		err := bad.Connect(context.Background())
		if !errors.Is(err, postern.ErrUnauthenticated) {
			t.Fatalf("bad token %d: %v, want postern.ErrUnauthenticated", i, err)
		}
	}
	if _, err := rawDial(t, m); !isRefused(err) {
		t.Fatalf("a new connection from a source refused 3 times: %v, want CONNECTION_REFUSED", err)
	}
	if _, err := good.Catalog(context.Background()); err != nil {
		t.Fatalf("the verified session of that source: %v", err)
	}
	if st := m.Relay().Stats(); st.Agents != 1 {
		t.Fatalf("stats %+v, want the verified agent still connected", st)
	}
	// A new interval forgives.
	m.Relay().SyncAudit()
	if _, err := rawDial(t, m); err != nil {
		t.Fatalf("after the interval: %v", err)
	}
}

// TestNoHelloCountsAsRefusal: a connection that finishes its handshake and
// sends nothing until the Hello deadline is a refusal of its source, in
// the audit trail and towards Limits.RejectsPerSource, so that a source
// holding connections open without a Hello is refused before its next
// handshake.
func TestNoHelloCountsAsRefusal(t *testing.T) {
	m := meshtest.New(t, meshtest.Options{Limits: relay.Limits{HandshakeTimeout: 500 * time.Millisecond, RejectsPerSource: 2}})
	for i := range 2 {
		conn, err := rawDial(t, m)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		select {
		case <-conn.Context().Done():
		case <-time.After(20 * time.Second):
			t.Fatalf("connection %d was not closed at the Hello deadline", i)
		}
	}
	if _, err := rawDial(t, m); !isRefused(err) {
		t.Fatalf("a new connection from a source that twice sent no Hello: %v, want CONNECTION_REFUSED", err)
	}
	m.Relay().SyncAudit()
	events := m.Audit.Events(relay.EventSessionReject)
	count := 0
	for _, ev := range events {
		reasons, _ := ev["reasons"].(map[string]any)
		if ev["reason"] != "handshake_timeout" && reasons["handshake_timeout"] == nil {
			t.Errorf("session.reject %v, want reason handshake_timeout", ev)
		}
		n, _ := ev["count"].(float64)
		count += int(n)
	}
	if count != 2 {
		t.Fatalf("session.reject events %v sum %d refusals, want 2", events, count)
	}
}
