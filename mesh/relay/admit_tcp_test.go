package relay_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/postern/postern"
	"github.com/postern/postern/internal/meshtest"
	"github.com/postern/postern/internal/quicnet"
	"github.com/postern/postern/internal/wire"
	"github.com/postern/postern/mesh"
	"github.com/postern/postern/mesh/relay"
	"github.com/postern/postern/transport"
)

// The gate's caps and the per-source penalty over TLS over TCP: a TCP
// connection takes its place in the same count as QUIC ones when it is
// accepted, before its TLS handshake, and one over a cap, or from a
// penalized source, is reset before the relay does any TLS work.

// tcpDial completes the TLS handshake and the mux setup with the relay
// over TCP and sends nothing: a session that waits for its Hello.
func tcpDial(t *testing.T, m *meshtest.Mesh) (quicnet.Session, error) {
	t.Helper()
	tlsConf, err := transport.Trust{Pin: m.Pin}.ClientTLS("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := quicnet.Dial(ctx, m.Addr(), tlsConf, &transport.Config{Network: transport.NetworkTCP})
	if err == nil {
		t.Cleanup(func() { conn.CloseWithError(0, "") })
	}
	return conn, err
}

// tlsFrom completes a TLS handshake with the relay over TCP from the
// local address from, and holds the connection.
func tlsFrom(t *testing.T, m *meshtest.Mesh, from string) error {
	t.Helper()
	tlsConf, err := transport.Trust{Pin: m.Pin}.ClientTLS("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	tlsConf.NextProtos = []string{wire.ALPN}
	d := tls.Dialer{NetDialer: &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}, Config: tlsConf}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", m.Relay().TCPAddr().String())
	if err == nil {
		t.Cleanup(func() { c.Close() })
	}
	return err
}

// resetAtOnce opens a TCP connection to the relay, sends nothing, and
// reports whether the relay closed it before the client could begin its
// TLS handshake: a relay that admitted it would wait for a ClientHello,
// for as long as the handshake timeout.
func resetAtOnce(t *testing.T, m *meshtest.Mesh) bool {
	t.Helper()
	c, err := net.DialTimeout("tcp", m.Relay().TCPAddr().String(), 10*time.Second)
	if errors.Is(err, syscall.ECONNRESET) {
		return true // the kernel completed the connect, and the relay's reset came before the dialer looked
	}
	if err != nil {
		t.Fatalf("tcp connect: %v", err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var b [1]byte
	n, err := c.Read(b[:])
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return false
	}
	if n > 0 {
		t.Fatalf("the relay sent %d bytes before the ClientHello", n)
	}
	return true
}

// waitUnverified waits for the relay to count n unverified connections.
func waitUnverified(t *testing.T, m *meshtest.Mesh, n int, what string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		st := m.Relay().Stats()
		if st.Unverified == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: stats %+v, want %d unverified", what, st, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// clientOver is an agent client that dials the mesh's relay over network.
func clientOver(t *testing.T, m *meshtest.Mesh, tok, network string) *mesh.Client {
	t.Helper()
	c, err := mesh.NewClient(mesh.Config{Relay: m.Addr(), Token: tok, Pin: m.Pin, Transport: &transport.Config{Network: network}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// refusedMetric is postern_relay_connections_refused_total for transport
// and reason.
func refusedMetric(t *testing.T, reg *prometheus.Registry, transport, reason string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "postern_relay_connections_refused_total" {
			continue
		}
		for _, mt := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range mt.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["transport"] == transport && labels["reason"] == reason {
				return mt.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no postern_relay_connections_refused_total{transport=%q,reason=%q}", transport, reason)
	return 0
}

// TestTCPUnverifiedCapped: QUIC and TCP connections waiting for their
// Hello share Limits.MaxUnverified; over it a TCP connection is reset
// before its TLS handshake, and counted; a place comes back when a
// session ends or is verified.
func TestTCPUnverifiedCapped(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := meshtest.New(t, meshtest.Options{Network: transport.NetworkAuto, Metrics: reg,
		Limits: relay.Limits{MaxUnverified: 4, MaxUnverifiedPerSource: 100, RetryAbove: 2, HandshakeTimeout: 60 * time.Second}})
	var held []quicnet.Session
	for i := range 2 {
		c, err := rawDial(t, m)
		if err != nil {
			t.Fatalf("quic connection %d: %v", i, err)
		}
		held = append(held, c)
		c, err = tcpDial(t, m)
		if err != nil {
			t.Fatalf("tcp connection %d: %v", i, err)
		}
		held = append(held, c)
	}
	waitUnverified(t, m, 4, "the four connections to wait for their Hello")
	if !resetAtOnce(t, m) {
		t.Fatal("a tcp connection over MaxUnverified was not closed before its TLS handshake")
	}
	if _, err := tcpDial(t, m); err == nil {
		t.Fatal("a tls/tcp session over MaxUnverified was set up")
	}
	st := m.Relay().Stats()
	if st.Unverified != 4 || st.RefusedTCP != 2 || st.Refused != 2 {
		t.Fatalf("stats %+v, want 4 unverified and 2 tcp refusals", st)
	}
	if n := refusedMetric(t, reg, "tcp", relay.ReasonUnverified); n != 2 {
		t.Fatalf("tcp refusals at the cap in the metrics: %v, want 2", n)
	}

	held[1].CloseWithError(0, "") // a tcp one
	waitUnverified(t, m, 3, "the closed tcp session's place to come back")
	// An agent over TCP takes the free place, and gives it back once its
	// Hello is verified.
	agent := clientOver(t, m, m.AgentToken("coding-agent", "coding-agents"), transport.NetworkTCP)
	if err := agent.Connect(context.Background()); err != nil {
		t.Fatalf("tcp agent with a place free: %v", err)
	}
	waitUnverified(t, m, 3, "the verified agent to leave the count")
	if _, err := tcpDial(t, m); err != nil {
		t.Fatalf("after the tcp agent was verified: %v", err)
	}
	if _, err := agent.Catalog(context.Background()); err != nil {
		t.Fatalf("the verified tcp agent with the gate full again: %v", err)
	}
	// The gate is full again, with QUIC and TCP connections: QUIC is
	// refused too. (Last: Initials of a refused dial still in flight
	// would take a place freed after it. quic-go may also ask ConnContext
	// once per Initial packet of a ClientHello that spans two, so a QUIC
	// dial counts one refusal or more.)
	if _, err := rawDial(t, m); !isRefused(err) {
		t.Fatalf("a quic connection over MaxUnverified, with tcp ones waiting: %v, want CONNECTION_REFUSED", err)
	}
	st = m.Relay().Stats()
	if st.Unverified != 4 || st.RefusedTCP != 2 || st.Refused < 3 {
		t.Fatalf("stats %+v, want 4 unverified, 2 tcp refusals and a quic one", st)
	}
	if n := refusedMetric(t, reg, "quic", relay.ReasonUnverified); n < 1 {
		t.Fatalf("quic refusals at the cap in the metrics: %v, want at least 1", n)
	}
}

// TestTCPUnverifiedPerSource: one source address's TCP connections are
// capped at Limits.MaxUnverifiedPerSource, and share the validated count
// with its Retry-validated QUIC ones; another source is not touched.
func TestTCPUnverifiedPerSource(t *testing.T) {
	m := meshtest.New(t, meshtest.Options{Network: transport.NetworkAuto,
		Limits: relay.Limits{MaxUnverified: 100, MaxUnverifiedPerSource: 2, RetryAbove: 50, HandshakeTimeout: 60 * time.Second}})
	for i := range 2 {
		if _, err := tcpDial(t, m); err != nil {
			t.Fatalf("tcp connection %d: %v", i, err)
		}
	}
	if !resetAtOnce(t, m) {
		t.Fatal("a third tcp connection from one source was not closed before its TLS handshake")
	}
	if _, err := tcpDial(t, m); err == nil {
		t.Fatal("a third tls/tcp session from one source was set up")
	}
	// A QUIC client from the source is asked for a Retry (its share of
	// unvalidated connections is free, but a validated one is what it
	// becomes) and then refused: TCP connections are validated ones.
	if _, err := rawDial(t, m); !isRefused(err) {
		t.Fatalf("a quic connection from a source with 2 tcp ones waiting: %v, want CONNECTION_REFUSED", err)
	}
	if err := tlsFrom(t, m, "127.0.0.2"); err != nil {
		t.Fatalf("a tls handshake from another source: %v", err)
	}
	st := m.Relay().Stats()
	if st.Unverified != 3 || st.RefusedTCP != 2 {
		t.Fatalf("stats %+v, want 3 unverified and 2 tcp refusals", st)
	}
}

// TestTCPRejectsPerSource: refused Hellos count against
// Limits.RejectsPerSource whatever their transport; past it, the source's
// new TCP connections are reset before their TLS handshake, as its QUIC
// ones are refused, while its verified TCP session goes on. The refusals
// are audited per source across both transports.
func TestTCPRejectsPerSource(t *testing.T) {
	for _, tc := range []struct {
		name string
		bad  []string // the networks of the refused Hellos, in turn
	}{
		{"refused over tcp", []string{transport.NetworkTCP, transport.NetworkTCP, transport.NetworkTCP}},
		{"refused over quic", []string{transport.NetworkQUIC, transport.NetworkQUIC, transport.NetworkQUIC}},
		{"refused over both", []string{transport.NetworkTCP, transport.NetworkQUIC, transport.NetworkTCP}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			m := meshtest.New(t, meshtest.Options{Network: transport.NetworkAuto, Metrics: reg, Limits: relay.Limits{RejectsPerSource: 3}})
			good := clientOver(t, m, m.AgentToken("coding-agent", "coding-agents"), transport.NetworkTCP)
			if err := good.Connect(context.Background()); err != nil {
				t.Fatal(err)
			}
			for i, network := range tc.bad {
				err := clientOver(t, m, "not-a-jwt", network).Connect(context.Background())
				if !errors.Is(err, postern.ErrUnauthenticated) {
					t.Fatalf("bad token %d over %s: %v, want postern.ErrUnauthenticated", i, network, err)
				}
			}
			if !resetAtOnce(t, m) {
				t.Fatal("a tcp connection from a penalized source was not closed before its TLS handshake")
			}
			if _, err := tcpDial(t, m); err == nil {
				t.Fatal("a tls/tcp session from a penalized source was set up")
			}
			if _, err := rawDial(t, m); !isRefused(err) {
				t.Fatalf("a quic connection from a penalized source: %v, want CONNECTION_REFUSED", err)
			}
			if _, err := good.Catalog(context.Background()); err != nil {
				t.Fatalf("the verified tcp session of that source: %v", err)
			}
			st := m.Relay().Stats()
			if st.Agents != 1 || st.RefusedTCP != 2 || st.Refused < 3 {
				t.Fatalf("stats %+v, want the verified agent still connected, 2 tcp refusals and a quic one", st)
			}
			if n := refusedMetric(t, reg, "tcp", "rejects_per_source"); n != 2 {
				t.Fatalf("tcp refusals of the penalized source in the metrics: %v, want 2", n)
			}
			// One event at once, the rest summed when the interval ends,
			// all under the source address whatever the transport.
			m.Relay().SyncAudit()
			events := m.Audit.Events(relay.EventSessionReject)
			var count float64
			for _, ev := range events {
				count += ev["count"].(float64)
				if r, _ := ev["remote"].(string); r != "127.0.0.1" && !strings.HasPrefix(r, "127.0.0.1:") {
					t.Errorf("session.reject remote %q, want 127.0.0.1", r)
				}
			}
			if len(events) != 2 || count != 3 {
				t.Fatalf("%d session.reject events counting %v refusals, want 2 counting 3: %v", len(events), count, events)
			}
			// A new interval forgives.
			if _, err := tcpDial(t, m); err != nil {
				t.Fatalf("after the interval: %v", err)
			}
		})
	}
}

// TestTCPNoHelloCountsAsRefusal: a TLS/TCP session that sends no Hello by
// the deadline is a refusal of its source, as over QUIC, and a source
// refused so Limits.RejectsPerSource times has its next TCP connection
// reset before any TLS work.
func TestTCPNoHelloCountsAsRefusal(t *testing.T) {
	m := meshtest.New(t, meshtest.Options{Network: transport.NetworkAuto, Limits: relay.Limits{HandshakeTimeout: 500 * time.Millisecond, RejectsPerSource: 2}})
	for i := range 2 {
		conn, err := tcpDial(t, m)
		if err != nil {
			t.Fatalf("tcp session %d: %v", i, err)
		}
		select {
		case <-conn.Context().Done():
		case <-time.After(20 * time.Second):
			t.Fatalf("tcp session %d was not closed at the Hello deadline", i)
		}
	}
	if !resetAtOnce(t, m) {
		t.Fatal("a tcp connection from a source that twice sent no Hello was not closed before its TLS handshake")
	}
	if st := m.Relay().Stats(); st.RefusedTCP != 1 {
		t.Fatalf("stats %+v, want 1 tcp refusal", st)
	}
}

// TestTCPSilentCountsAsRefusal: a TCP connection that never sends its
// ClientHello is closed at the handshake deadline and counts as a refusal
// of its source, in the trail and towards Limits.RejectsPerSource: a
// source that holds TCP connections open without a TLS handshake is
// refused, before any TLS work, once it has done so that many times.
func TestTCPSilentCountsAsRefusal(t *testing.T) {
	m := meshtest.New(t, meshtest.Options{Network: transport.NetworkAuto, Limits: relay.Limits{HandshakeTimeout: 500 * time.Millisecond, RejectsPerSource: 2}})
	for i := range 2 {
		c, err := net.DialTimeout("tcp", m.Relay().TCPAddr().String(), 10*time.Second)
		if err != nil {
			t.Fatalf("tcp connect %d: %v", i, err)
		}
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		var b [1]byte
		start := time.Now()
		if n, err := c.Read(b[:]); n > 0 || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("silent tcp connection %d: read %d bytes, %v; want it closed at the deadline", i, n, err)
		}
		if el := time.Since(start); el < 400*time.Millisecond {
			t.Fatalf("silent tcp connection %d closed after %s, before the 500ms deadline", i, el)
		}
		c.Close()
	}
	if !resetAtOnce(t, m) {
		t.Fatal("a tcp connection from a source that twice sent no ClientHello was not closed before its TLS handshake")
	}
	// resetAtOnce also sees the close at the 500ms deadline: the count
	// says it was the penalty.
	if st := m.Relay().Stats(); st.RefusedTCP != 1 {
		t.Fatalf("stats %+v, want 1 tcp refusal", st)
	}
	m.Relay().SyncAudit()
	count := 0
	events := m.Audit.Events(relay.EventSessionReject)
	for _, e := range events {
		if e["reason"] == "handshake_timeout" || e["reasons"] != nil {
			if n, ok := e["count"].(float64); ok {
				count += int(n)
			}
		}
	}
	if count != 2 {
		t.Fatalf("session.reject events count %d refusals, want 2: %v", count, events)
	}
}
