package mesh_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postern/postern"
	"github.com/postern/postern/internal/meshtest"
	"github.com/postern/postern/internal/quicnet"
	sess "github.com/postern/postern/internal/session"
	"github.com/postern/postern/internal/wire"
	"github.com/postern/postern/mesh"
	"github.com/postern/postern/mesh/connector"
	"github.com/postern/postern/mesh/identity"
	"github.com/postern/postern/mesh/relay"
	"github.com/postern/postern/policy"
	"github.com/postern/postern/transport"
)

// cutBound is how long a test lets a revocation take to reach a live
// stream. The relay does it within milliseconds (postern-bench revoke
// measures it); the bound is generous for a loaded machine.
const cutBound = 5 * time.Second

// revokeWorld is a relay and a connector serving two staging bindings,
// staging-db and staging-cache, both echo servers.
func revokeWorld(t *testing.T, opts meshtest.Options) *meshtest.Mesh {
	t.Helper()
	m := meshtest.New(t, opts)
	echo := meshtest.EchoServer(t)
	m.Connector("office-1",
		connector.Service{Name: "staging-db", Kind: postern.KindTCP, Upstream: echo, Environment: "staging"},
		connector.Service{Name: "staging-cache", Kind: postern.KindTCP, Upstream: echo, Environment: "staging"},
	)
	return m
}

// readErr blocks in Read until the stream fails, and returns the error
// and how long it took from since.
func readErr(t *testing.T, c net.Conn, since time.Time) (error, time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(cutBound + 5*time.Second))
	buf := make([]byte, 64)
	for {
		_, err := c.Read(buf)
		if err != nil {
			return err, time.Since(since)
		}
	}
}

