package connector

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/internal/sqlclass"
	"github.com/postern/postern/internal/wire"
)

func TestRelayPolicyFailsClosed(t *testing.T) {
	defer func(d time.Duration) { policyWait = d }(policyWait)
	policyWait = 10 * time.Millisecond
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	hash := strings.Repeat("a", 64)
	p := newRelayPolicy("relay:1")

	if e, why := p.current(context.Background()); e != nil || why != NoPolicyMessage {
		t.Fatalf("before any set: %v, %q; want none, %q", e, why, NoPolicyMessage)
	}

	p.apply(&wire.Policy{Version: 1, Hash: hash, Sources: []*wire.PolicySource{{Filename: "ok.cedar", Text: `@id("p") permit (principal, action, resource);`}}}, log)
	if e, why := p.current(context.Background()); e == nil || why != "" {
		t.Fatalf("after a good set: %v, %q", e, why)
	}

	p.apply(&wire.Policy{Version: 2, Hash: hash, Sources: []*wire.PolicySource{{Filename: "bad.cedar", Text: `permit (principal, action, resource)`}}}, log)
	e, why := p.current(context.Background())
	if e != nil || !strings.Contains(why, "version 2") || !strings.Contains(why, "bad.cedar") {
		t.Fatalf("after a set that does not parse: %v, %q; want none, with the reason", e, why)
	}
	if !strings.Contains(logs.String(), "policy set refused") || !strings.Contains(logs.String(), "bad.cedar") {
		t.Fatalf("the refusal is not logged with its reason:\n%s", logs.String())
	}

	p.apply(&wire.Policy{Version: 3, Hash: hash, Withheld: "too large"}, log)
	if e, why := p.current(context.Background()); e != nil || !strings.Contains(why, "too large") {
		t.Fatalf("after a withheld set: %v, %q", e, why)
	}
}

// TestHTTPGateWithoutPolicy: a request through a relay session that has
// sent no policy set is refused, saying so, and goes nowhere.
func TestHTTPGateWithoutPolicy(t *testing.T) {
	defer func(d time.Duration) { policyWait = d }(policyWait)
	policyWait = 10 * time.Millisecond
	c, err := New(Config{Relays: []string{"127.0.0.1:1"}, Token: "t", Pin: "sha256:" + strings.Repeat("0", 64), Services: []Service{{Name: "api", Kind: "http", Upstream: "127.0.0.1:1"}}})
	if err != nil {
		t.Fatal(err)
	}
	g, err := newHTTPGate(c, c.services["api"], &wire.Dial{Binding: "api", Identity: &wire.Identity{Subject: "agent-1"}}, newRelayPolicy("relay:1"))
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	var v verdict
	if g.decide(w, httptest.NewRequest("GET", "/v1/items", nil), &v) {
		t.Fatal("allowed without a policy set")
	}
	var body map[string]any
	json.Unmarshal(w.Body.Bytes(), &body)
	if w.Code != 403 || body["error"] != "no_policy" || !strings.Contains(body["message"].(string), NoPolicyMessage) || v.decision != "no_policy" {
		t.Fatalf("%d %v %+v", w.Code, body, v)
	}
}

// TestPGGateWithoutPolicy: a statement through a relay session that has
// sent no policy set is denied, saying so.
func TestPGGateWithoutPolicy(t *testing.T) {
	defer func(d time.Duration) { policyWait = d }(policyWait)
	policyWait = 10 * time.Millisecond
	c, err := New(Config{Relays: []string{"127.0.0.1:1"}, Token: "t", Pin: "sha256:" + strings.Repeat("0", 64), Services: []Service{{Name: "db", Kind: "postgres", Upstream: "127.0.0.1:1", Postgres: &Postgres{User: "app"}}}})
	if err != nil {
		t.Fatal(err)
	}
	g, err := newPGGate(c, c.services["db"], &wire.Dial{Binding: "db", Identity: &wire.Identity{Subject: "agent-1"}}, newRelayPolicy("relay:1"))
	if err != nil {
		t.Fatal(err)
	}
	sts, err := sqlclass.Classify("SELECT 1")
	if err != nil {
		t.Fatal(err)
	}
	if v := g.decide(context.Background(), sts[0]); v.Allowed || v.Reason != NoPolicyMessage {
		t.Fatalf("verdict %+v; want denied with %q", v, NoPolicyMessage)
	}
}
