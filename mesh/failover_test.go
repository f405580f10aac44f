package mesh_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postern/postern"
	"github.com/postern/postern/internal/meshtest"
	"github.com/postern/postern/internal/quicnet"
	"github.com/postern/postern/internal/session"
	"github.com/postern/postern/internal/wire"
	"github.com/postern/postern/mesh"
	"github.com/postern/postern/mesh/connector"
	"github.com/postern/postern/mesh/relay"
	"github.com/postern/postern/transport"
)

// rawConnector is a connector session made by hand over real QUIC: it
// advertises svc with features and hands every stream the relay opens to
// serve (nil: it takes none, a connector that hangs).
func rawConnector(t *testing.T, m *meshtest.Mesh, name string, features []string, svc connector.Service, serve func(quicnet.Stream)) *session.Session {
	return rawConnectorWith(t, m, nil, name, features, svc, serve)
}

// rawConnectorWith is rawConnector with QUIC tuned by tc.
func rawConnectorWith(t *testing.T, m *meshtest.Mesh, tc *transport.Config, name string, features []string, svc connector.Service, serve func(quicnet.Stream)) *session.Session {
	t.Helper()
	tlsConf, err := transport.Trust{Pin: m.Pin}.ClientTLS("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	tok := m.ConnectorToken(name, meshtest.Describe(svc)...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := session.Dial(ctx, session.Config{
		Addr: m.Addr(), TLS: tlsConf, Transport: tc, Role: wire.RoleConnector, Client: "raw-connector",
		Services: []*wire.Binding{{Name: svc.Name, Kind: "tcp", Environment: svc.Environment}},
		Token:    func(context.Context) (string, error) { return tok, nil },
		Features: features,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if serve != nil {
		go func() {
			for {
				st, err := s.Conn.AcceptStream(context.Background())
				if err != nil {
					return
				}
				go serve(st)
			}
		}()
	}
	return s
}

// roundTrip opens binding, sends a line with the open and reads it back.
func roundTrip(ctx context.Context, c *mesh.Client, binding, line string) (string, error) {
	conn, err := c.DialEarly(ctx, "tcp", binding)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, line+"\n"); err != nil {
		return "", err
	}
	got, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return "", err
	}
	if c, ok := conn.(*mesh.Conn); ok && c.Connector() == "" {
		return "", errors.New("no connector named")
	}
	return strings.TrimSpace(got), nil
}

