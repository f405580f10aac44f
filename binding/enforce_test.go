package binding_test

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postern/postern"
	"github.com/postern/postern/binding"
	"github.com/postern/postern/internal/meshtest"
	"github.com/postern/postern/mesh/connector"
	"github.com/postern/postern/policy"
)

// The connector decides every HTTP request through a binding with the
// relay's policy set: these tests run a real relay and connector over QUIC
// in front of a real HTTP upstream that records what reaches it.

const readOnlyPolicies = `
@id("read-staging")
permit (principal in Group::"coding-agents", action in Action::"read", resource in Environment::"staging");
`

const readWritePolicies = readOnlyPolicies + `
@id("write-staging")
permit (principal in Group::"coding-agents", action in Action::"write", resource in Environment::"staging");
`

// recorder is an upstream that records the request target of every
// request it receives.
type recorder struct {
	*httptest.Server
	mu   sync.Mutex
	uris []string
}

func newRecorder(t *testing.T) *recorder {
	t.Helper()
	rec := &recorder{}
	rec.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.mu.Lock()
		rec.uris = append(rec.uris, r.Method+" "+r.RequestURI)
		rec.mu.Unlock()
		io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "served %s %s", r.Method, r.RequestURI)
	}))
	t.Cleanup(rec.Close)
	return rec
}

func (r *recorder) seen() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.uris)
}

type enforceWorld struct {
	m     *meshtest.Mesh
	rec   *recorder
	audit *meshtest.Log
	hc    *http.Client
}

func newEnforceWorld(t *testing.T, policies string) *enforceWorld {
	t.Helper()
	rec := newRecorder(t)
	m := meshtest.New(t, meshtest.Options{Policies: policies, PolicyOptions: &policy.ValidateOptions{}})
	svc := connector.Service{Name: "staging-api", Kind: postern.KindHTTP, Environment: "staging", Upstream: rec.Listener.Addr().String(),
		HTTP: &connector.HTTP{Headers: map[string]connector.Secret{"Authorization": {Value: "Bearer upstream-secret"}}}}
	audit := &meshtest.Log{}
	c, _ := m.StartConnector(connector.Config{Token: m.ConnectorToken("office-1", meshtest.Describe(svc)...), Services: []connector.Service{svc},
		Audit: slog.New(slog.NewJSONHandler(audit, nil))})
	meshtest.WaitFor(t, "the connector's policy set", func() bool { return c.Policy()[m.Addr()].Loaded })
	agent := m.Client(m.AgentToken("coding-agent", "coding-agents"))
	b, err := binding.OpenWith(agent, "staging-api")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	hc, err := b.HTTPClient()
	if err != nil {
		t.Fatal(err)
	}
	return &enforceWorld{m: m, rec: rec, audit: audit, hc: hc}
}

type answer struct {
	status int
	body   string
	json   map[string]any
}

func (w *enforceWorld) do(t *testing.T, method, target string) answer {
	t.Helper()
	req, err := http.NewRequestWithContext(testCtx(t), method, "http://staging-api/", strings.NewReader("payload"))
	if err != nil {
		t.Fatal(err)
	}
	req.URL.Opaque = target // sent as written: the connector is the one normalizing
	resp, err := w.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, body: string(body)}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(body, &a.json); err != nil {
			t.Fatalf("%s %s: a JSON answer that does not decode: %v: %s", method, target, err, body)
		}
	}
	return a
}

