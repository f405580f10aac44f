package relay_test

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
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
	// QUIC only, so that a refusal reads as CONNECTION_REFUSED (a dial
	// that fell back to TLS over TCP would meet the same gate, and a
	// reset; see admit_tcp_test.go).
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
	if n > 32<<10 {
		t.Fatalf("the relay took %d bytes on an unaccepted stream of an unverified peer, want at most its 32 KiB window", n)
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

// dialLocal completes a QUIC handshake with the relay from a UDP socket
// on local (a loopback address: all of 127/8 is this host's, and the
// mesh's clients come from 127.0.0.1), with cfg, and sends nothing. The
// connection and its socket close when the test ends.
func dialLocal(t *testing.T, m *meshtest.Mesh, local string, cfg *quic.Config) (*quic.Conn, error) {
	t.Helper()
	pc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(local), 0)))
	if err != nil {
		t.Fatal(err)
	}
	tr := &quic.Transport{Conn: pc}
	t.Cleanup(func() { tr.Close(); pc.Close() })
	tlsConf, err := transport.Trust{Pin: m.Pin}.ClientTLS("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	tlsConf = tlsConf.Clone()
	tlsConf.NextProtos, tlsConf.MinVersion = []string{wire.ALPN}, tls.VersionTLS13
	raddr, err := net.ResolveUDPAddr("udp", m.Addr())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := tr.Dial(ctx, raddr, tlsConf, cfg)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { conn.CloseWithError(0, "") })
	return conn, nil
}

// dialFresh is dialLocal with quicnet's configuration, its connection
// closed at once.
func dialFresh(t *testing.T, m *meshtest.Mesh, local string) error {
	t.Helper()
	conn, err := dialLocal(t, m, local, quicnet.QUICConfig(nil))
	if err == nil {
		conn.CloseWithError(0, "")
	}
	return err
}

// TestFloodHoldsUnfamiliarSources: refused Hellos from all sources
// together past Limits.FloodRejects make the relay flooded: a source that
// never had a Hello verified is held to Limits.HandshakeBudget and
// refused past it before any TLS work, counted under its own metrics
// reason, while a source that did (the agents already connected) comes
// in as before and verified sessions are untouched; the trail says when
// the flood starts and ends, and it ends when an interval passes below
// the threshold.
func TestFloodHoldsUnfamiliarSources(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := meshtest.New(t, meshtest.Options{Metrics: reg, Limits: relay.Limits{RejectsPerSource: -1, FloodRejects: 3, HandshakeBudget: 1}})
	good := m.Client(m.AgentToken("coding-agent", "coding-agents"))
	if err := good.Connect(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := dialFresh(t, m, "127.0.0.2"); err != nil {
		t.Fatalf("not flooded, a new source: %v", err)
	}
	for i := range 3 {
		if err := m.Client("not-a-jwt").Connect(context.Background()); !errors.Is(err, postern.ErrUnauthenticated) {
			t.Fatalf("bad token %d: %v, want postern.ErrUnauthenticated", i, err)
		}
	}
	if st := m.Relay().Stats(); !st.Flooded {
		t.Fatalf("stats %+v after 3 refused Hellos, want flooded", st)
	}
	// One place a second, a burst of one: quick dials from a new source
	// soon find none.
	refused := 0
	for range 20 {
		err := dialFresh(t, m, "127.0.0.3")
		if isRefused(err) {
			refused++
			break
		}
		if err != nil {
			t.Fatalf("flooded, unfamiliar source: %v, want success or CONNECTION_REFUSED", err)
		}
	}
	if refused == 0 {
		t.Fatal("20 quick dials from an unfamiliar source, none refused with a budget of 1 a second")
	}
	// The source the verified agent came from is familiar.
	for i := range 3 {
		if _, err := rawDial(t, m); err != nil {
			t.Fatalf("flooded, familiar source, dial %d: %v", i, err)
		}
	}
	if _, err := good.Catalog(context.Background()); err != nil {
		t.Fatalf("the verified session during the flood: %v", err)
	}
	st := m.Relay().Stats()
	if st.RefusedBudget == 0 || st.RefusedBudget > st.Refused {
		t.Fatalf("stats %+v: want budget refusals counted, within Refused", st)
	}
	if n := refusedMetric(t, reg, "quic", "handshake_budget"); n != float64(st.RefusedBudget) {
		t.Fatalf("metric handshake_budget %v, stats %d", n, st.RefusedBudget)
	}
	// Two intervals end (SyncAudit ends one early): the second has no
	// refusals, and the flood is over.
	m.Relay().SyncAudit()
	m.Relay().SyncAudit()
	if st := m.Relay().Stats(); st.Flooded {
		t.Fatalf("stats %+v after a quiet interval, want not flooded", st)
	}
	if err := dialFresh(t, m, "127.0.0.4"); err != nil {
		t.Fatalf("flood over, a new source: %v", err)
	}
	var states []string
	for _, ev := range m.Audit.Events(relay.EventRelayFlood) {
		s, _ := ev["state"].(string)
		states = append(states, s)
	}
	if strings.Join(states, ",") != "on,continues,off" {
		t.Fatalf("relay.flood states %v, want on, continues, off", states)
	}
}
