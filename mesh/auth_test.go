package mesh_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern"
	"github.com/postern/postern/internal/quicnet"

	"github.com/quic-go/quic-go"

	"github.com/postern/postern/internal/meshtest"
	sess "github.com/postern/postern/internal/session"
	"github.com/postern/postern/internal/wire"
	"github.com/postern/postern/mesh"
	"github.com/postern/postern/mesh/connector"
	"github.com/postern/postern/mesh/identity"
	"github.com/postern/postern/mesh/relay"
	"github.com/postern/postern/transport"
)

// TestBadTokensRefused presents every kind of bad token to a real relay
// and checks that each is refused with its own reason, that the error
// matches postern.ErrUnauthenticated, and that nothing of the token leaks into the
// error or the audit log.
func TestBadTokensRefused(t *testing.T) {
	m := meshtest.New(t, meshtest.Options{})
	other, err := identity.GenerateSigningKey(identity.EdDSA)
	if err != nil {
		t.Fatal(err)
	}
	valid := identity.Claims{Subject: "coding-agent", Role: identity.RoleAgent, Groups: []string{"coding-agents"}}
	with := func(f func(c *identity.Claims)) string {
		c := valid
		f(&c)
		return m.Token(c)
	}
	good := m.Token(valid)
	parts := strings.Split(good, ".")

	tests := []struct {
		name   string
		token  string
		reason string
	}{
		{name: "signed by another key", reason: "bad_signature", token: func() string {
			c := valid
			c.Audience, c.Issuer, c.ExpiresAt = []string{meshtest.Audience}, meshtest.Issuer, time.Now().Add(time.Hour)
			tok, err := other.Issue(c)
			if err != nil {
				t.Fatal(err)
			}
			return tok
		}()},
		{name: "tampered payload", reason: "bad_signature", token: parts[0] + "." + b64json(t, map[string]any{
			"sub": "root", "role": "agent", "aud": meshtest.Audience, "iss": meshtest.Issuer, "exp": time.Now().Add(time.Hour).Unix(), "groups": []string{"finance"},
		}) + "." + parts[2]},
		{name: "alg none", reason: "alg_not_allowed", token: b64json(t, map[string]any{"alg": "none", "typ": "JWT"}) + "." + parts[1] + "."},
		{name: "expired", reason: "token_expired", token: with(func(c *identity.Claims) { c.ExpiresAt = time.Now().Add(-10 * time.Minute) })},
		{name: "not yet valid", reason: "token_not_yet_valid", token: with(func(c *identity.Claims) { c.NotBefore = time.Now().Add(10 * time.Minute) })},
		{name: "wrong audience", reason: "wrong_audience", token: with(func(c *identity.Claims) { c.Audience = []string{"another-mesh"} })},
		{name: "wrong issuer", reason: "wrong_issuer", token: with(func(c *identity.Claims) { c.Issuer = "https://evil.example" })},
		{name: "connector token used by an agent", reason: "wrong_role", token: m.ConnectorToken("office-1", identity.ServiceNames("staging-db")...)},
		{name: "missing subject", reason: "missing_subject", token: with(func(c *identity.Claims) { c.Subject = "" })},
		{name: "oversized", reason: "token_too_large", token: with(func(c *identity.Claims) {
			c.Attributes = map[string]any{"padding": strings.Repeat("x", 9<<10)}
		})},
		{name: "garbage", reason: "malformed_token", token: "not-a-jwt"},
		{name: "attributes policy cannot read", reason: "invalid_claim", token: with(func(c *identity.Claims) {
			c.Attributes = map[string]any{"clearance": 2.5} // Cedar has no fractions
		})},
	}
	seen := map[string]string{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := mesh.NewClient(mesh.Config{Relay: m.Addr(), Token: tt.token, Pin: m.Pin})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			err = c.Connect(ctx(t))
			if !errors.Is(err, postern.ErrUnauthenticated) {
				t.Fatalf("err = %v, want postern.ErrUnauthenticated", err)
			}
			var me *postern.Error
			if !errors.As(err, &me) || me.Reason != tt.reason {
				t.Fatalf("reason = %q, want %q (err: %v)", me.Reason, tt.reason, err)
			}
			if prev, dup := seen[me.Message]; dup && prev != tt.reason {
				t.Fatalf("two different failures share the message %q", me.Message)
			}
			seen[me.Message] = tt.reason
			if len(tt.token) > 20 && strings.Contains(err.Error(), tt.token[len(tt.token)-20:]) {
				t.Fatalf("the error %q contains part of the token", err)
			}
			// A refused client cannot open anything either.
			if _, err := c.Dial(ctx(t), "tcp", "staging-db"); !errors.Is(err, postern.ErrUnauthenticated) {
				t.Fatalf("dial with a refused token: err = %v", err)
			}
		})
	}
	rejects := m.Audit.Events(relay.EventSessionReject)
	if len(rejects) < len(tests) {
		t.Fatalf("%d session.reject audit events, want at least %d", len(rejects), len(tests))
	}
	for _, part := range parts {
		if strings.Contains(m.Audit.String(), part[:min(len(part), 16)]) && len(part) > 16 {
			t.Fatal("the audit log contains part of a token")
		}
	}
	counts := m.Verifier.Counts()
	for _, r := range []string{"bad_signature", "token_expired", "wrong_audience", "wrong_role"} {
		if counts[r] == 0 {
			t.Errorf("verifier did not count %s: %v", r, counts)
		}
	}
}