func TestHTTPPolicyGetAllowedPostDenied(t *testing.T) {
	w := newEnforceWorld(t, readOnlyPolicies+`
@id("no-admin")
forbid (principal, action, resource) when { context has http && context.http.path like "/admin*" };
`)
	if a := w.do(t, "GET", "/v1/items?owner=a"); a.status != 200 || a.body != "served GET /v1/items?owner=a" {
		t.Fatalf("GET: %d %q", a.status, a.body)
	}
	a := w.do(t, "POST", "/v1/items")
	if a.status != 403 || a.json["error"] != "denied" || fmt.Sprint(a.json["policies"]) != "[]" ||
		!strings.Contains(fmt.Sprint(a.json["message"]), "no policy permits http:POST (a write)") {
		t.Fatalf("POST: %d %v", a.status, a.json)
	}
	// "/v1/../admin" is /admin, and the forbid names itself.
	a = w.do(t, "GET", "/v1/../admin")
	if a.status != 403 || fmt.Sprint(a.json["policies"]) != "[no-admin]" || !strings.Contains(fmt.Sprint(a.json["message"]), "GET /admin") {
		t.Fatalf("GET /v1/../admin: %d %v", a.status, a.json)
	}
	a = w.do(t, "GET", "/v1/%2e%2e/admin")
	if a.status != 400 || a.json["error"] != "bad_request" {
		t.Fatalf("GET %%2e%%2e: %d %v", a.status, a.json)
	}
	// The upstream receives the normalized target.
	if a := w.do(t, "GET", "/v1//items/./x"); a.status != 200 || a.body != "served GET /v1/items/x" {
		t.Fatalf("GET /v1//items/./x: %d %q", a.status, a.body)
	}
	for _, m := range []string{"TRACE", "CONNECT"} {
		target := "/v1/items"
		if m == "CONNECT" {
			target = "staging-api:443"
		}
		if a := w.do(t, m, target); a.status != 405 || a.json["error"] != "method_not_allowed" {
			t.Fatalf("%s: %d %v", m, a.status, a.json)
		}
	}
	if got, want := w.rec.seen(), []string{"GET /v1/items?owner=a", "GET /v1/items/x"}; !slices.Equal(got, want) {
		t.Fatalf("the upstream saw %q, want %q: nothing refused may reach it", got, want)
	}

	// One audit event per request, with its fields.
	evs := w.audit.Events(connector.EventHTTPRequest)
	if len(evs) != 7 {
		t.Fatalf("%d audit events, want 7:\n%s", len(evs), w.audit)
	}
	allow, deny := evs[0], evs[1]
	for k, v := range map[string]any{"subject": "coding-agent", "binding": "staging-api", "method": "GET", "path": "/v1/items",
		"decision": "allow", "status": float64(200), "action": "http:GET", "policies": []any{"read-staging"}} {
		if fmt.Sprint(allow[k]) != fmt.Sprint(v) {
			t.Errorf("allow event %s = %v, want %v (%v)", k, allow[k], v, allow)
		}
	}
	if allow["session"] == "" || allow["bytes_out"].(float64) != float64(len("served GET /v1/items?owner=a")) || allow["duration_ms"] == nil || allow["policy_version"].(float64) < 1 {
		t.Errorf("allow event: %v", allow)
	}
	for k, v := range map[string]any{"method": "POST", "path": "/v1/items", "decision": "deny", "status": float64(403), "action": "http:POST", "bytes_in": float64(0)} {
		if fmt.Sprint(deny[k]) != fmt.Sprint(v) {
			t.Errorf("deny event %s = %v, want %v (%v)", k, deny[k], v, deny)
		}
	}
	if fmt.Sprint(evs[2]["policies"]) != "[no-admin]" || evs[2]["decision"] != "deny" {
		t.Errorf("forbid event: %v", evs[2])
	}
}

// TestHTTPPolicyReloadOnKeepAlive: a reload that takes write away applies
// to the next request of a live keep-alive connection, and the reverse.
func TestHTTPPolicyReloadOnKeepAlive(t *testing.T) {
	w := newEnforceWorld(t, readWritePolicies)
	if a := w.do(t, "POST", "/v1/items"); a.status != 200 {
		t.Fatalf("POST with write permitted: %d %q", a.status, a.body)
	}
	swap := func(src string) {
		t.Helper()
		set, err := policy.Parse("reload.cedar", []byte(src))
		if err != nil {
			t.Fatal(err)
		}
		w.m.Policy.Swap(set)
	}
	waitStatus := func(want int) {
		t.Helper()
		start := time.Now()
		for {
			a := w.do(t, "POST", "/v1/items")
			if a.status == want {
				t.Logf("POST answered %d %v after the reload", want, time.Since(start).Round(time.Millisecond))
				return
			}
			if time.Since(start) > time.Second {
				t.Fatalf("POST still %d %v 1s after the reload, want %d", a.status, a.json, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	swap(readOnlyPolicies)
	waitStatus(403)
	swap(readWritePolicies)
	waitStatus(200)
	// All of it over one connection: one stream, one upstream session.
	if n := len(w.m.Audit.Events("open.allow")); n != 1 {
		t.Fatalf("%d opens, want the one keep-alive stream", n)
	}
}

// TestHTTPPolicyConnectOnly: a policy that permits only connect opens the
// binding and lets no request through.
func TestHTTPPolicyConnectOnly(t *testing.T) {
	w := newEnforceWorld(t, `
@id("connect-staging")
permit (principal in Group::"coding-agents", action == Action::"connect", resource in Environment::"staging");
`)
	if a := w.do(t, "GET", "/v1/items"); a.status != 403 || a.json["error"] != "denied" {
		t.Fatalf("GET: %d %v", a.status, a.json)
	}
	if n := len(w.rec.seen()); n != 0 {
		t.Fatalf("the upstream saw %d requests", n)
	}
}
