package mcpserver

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"go.uber.org/goleak"

	"github.com/postern/postern"
	"github.com/postern/postern/internal/meshtest"
	"github.com/postern/postern/internal/pgtest"
	"github.com/postern/postern/mesh"
	"github.com/postern/postern/mesh/connector"
	"github.com/postern/postern/policy"
	"github.com/postern/postern/transport"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(pgtest.Main(m)) }

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestToolName(t *testing.T) {
	long := strings.Repeat("a", 70)
	tests := []struct {
		name, binding, verb, want string
	}{
		{"plain", "staging-db", "query", "staging-db_query"},
		{"underscore", "orders_api", "request", "orders_api_request"},
		{"dot", "team.db", "query", "team_db_fbaf4fa3_query"},
		{"slash", "team/db", "query", "team_db_0a6bfbf5_query"},
		{"too long", long, "schema", ToolName(long, "schema")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ToolName(tt.binding, tt.verb)
			if tt.name != "too long" && got != tt.want {
				t.Errorf("ToolName(%q, %q) = %q, want %q", tt.binding, tt.verb, got, tt.want)
			}
			if len(got) > maxToolName || !strings.HasSuffix(got, "_"+tt.verb) {
				t.Errorf("ToolName(%q, %q) = %q: more than %d characters, or not ending in the verb", tt.binding, tt.verb, got, maxToolName)
			}
			for _, r := range got {
				if !toolRune(r) {
					t.Errorf("ToolName(%q, %q) = %q holds %q", tt.binding, tt.verb, got, r)
				}
			}
		})
	}
	if ToolName("team.db", "query") == ToolName("team/db", "query") || ToolName("team.db", "query") == ToolName("team_db", "query") {
		t.Error("bindings differing in . / _ share a tool name")
	}
}

// world is a mesh with a connector serving an HTTP API (staging-api), a
// financial one (prod-api, which policy forbids), a TCP echo and
// whatever else the test adds, an agent client, and a Server on it with
// an MCP client session over in-memory transports.
type world struct {
	*meshtest.Mesh
	srv      *Server
	session  *mcp.ClientSession
	changed  chan struct{} // a value for each tools/list_changed
	upstream atomic.Value  // string: the last Authorization the API saw
	// connAudit is the connector's audit trail (its statement and
	// request events); the relay's is the Mesh's Audit.
	connAudit meshtest.Log
}

func newWorld(t *testing.T, cfg Config, extra ...connector.Service) *world {
	t.Helper()
	w := &world{Mesh: meshtest.New(t, meshtest.Options{}), changed: make(chan struct{}, 16)}
	api := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		w.upstream.Store(r.Header.Get("Authorization") + "|" + r.Header.Get("X-Trace"))
		switch r.URL.Path {
		case "/orders":
			rw.Header().Set("Set-Cookie", "session=upstream-cookie")
			fmt.Fprintf(rw, `{"orders":[{"id":1}],"status":%q}`, r.URL.Query().Get("status"))
		case "/logo":
			rw.Write([]byte{0x89, 'P', 'N', 'G', 0xff, 0x00})
		case "/echo":
			b, _ := io.ReadAll(r.Body)
			fmt.Fprintf(rw, "%s %s", r.Method, b)
		default:
			http.NotFound(rw, r)
		}
	}))
	t.Cleanup(api.Close)
	echo := meshtest.EchoServer(t)
	secret := connector.Secret{Value: "Bearer upstream-secret"}
	services := append([]connector.Service{
		{Name: "staging-api", Kind: postern.KindHTTP, Upstream: api.Listener.Addr().String(), Environment: "staging",
			Description: "the orders API", HTTP: &connector.HTTP{Headers: map[string]connector.Secret{"Authorization": secret}}},
		{Name: "prod-api", Kind: postern.KindHTTP, Upstream: api.Listener.Addr().String(), Environment: "staging", Labels: []string{"financial"}},
		{Name: "staging-echo", Kind: postern.KindTCP, Upstream: echo, Environment: "staging"},
	}, extra...)
	w.ConnectorWith(connector.Config{
		Token:    w.ConnectorToken("office", meshtest.Describe(services...)...),
		Services: services,
		Audit:    slog.New(slog.NewJSONHandler(&w.connAudit, nil)),
	})

	cfg.Client = w.Client(w.AgentToken("coding-agent", "coding-agents"))
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	w.srv = srv
	if err := srv.Sync(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	watchCtx, stop := context.WithCancel(context.Background())
	watched := make(chan struct{})
	go func() { defer close(watched); srv.Watch(watchCtx, time.Minute) }()

	st, ct := mcp.NewInMemoryTransports()
	ss, err := srv.MCP().Connect(testCtx(t), st, nil)
	if err != nil {
		t.Fatal(err)
	}
	client := mcp.NewClient(&mcp.Implementation{Name: "test-client", Version: "v0"}, &mcp.ClientOptions{
		ToolListChangedHandler: func(context.Context, *mcp.ToolListChangedRequest) {
			select {
			case w.changed <- struct{}{}:
			default: // the tests wait for one at a time
			}
		},
	})
	w.session, err = client.Connect(testCtx(t), ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		w.session.Close()
		ss.Wait()
		stop()
		<-watched
		srv.Close()
	})
	return w
}

