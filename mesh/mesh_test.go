package mesh_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sync/errgroup"

	"github.com/postern/postern"
	"github.com/postern/postern/internal/meshtest"
	"github.com/postern/postern/mesh"
	"github.com/postern/postern/mesh/connector"
	"github.com/postern/postern/mesh/relay"
	"github.com/postern/postern/policy"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// world is the product's sentence set up for real: a coding agent, a
// connector serving a staging database and production financial records,
// both echo servers on loopback.
type world struct {
	*meshtest.Mesh
	agent *mesh.Client
}

func newWorld(t *testing.T, opts meshtest.Options) *world {
	t.Helper()
	m := meshtest.New(t, opts)
	echo := meshtest.EchoServer(t)
	m.Connector("office-1",
		connector.Service{Name: "staging-db", Kind: postern.KindTCP, Upstream: echo, Environment: "staging"},
		connector.Service{Name: "prod-finance", Kind: postern.KindTCP, Upstream: echo, Environment: "staging", Labels: []string{"financial"}},
	)
	return &world{Mesh: m, agent: m.Client(m.AgentToken("coding-agent", "coding-agents"))}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestEcho1KiB(t *testing.T) {
	w := newWorld(t, meshtest.Options{})
	conn, err := w.agent.Dial(ctx(t), "tcp", "staging-db")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	msg := make([]byte, 1024)
	rand.Read(msg)
	if _, err := conn.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(conn, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatal("echo differs from what was sent")
	}
	if mc := conn.(*mesh.Conn); mc.Connector() != "office-1" || mc.Binding() != "staging-db" {
		t.Fatalf("conn reports connector %q binding %q", mc.Connector(), mc.Binding())
	}
	if conn.RemoteAddr().String() != "staging-db" || conn.RemoteAddr().Network() != "postern" {
		t.Fatalf("RemoteAddr = %s/%s", conn.RemoteAddr().Network(), conn.RemoteAddr())
	}
}

// TestBulk8MiBEachWay sends 8 MiB up while reading 8 MiB down on the same
// stream, and checks both with SHA-256.
func TestBulk8MiBEachWay(t *testing.T) {
	w := newWorld(t, meshtest.Options{})
	conn, err := w.agent.Dial(ctx(t), "tcp", "staging-db")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const size = 8 << 20
	payload := make([]byte, size)
	rand.Read(payload)
	want := sha256.Sum256(payload)

	var g errgroup.Group
	g.Go(func() error {
		if _, err := conn.Write(payload); err != nil {
			return err
		}
		return conn.(*mesh.Conn).CloseWrite()
	})
	h := sha256.New()
	n, err := io.Copy(h, conn)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	if n != size {
		t.Fatalf("read %d bytes back, want %d", n, size)
	}
	if got := h.Sum(nil); !bytes.Equal(got, want[:]) {
		t.Fatal("SHA-256 of the echoed bytes differs from what was sent")
	}
	// The relay audits the stream's close with the bytes each way.
	meshtest.WaitFor(t, "stream.close audit event", func() bool { return len(w.Audit.Events(relay.EventStreamClose)) > 0 })
	ev := w.Audit.Events(relay.EventStreamClose)[0]
	if ev["bytes_up"] != float64(size) || ev["bytes_down"] != float64(size) {
		t.Fatalf("stream.close audit says up %v down %v, want %d each", ev["bytes_up"], ev["bytes_down"], size)
	}
}

// TestHalfClose: the agent's CloseWrite reaches the upstream as EOF, and
// the upstream's answer, sent after that EOF, still reaches the agent.
func TestHalfClose(t *testing.T) {
	m := meshtest.New(t, meshtest.Options{})
	sawEOF := make(chan int, 1)
	upstream := meshtest.Server(t, func(c net.Conn) {
		n, _ := io.Copy(io.Discard, c) // returns at the agent's half-close
		sawEOF <- int(n)
		fmt.Fprintf(c, "got %d bytes", n)
	})
	m.Connector("office-1", connector.Service{Name: "staging-db", Upstream: upstream, Environment: "staging"})
	agent := m.Client(m.AgentToken("coding-agent", "coding-agents"))
	conn, err := agent.Dial(ctx(t), "tcp", "staging-db")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if err := conn.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	select {
	case n := <-sawEOF:
		if n != 5 {
			t.Fatalf("upstream read %d bytes before EOF, want 5", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the half-close never reached the upstream as EOF")
	}
	reply, err := io.ReadAll(conn)
	if err != nil {
		t.Fatal(err)
	}
	if string(reply) != "got 5 bytes" {
		t.Fatalf("reply after half-close = %q", reply)
	}
	if _, err := conn.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after CloseWrite: err = %v, want net.ErrClosed", err)
	}
}

// TestCloseDeliversWrites: a Close right after a Write still delivers
// everything written, ended by a clean EOF at the upstream. The agent's
// Close stops its reading (STOP_SENDING) as it sends its FIN; that must
// end only what flows toward it, not cut what it sent. With DialEarly the
// Close may even come before the relay's Result, which the agent then
// never reads.
func TestCloseDeliversWrites(t *testing.T) {
	m := meshtest.New(t, meshtest.Options{})
	type got struct {
		n   int64
		err error
	}
	seen := make(chan got, 1)
	upstream := meshtest.Server(t, func(c net.Conn) {
		n, err := io.Copy(io.Discard, c)
		seen <- got{n, err}
	})
	m.Connector("office-1", connector.Service{Name: "staging-db", Upstream: upstream, Environment: "staging"})
	agent := m.Client(m.AgentToken("coding-agent", "coding-agents"))
	payload := make([]byte, 1<<20)
	rand.Read(payload)
	for _, tc := range []struct {
		name string
		dial func(context.Context, string, string) (net.Conn, error)
		size int
	}{
		{"dial 1 MiB", agent.Dial, len(payload)},
		{"dial 1 byte", agent.Dial, 1},
		{"early 1 MiB", agent.DialEarly, len(payload)},
		{"early 1 KiB", agent.DialEarly, 1024},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := tc.dial(ctx(t), "tcp", "staging-db")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := conn.Write(payload[:tc.size]); err != nil {
				t.Fatal(err)
			}
			if err := conn.Close(); err != nil {
				t.Fatal(err)
			}
			select {
			case g := <-seen:
				if g.n != int64(tc.size) || g.err != nil {
					t.Fatalf("the upstream read %d bytes, then %v; want %d bytes and a clean EOF", g.n, g.err, tc.size)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("the upstream never saw the end of the stream")
			}
		})
	}
}

// TestCloseReadKeepsSending: after CloseRead the agent reads nothing more
// but its writes still reach the upstream, which talks all the while; the
// stream ends cleanly at the agent's CloseWrite, and the relay's audit
// says so (no error, every byte sent up counted).
func TestCloseReadKeepsSending(t *testing.T) {
	m := meshtest.New(t, meshtest.Options{})
	seen := make(chan int64, 1)
	upstream := meshtest.Server(t, func(c net.Conn) {
		go func() { // talks until the connection is gone
			chatter := make([]byte, 16<<10)
			for {
				if _, err := c.Write(chatter); err != nil {
					return
				}
			}
		}()
		n, _ := io.Copy(io.Discard, c)
		seen <- n
	})
	m.Connector("office-1", connector.Service{Name: "staging-db", Upstream: upstream, Environment: "staging"})
	agent := m.Client(m.AgentToken("coding-agent", "coding-agents"))
	conn, err := agent.Dial(ctx(t), "tcp", "staging-db")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	mc := conn.(*mesh.Conn)
	if _, err := io.ReadFull(conn, make([]byte, 1)); err != nil { // the upstream talks
		t.Fatal(err)
	}
	if err := mc.CloseRead(); err != nil {
		t.Fatal(err)
	}
	const size = 4 << 20
	conn.SetWriteDeadline(time.Now().Add(20 * time.Second))
	if _, err := conn.Write(make([]byte, size)); err != nil {
		t.Fatalf("write after CloseRead: %v", err)
	}
	if err := mc.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	select {
	case n := <-seen:
		if n != size {
			t.Fatalf("the upstream read %d bytes before EOF, want %d", n, size)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the agent's CloseWrite never reached the upstream as EOF")
	}
	meshtest.WaitFor(t, "stream.close audit event", func() bool { return len(m.Audit.Events(relay.EventStreamClose)) > 0 })
	ev := m.Audit.Events(relay.EventStreamClose)[0]
	if ev["bytes_up"] != float64(size) || ev["error"] != nil {
		t.Fatalf("stream.close audit: bytes_up %v, error %v; want %d and none", ev["bytes_up"], ev["error"], size)
	}
}

func TestDeniedByForbid(t *testing.T) {
	w := newWorld(t, meshtest.Options{})
	_, err := w.agent.Dial(ctx(t), "tcp", "prod-finance")
	if !errors.Is(err, postern.ErrDenied) {
		t.Fatalf("err = %v, want postern.ErrDenied", err)
	}
	var me *postern.Error
	if !errors.As(err, &me) || me.Binding != "prod-finance" || !slices.Equal(me.Policies, []string{"forbid-financial"}) {
		t.Fatalf("error = %#v, want binding prod-finance and policies [forbid-financial]", me)
	}
	if !strings.Contains(err.Error(), "forbid-financial") || !strings.Contains(err.Error(), "prod-finance") {
		t.Fatalf("error text %q names neither the policy nor the binding", err)
	}
	for _, sentinel := range []error{postern.ErrUnknownBinding, postern.ErrNoConnector, postern.ErrUnauthenticated} {
		if errors.Is(err, sentinel) {
			t.Fatalf("a denial also matches %v", sentinel)
		}
	}
	denies := w.Audit.Events(relay.EventOpenDeny)
	if len(denies) != 1 {
		t.Fatalf("%d open.deny events, want 1:\n%s", len(denies), w.Audit)
	}
	ev := denies[0]
	if ev["binding"] != "prod-finance" || ev["subject"] != "coding-agent" || ev["code"] != "denied" ||
		fmt.Sprint(ev["policies"]) != "[forbid-financial]" {
		t.Fatalf("deny event = %v", ev)
	}
	cat, err := w.agent.Catalog(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	names := bindingNames(cat)
	if !slices.Equal(names, []string{"staging-db"}) {
		t.Fatalf("catalog = %v, want [staging-db] only", names)
	}
	if _, err := w.agent.Lookup(ctx(t), "prod-finance"); !errors.Is(err, postern.ErrUnknownBinding) {
		t.Fatalf("Lookup(prod-finance) err = %v, want postern.ErrUnknownBinding", err)
	}
}

func bindingNames(bs []postern.Binding) []string {
	var out []string
	for _, b := range bs {
		out = append(out, b.Name)
	}
	return out
}

func TestAuditAllowAndSession(t *testing.T) {
	w := newWorld(t, meshtest.Options{})
	conn, err := w.agent.Dial(ctx(t), "tcp", "staging-db")
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	allows := w.Audit.Events(relay.EventOpenAllow)
	if len(allows) != 1 {
		t.Fatalf("%d open.allow events, want 1", len(allows))
	}
	ev := allows[0]
	if ev["connector"] != "office-1" || fmt.Sprint(ev["policies"]) != "[staging-for-coding-agents staging-requests-for-coding-agents]" || ev["subject"] != "coding-agent" {
		t.Fatalf("allow event = %v", ev)
	}
	starts := w.Audit.Events(relay.EventSessionStart)
	var roles []string
	for _, s := range starts {
		roles = append(roles, fmt.Sprint(s["role"]))
	}
	slices.Sort(roles)
	if !slices.Equal(roles, []string{"agent", "connector"}) {
		t.Fatalf("session.start roles = %v", roles)
	}
	if strings.Contains(w.Audit.String(), "eyJ") {
		t.Fatal("the audit log contains something that looks like a token")
	}
	w.agent.Close()
	meshtest.WaitFor(t, "session.end for the agent", func() bool {
		for _, e := range w.Audit.Events(relay.EventSessionEnd) {
			if e["role"] == "agent" {
				return true
			}
		}
		return false
	})
}

func TestUnknownBinding(t *testing.T) {
	w := newWorld(t, meshtest.Options{})
	_, err := w.agent.Dial(ctx(t), "tcp", "no-such-db")
	if !errors.Is(err, postern.ErrUnknownBinding) {
		t.Fatalf("err = %v, want postern.ErrUnknownBinding", err)
	}
	_, err = w.agent.Dial(ctx(t), "tcp", "bad name")
	if !errors.Is(err, postern.ErrUnknownBinding) {
		t.Fatalf("invalid name: err = %v, want postern.ErrUnknownBinding", err)
	}
	_, err = w.agent.Dial(ctx(t), "udp", "staging-db")
	if !errors.Is(err, postern.ErrProtocol) {
		t.Fatalf("udp: err = %v, want postern.ErrProtocol", err)
	}
	// ":port" is ignored, as http.Transport passes it.
	conn, err := w.agent.Dial(ctx(t), "tcp", "staging-db:80")
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
}

func TestNoConnectorFailsFast(t *testing.T) {
	m := meshtest.New(t, meshtest.Options{Bindings: []postern.Binding{{Name: "staging-db", Kind: postern.KindTCP, Environment: "staging"}}})
	agent := m.Client(m.AgentToken("coding-agent", "coding-agents"))
	start := time.Now()
	_, err := agent.Dial(ctx(t), "tcp", "staging-db")
	if !errors.Is(err, postern.ErrNoConnector) {
		t.Fatalf("err = %v, want postern.ErrNoConnector", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("the no-connector error took %v, want under a second", d)
	}
	var me *postern.Error
	if !errors.As(err, &me) || !me.Temporary() {
		t.Fatal("postern.ErrNoConnector should be reported as temporary")
	}
}

// TestConnectorGoneFailsFast: a binding served once, whose connector has
// gone, fails with postern.ErrNoConnector, not a hang.
func TestConnectorGoneFailsFast(t *testing.T) {
	m := meshtest.New(t, meshtest.Options{})
	stop := m.Connector("office-1", connector.Service{Name: "staging-db", Upstream: meshtest.EchoServer(t), Environment: "staging"})
	agent := m.Client(m.AgentToken("coding-agent", "coding-agents"))
	c, err := agent.Dial(ctx(t), "tcp", "staging-db")
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	stop()
	meshtest.WaitFor(t, "the relay to drop the connector", func() bool { return m.Relay().Stats().Connectors == 0 })
	start := time.Now()
	_, err = agent.Dial(ctx(t), "tcp", "staging-db")
	if !errors.Is(err, postern.ErrNoConnector) {
		t.Fatalf("err = %v, want postern.ErrNoConnector", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("took %v", d)
	}
}

func TestUpstreamRefused(t *testing.T) {
	m := meshtest.New(t, meshtest.Options{})
	dead := meshtest.DeadAddr(t)
	m.Connector("office-1", connector.Service{Name: "staging-db", Upstream: dead, Environment: "staging"})
	agent := m.Client(m.AgentToken("coding-agent", "coding-agents"))
	_, err := agent.Dial(ctx(t), "tcp", "staging-db")
	if !errors.Is(err, postern.ErrUpstream) {
		t.Fatalf("err = %v, want postern.ErrUpstream", err)
	}
	if strings.Contains(err.Error(), dead) {
		t.Fatalf("the error %q reveals the upstream's private address", err)
	}
	if len(m.Audit.Events(relay.EventOpenFail)) != 1 {
		t.Fatalf("want one open.fail audit event:\n%s", m.Audit)
	}
}

func TestRelayRestart(t *testing.T) {
	w := newWorld(t, meshtest.Options{})
	c, err := w.agent.Dial(ctx(t), "tcp", "staging-db")
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	addr := w.Addr()
	w.StopRelay()
	w.StartRelay(addr)
	meshtest.WaitFor(t, "the connector to come back", func() bool { return w.Relay().Stats().Bindings["staging-db"] == 1 })
	c, err = w.agent.Dial(ctx(t), "tcp", "staging-db")
	if err != nil {
		t.Fatalf("dial after the relay restarted: %v", err)
	}
	defer c.Close()
	echoOnce(t, c, "after restart")
}

func echoOnce(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if string(got) != msg {
		t.Fatalf("echo = %q, want %q", got, msg)
	}
}

func TestManyStreamsAndLimit(t *testing.T) {
	const limit = 200
	w := newWorld(t, meshtest.Options{Limits: relay.Limits{StreamsPerAgent: limit}})
	conns := make([]net.Conn, limit)
	var g errgroup.Group
	for i := range conns {
		g.Go(func() error {
			c, err := w.agent.Dial(ctx(t), "tcp", "staging-db")
			conns[i] = c
			return err
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	meshtest.WaitFor(t, "all streams counted", func() bool { return w.Relay().Stats().Streams == limit })
	_, err := w.agent.Dial(ctx(t), "tcp", "staging-db")
	if !errors.Is(err, postern.ErrLimitExceeded) {
		t.Fatalf("open %d: err = %v, want postern.ErrLimitExceeded", limit+1, err)
	}
	// Every open stream still carries its own bytes.
	for i, c := range conns {
		g.Go(func() error {
			msg := fmt.Sprintf("stream %d says %x", i, sha256.Sum256([]byte{byte(i), byte(i >> 8)}))
			if _, err := io.WriteString(c, msg); err != nil {
				return err
			}
			got := make([]byte, len(msg))
			if _, err := io.ReadFull(c, got); err != nil {
				return err
			}
			if string(got) != msg {
				return fmt.Errorf("stream %d got %q", i, got)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
}

func TestPolicyReloadDeniesWithoutReconnect(t *testing.T) {
	w := newWorld(t, meshtest.Options{})
	c, err := w.agent.Dial(ctx(t), "tcp", "staging-db")
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	starts := len(w.Audit.Events(relay.EventSessionStart))
	set, err := policy.Parse("reloaded.cedar", []byte(`
@id("forbid-financial")
forbid (principal, action, resource) when { resource has labels && resource.labels.contains("financial") };
`))
	if err != nil {
		t.Fatal(err)
	}
	w.Policy.Swap(set)
	_, err = w.agent.Dial(ctx(t), "tcp", "staging-db")
	if !errors.Is(err, postern.ErrDenied) {
		t.Fatalf("after removing the permit: err = %v, want postern.ErrDenied", err)
	}
	meshtest.WaitFor(t, "the catalog to be re-scoped", func() bool {
		cat, err := w.agent.Catalog(ctx(t))
		return err == nil && len(cat) == 0
	})
	if n := len(w.Audit.Events(relay.EventSessionStart)); n != starts {
		t.Fatalf("the agent reconnected (%d session starts, was %d)", n, starts)
	}
}

// TestCatalogChanged: a channel taken before a policy reload is closed
// when the relay pushes the re-scoped catalog, and the catalog read after
// it is the new one; the next channel is a new one, still open.
func TestCatalogChanged(t *testing.T) {
	w := newWorld(t, meshtest.Options{})
	if cat, err := w.agent.Catalog(ctx(t)); err != nil || len(cat) != 1 {
		t.Fatalf("catalog before: %v, %v", cat, err)
	}
	changed := w.agent.CatalogChanged()
	set, err := policy.Parse("reloaded.cedar", []byte(`@id("nothing") forbid (principal, action, resource);`))
	if err != nil {
		t.Fatal(err)
	}
	w.Policy.Swap(set)
	select {
	case <-changed:
	case <-ctx(t).Done():
		t.Fatal("CatalogChanged not closed after a policy reload")
	}
	if cat, err := w.agent.Catalog(ctx(t)); err != nil || len(cat) != 0 {
		t.Fatalf("catalog after the change: %v, %v", cat, err)
	}
	select {
	case <-w.agent.CatalogChanged():
		t.Fatal("a CatalogChanged taken after the change is already closed")
	default:
	}
}

func TestConcurrentDialsOneSession(t *testing.T) {
	w := newWorld(t, meshtest.Options{})
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := w.agent.Dial(ctx(t), "tcp", "staging-db")
			if err != nil {
				errs <- err
				return
			}
			c.Close()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := len(w.Audit.Events(relay.EventSessionStart)); n != 2 { // the agent's and the connector's
		t.Fatalf("%d sessions started for 20 concurrent dials, want one agent session", n-1)
	}
}

// TestRoundRobinAndFailover: two connectors serving one binding share the
// opens in turn; when one goes, the other takes them all.
func TestRoundRobinAndFailover(t *testing.T) {
	m := meshtest.New(t, meshtest.Options{})
	echo := meshtest.EchoServer(t)
	svc := connector.Service{Name: "staging-db", Upstream: echo, Environment: "staging"}
	stopA := m.Connector("office-a", svc)
	m.Connector("office-b", svc)
	agent := m.Client(m.AgentToken("coding-agent", "coding-agents"))
	served := map[string]int{}
	for i := 0; i < 10; i++ {
		c, err := agent.Dial(ctx(t), "tcp", "staging-db")
		if err != nil {
			t.Fatal(err)
		}
		served[c.(*mesh.Conn).Connector()]++
		c.Close()
	}
	if served["office-a"] != 5 || served["office-b"] != 5 {
		t.Fatalf("10 opens over two connectors went %v, want 5 each", served)
	}
	stopA()
	meshtest.WaitFor(t, "the relay to drop office-a", func() bool { return m.Relay().Stats().Bindings["staging-db"] == 1 })
	for i := 0; i < 4; i++ {
		c, err := agent.Dial(ctx(t), "tcp", "staging-db")
		if err != nil {
			t.Fatal(err)
		}
		if got := c.(*mesh.Conn).Connector(); got != "office-b" {
			t.Fatalf("open %d went to %q after office-a left", i, got)
		}
		echoOnce(t, c, "still served")
		c.Close()
	}
}

// TestShutdownDrains: Shutdown refuses new opens with postern.ErrUnavailable, keeps
// serving the streams already open, and returns once they have ended,
// while opens keep arriving as they do at a busy relay.
func TestShutdownDrains(t *testing.T) {
	w := newWorld(t, meshtest.Options{})
	held, err := w.agent.Dial(ctx(t), "tcp", "staging-db")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	shut := make(chan error, 1)
	go func() { shut <- w.Relay().Shutdown(ctx(t)) }()
	meshtest.WaitFor(t, "new opens to be refused", func() bool {
		c, err := w.agent.Dial(ctx(t), "tcp", "staging-db")
		if err == nil {
			c.Close()
			return false
		}
		if !errors.Is(err, postern.ErrUnavailable) {
			t.Fatalf("open while the relay drains: %v, want postern.ErrUnavailable", err)
		}
		return true
	})
	echoOnce(t, held, "still served while the relay drains")
	// A new session is refused too, and the refusal is audited.
	late := w.Client(w.AgentToken("late-agent", "coding-agents"))
	if err := late.Connect(ctx(t)); !errors.Is(err, postern.ErrUnavailable) {
		t.Fatalf("connect while the relay drains: %v, want postern.ErrUnavailable", err)
	}
	meshtest.WaitFor(t, "the refused session's audit event", func() bool {
		for _, ev := range w.Audit.Events(relay.EventSessionReject) {
			if ev["subject"] == "late-agent" && ev["reason"] == "relay_shutdown" {
				return true
			}
		}
		return false
	})
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned (%v) while a stream was open", err)
	default:
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				dctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
				if c, err := w.agent.Dial(dctx, "tcp", "staging-db"); err == nil {
					c.Close()
				}
				cancel()
			}
		}()
	}
	held.Close()
	select {
	case err := <-shut:
		if err != nil {
			t.Fatalf("Shutdown = %v, want nil once the last stream ended", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return after the last stream ended")
	}
	close(stop)
	wg.Wait()
}