// TestFailoverHungConnector: a connector that takes the relay's streams
// and never answers (alive to QUIC, dead to Postern) shares a binding with
// a working one. Every open succeeds, the pipelined first line included,
// through the working connector: the relay moves an open it sent to the
// hung one after AckTimeout, with the bytes the agent sent, and sends no
// further opens there.
func TestFailoverHungConnector(t *testing.T) {
	m := meshtest.New(t, meshtest.Options{Limits: relay.Limits{AckTimeout: 200 * time.Millisecond}})
	svc := connector.Service{Name: "staging-echo", Upstream: meshtest.EchoServer(t), Environment: "staging"}
	rawConnector(t, m, "hung-connector", []string{wire.FeatureDialAck}, svc, nil)
	m.Connector("live-connector", svc)
	meshtest.WaitFor(t, "two connectors", func() bool { return m.Relay().Stats().Bindings["staging-echo"] == 2 })
	c := m.Client(m.AgentToken("coding-agent", "coding-agents"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// The first open goes to the hung connector (registered first): 200
	// KiB sent with it, more than the relay keeps before an answer, and
	// the agent's FIN, all reach the upstream through the live one.
	conn, err := c.DialEarly(ctx, "tcp", "staging-echo")
	if err != nil {
		t.Fatal(err)
	}
	sent := bytes.Repeat([]byte("0123456789abcdef"), 200<<10/16)
	werr := make(chan error, 1)
	go func() {
		_, err := conn.Write(sent)
		if err == nil {
			err = conn.(*mesh.Conn).CloseWrite()
		}
		werr <- err
	}()
	got, err := io.ReadAll(conn)
	conn.Close()
	if err := <-werr; err != nil {
		t.Fatalf("writing 200 KiB with the open: %v", err)
	}
	if err != nil || !bytes.Equal(got, sent) {
		t.Fatalf("200 KiB and a FIN through a moved open: %d bytes back, %v", len(got), err)
	}
	if got := conn.(*mesh.Conn).Connector(); got != "live-connector" {
		t.Errorf("the moved open was served by %q", got)
	}

	start := time.Now()
	for i := range 10 {
		line := fmt.Sprintf("line %d", i)
		got, err := roundTrip(ctx, c, "staging-echo", line)
		if err != nil || got != line {
			t.Fatalf("open %d: %q, %v", i, got, err)
		}
	}
	// Only the opens before the hung connector missed its first ack pay
	// for it: at most a couple of AckTimeouts in all, not one per open.
	if d := time.Since(start); d > 10*200*time.Millisecond {
		t.Errorf("10 opens took %s: the hung connector kept getting opens", d)
	}
	moved := 0
	for _, ev := range m.Audit.Events(relay.EventOpenAllow) {
		if ev["connector"] != "live-connector" {
			t.Errorf("an open was allowed through %v", ev["connector"])
		}
		if ev["connectors_tried"] == float64(2) {
			moved++
		}
	}
	if moved == 0 {
		t.Error("no open.allow event says the open moved (connectors_tried 2): the hung connector was never tried")
	}
}

// TestFailoverUpstreamRetry: a connector that cannot reach its upstream
// answers with CODE_UPSTREAM, and the relay gives the open whole to
// another connector that can. With no such connector, the open fails with
// ErrUpstream, a per-request error.
func TestFailoverUpstreamRetry(t *testing.T) {
	m := meshtest.New(t, meshtest.Options{})
	dead := connector.Service{Name: "staging-echo", Upstream: meshtest.DeadAddr(t), Environment: "staging"}
	stopDead := m.Connector("cut-off-connector", dead)
	live := dead
	live.Upstream = meshtest.EchoServer(t)
	stopLive := m.Connector("live-connector", live)
	meshtest.WaitFor(t, "two connectors", func() bool { return m.Relay().Stats().Bindings["staging-echo"] == 2 })
	c := m.Client(m.AgentToken("coding-agent", "coding-agents"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range 6 {
		line := fmt.Sprintf("line %d", i)
		if got, err := roundTrip(ctx, c, "staging-echo", line); err != nil || got != line {
			t.Fatalf("open %d: %q, %v", i, got, err)
		}
	}
	stopLive()
	meshtest.WaitFor(t, "one connector", func() bool { return m.Relay().Stats().Bindings["staging-echo"] == 1 })
	_, err := c.Dial(ctx, "tcp", "staging-echo")
	if !errors.Is(err, postern.ErrUpstream) {
		t.Fatalf("with the only connector cut off from the upstream: %v, want ErrUpstream", err)
	}
	stopDead()
}

// TestFailoverOldConnector: a connector that does not list dial_ack gets
// Dials without ack set, and the relay waits for its Result alone.
func TestFailoverOldConnector(t *testing.T) {
	m := meshtest.New(t, meshtest.Options{Limits: relay.Limits{AckTimeout: 100 * time.Millisecond}})
	svc := connector.Service{Name: "staging-echo", Environment: "staging"}
	acked := make(chan bool, 16)
	rawConnector(t, m, "old-connector", nil, svc, func(st quicnet.Stream) {
		var d wire.Dial
		if err := wire.ReadExpected(st, 1<<20, &d); err != nil {
			st.CancelRead(quicnet.StreamAborted)
			return
		}
		acked <- d.Ack
		time.Sleep(300 * time.Millisecond) // a slow upstream, longer than the ack bound
		wire.WriteFrame(st, &wire.Result{Code: wire.CodeOK})
		io.Copy(st, st)
		st.Close()
	})
	c := m.Client(m.AgentToken("coding-agent", "coding-agents"))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if got, err := roundTrip(ctx, c, "staging-echo", "old"); err != nil || got != "old" {
		t.Fatalf("through a connector without dial_ack: %q, %v", got, err)
	}
	if <-acked {
		t.Error("the relay asked a connector without dial_ack for an ack")
	}
}

// bulkServer sends size bytes on each connection once its client has sent
// a byte: a download asked for.
func bulkServer(t testing.TB, size int64) string {
	return meshtest.Server(t, func(c net.Conn) {
		if _, err := c.Read(make([]byte, 1)); err != nil {
			return
		}
		io.CopyN(c, zeros{}, size)
	})
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// TestIsolationStalledAgents: three agents each leave a 256 MiB download
// through a connector unread, and a fourth agent's opens through the same
// connector all go on succeeding; one agent that stops reading many
// downloads at once has all but its share reset with
// STREAM_ERROR_STALLED, and the rest reset after the stall timeout.
func TestIsolationStalledAgents(t *testing.T) {
	m := meshtest.New(t, meshtest.Options{Limits: relay.Limits{StallTimeout: 4 * time.Second, StalledStreamsPerAgent: 2}})
	bulk := connector.Service{Name: "staging-bulk", Upstream: bulkServer(t, 256<<20), Environment: "staging"}
	echo := connector.Service{Name: "staging-echo", Upstream: meshtest.EchoServer(t), Environment: "staging"}
	m.Connector("office", bulk, echo)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	var stalled []net.Conn
	for i := range 3 {
		c := m.Client(m.AgentToken(fmt.Sprintf("stalled-%d", i), "coding-agents"))
		conn, err := c.Dial(ctx, "tcp", "staging-bulk")
		if err != nil {
			t.Fatal(err)
		}
		stalled = append(stalled, conn)
	}
	// And one agent that stops reading five at once. It opens all five
	// before it asks for any: a download it does not read fills its own
	// connection's window, and an open behind it would wait on that.
	greedy := m.Client(m.AgentToken("greedy", "coding-agents"))
	var mine []net.Conn
	for range 5 {
		conn, err := greedy.Dial(ctx, "tcp", "staging-bulk")
		if err != nil {
			t.Fatal(err)
		}
		mine = append(mine, conn)
	}
	for _, conn := range append(stalled, mine...) {
		if _, err := conn.Write([]byte{1}); err != nil { // the download starts
			t.Fatal(err)
		}
	}
	time.Sleep(1500 * time.Millisecond) // they fill their windows and stall

	other := m.Client(m.AgentToken("coding-agent", "coding-agents"))
	for i := range 20 {
		octx, ocancel := context.WithTimeout(ctx, 5*time.Second)
		line := fmt.Sprintf("line %d", i)
		got, err := roundTrip(octx, other, "staging-echo", line)
		ocancel()
		if err != nil || got != line {
			t.Fatalf("open %d of the agent that reads, beside stalled downloads: %q, %v", i, got, err)
		}
	}

	// The greedy agent kept its share (2) and lost the rest at once; the
	// others lose theirs at the stall timeout. A reset stream's next Read
	// fails at once, whatever it holds unread; a byte at a time, the
	// others stay stalled (no window update for so little).
	resetFor := func(conn net.Conn) bool {
		deadline := time.Now().Add(30 * time.Second)
		var b [1]byte
		for time.Now().Before(deadline) {
			_, err := conn.Read(b[:])
			if err != nil {
				code, ok := quicnet.StreamErrorCode(err)
				if !ok || code != quicnet.StreamStalled {
					t.Logf("read: %v", err)
				}
				return ok && code == quicnet.StreamStalled
			}
			time.Sleep(250 * time.Millisecond)
		}
		return false
	}
	var wg sync.WaitGroup
	results := make([]bool, len(mine)+len(stalled))
	for i, conn := range append(mine, stalled...) {
		wg.Go(func() { results[i] = resetFor(conn) })
	}
	wg.Wait()
	for i, reset := range results {
		if !reset {
			t.Errorf("stalled download %d was not reset with STREAM_ERROR_STALLED", i)
		}
	}
	if n := len(m.Audit.Events(relay.EventStreamClose)); n < 20 {
		t.Errorf("%d stream.close events, want the 20 round trips and the downloads", n)
	}
}

// TestConnectorSilence: a connector that promised keep-alives
// (wire.FeatureKeepAlive) and sends nothing is dropped after the relay's
// silence bound, and its binding leaves the routes; one that promised
// nothing is held (QUIC's idle timeout decides).
func TestConnectorSilence(t *testing.T) {
	m := meshtest.New(t, meshtest.Options{Limits: relay.Limits{ConnectorSilence: 500 * time.Millisecond}})
	quiet := &transport.Config{KeepAlive: -1}
	promised := rawConnectorWith(t, m, quiet, "promised-connector", []string{wire.FeatureDialAck, wire.FeatureKeepAlive},
		connector.Service{Name: "staging-a", Environment: "staging"}, nil)
	rawConnectorWith(t, m, quiet, "silent-connector", []string{wire.FeatureDialAck},
		connector.Service{Name: "staging-b", Environment: "staging"}, nil)
	select {
	case <-promised.Conn.Context().Done():
	case <-time.After(10 * time.Second):
		t.Fatal("a connector that promised keep-alives and sent none was still connected after 10s")
	}
	if err := context.Cause(promised.Conn.Context()); !strings.Contains(err.Error(), "connector_silent") {
		t.Errorf("closed with %v, want connector_silent", err)
	}
	meshtest.WaitFor(t, "staging-a without connectors", func() bool { return m.Relay().Stats().Bindings["staging-a"] == 0 })
	time.Sleep(time.Second)
	if n := m.Relay().Stats().Bindings["staging-b"]; n != 1 {
		t.Errorf("the connector that promised nothing: %d connectors serve its binding, want 1", n)
	}
	var found bool
	for _, ev := range m.Audit.Events(relay.EventSessionEnd) {
		if ev["subject"] == "promised-connector" && ev["reason"] == "connector_silent" {
			found = true
		}
	}
	if !found {
		t.Error("no session.end event with reason connector_silent")
	}
}

// TestFailoverSlowOnlyConnector: the ack bound moves opens between
// connectors; it does not fail them. A connector that acknowledges after
// three times the bound, with no other serving the binding, still gets
// the open, its early bytes and all.
func TestFailoverSlowOnlyConnector(t *testing.T) {
	m := meshtest.New(t, meshtest.Options{Limits: relay.Limits{AckTimeout: 100 * time.Millisecond}})
	svc := connector.Service{Name: "staging-echo", Environment: "staging"}
	rawConnector(t, m, "slow-connector", []string{wire.FeatureDialAck}, svc, func(st quicnet.Stream) {
		var d wire.Dial
		if err := wire.ReadExpected(st, 1<<20, &d); err != nil || !d.Ack {
			st.CancelRead(quicnet.StreamAborted)
			st.CancelWrite(quicnet.StreamAborted)
			return
		}
		time.Sleep(300 * time.Millisecond)
		wire.WriteFrame(st, &wire.DialAck{})
		wire.WriteFrame(st, &wire.Result{Code: wire.CodeOK})
		io.Copy(st, st)
		st.Close()
	})
	c := m.Client(m.AgentToken("coding-agent", "coding-agents"))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if got, err := roundTrip(ctx, c, "staging-echo", "slow"); err != nil || got != "slow" {
		t.Fatalf("through the only connector, slow to acknowledge: %q, %v", got, err)
	}
}

// TestIsolationStalledUpload: an upload to an upstream that stops reading
// holds the connector's receive credit; the relay resets it after the
// stall timeout, and the agent's next write says why.
func TestIsolationStalledUpload(t *testing.T) {
	m := meshtest.New(t, meshtest.Options{Limits: relay.Limits{StallTimeout: 2 * time.Second}})
	hold := make(chan struct{})
	sink := connector.Service{Name: "staging-sink", Environment: "staging",
		Upstream: meshtest.Server(t, func(c net.Conn) { <-hold })} // accepts, never reads
	t.Cleanup(func() { close(hold) }) // before the server's cleanup waits for its handlers
	m.Connector("office", sink)
	c := m.Client(m.AgentToken("coding-agent", "coding-agents"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := c.Dial(ctx, "tcp", "staging-sink")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetWriteDeadline(time.Now().Add(20 * time.Second))
	buf := make([]byte, 64<<10)
	start := time.Now()
	for {
		if _, err = conn.Write(buf); err != nil {
			break
		}
	}
	code, ok := quicnet.StreamErrorCode(err)
	if !ok || code != quicnet.StreamStalled {
		t.Fatalf("the stalled upload ended after %s with %v, want STREAM_ERROR_STALLED", time.Since(start).Round(time.Millisecond), err)
	}
}
