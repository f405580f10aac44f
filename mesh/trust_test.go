package mesh_test

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postern/postern"
	"github.com/postern/postern/internal/meshtest"
	sess "github.com/postern/postern/internal/session"
	"github.com/postern/postern/internal/wire"
	"github.com/postern/postern/mesh/connector"
	"github.com/postern/postern/mesh/identity"
)

// Who may say what: what policy reads of a binding (kind, environment,
// labels) comes from the relay's configuration or the connector's signed
// token, never from the connector's Hello alone.

// countingServer is an upstream that counts the connections it accepts and
// the bytes it reads.
func countingServer(t *testing.T) (addr string, conns, bytes *atomic.Int64) {
	t.Helper()
	conns, bytes = new(atomic.Int64), new(atomic.Int64)
	addr = meshtest.Server(t, func(c net.Conn) {
		conns.Add(1)
		buf := make([]byte, 512)
		for {
			n, err := c.Read(buf)
			bytes.Add(int64(n))
			if n > 0 {
				c.Write(buf[:n])
			}
			if err != nil {
				return
			}
		}
	})
	return addr, conns, bytes
}

// refused runs a connector with tok serving services and returns the
// relay's refusal; it fails the test if the connector is accepted.
func refused(t *testing.T, m *meshtest.Mesh, tok string, services ...connector.Service) *sess.RejectError {
	t.Helper()
	c, err := connector.New(connector.Config{Relays: []string{m.Addr()}, Pin: m.Pin, Token: tok, Services: services,
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.Run(cctx) }()
	select {
	case <-c.Ready():
		cancel()
		<-done
		t.Fatalf("the relay accepted the connector serving %+v", services)
	case err = <-done:
	}
	var rej *sess.RejectError
	if !errors.As(err, &rej) {
		t.Fatalf("Run = %v, want a refusal", err)
	}
	t.Logf("refused: %s: %s: %s", rej.Code.Text(), rej.Reason, rej.Message)
	return rej
}

func wantRefusal(t *testing.T, rej *sess.RejectError, reason string, texts ...string) {
	t.Helper()
	if rej.Code != wire.CodeDenied || rej.Reason != reason {
		t.Fatalf("refusal %s/%s (%s), want denied/%s", rej.Code.Text(), rej.Reason, rej.Message, reason)
	}
	for _, s := range texts {
		if !strings.Contains(rej.Message, s) {
			t.Errorf("refusal %q does not say %q", rej.Message, s)
		}
	}
}

// TestRelabelRefused reproduces the least-privilege issue: once the last
// honest connector of prod-finance (prod, labelled financial) leaves, a
// second connector tries to register the name as staging without labels,
// which would take it out of forbid-financial and into the coding agents'
// permit. It is refused whether its token grants the name alone or
// describes the service as staging, and the coding agent's open stays
// denied, with no byte reaching the upstream.
func TestRelabelRefused(t *testing.T) {
	m := meshtest.New(t, meshtest.Options{})
	upstream, conns, bytes := countingServer(t)
	honest := connector.Service{Name: "prod-finance", Upstream: upstream, Environment: "prod", Labels: []string{"financial"}}
	stop := m.Connector("finance-connector", honest)
	agent := m.Client(m.AgentToken("coding-agent", "coding-agents"))

	denied := func(when string) {
		t.Helper()
		conn, err := agent.Dial(ctx(t), "tcp", "prod-finance")
		if err == nil {
			conn.Write([]byte("SELECT * FROM ledger"))
			conn.Close()
			t.Fatalf("%s: the coding agent opened prod-finance", when)
		}
		if !errors.Is(err, postern.ErrDenied) {
			t.Fatalf("%s: open = %v, want postern.ErrDenied", when, err)
		}
		var me *postern.Error
		if !errors.As(err, &me) || !slices.Equal(me.Policies, []string{"forbid-financial"}) {
			t.Fatalf("%s: denied with %v, want by forbid-financial", when, err)
		}
	}
	denied("with the honest connector")
	relabelled := connector.Service{Name: "prod-finance", Upstream: upstream, Environment: "staging"}
	check := func(t *testing.T, grant identity.Service, reason string, says ...string) {
		t.Helper()
		rej := refused(t, m, m.ConnectorToken("intruder", grant), relabelled)
		wantRefusal(t, rej, reason, says...)
		denied("after the attempt")
	}
	// While the honest connector serves it, a token that describes it
	// otherwise is refused: two authorities disagree.
	t.Run("token describes it as staging while the honest connector serves it", func(t *testing.T) {
		check(t, identity.Service{Name: "prod-finance", Kind: postern.KindTCP, Environment: "staging"}, "service_mismatch",
			`"prod-finance"`, `environment as "staging"`, `a connector serving it now has a token that says "prod"`)
		if n := m.Relay().Stats().Bindings["prod-finance"]; n != 1 {
			t.Fatalf("prod-finance has %d connectors after the refusal, want the honest one", n)
		}
	})
	stop()
	meshtest.WaitFor(t, "the honest connector to leave", func() bool { return m.Relay().Stats().Bindings["prod-finance"] == 0 })
	// Once it has gone, a token that grants the name alone says nothing
	// trusted about it: the exploit, refused.
	t.Run("token grants the name alone after the honest connector left", func(t *testing.T) {
		check(t, identity.Service{Name: "prod-finance"}, "service_undescribed",
			`"prod-finance"`, "grants the name only", "--service prod-finance:tcp:", "relay.yaml")
		if n := m.Relay().Stats().Bindings["prod-finance"]; n != 0 {
			t.Fatalf("prod-finance has %d connectors after the refusal", n)
		}
		if b, err := agent.Lookup(ctx(t), "prod-finance"); err == nil {
			t.Errorf("prod-finance is in the coding agent's catalog: %+v", b)
		}
	})
	// The connector dials its upstream only for an allowed open.
	if conns.Load() != 0 || bytes.Load() != 0 {
		t.Fatalf("the upstream saw %d connections and %d bytes; want none", conns.Load(), bytes.Load())
	}
}

// TestHelloMustMatchToken: a connector that advertises a service otherwise
// than its token describes it is refused, naming the field, what the Hello
// said and what the token says.
func TestHelloMustMatchToken(t *testing.T) {
	m := meshtest.New(t, meshtest.Options{})
	grant := identity.Service{Name: "staging-db", Kind: postern.KindHTTP, Environment: "staging", Labels: []string{"pii"}}
	tok := m.ConnectorToken("office-1", grant)
	tests := []struct {
		name string
		svc  connector.Service
		says []string
	}{
		{"kind", connector.Service{Kind: postern.KindTCP, Environment: "staging", Labels: []string{"pii"}}, []string{`kind as "tcp"`, `its token says "http"`}},
		{"environment", connector.Service{Kind: postern.KindHTTP, Environment: "dev", Labels: []string{"pii"}}, []string{`environment as "dev"`, `its token says "staging"`}},
		{"labels dropped", connector.Service{Kind: postern.KindHTTP, Environment: "staging"}, []string{"labels as none", `its token says ["pii"]`}},
		{"labels added", connector.Service{Kind: postern.KindHTTP, Environment: "staging", Labels: []string{"pii", "public"}}, []string{"labels as", `its token says ["pii"]`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.svc.Name, tt.svc.Upstream = "staging-db", "127.0.0.1:1"
			rej := refused(t, m, tok, tt.svc)
			wantRefusal(t, rej, "service_mismatch", append([]string{`service "staging-db"`}, tt.says...)...)
		})
	}
	// Labels are a set: their order is not a disagreement.
	two := m.ConnectorToken("office-2", identity.Service{Name: "two-labels", Kind: postern.KindTCP, Environment: "staging", Labels: []string{"a", "b"}})
	m.ConnectorWith(connector.Config{Token: two, Services: []connector.Service{{Name: "two-labels", Upstream: "127.0.0.1:1", Environment: "staging", Labels: []string{"b", "a"}}}})
}

// TestNameOnlyGrantRefused: a token that grants a name without describing
// it, for a binding the relay does not declare, serves nothing: nobody
// trusted has said what policy should read of it. The refusal says how to
// fix it.
func TestNameOnlyGrantRefused(t *testing.T) {
	m := meshtest.New(t, meshtest.Options{})
	rej := refused(t, m, m.ConnectorToken("office-1", identity.ServiceNames("staging-db")...),
		connector.Service{Name: "staging-db", Kind: postern.KindHTTP, Upstream: "127.0.0.1:1", Environment: "staging"})
	wantRefusal(t, rej, "service_undescribed", `service "staging-db"`, "grants the name only",
		"postern token issue --role connector --service staging-db:http:ENVIRONMENT", "bindings: in relay.yaml")
	if st := m.Relay().Stats(); st.Connectors != 0 || st.Bindings["staging-db"] != 0 {
		t.Fatalf("the refused connector was registered: %+v", st)
	}
}

// TestDeclaredBindingIsAuthoritative: a binding declared in the relay's
// configuration may be served under a name-only grant, but only as
// declared; a token describing it otherwise is refused too.
func TestDeclaredBindingIsAuthoritative(t *testing.T) {
	m := meshtest.New(t, meshtest.Options{Bindings: []postern.Binding{
		{Name: "staging-echo", Kind: postern.KindTCP, Environment: "staging", Description: "declared"},
	}})
	echo := meshtest.EchoServer(t)
	nameOnly := m.ConnectorToken("office-1", identity.ServiceNames("staging-echo")...)

	wrong := connector.Service{Name: "staging-echo", Upstream: echo, Environment: "prod"}
	wantRefusal(t, refused(t, m, nameOnly, wrong), "service_mismatch",
		`service "staging-echo"`, `environment as "prod"`, `the relay's configuration says "staging"`)

	described := m.ConnectorToken("office-2", identity.Service{Name: "staging-echo", Kind: postern.KindTCP, Environment: "staging", Labels: []string{"public"}})
	right := connector.Service{Name: "staging-echo", Upstream: echo, Environment: "staging"}
	wantRefusal(t, refused(t, m, described, right), "service_mismatch",
		`token describes its labels as ["public"]`, "the relay's configuration declares none")

	m.ConnectorWith(connector.Config{Token: nameOnly, Services: []connector.Service{right}})
	agent := m.Client(m.AgentToken("coding-agent", "coding-agents"))
	conn, err := agent.Dial(ctx(t), "tcp", "staging-echo")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := conn.Read(buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo = %q, %v", buf, err)
	}
}

// TestConnectorRefreshMustKeepDescription: a refreshed token that
// describes a live connector's service otherwise is refused; the session
// keeps serving under the description it started with.
func TestConnectorRefreshMustKeepDescription(t *testing.T) {
	m := meshtest.New(t, meshtest.Options{})
	grant := identity.Service{Name: "staging-db", Kind: postern.KindTCP, Environment: "staging"}
	relabelled := grant
	relabelled.Environment = "prod"
	err := refreshConnector(t, m, m.ConnectorToken("office-1", grant), m.ConnectorToken("office-1", relabelled))
	var rej *sess.RejectError
	if !errors.As(err, &rej) || rej.Code != wire.CodeDenied || rej.Reason != "service_mismatch" || !strings.Contains(rej.Message, "environment") {
		t.Fatalf("refresh with a token that relabels staging-db: %v, want a service_mismatch refusal naming the environment", err)
	}
	if n := m.Relay().Stats().Bindings["staging-db"]; n != 1 {
		t.Fatalf("staging-db has %d connectors, want the live one", n)
	}
}

// TestRedescribedOnceNoneServe: once no connector serves an undeclared
// binding, the next token's description is what policy reads: a token is
// its issuer's signed word, and a relay restarted, or another relay, would
// take it too. Adding the label financial reaches the coding agent's next
// open.
func TestRedescribedOnceNoneServe(t *testing.T) {
	m := meshtest.New(t, meshtest.Options{})
	upstream := meshtest.EchoServer(t)
	agent := m.Client(m.AgentToken("coding-agent", "coding-agents"))
	first := connector.Service{Name: "reports", Upstream: upstream, Environment: "staging"}
	stop := m.Connector("reports-1", first)
	conn, err := agent.Dial(ctx(t), "tcp", "reports")
	if err != nil {
		t.Fatalf("open before the relabel: %v", err)
	}
	conn.Close()
	stop()
	meshtest.WaitFor(t, "the first connector to leave", func() bool { return m.Relay().Stats().Bindings["reports"] == 0 })

	second := first
	second.Labels = []string{"financial"}
	m.Connector("reports-2", second)
	meshtest.WaitFor(t, "the coding agent's open to be denied", func() bool {
		conn, err := agent.Dial(ctx(t), "tcp", "reports")
		if err == nil {
			conn.Close()
			return false
		}
		var me *postern.Error
		return errors.As(err, &me) && errors.Is(err, postern.ErrDenied) && slices.Equal(me.Policies, []string{"forbid-financial"})
	})
}
