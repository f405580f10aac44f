package mesh_test

import (
	"context"
	"crypto"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postern/postern"
	"github.com/postern/postern/internal/meshtest"
	sess "github.com/postern/postern/internal/session"
	"github.com/postern/postern/internal/wire"
	"github.com/postern/postern/mesh"
	"github.com/postern/postern/mesh/identity"
	"github.com/postern/postern/mesh/relay"
	"github.com/postern/postern/transport"
)

// agentKey makes an agent key and its thumbprint.
func agentKey(t *testing.T) (crypto.Signer, string) {
	t.Helper()
	k, err := transport.GenerateClientKey()
	if err != nil {
		t.Fatal(err)
	}
	jkt, err := identity.KeyThumbprint(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	return k, jkt
}

// boundToken is a coding agent's token bound to the key of thumbprint jkt
// ("" for a bearer token).
func boundToken(w *world, sub, jkt string) string {
	return w.Token(identity.Claims{Subject: sub, Role: identity.RoleAgent, Groups: []string{"coding-agents"}, BoundKey: jkt})
}

// TestBoundTokens: a token bound to a key works only from a client that
// proves that key in its handshake; without a key, or with another, the
// relay refuses it with postern.ErrKeyNotProven and its own reason, and
// the audit trail says so. A relay that requires bound tokens refuses
// bearer ones, with or without a client key.
func TestBoundTokens(t *testing.T) {
	key, jkt := agentKey(t)
	other, _ := agentKey(t)
	tests := []struct {
		name    string
		require bool
		bound   bool // the token is bound to key
		key     crypto.Signer
		reason  string // "" when accepted
	}{
		{name: "bound token with its key", bound: true, key: key},
		{name: "bound token without a key", bound: true, reason: "key_not_proven"},
		{name: "bound token with another key", bound: true, key: other, reason: "key_mismatch"},
		{name: "bearer token, no key", key: nil},
		{name: "bearer token with a key", key: other},
		{name: "required: bound token with its key", require: true, bound: true, key: key},
		{name: "required: bearer token", require: true, reason: "token_not_bound"},
		{name: "required: bearer token with a key", require: true, key: key, reason: "token_not_bound"},
		{name: "required: bound token without a key", require: true, bound: true, reason: "key_not_proven"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t, meshtest.Options{RequireBoundTokens: tt.require})
			tok := boundToken(w, "keyed-agent", "")
			if tt.bound {
				tok = boundToken(w, "keyed-agent", jkt)
			}
			agent, err := mesh.NewClient(mesh.Config{Relay: w.Addr(), Pin: w.Pin, Token: tok, Key: tt.key})
			if err != nil {
				t.Fatal(err)
			}
			defer agent.Close()
			conn, err := agent.Dial(ctx(t), "tcp", "staging-db")
			if tt.reason == "" {
				if err != nil {
					t.Fatalf("dial: %v", err)
				}
				if _, err := conn.Write([]byte("ping")); err != nil {
					t.Fatal(err)
				}
				buf := make([]byte, 4)
				if _, err := conn.Read(buf); err != nil || string(buf) != "ping" {
					t.Fatalf("echo %q, %v", buf, err)
				}
				conn.Close()
				ev := w.Audit.Events(relay.EventSessionStart)
				if got := ev[len(ev)-1]; got["subject"] != "keyed-agent" || got["key_bound"] != tt.bound {
					t.Fatalf("session.start %v, want key_bound %v", got, tt.bound)
				}
				return
			}
			var me *postern.Error
			if !errors.As(err, &me) || !errors.Is(err, postern.ErrKeyNotProven) || me.Reason != tt.reason {
				t.Fatalf("dial: %v, want postern.ErrKeyNotProven with reason %s", err, tt.reason)
			}
			if !errors.Is(err, postern.ErrUnauthenticated) {
				t.Fatalf("%v does not match postern.ErrUnauthenticated", err)
			}
			if strings.Contains(err.Error(), tok) {
				t.Fatal("the error quotes the token")
			}
			meshtest.WaitFor(t, "the refusal in the audit trail", func() bool {
				for _, ev := range w.Audit.Events(relay.EventSessionReject) {
					if ev["reason"] == tt.reason && ev["code"] == "key not proven" {
						return true
					}
				}
				return false
			})
			if strings.Contains(w.Audit.String(), tok) {
				t.Fatal("the audit trail holds the token")
			}
		})
	}
}

// TestBoundTokenRefresh: a session started with a bound token is
// refreshed with tokens bound to the same key, and refuses a refresh that
// would change the binding: to a bearer token, or to another key.
func TestBoundTokenRefresh(t *testing.T) {
	key, jkt := agentKey(t)
	_, otherJKT := agentKey(t)
	tests := []struct {
		name   string
		next   string // the refreshed token's key: "same", "other", "none"
		reason string
	}{
		{name: "same key", next: "same"},
		{name: "to a bearer token", next: "none", reason: "binding_changed"},
		{name: "to another key", next: "other", reason: "key_mismatch"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t, meshtest.Options{})
			next := map[string]string{"same": jkt, "other": otherJKT, "none": ""}[tt.next]
			tokens := []string{boundToken(w, "keyed-agent", jkt), boundToken(w, "keyed-agent", next)}
			tlsConf, err := transport.Trust{Pin: w.Pin, Key: key}.ClientTLS("127.0.0.1")
			if err != nil {
				t.Fatal(err)
			}
			s, err := sess.Dial(ctx(t), sess.Config{Addr: w.Addr(), TLS: tlsConf, Role: wire.RoleAgent,
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
			if tt.reason == "" {
				if err != nil {
					t.Fatalf("refresh: %v", err)
				}
				return
			}
			var rej *sess.RejectError
			if !errors.As(err, &rej) || rej.Code != wire.CodeKeyNotProven || rej.Reason != tt.reason {
				t.Fatalf("refresh: %v, want CODE_KEY_NOT_PROVEN %s", err, tt.reason)
			}
			if !s.Alive() {
				t.Fatal("a refused refresh ended the session; the token in force stays")
			}
		})
	}
}

// TestBoundTokenRefreshKeepsSession: a mesh.Client whose bound tokens
// live 3 seconds keeps one session past the first token's expiry on a
// relay that requires bound tokens: its refreshes carry the binding.
func TestBoundTokenRefreshKeepsSession(t *testing.T) {
	w := newWorld(t, meshtest.Options{RequireBoundTokens: true})
	key, jkt := agentKey(t)
	var issued atomic.Int32
	agent, err := mesh.NewClient(mesh.Config{Relay: w.Addr(), Pin: w.Pin, Key: key, TokenSource: func(context.Context) (string, error) {
		issued.Add(1)
		return w.Token(identity.Claims{Subject: "keyed-agent", Role: identity.RoleAgent, Groups: []string{"coding-agents"},
			BoundKey: jkt, ExpiresAt: time.Now().Add(3 * time.Second)}), nil
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
		t.Fatalf("dial after the first bound token expired: %v", err)
	}
	c.Close()
	if n := len(w.Audit.Events(relay.EventSessionStart)); n != 2 || issued.Load() < 2 { // the connector's and the agent's
		t.Fatalf("%d sessions and %d tokens: want the agent's one session kept by refreshes", n, issued.Load())
	}
}
