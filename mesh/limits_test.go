package mesh_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postern/postern"
	"github.com/postern/postern/binding"
	"github.com/postern/postern/internal/meshtest"
	"github.com/postern/postern/internal/session"
	"github.com/postern/postern/internal/wire"
	"github.com/postern/postern/mesh/connector"
	"github.com/postern/postern/mesh/relay"
	"github.com/postern/postern/transport"
)

func limitReason(t *testing.T, err error, reason string) {
	t.Helper()
	var me *postern.Error
	if !errors.Is(err, postern.ErrLimitExceeded) || !errors.As(err, &me) || me.Reason != reason {
		t.Fatalf("err = %v, want postern.ErrLimitExceeded with reason %s", err, reason)
	}
}

// TestSessionsPerSubject: a subject's sessions are capped across clients;
// the one over the cap is refused with its own reason, and a place comes
// back when a session ends.
func TestSessionsPerSubject(t *testing.T) {
	w := newWorld(t, meshtest.Options{Limits: relay.Limits{SessionsPerSubject: 2}})
	tok := w.AgentToken("coding-agent", "coding-agents")
	if err := w.agent.Connect(ctx(t)); err != nil {
		t.Fatal(err)
	}
	second := w.Client(tok)
	if err := second.Connect(ctx(t)); err != nil {
		t.Fatal(err)
	}
	third := w.Client(tok)
	limitReason(t, third.Connect(ctx(t)), relay.ReasonSessionsPerSubject)
	// Another subject is not counted with this one.
	if err := w.Client(w.AgentToken("other-agent", "coding-agents")).Connect(ctx(t)); err != nil {
		t.Fatalf("another subject: %v", err)
	}
	second.Close()
	meshtest.WaitFor(t, "the closed session to end", func() bool { return w.Relay().Stats().Agents == 2 })
	if err := w.Client(tok).Connect(ctx(t)); err != nil {
		t.Fatalf("after a session ended: %v", err)
	}
}

// TestStreamsPerSubject: binding streams are capped per subject across its
// sessions, apart from the per-session cap.
func TestStreamsPerSubject(t *testing.T) {
	w := newWorld(t, meshtest.Options{Limits: relay.Limits{StreamsPerSubject: 3}})
	other := w.Client(w.AgentToken("coding-agent", "coding-agents"))
	var open []net.Conn
	defer func() {
		for _, c := range open {
			c.Close()
		}
	}()
	for _, c := range []interface {
		Dial(context.Context, string, string) (net.Conn, error)
	}{w.agent, w.agent, other} {
		conn, err := c.Dial(ctx(t), "tcp", "staging-db")
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, conn)
	}
	_, err := other.Dial(ctx(t), "tcp", "staging-db")
	limitReason(t, err, relay.ReasonStreamsPerSubject)
	open[0].Close()
	open = open[1:]
	meshtest.WaitFor(t, "the closed stream to end", func() bool { return w.Relay().Stats().Streams == 2 })
	conn, err := other.Dial(ctx(t), "tcp", "staging-db")
	if err != nil {
		t.Fatalf("after a stream ended: %v", err)
	}
	echoOnce(t, conn, "still carried")
	conn.Close()
}