func swap(t *testing.T, e *policy.Engine, src string) {
	t.Helper()
	set, err := policy.Parse("reloaded.cedar", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	e.Swap(set)
}

// TestPolicyReloadCutsLiveStream: a policy reload that forbids a binding
// resets the live streams to it within a bound, with an error that
// matches postern.ErrRevoked and names the deciding policy; streams to a
// binding still allowed go on; the audit trail has a stream.revoked
// event; the session itself stays.
func TestPolicyReloadCutsLiveStream(t *testing.T) {
	m := revokeWorld(t, meshtest.Options{})
	agent := m.Client(m.AgentToken("coding-agent", "coding-agents"))
	db, err := agent.Dial(ctx(t), "tcp", "staging-db")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	cache, err := agent.Dial(ctx(t), "tcp", "staging-cache")
	if err != nil {
		t.Fatal(err)
	}
	defer cache.Close()
	echoOnce(t, db, "before")
	echoOnce(t, cache, "before")

	reload := time.Now()
	swap(t, m.Policy, meshtest.Policies+`
@id("staging-db-frozen") forbid (principal, action, resource == Binding::"staging-db");`)
	err, took := readErr(t, db, reload)
	t.Logf("policy reload -> live stream reset: %v", took)
	if took > cutBound {
		t.Errorf("the stream was cut %v after the reload, want within %v", took, cutBound)
	}
	var pe *postern.Error
	if !errors.Is(err, postern.ErrRevoked) || !errors.As(err, &pe) {
		t.Fatalf("Read after the reload = %v, want a *postern.Error matching postern.ErrRevoked", err)
	}
	if pe.Binding != "staging-db" || pe.Reason != "policy" || !slices.Equal(pe.Policies, []string{"staging-db-frozen"}) {
		t.Errorf("error = %+v, want binding staging-db, reason policy, policies [staging-db-frozen]", pe)
	}
	if !strings.Contains(err.Error(), "staging-db-frozen") {
		t.Errorf("the error does not name the policy: %v", err)
	}
	if _, err := db.Write([]byte("x")); !errors.Is(err, postern.ErrRevoked) {
		t.Errorf("Write after the cut = %v, want postern.ErrRevoked", err)
	}

	echoOnce(t, cache, "still allowed") // the other binding is untouched

	meshtest.WaitFor(t, "the stream.revoked event", func() bool { return len(m.Audit.Events(relay.EventStreamRevoked)) == 1 })
	ev := m.Audit.Events(relay.EventStreamRevoked)[0]
	if ev["binding"] != "staging-db" || ev["trigger"] != "policy_reload" || ev["code"] != "revoked" || ev["subject"] != "coding-agent" ||
		fmt.Sprint(ev["policies"]) != "[staging-db-frozen]" || ev["connector"] != "office-1" {
		t.Errorf("stream.revoked = %v", ev)
	}
	if _, err := agent.Dial(ctx(t), "tcp", "staging-db"); !errors.Is(err, postern.ErrDenied) {
		t.Errorf("a new open after the reload = %v, want postern.ErrDenied", err)
	}
	if n := len(m.Audit.Events(relay.EventSessionStart)); n != 2 { // the connector's and the agent's
		t.Errorf("%d session starts: the agent reconnected", n)
	}
}

// TestRefreshWithFewerGroupsCutsStream: a token refresh whose token no
// longer puts the agent in the group a permit needs cuts its live stream,
// on the same session.
func TestRefreshWithFewerGroupsCutsStream(t *testing.T) {
	m := revokeWorld(t, meshtest.Options{Leeway: -1})
	var calls atomic.Int32
	agent, err := mesh.NewClient(mesh.Config{Relay: m.Addr(), Pin: m.Pin, TokenSource: func(context.Context) (string, error) {
		if calls.Add(1) == 1 {
			// Refreshed at 4/5 of its life, and no sooner than 1s. The
			// claim is in whole seconds, so this token lives 3 to 4s: the
			// refresh comes 0.6s or more before it expires, time enough
			// on a loaded machine. (A 2s token, living 1 to 2s, could be
			// refreshed only as it expired.)
			return m.Token(identity.Claims{Subject: "shrinking", Role: identity.RoleAgent, Groups: []string{"coding-agents"}, ExpiresAt: time.Now().Add(4 * time.Second)}), nil
		}
		return m.Token(identity.Claims{Subject: "shrinking", Role: identity.RoleAgent, Groups: []string{"interns"}}), nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer agent.Close()
	c, err := agent.Dial(ctx(t), "tcp", "staging-db")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	echoOnce(t, c, "before")
	err, took := readErr(t, c, time.Now())
	if !errors.Is(err, postern.ErrRevoked) {
		t.Fatalf("Read across the refresh = %v (after %v), want postern.ErrRevoked", err, took)
	}
	var pe *postern.Error
	if errors.As(err, &pe); pe.Reason != "policy" || len(pe.Policies) != 0 {
		t.Errorf("error = %+v, want reason policy and no policies (no permit matches any more)", pe)
	}
	meshtest.WaitFor(t, "the stream.revoked event", func() bool { return len(m.Audit.Events(relay.EventStreamRevoked)) == 1 })
	if ev := m.Audit.Events(relay.EventStreamRevoked)[0]; ev["trigger"] != "token_refresh" || ev["subject"] != "shrinking" {
		t.Errorf("stream.revoked = %v", ev)
	}
	if n := calls.Load(); n < 2 {
		t.Errorf("%d tokens fetched: no refresh happened", n)
	}
}

// TestRevocationList: an entry for a token ID or a subject ends the
// sessions it names within a bound, their live streams failing with
// postern.ErrRevoked and the entry's reason; the token cannot reconnect;
// another agent is untouched; removing the entry lets it back in.
func TestRevocationList(t *testing.T) {
	tests := []struct {
		name   string
		entry  func(tok string) relay.Revoked
		reason string
	}{
		{"token", func(tok string) relay.Revoked {
			c, _ := identity.ParseUnverified(tok)
			return relay.Revoked{Tokens: []string{c.ID}}
		}, "token_revoked"},
		{"subject", func(string) relay.Revoked { return relay.Revoked{Subjects: []string{"doomed"}} }, "subject_revoked"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			list := relay.NewRevocationList()
			m := revokeWorld(t, meshtest.Options{Revocations: list})
			tok := m.AgentToken("doomed", "coding-agents")
			agent := m.Client(tok)
			other := m.Client(m.AgentToken("innocent", "coding-agents"))
			c, err := agent.Dial(ctx(t), "tcp", "staging-db")
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			oc, err := other.Dial(ctx(t), "tcp", "staging-db")
			if err != nil {
				t.Fatal(err)
			}
			defer oc.Close()
			echoOnce(t, c, "before")

			listed := time.Now()
			list.Replace(tt.entry(tok))
			err, took := readErr(t, c, listed)
			t.Logf("revocation-list entry -> live stream reset: %v", took)
			if took > cutBound {
				t.Errorf("cut %v after the entry, want within %v", took, cutBound)
			}
			var pe *postern.Error
			if !errors.Is(err, postern.ErrRevoked) || !errors.As(err, &pe) || pe.Reason != tt.reason {
				t.Fatalf("Read after the entry = %v, want postern.ErrRevoked with reason %s", err, tt.reason)
			}
			_, err = agent.Dial(ctx(t), "tcp", "staging-db")
			if !errors.As(err, &pe) || !errors.Is(err, postern.ErrRevoked) || pe.Reason != tt.reason || pe.Op != "connect" {
				t.Fatalf("reconnecting = %v, want a connect refused as revoked (%s)", err, tt.reason)
			}
			echoOnce(t, oc, "untouched")

			// The relay writes session.end once the session's goroutines
			// are done, which may be after the client has its error.
			ended := func() bool {
				return slices.IndexFunc(m.Audit.Events(relay.EventSessionEnd), func(ev map[string]any) bool {
					return ev["subject"] == "doomed" && ev["reason"] == tt.reason
				}) >= 0
			}
			meshtest.WaitFor(t, "a session.end with reason "+tt.reason, ended)
			meshtest.WaitFor(t, "the stream.revoked event", func() bool { return len(m.Audit.Events(relay.EventStreamRevoked)) > 0 })
			revs := m.Audit.Events(relay.EventStreamRevoked)
			if len(revs) != 1 || revs[0]["trigger"] != "revocation_list" || revs[0]["reason"] != tt.reason {
				t.Errorf("stream.revoked = %v", revs)
			}
			// The relay audits a refused handshake after giving the client
			// a moment to read the Reject.
			meshtest.WaitFor(t, "the session.reject event", func() bool { return len(m.Audit.Events(relay.EventSessionReject)) > 0 })
			rejects := m.Audit.Events(relay.EventSessionReject)
			if len(rejects) == 0 || rejects[len(rejects)-1]["code"] != "revoked" {
				t.Errorf("the reconnect was not audited as a revoked session.reject: %v", rejects)
			} else if got := rejects[len(rejects)-1]["subject"]; got != "doomed" {
				// The token verified: whose it was is known, and said.
				t.Errorf("the revoked session.reject names subject %q, want doomed", got)
			}

			list.Replace(relay.Revoked{})
			c2, err := agent.Dial(ctx(t), "tcp", "staging-db")
			if err != nil {
				t.Fatalf("after the entry is removed: %v", err)
			}
			echoOnce(t, c2, "back")
			c2.Close()
		})
	}
}

// TestRevokedConnector: a connector whose subject is listed loses its
// session and cannot register again; its bindings leave the catalogs.
func TestRevokedConnector(t *testing.T) {
	list := relay.NewRevocationList()
	m := revokeWorld(t, meshtest.Options{Revocations: list})
	agent := m.Client(m.AgentToken("coding-agent", "coding-agents"))
	if cat, err := agent.Catalog(ctx(t)); err != nil || len(cat) != 2 {
		t.Fatalf("catalog before: %v, %v", cat, err)
	}
	list.Replace(relay.Revoked{Subjects: []string{"office-1"}})
	meshtest.WaitFor(t, "the connector to be gone", func() bool { return m.Relay().Stats().Connectors == 0 })
	meshtest.WaitFor(t, "its bindings to leave the catalog", func() bool {
		cat, err := agent.Catalog(ctx(t))
		return err == nil && len(cat) == 0
	})
	time.Sleep(300 * time.Millisecond) // its reconnect loop runs every 20-200ms
	if st := m.Relay().Stats(); st.Connectors != 0 {
		t.Fatalf("the revoked connector is back: %+v", st)
	}
	meshtest.WaitFor(t, "the session.reject event", func() bool { return len(m.Audit.Events(relay.EventSessionReject)) > 0 })
	if rej := m.Audit.Events(relay.EventSessionReject); len(rej) == 0 || rej[0]["reason"] != "subject_revoked" || rej[0]["subject"] != "office-1" {
		t.Errorf("session.reject = %v, want reason subject_revoked for subject office-1", rej)
	}
}

// TestLeewayExpiry: a token the verifier accepts inside its leeway is not
// sent a goaway at once; the session ends when the leeway is over.
func TestLeewayExpiry(t *testing.T) {
	m := revokeWorld(t, meshtest.Options{Leeway: 3 * time.Second})
	tok := m.Token(identity.Claims{Subject: "late", Role: identity.RoleAgent, Groups: []string{"coding-agents"}, ExpiresAt: time.Now().Add(-time.Second)})
	agent := m.Client(tok)
	c, err := agent.Dial(ctx(t), "tcp", "staging-db")
	if err != nil {
		t.Fatalf("a token inside the leeway: %v", err)
	}
	defer c.Close()
	time.Sleep(500 * time.Millisecond)
	echoOnce(t, c, "inside the leeway") // before the fix, the session was already gone
	ended := func() bool {
		for _, ev := range m.Audit.Events(relay.EventSessionEnd) {
			if ev["subject"] == "late" && ev["reason"] == "token_expired" {
				return true
			}
		}
		return false
	}
	if ended() {
		t.Fatal("the session ended inside the leeway")
	}
	meshtest.WaitFor(t, "the session to end once the leeway is over", ended)
}

// TestMaxLifetime: a token whose exp - iat exceeds the verifier's maximum
// is refused with its own reason.
func TestMaxLifetime(t *testing.T) {
	m := revokeWorld(t, meshtest.Options{MaxLifetime: 24 * time.Hour})
	long := m.Token(identity.Claims{Subject: "eternal", Role: identity.RoleAgent, Groups: []string{"coding-agents"}, ExpiresAt: time.Now().Add(365 * 24 * time.Hour)})
	_, err := m.Client(long).Dial(ctx(t), "tcp", "staging-db")
	var pe *postern.Error
	if !errors.Is(err, postern.ErrUnauthenticated) || !errors.As(err, &pe) || pe.Reason != "token_lifetime_exceeded" {
		t.Fatalf("a token for a year = %v, want unauthenticated, token_lifetime_exceeded", err)
	}
	ok := m.Token(identity.Claims{Subject: "daily", Role: identity.RoleAgent, Groups: []string{"coding-agents"}, ExpiresAt: time.Now().Add(23 * time.Hour)})
	c, err := m.Client(ok).Dial(ctx(t), "tcp", "staging-db")
	if err != nil {
		t.Fatalf("a token for 23h: %v", err)
	}
	c.Close()
}

// stalledAgent completes a handshake as an agent and then never reads its
// control stream again.
func stalledAgent(t *testing.T, m *meshtest.Mesh, tok string) {
	t.Helper()
	tlsConf, err := transport.Trust{Pin: m.Pin}.ClientTLS("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	qc, err := quicnet.Dial(ctx(t), m.Addr(), tlsConf, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { qc.CloseWithError(0, "") })
	st, err := qc.OpenStreamSync(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := wire.WriteFrame(st, &wire.Hello{Version: wire.Version, Role: wire.RoleAgent, Token: tok}); err != nil {
		t.Fatal(err)
	}
	var w wire.Welcome
	if err := wire.ReadExpected(st, 16<<20, &w); err != nil {
		t.Fatal(err)
	}
}

// TestStalledAgentDoesNotDelayCatalogs: an agent that stops reading its
// control stream, its receive window full of catalogs, does not delay
// another agent's catalog after a policy reload (pushes were serial, each
// waiting up to 5s for its write).
func TestStalledAgentDoesNotDelayCatalogs(t *testing.T) {
	// Catalogs of about 1.2 MiB: more than a stream's receive window, so
	// the stalled agent's first push blocks.
	var bindings []postern.Binding
	for i := range 300 {
		bindings = append(bindings, postern.Binding{Name: fmt.Sprintf("big-%03d", i), Kind: postern.KindTCP, Environment: "staging", Description: strings.Repeat("d", 4000)})
	}
	m := revokeWorld(t, meshtest.Options{Bindings: bindings})
	for i := range 3 {
		stalledAgent(t, m, m.AgentToken(fmt.Sprintf("stalled-%d", i), "coding-agents"))
	}
	agent := m.Client(m.AgentToken("reader", "coding-agents"))
	if err := agent.Connect(ctx(t)); err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		changed := agent.CatalogChanged()
		forbid := fmt.Sprintf("big-%03d", i)
		reload := time.Now()
		swap(t, m.Policy, meshtest.Policies+fmt.Sprintf(`@id("hide") forbid (principal, action, resource == Binding::%q);`, forbid))
		select {
		case <-changed:
		case <-time.After(4500 * time.Millisecond): // a stalled push holds its writer for 5s
			t.Fatalf("reload %d: no catalog within 4.5s (the stalled agents' pushes hold it)", i)
		}
		took := time.Since(reload)
		t.Logf("reload %d: catalog after %v", i, took)
		cat, err := agent.Catalog(ctx(t))
		if err != nil || slices.ContainsFunc(cat, func(b postern.Binding) bool { return b.Name == forbid }) || len(cat) != 301 {
			t.Fatalf("reload %d: catalog of %d bindings (%v), want 301 without %s", i, len(cat), err, forbid)
		}
	}
	// A push that missed its write deadline may have left half a frame:
	// the stalled sessions end, the reader's stays.
	meshtest.WaitFor(t, "the stalled sessions to end", func() bool { return m.Relay().Stats().Agents == 1 })
	ends := 0
	for _, ev := range m.Audit.Events(relay.EventSessionEnd) {
		if strings.HasPrefix(fmt.Sprint(ev["subject"]), "stalled-") && ev["reason"] == "control_stream_stalled" {
			ends++
		}
	}
	if ends != 3 {
		t.Errorf("%d stalled sessions ended with control_stream_stalled, want 3", ends)
	}
	if _, err := agent.Catalog(ctx(t)); err != nil {
		t.Errorf("the reader's session: %v", err)
	}
}

// TestUnservedBindingLeavesCatalog: a binding described by a connector's
// token leaves the catalogs when no connector serves it any more, and
// comes back with one; a binding the relay's configuration declares stays.
func TestUnservedBindingLeavesCatalog(t *testing.T) {
	m := revokeWorld(t, meshtest.Options{Bindings: []postern.Binding{{Name: "staging-declared", Kind: postern.KindTCP, Environment: "staging"}}})
	agent := m.Client(m.AgentToken("coding-agent", "coding-agents"))
	names := func() []string {
		cat, err := agent.Catalog(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, b := range cat {
			out = append(out, b.Name)
		}
		return out
	}
	echo := meshtest.EchoServer(t)
	svc := connector.Service{Name: "staging-temp", Kind: postern.KindTCP, Upstream: echo, Environment: "staging"}
	stop := m.Connector("office-2", svc)
	meshtest.WaitFor(t, "staging-temp in the catalog", func() bool { return slices.Contains(names(), "staging-temp") })
	stop()
	meshtest.WaitFor(t, "staging-temp to leave the catalog", func() bool { return !slices.Contains(names(), "staging-temp") })
	if got := names(); !slices.Equal(got, []string{"staging-cache", "staging-db", "staging-declared"}) {
		t.Errorf("catalog = %v", got)
	}
	m.Connector("office-3", svc)
	meshtest.WaitFor(t, "staging-temp back in the catalog", func() bool { return slices.Contains(names(), "staging-temp") })
}

// TestRedecideManyStreamsKeepsOpening: while policy reloads decide
// thousands of live streams again, new opens still succeed quickly; a
// reload that then cuts half of them cuts exactly those, and opens go on
// failing none. postern-bench revoke measures the same with 10,000
// streams across processes.
func TestRedecideManyStreamsKeepsOpening(t *testing.T) {
	const agents, perAgent = 4, 500
	m := revokeWorld(t, meshtest.Options{})
	var conns []net.Conn
	for i := range agents {
		a := m.Client(m.AgentToken(fmt.Sprintf("agent-%d", i), "coding-agents"))
		for j := range perAgent {
			binding := "staging-db"
			if j%2 == 1 {
				binding = "staging-cache"
			}
			c, err := a.Dial(ctx(t), "tcp", binding)
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
		}
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	if n := m.Relay().Stats().Streams; n != agents*perAgent {
		t.Fatalf("%d live streams, want %d", n, agents*perAgent)
	}
	opener := m.Client(m.AgentToken("opener", "coding-agents"))
	if err := opener.Connect(ctx(t)); err != nil {
		t.Fatal(err)
	}
	// keepOpening opens and closes streams until stop is closed, and
	// reports the slowest open and the first error.
	keepOpening := func(stop <-chan struct{}) <-chan struct {
		worst time.Duration
		n     int
		err   error
	} {
		res := make(chan struct {
			worst time.Duration
			n     int
			err   error
		}, 1)
		go func() {
			var r struct {
				worst time.Duration
				n     int
				err   error
			}
			defer func() { res <- r }()
			for {
				select {
				case <-stop:
					return
				default:
				}
				start := time.Now()
				c, err := opener.Dial(ctx(t), "tcp", "staging-cache")
				if err != nil {
					r.err = err
					return
				}
				_, err = c.Write([]byte("x"))
				if err == nil {
					c.SetReadDeadline(time.Now().Add(30 * time.Second))
					_, err = io.ReadFull(c, make([]byte, 1))
				}
				c.Close()
				if err != nil {
					r.err = err
					return
				}
				r.worst = max(r.worst, time.Since(start))
				r.n++
			}
		}()
		return res
	}

	// Reloads that change nothing for these streams: each decides all of
	// them again.
	stop := make(chan struct{})
	res := keepOpening(stop)
	for i := range 6 {
		extra := ""
		if i%2 == 0 {
			extra = `@id("unrelated") forbid (principal in Group::"contractors", action, resource in Environment::"prod");`
		}
		swap(t, m.Policy, meshtest.Policies+extra)
		time.Sleep(100 * time.Millisecond)
	}
	close(stop)
	r := <-res
	t.Logf("%d opens during 6 reloads deciding %d streams again; slowest %v", r.n, agents*perAgent, r.worst)
	if r.err != nil {
		t.Fatalf("an open during the reloads failed: %v", r.err)
	}
	if r.worst > 2*time.Second {
		t.Errorf("an open took %v while streams were decided again", r.worst)
	}
	if n := m.Relay().Stats().Streams; n < agents*perAgent {
		t.Fatalf("reloads that deny nothing cut streams: %d live", n)
	}

	// A reload that cuts every staging-db stream, half of them.
	stop = make(chan struct{})
	res = keepOpening(stop)
	swap(t, m.Policy, meshtest.Policies+`@id("db-frozen") forbid (principal, action, resource == Binding::"staging-db");`)
	meshtest.WaitFor(t, "half the streams to be cut", func() bool { return m.Relay().Stats().Streams <= agents*perAgent/2+1 })
	close(stop)
	r = <-res
	t.Logf("%d opens while %d streams were cut; slowest %v", r.n, agents*perAgent/2, r.worst)
	if r.err != nil {
		t.Fatalf("an open during the cut failed: %v", r.err)
	}
	// Cutting a thousand streams at once resets two thousand stream legs
	// on the relay's one connection to the connector, and the connector
	// closes a thousand upstream connections: an open meanwhile waits
	// (postern-bench revoke measures it); it must not fail or hang.
	if r.worst > 15*time.Second {
		t.Errorf("an open took %v during the cut", r.worst)
	}
	if n := len(m.Audit.Events(relay.EventStreamRevoked)); n != agents*perAgent/2 {
		t.Errorf("%d stream.revoked events, want %d", n, agents*perAgent/2)
	}
	for i, c := range conns {
		if i%2 == 1 {
			echoOnce(t, c, "kept") // staging-cache: still allowed
		}
	}
}

// TestRefreshWithRevokedToken: a Refresh that presents a revoked token is
// refused with CODE_REVOKED, and the session goes on with the token it
// has.
func TestRefreshWithRevokedToken(t *testing.T) {
	list := relay.NewRevocationList()
	m := revokeWorld(t, meshtest.Options{Revocations: list})
	first := m.AgentToken("refresher", "coding-agents")
	next := m.AgentToken("refresher", "coding-agents")
	nc, _ := identity.ParseUnverified(next)
	list.Replace(relay.Revoked{Tokens: []string{nc.ID}})
	tlsConf, err := transport.Trust{Pin: m.Pin}.ClientTLS("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	tokens := []string{first, next}
	s, err := sess.Dial(ctx(t), sess.Config{Addr: m.Addr(), TLS: tlsConf, Role: wire.RoleAgent,
		Token: func(context.Context) (string, error) {
			tok := tokens[0]
			tokens = tokens[1:]
			return tok, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	err = s.RefreshNow()
	var rej *sess.RejectError
	if !errors.As(err, &rej) || rej.Code != wire.CodeRevoked || rej.Reason != "token_revoked" {
		t.Fatalf("refresh with a revoked token = %v, want CODE_REVOKED, token_revoked", err)
	}
	if !s.Alive() {
		t.Fatal("the refused refresh ended the session")
	}
}
