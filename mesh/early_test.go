package mesh_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postern/postern"
	"github.com/postern/postern/internal/quicnet"

	"github.com/postern/postern/internal/meshtest"
	"github.com/postern/postern/internal/wire"
	"github.com/postern/postern/mesh"
	"github.com/postern/postern/mesh/connector"
	"github.com/postern/postern/transport"
)

// TestDialEarlyPipelines: the first bytes go out with the open, and the
// reply arrives after the relay's answer.
func TestDialEarlyPipelines(t *testing.T) {
	w := newWorld(t, meshtest.Options{})
	conn, err := w.agent.DialEarly(ctx(t), "tcp", "staging-db")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	mc := conn.(*mesh.Conn)
	if mc.Connector() != "" {
		t.Fatal("the relay's answer was read before any I/O")
	}
	echoOnce(t, conn, "first request, sent with the open")
	if mc.Connector() != "office-1" {
		t.Fatalf("connector after the first read = %q", mc.Connector())
	}
	echoOnce(t, conn, "second request")
}

// TestDialEarlyDenialDiscardsData: bytes sent with a denied open never
// reach the connector, and the agent gets the denial from Read.
func TestDialEarlyDenialDiscardsData(t *testing.T) {
	m := meshtest.New(t, meshtest.Options{})
	var conns atomic.Int32
	upstream := meshtest.Server(t, func(c net.Conn) {
		conns.Add(1)
		io.Copy(io.Discard, c)
	})
	m.Connector("office-1",
		connector.Service{Name: "prod-finance", Upstream: upstream, Environment: "staging", Labels: []string{"financial"}},
		connector.Service{Name: "staging-db", Upstream: upstream, Environment: "staging"},
	)
	agent := m.Client(m.AgentToken("coding-agent", "coding-agents"))
	conn, err := agent.DialEarly(ctx(t), "tcp", "prod-finance")
	if err != nil {
		t.Fatalf("DialEarly itself should not wait for the relay: %v", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("DROP TABLE ledger;")); err != nil && !errors.Is(err, postern.ErrDenied) {
		t.Fatalf("first write: %v", err)
	}
	_, err = conn.Read(make([]byte, 1))
	if !errors.Is(err, postern.ErrDenied) {
		t.Fatalf("read after a denied early open: %v, want postern.ErrDenied", err)
	}
	// Later writes report the denial too, once the relay's stop arrives.
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := conn.Write([]byte("more"))
		if errors.Is(err, postern.ErrDenied) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("writes after the denial: %v, want postern.ErrDenied", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// An allowed open through the same connector proves it is serving,
	// so the denied one had every chance to arrive, and did not.
	ok, err := agent.Dial(ctx(t), "tcp", "staging-db")
	if err != nil {
		t.Fatal(err)
	}
	ok.Close()
	meshtest.WaitFor(t, "the allowed connection", func() bool { return conns.Load() >= 1 })
	time.Sleep(50 * time.Millisecond)
	if n := conns.Load(); n != 1 {
		t.Fatalf("the upstream saw %d connections; the denied open must not reach it", n)
	}
}

// TestDialEarlyKeepsDeadlines: a deadline set before the first Read, which
// also reads the relay's answer, still holds for the Reads after it.
func TestDialEarlyKeepsDeadlines(t *testing.T) {
	w := newWorld(t, meshtest.Options{})
	conn, err := w.agent.DialEarly(ctx(t), "tcp", "staging-db")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetReadDeadline(time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	echoOnce(t, conn, "the first read also reads the relay's answer")
	// The echo server sends nothing more: the next Read ends at the deadline.
	errc := make(chan error, 1)
	go func() {
		_, err := conn.Read(make([]byte, 1))
		errc <- err
	}()
	select {
	case err := <-errc:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("read past the deadline: %v, want os.ErrDeadlineExceeded", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the read deadline set before the first Read was lost")
	}
}

// TestDialEarlyUpstreamFailureOnWrite: when the connector cannot reach the
// upstream, writes after the relay's answer report that answer, as they do
// for a denial, not a bare stream error.
func TestDialEarlyUpstreamFailureOnWrite(t *testing.T) {
	m := meshtest.New(t, meshtest.Options{})
	m.Connector("office-1", connector.Service{Name: "staging-db", Upstream: meshtest.DeadAddr(t), Environment: "staging"})
	agent := m.Client(m.AgentToken("coding-agent", "coding-agents"))
	conn, err := agent.DialEarly(ctx(t), "tcp", "staging-db")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("SELECT 1")); err != nil && !errors.Is(err, postern.ErrUpstream) {
		t.Fatalf("first write: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := conn.Write([]byte("more"))
		if err != nil {
			if !errors.Is(err, postern.ErrUpstream) {
				t.Fatalf("write after the upstream failed: %v, want postern.ErrUpstream", err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("writes still succeed 5s after the open failed")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestDialEarlyCloseWriteFirst: a DialEarly stream half-closed before any
// write still opens the binding: the upstream reads EOF and its answer
// comes back.
func TestDialEarlyCloseWriteFirst(t *testing.T) {
	m := meshtest.New(t, meshtest.Options{})
	greeter := meshtest.Server(t, func(c net.Conn) {
		io.Copy(io.Discard, c) // wait for the agent's half-close
		io.WriteString(c, "nothing asked, nothing owed")
		c.(*net.TCPConn).CloseWrite()
	})
	m.Connector("office-1", connector.Service{Name: "staging-db", Upstream: greeter, Environment: "staging"})
	agent := m.Client(m.AgentToken("coding-agent", "coding-agents"))
	conn, err := agent.DialEarly(ctx(t), "tcp", "staging-db")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.(*mesh.Conn).CloseWrite(); err != nil {
		t.Fatalf("CloseWrite before any write: %v", err)
	}
	got, err := io.ReadAll(conn)
	if err != nil || string(got) != "nothing asked, nothing owed" {
		t.Fatalf("read after CloseWrite: %q, %v", got, err)
	}
}

// TestOpenTimeout: with no deadline in the caller's context, Dial still
// gives up, after OpenTimeout, on a relay that never answers the open.
func TestOpenTimeout(t *testing.T) {
	cert, err := transport.SelfSigned("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := quicnet.Listen("127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	relayDone := make(chan struct{})
	go func() { // a relay that welcomes the agent and then answers nothing
		defer close(relayDone)
		conn, err := ln.Accept(context.Background())
		if err != nil {
			return
		}
		defer conn.CloseWithError(0, "")
		ctrl, err := conn.AcceptStream(context.Background())
		if err != nil {
			return
		}
		var hello wire.Hello
		if wire.ReadExpected(ctrl, 0, &hello) != nil {
			return
		}
		wire.WriteFrame(ctrl, &wire.Welcome{Session: "s", Identity: wire.Identity{Subject: "a", Role: wire.RoleAgent}})
		for {
			if _, err := conn.AcceptStream(context.Background()); err != nil {
				return
			}
		}
	}()
	agent, err := mesh.NewClient(mesh.Config{Relay: ln.Addr().String(), Pin: transport.Pin(cert), Token: "opaque", OpenTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = agent.Dial(context.Background(), "tcp", "staging-db")
	if !errors.Is(err, postern.ErrTimeout) {
		t.Fatalf("dial to a silent relay: %v, want postern.ErrTimeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("gave up after %v", d)
	}
	agent.Close()
	ln.Close()
	<-relayDone
}