// TestRefreshRate: refreshes beyond the subject's budget are refused with
// their own reason; the session goes on with its token.
func TestRefreshRate(t *testing.T) {
	w := newWorld(t, meshtest.Options{Limits: relay.Limits{RefreshesPerMinute: 2}})
	tlsConf, err := transport.Trust{Pin: w.Pin}.ClientTLS("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	tok := w.AgentToken("coding-agent", "coding-agents")
	s, err := session.Dial(ctx(t), session.Config{Addr: w.Addr(), TLS: tlsConf, Role: wire.RoleAgent,
		Token: func(context.Context) (string, error) { return tok, nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range 2 {
		if err := s.RefreshNow(); err != nil {
			t.Fatalf("refresh %d: %v", i, err)
		}
	}
	err = s.RefreshNow()
	var rej *session.RejectError
	if !errors.As(err, &rej) || rej.Code != wire.CodeLimit || rej.Reason != relay.ReasonRefreshRate {
		t.Fatalf("third refresh: %v, want CODE_LIMIT %s", err, relay.ReasonRefreshRate)
	}
	time.Sleep(100 * time.Millisecond)
	if s.Conn.Context().Err() != nil {
		t.Fatal("a refused refresh ended the session")
	}
}

// TestHideDenied: with Config.HideDenied a denied open is answered exactly
// as an unknown binding, and the audit trail still says what happened.
func TestHideDenied(t *testing.T) {
	w := newWorld(t, meshtest.Options{Configure: func(c *relay.Config) { c.HideDenied = true }})
	_, denied := w.agent.Dial(ctx(t), "tcp", "prod-finance")
	_, unknown := w.agent.Dial(ctx(t), "tcp", "prod-financf") // same length
	var d, u *postern.Error
	if !errors.As(denied, &d) || !errors.As(unknown, &u) {
		t.Fatalf("errors %v and %v, want *postern.Error", denied, unknown)
	}
	if !errors.Is(denied, postern.ErrUnknownBinding) || errors.Is(denied, postern.ErrDenied) {
		t.Fatalf("denied open: %v, want it to look unknown", denied)
	}
	if d.Reason != u.Reason || d.Message != u.Message || d.Policies != nil || u.Policies != nil ||
		strings.ReplaceAll(denied.Error(), "prod-finance", "prod-financf") != unknown.Error() {
		t.Fatalf("denied %#v and unknown %#v differ", d, u)
	}
	var ev map[string]any
	for _, e := range w.Audit.Events(relay.EventOpenDeny) {
		if e["binding"] == "prod-finance" {
			ev = e
		}
	}
	if ev == nil || ev["code"] != "denied" || ev["hidden"] != true || !strings.Contains(ev["decision_detail"].(string), "forbid-financial") {
		t.Fatalf("audit of the hidden denial: %v", ev)
	}
}

// TestOneNameRule: Dial and binding.OpenWith refuse the same names; a
// ":port" is the only suffix Dial takes, and an error quotes a bounded
// part of a long name.
func TestOneNameRule(t *testing.T) {
	w := newWorld(t, meshtest.Options{})
	for _, name := range []string{"staging-db:../prod-finance", "staging-db:", "staging-db:99999", "staging-db:80:81", ":80", "staging db", strings.Repeat("a", 10<<10)} {
		_, err := w.agent.Dial(ctx(t), "tcp", name)
		if !errors.Is(err, postern.ErrUnknownBinding) {
			t.Errorf("Dial(%.40q): %v, want postern.ErrUnknownBinding", name, err)
		}
		if len(err.Error()) > 600 {
			t.Errorf("Dial(%.40q): a %d-byte error", name, len(err.Error()))
		}
		if _, err := binding.OpenWith(w.agent, name); !errors.Is(err, postern.ErrUnknownBinding) || len(err.Error()) > 600 {
			t.Errorf("OpenWith(%.40q): %.200v, want a bounded postern.ErrUnknownBinding", name, err)
		}
	}
	conn, err := w.agent.Dial(ctx(t), "tcp", "staging-db:5432")
	if err != nil {
		t.Fatal(err)
	}
	echoOnce(t, conn, "a port is fine")
	conn.Close()
}

// blockingWriter holds every Write until release is closed.
type blockingWriter struct {
	release chan struct{}
	mu      sync.Mutex
	buf     strings.Builder
}

func (b *blockingWriter) Write(p []byte) (int, error) {
	<-b.release
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// TestAuditStallDoesNotStallOpens: a collector that stops reading the
// audit trail does not hold opens with the drop policy; what was dropped
// is reported in the trail once it drains.
func TestAuditStallDoesNotStallOpens(t *testing.T) {
	bw := &blockingWriter{release: make(chan struct{})}
	var once sync.Once
	release := func() { once.Do(func() { close(bw.release) }) }
	w := newWorld(t, meshtest.Options{Configure: func(c *relay.Config) {
		c.Audit = slog.New(slog.NewJSONHandler(bw, nil))
		c.AuditQueue = relay.AuditQueue{Size: 8, Drop: true}
	}})
	t.Cleanup(release) // before the relay's Close, which writes what is queued
	for i := range 40 {
		c, err := w.agent.Dial(ctx(t), "tcp", "staging-db")
		if err != nil {
			t.Fatalf("open %d with a stalled audit collector: %v", i, err)
		}
		echoOnce(t, c, "x")
		c.Close()
	}
	release()
	w.Relay().SyncAudit()
	bw.mu.Lock()
	out := bw.buf.String()
	bw.mu.Unlock()
	if !strings.Contains(out, `"msg":"`+relay.EventAuditDropped+`"`) {
		t.Fatalf("no %s event after the queue drained:\n%.2000s", relay.EventAuditDropped, out)
	}
}

// TestConnectorCapsUpstreamConnections: a connector serves at most
// Service.MaxConns streams of a service at once; the one over is refused
// with its own reason before the upstream is dialed.
func TestConnectorCapsUpstreamConnections(t *testing.T) {
	m := meshtest.New(t, meshtest.Options{})
	var dials atomic.Int32
	up := meshtest.Server(t, func(c net.Conn) {
		dials.Add(1)
		io.Copy(c, c)
	})
	m.Connector("office-1", connector.Service{Name: "staging-db", Kind: postern.KindTCP, Upstream: up, Environment: "staging", MaxConns: 2})
	agent := m.Client(m.AgentToken("coding-agent", "coding-agents"))
	var open []net.Conn
	for range 2 {
		c, err := agent.Dial(ctx(t), "tcp", "staging-db")
		if err != nil {
			t.Fatal(err)
		}
		echoOnce(t, c, "held")
		open = append(open, c)
	}
	_, err := agent.Dial(ctx(t), "tcp", "staging-db")
	limitReason(t, err, connector.ReasonUpstreamConnections)
	if n := dials.Load(); n != 2 {
		t.Fatalf("%d upstream connections, want 2", n)
	}
	open[0].Close()
	var c net.Conn
	meshtest.WaitFor(t, "a place after one stream closed", func() bool {
		c, err = agent.Dial(ctx(t), "tcp", "staging-db")
		return err == nil
	})
	echoOnce(t, c, "again")
	c.Close()
	open[1].Close()
}