func b64json(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// TestConnectorCannotClaimUngrantedService: a connector whose token grants
// staging-db but which advertises prod-db is refused, and stops retrying.
func TestConnectorCannotClaimUngrantedService(t *testing.T) {
	m := meshtest.New(t, meshtest.Options{})
	echo := meshtest.EchoServer(t)
	c, err := connector.New(connector.Config{
		Relays: []string{m.Addr()},
		Pin:    m.Pin,
		Token:  m.ConnectorToken("office-1", identity.Service{Name: "staging-db", Kind: postern.KindTCP, Environment: "staging"}),
		Services: []connector.Service{
			{Name: "staging-db", Upstream: echo, Environment: "staging"},
			{Name: "prod-db", Upstream: echo, Environment: "prod"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = c.Run(cctx)
	var rej *sess.RejectError
	if !errors.As(err, &rej) || rej.Code != wire.CodeDenied || rej.Reason != "service_not_granted" {
		t.Fatalf("Run = %v, want a service_not_granted refusal", err)
	}
	if !strings.Contains(rej.Message, "prod-db") {
		t.Fatalf("refusal %q does not name the service", rej.Message)
	}
	if st := m.Relay().Stats(); st.Connectors != 0 || st.Bindings["staging-db"] != 0 {
		t.Fatalf("the refused connector was registered: %+v", st)
	}
}

// TestAgentTokenCannotServe: an agent token presented by a connector is
// refused as the wrong role.
func TestAgentTokenCannotServe(t *testing.T) {
	m := meshtest.New(t, meshtest.Options{})
	c, err := connector.New(connector.Config{
		Relays:   []string{m.Addr()},
		Pin:      m.Pin,
		Token:    m.AgentToken("coding-agent", "coding-agents"),
		Services: []connector.Service{{Name: "staging-db", Upstream: "127.0.0.1:1"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var rej *sess.RejectError
	if err := c.Run(cctx); !errors.As(err, &rej) || rej.Reason != "wrong_role" {
		t.Fatalf("Run = %v, want wrong_role", err)
	}
}

// TestHandshakeDeadline: a client that connects and says nothing is cut
// off after the handshake time.
func TestHandshakeDeadline(t *testing.T) {
	m := meshtest.New(t, meshtest.Options{Limits: relay.Limits{HandshakeTimeout: 200 * time.Millisecond}})
	tlsConf, err := transport.Trust{Pin: m.Pin}.ClientTLS("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name       string
		openStream bool
	}{{"no stream", false}, {"stream but no hello", true}} {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := quicnet.Dial(ctx(t), m.Addr(), tlsConf, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.CloseWithError(0, "")
			if tt.openStream {
				st, err := conn.OpenStreamSync(ctx(t))
				if err != nil {
					t.Fatal(err)
				}
				st.Write([]byte{byte(wire.FrameHello)}) // one byte of a header, then silence
			}
			start := time.Now()
			select {
			case <-conn.Context().Done():
			case <-time.After(5 * time.Second):
				t.Fatal("the relay kept a silent client past its handshake time")
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Fatalf("closed after %v", d)
			}
			var ae *quic.ApplicationError
			if err := context.Cause(conn.Context()); !errors.As(err, &ae) || wire.Code(ae.ErrorCode) != wire.CodeTimeout {
				t.Fatalf("close cause = %v, want application code timeout", err)
			}
		})
	}
}

// TestFrameAndTokenLimits: a Hello over the frame limit, and a token over
// the token limit, are refused with their own reasons.
func TestFrameAndTokenLimits(t *testing.T) {
	m := meshtest.New(t, meshtest.Options{Limits: relay.Limits{MaxFrameSize: 2048, MaxTokenSize: 1024}})
	tlsConf, err := transport.Trust{Pin: m.Pin}.ClientTLS("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		token  string
		code   wire.Code
		reason string
	}{
		{name: "frame over the limit", token: strings.Repeat("a", 4096), code: wire.CodeLimit, reason: "frame_too_large"},
		{name: "token over the limit", token: strings.Repeat("a", 1500), code: wire.CodeUnauthenticated, reason: "token_too_large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := sess.Dial(ctx(t), sess.Config{
				Addr: m.Addr(), TLS: tlsConf, Role: wire.RoleAgent,
				Token: func(context.Context) (string, error) { return tt.token, nil },
			})
			var rej *sess.RejectError
			if !errors.As(err, &rej) || rej.Code != tt.code || rej.Reason != tt.reason {
				t.Fatalf("err = %v, want %s/%s", err, tt.code, tt.reason)
			}
		})
	}
}

// TestTokenRefreshKeepsSession: an agent whose tokens live 3 seconds keeps
// one session for longer than that, refreshing on the open session.
func TestTokenRefreshKeepsSession(t *testing.T) {
	w := newWorld(t, meshtest.Options{})
	issued := 0
	agent, err := mesh.NewClient(mesh.Config{Relay: w.Addr(), Pin: w.Pin, TokenSource: func(context.Context) (string, error) {
		issued++
		return w.Token(identity.Claims{Subject: "short-lived", Role: identity.RoleAgent, Groups: []string{"coding-agents"}, ExpiresAt: time.Now().Add(3 * time.Second)}), nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer agent.Close()
	if err := agent.Connect(ctx(t)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(4 * time.Second)
	c, err := agent.Dial(ctx(t), "tcp", "staging-db")
	if err != nil {
		t.Fatalf("dial after the first token expired: %v", err)
	}
	c.Close()
	n := 0
	for _, ev := range w.Audit.Events(relay.EventSessionStart) {
		if ev["subject"] == "short-lived" {
			n++
		}
	}
	if n != 1 || issued < 2 {
		t.Fatalf("%d sessions and %d tokens: want one session kept alive by refreshes", n, issued)
	}
}

// TestExpiredSessionEnds: a session whose token expires without a refresh
// is ended by the relay (with no leeway, at exp; see TestLeewayExpiry).
func TestExpiredSessionEnds(t *testing.T) {
	w := newWorld(t, meshtest.Options{Leeway: -1})
	tok := w.Token(identity.Claims{Subject: "static", Role: identity.RoleAgent, Groups: []string{"coding-agents"}, ExpiresAt: time.Now().Add(2 * time.Second)})
	agent := w.Client(tok)
	if err := agent.Connect(ctx(t)); err != nil {
		t.Fatal(err)
	}
	meshtest.WaitFor(t, "the relay to end the expired session", func() bool {
		for _, ev := range w.Audit.Events(relay.EventSessionEnd) {
			if ev["subject"] == "static" && ev["reason"] == "token_expired" {
				return true
			}
		}
		return false
	})
}

// TestExpiredSessionThenDial: once the relay has ended a session for an
// expired token, the next dial reconnects, is refused, and says why
// (unauthenticated, token_expired) rather than "unavailable".
func TestExpiredSessionThenDial(t *testing.T) {
	w := newWorld(t, meshtest.Options{Leeway: -1})
	tok := w.Token(identity.Claims{Subject: "static", Role: identity.RoleAgent, Groups: []string{"coding-agents"}, ExpiresAt: time.Now().Add(time.Second)})
	agent := w.Client(tok)
	if err := agent.Connect(ctx(t)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	_, err := agent.Dial(ctx(t), "tcp", "staging-db")
	var me *postern.Error
	if !errors.As(err, &me) || !errors.Is(err, postern.ErrUnauthenticated) || me.Reason != "token_expired" {
		t.Fatalf("dial after the token expired: %v, want postern.ErrUnauthenticated with reason token_expired", err)
	}
}

// TestConnectorRefreshMustGrantItsServices: a connector's refreshed token
// must still grant every service it advertised; a token that no longer
// does is refused, and the old one stays in force until it expires.
func TestConnectorRefreshMustGrantItsServices(t *testing.T) {
	m := meshtest.New(t, meshtest.Options{})
	stagingDB := identity.Service{Name: "staging-db", Kind: postern.KindTCP, Environment: "staging"}
	err := refreshConnector(t, m, m.ConnectorToken("office-1", stagingDB), m.ConnectorToken("office-1", identity.Service{Name: "other-db", Kind: postern.KindTCP}))
	var rej *sess.RejectError
	if !errors.As(err, &rej) || rej.Code != wire.CodeDenied || rej.Reason != "service_not_granted" {
		t.Fatalf("refresh with a token that no longer grants staging-db: %v, want a service_not_granted refusal", err)
	}
}

// refreshConnector opens a connector session advertising staging-db (tcp,
// staging) with token first, presents next on it, and returns what the
// relay answered the refresh.
func refreshConnector(t *testing.T, m *meshtest.Mesh, first, next string) error {
	t.Helper()
	tlsConf, err := transport.Trust{Pin: m.Pin}.ClientTLS("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	tokens := []string{first, next}
	s, err := sess.Dial(ctx(t), sess.Config{
		Addr: m.Addr(), TLS: tlsConf, Role: wire.RoleConnector,
		Services: []*wire.Binding{{Name: "staging-db", Kind: postern.KindTCP, Environment: "staging"}},
		Token: func(context.Context) (string, error) {
			tok := tokens[0]
			tokens = tokens[1:]
			return tok, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s.RefreshNow()
}