func (w *world) tools(t *testing.T) map[string]*mcp.Tool {
	t.Helper()
	res, err := w.session.ListTools(testCtx(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]*mcp.Tool{}
	for _, tl := range res.Tools {
		m[tl.Name] = tl
	}
	return m
}

// call calls a tool and decodes its structured result into out; it
// returns the result's error text, "" when the call succeeded.
func (w *world) call(t *testing.T, tool string, args map[string]any, out any) string {
	t.Helper()
	res, err := w.session.CallTool(testCtx(t), &mcp.CallToolParams{Name: tool, Arguments: args})
	if err != nil {
		t.Fatalf("%s: protocol error %v", tool, err)
	}
	if res.IsError {
		var msg []string
		for _, c := range res.Content {
			if tc, ok := c.(*mcp.TextContent); ok {
				msg = append(msg, tc.Text)
			}
		}
		return strings.Join(msg, "\n")
	}
	b, err := json.Marshal(res.StructuredContent)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("%s: %v in %s", tool, err, b)
	}
	return ""
}

// TestHTTPTool: the catalog's http binding is a request tool and nothing
// else is (the TCP binding gives none, the forbidden binding is not in
// the catalog); a GET returns the body the connector's credential got,
// a binary body comes back as base64, the byte limit holds and cannot be
// raised, and credentials the agent sends are refused.
func TestHTTPTool(t *testing.T) {
	w := newWorld(t, Config{MaxBytes: 64})
	tools := w.tools(t)
	if got := slices.Sorted(func(yield func(string) bool) {
		for n := range tools {
			if !yield(n) {
				return
			}
		}
	}); !slices.Equal(got, []string{"staging-api_request"}) {
		t.Fatalf("tools = %v, want [staging-api_request]", got)
	}
	tl := tools["staging-api_request"]
	for _, want := range []string{`binding "staging-api"`, "http", "environment staging", "the orders API"} {
		if !strings.Contains(tl.Description, want) {
			t.Errorf("description lacks %q: %s", want, tl.Description)
		}
	}
	if a := tl.Annotations; a == nil || a.ReadOnlyHint || a.OpenWorldHint == nil || !*a.OpenWorldHint {
		t.Errorf("annotations = %+v, want readOnlyHint false and openWorldHint true", a)
	}

	var out RequestOutput
	if e := w.call(t, "staging-api_request", map[string]any{"path": "/orders", "query": map[string]string{"status": "shipped"}, "headers": map[string]string{"X-Trace": "t1"}}, &out); e != "" {
		t.Fatal(e)
	}
	if out.Status != 200 || out.BodyEncoding != "text" || out.Body != `{"orders":[{"id":1}],"status":"shipped"}` || out.Truncated {
		t.Errorf("GET /orders = %+v", out)
	}
	if _, ok := out.Headers["Set-Cookie"]; ok || out.Headers["Content-Type"] == "" {
		t.Errorf("headers = %v: want Content-Type, and no Set-Cookie", out.Headers)
	}
	if got := w.upstream.Load(); got != "Bearer upstream-secret|t1" {
		t.Errorf("the upstream saw %q, want the connector's credential and the agent's X-Trace", got)
	}

	if e := w.call(t, "staging-api_request", map[string]any{"path": "/logo"}, &out); e != "" || out.BodyEncoding != "base64" || out.Body != "iVBOR/8A" {
		t.Errorf("GET /logo = %+v, %s", out, e)
	}
	body := strings.Repeat("x", 100)
	for _, tt := range []struct {
		name  string
		max   int
		wantN int
	}{
		{"server limit", 0, 64},
		{"lowered", 10, 10},
		{"not raised", 1000, 64},
	} {
		e := w.call(t, "staging-api_request", map[string]any{"method": "post", "path": "/echo", "body": body, "max_bytes": tt.max}, &out)
		if e != "" || len(out.Body) != tt.wantN || !out.Truncated || !strings.HasPrefix(out.Body, "POST xxx") {
			t.Errorf("%s: %d bytes, truncated %v, %q", tt.name, len(out.Body), out.Truncated, e)
		}
	}
	for _, h := range []string{"Authorization", "cookie", "Proxy-Authorization", "Host", "Transfer-Encoding"} {
		if e := w.call(t, "staging-api_request", map[string]any{"path": "/orders", "headers": map[string]string{h: "x"}}, &out); !strings.Contains(e, "may not be set") {
			t.Errorf("header %s: %q, want a refusal", h, e)
		}
	}
	if e := w.call(t, "staging-api_request", map[string]any{"path": "http://elsewhere/"}, &out); !strings.Contains(e, "starting with /") {
		t.Errorf("a URL for a path: %q", e)
	}
}

// TestDeniedOpenIsToolError: a tool whose open the relay refuses answers
// with a tool error naming the deciding policy, not a protocol error. The
// catalog offers the tool (it is decided without the open's details),
// and the forbid matches the mcp_tool detail that every tool call's open
// carries.
func TestDeniedOpenIsToolError(t *testing.T) {
	w := newWorld(t, Config{})
	set, err := policy.Parse("test.cedar", []byte(`
@id("staging-for-coding-agents")
permit (principal in Group::"coding-agents", action == Action::"connect", resource in Environment::"staging");
@id("no-tools-on-prod-api")
forbid (principal, action, resource == Binding::"prod-api") when { context has details && context.details has mcp_tool };
`))
	if err != nil {
		t.Fatal(err)
	}
	w.Policy.Swap(set)
	meshtest.WaitFor(t, "prod-api_request in the tools", func() bool { return w.tools(t)["prod-api_request"] != nil })
	var out RequestOutput
	e := w.call(t, "prod-api_request", map[string]any{"path": "/orders"}, &out)
	if !strings.Contains(e, "denied") || !strings.Contains(e, "no-tools-on-prod-api") {
		t.Errorf("a denied open: %q, want a tool error naming no-tools-on-prod-api", e)
	}
}

// TestToolsFollowCatalog: a policy reload that forbids the HTTP binding
// removes its tool; the client is told with tools/list_changed; putting
// the policy back brings the tool back.
func TestToolsFollowCatalog(t *testing.T) {
	w := newWorld(t, Config{})
	if _, ok := w.tools(t)["staging-api_request"]; !ok {
		t.Fatal("no staging-api_request to begin with")
	}
	swap := func(src string) {
		t.Helper()
		set, err := policy.Parse("test.cedar", []byte(src))
		if err != nil {
			t.Fatal(err)
		}
		w.Policy.Swap(set)
		select {
		case <-w.changed:
		case <-testCtx(t).Done():
			t.Fatal("no tools/list_changed after a policy reload")
		}
	}
	swap(meshtest.Policies + `@id("freeze-api") forbid (principal, action, resource == Binding::"staging-api");`)
	if tools := w.tools(t); len(tools) != 0 {
		t.Errorf("after forbidding staging-api: tools %v", tools)
	}
	if got := w.srv.Tools(); len(got) != 0 {
		t.Errorf("Server.Tools() = %v", got)
	}
	swap(meshtest.Policies)
	if _, ok := w.tools(t)["staging-api_request"]; !ok {
		t.Error("staging-api_request did not come back with the permit")
	}
}

// TestWatchRetriesFailedSync: a catalog that cannot be read (no relay
// answers) is asked again soon, backing off, not only at the next resync
// period, so that the tools do not stay stale for that long.
func TestWatchRetriesFailedSync(t *testing.T) {
	m := meshtest.New(t, meshtest.Options{})
	// A relay address nothing answers on: every Sync fails.
	dead, err := mesh.NewClient(mesh.Config{Relay: "127.0.0.1:9", Pin: m.Pin, Token: m.AgentToken("coding-agent", "coding-agents"),
		ConnectTimeout: 100 * time.Millisecond, Transport: &transport.Config{Network: transport.NetworkQUIC}})
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	var logs meshtest.Log
	srv, err := New(Config{Client: dead, Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); srv.Watch(ctx, time.Hour) }()
	defer func() { cancel(); <-done }()
	meshtest.WaitFor(t, "three failed syncs within the hour's resync period", func() bool {
		return strings.Count(logs.String(), "mcp: reading the catalog") >= 3
	})
}
