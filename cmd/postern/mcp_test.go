package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/postern/postern/internal/meshtest"
	"github.com/postern/postern/internal/pgtest"
)

// mcpDeployment is a deployment whose connector also serves staging-api
// (http, its credential injected by the connector), prod-api (http,
// financial: forbidden) and any extra services.
func mcpDeployment(t *testing.T, extra ...service) *deployment {
	t.Helper()
	api := ordersAPI(t, "Bearer orders-api-secret")
	svc := func(name, env, labels string) string {
		return fmt.Sprintf(`  - name: %s
    kind: http
    upstream: %s
    environment: %s
    labels: [%s]
    description: the orders API
    http:
      headers:
        Authorization: {file: api.secret}
`, name, api, env, labels)
	}
	return deployWith(t, "5s", "1h", append([]service{
		{"staging-api:http:staging", svc("staging-api", "staging", ""), map[string]string{"api.secret": "Bearer orders-api-secret\n"}},
		{"prod-api:http:prod:financial", svc("prod-api", "prod", "financial"), nil},
	}, extra...))
}

// agentEnv is the environment postern mcp reads, as binding.Open does.
func (d *deployment) agentEnv() []string {
	return []string{"POSTERN_RELAY=" + d.addr, "POSTERN_RELAY_PIN=" + d.pin, "POSTERN_TOKEN_FILE=" + d.agentToken}
}

// mcpClient is an MCP client session with postern mcp, the real binary
// as a child process over stdio, launched as an MCP client launches it.
type mcpClient struct {
	*mcp.ClientSession
	stderr  *meshtest.Log
	changed chan struct{}
}

func (d *deployment) mcpStdio(t *testing.T, args ...string) *mcpClient {
	t.Helper()
	c := &mcpClient{stderr: &meshtest.Log{}, changed: make(chan struct{}, 16)}
	cmd := exec.Command(bin.postern, append([]string{"mcp"}, args...)...)
	cmd.Env = append(os.Environ(), d.agentEnv()...)
	cmd.Stderr = c.stderr
	client := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "v0"}, &mcp.ClientOptions{
		ToolListChangedHandler: func(context.Context, *mcp.ToolListChangedRequest) { c.changed <- struct{}{} },
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := client.Connect(ctx, &mcp.CommandTransport{Command: cmd}, nil)
	if err != nil {
		t.Fatalf("postern mcp: %v\n%s", err, c.stderr.String())
	}
	c.ClientSession = s
	t.Cleanup(func() {
		// Closing stdin ends postern mcp, which exits 0.
		if err := s.Close(); err != nil {
			t.Errorf("postern mcp did not end cleanly: %v\n%s", err, c.stderr.String())
		}
	})
	return c
}

func toolNames(t *testing.T, s *mcp.ClientSession) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := s.ListTools(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tl := range res.Tools {
		names = append(names, tl.Name)
	}
	slices.Sort(names)
	return names
}

// callTool calls a tool and returns its structured result, or its error
// text.
func callTool(t *testing.T, s *mcp.ClientSession, name string, args map[string]any) (out map[string]any, errText string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := s.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if res.IsError {
		for _, c := range res.Content {
			if tc, ok := c.(*mcp.TextContent); ok {
				errText += tc.Text
			}
		}
		return nil, errText
	}
	b, _ := json.Marshal(res.StructuredContent)
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out, ""
}

// TestBinaryMCP: postern mcp over stdio, launched by the SDK's own
// client: the tools are the agent's http binding (not the TCP ones, not
// the forbidden one); a GET returns the body the connector's credential
// got; the call is logged on stderr; a policy file written under the
// relay removes the tool and the client hears tools/list_changed.
func TestBinaryMCP(t *testing.T) {
	d := mcpDeployment(t)
	c := d.mcpStdio(t)
	if got := toolNames(t, c.ClientSession); !slices.Equal(got, []string{"staging-api_request"}) {
		t.Fatalf("tools = %v, want [staging-api_request]\n%s", got, c.stderr.String())
	}
	out, e := callTool(t, c.ClientSession, "staging-api_request", map[string]any{"path": "/orders"})
	if e != "" || out["status"] != 200.0 || !strings.Contains(fmt.Sprint(out["body"]), `"item":"keyboard"`) {
		t.Fatalf("GET /orders: %v %s", out, e)
	}
	d.relay.waitLine(&d.relay.stdout, `"msg":"open.allow".*"binding":"staging-api"`)
	(&proc{t: t, name: "mcp", done: make(chan struct{})}).waitLine(c.stderr, `msg="mcp: tool call" tool=staging-api_request binding=staging-api duration=\S+ status=200 bytes=\d+ outcome=ok`)

	writeFile(t, filepath.Join(d.dir, "policies", "freeze.cedar"), `@id("freeze-staging-api") forbid (principal, action, resource == Binding::"staging-api");`+"\n")
	select {
	case <-c.changed:
	case <-time.After(15 * time.Second):
		t.Fatalf("no tools/list_changed after the policy reload:\n%s", c.stderr.String())
	}
	if got := toolNames(t, c.ClientSession); len(got) != 0 {
		t.Errorf("tools after freeze-staging-api: %v", got)
	}
}

// TestBinaryMCPPostgres: the query and schema tools of a real PostgreSQL
// through the binary: rows with column names and types, the row limit
// of --max-rows, the tables and columns. Under the example policies the
// coding agent may only read staging: the query tool says readOnlyHint,
// and a DELETE is a tool error carrying the connector's 42501 and the
// reason, while the row stays. The relay's audit names the tool.
func TestBinaryMCPPostgres(t *testing.T) {
	pg := pgtest.Start(t) // skips without PostgreSQL, fails under CI
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := pg.CreateRole(ctx, "app", "pg-secret"); err != nil {
		t.Fatal(err)
	}
	if err := pg.CreateDatabase(ctx, "staging", "app"); err != nil {
		t.Fatal(err)
	}
	if err := pg.Exec(ctx, "staging", "CREATE TABLE orders (id int PRIMARY KEY, item text); INSERT INTO orders VALUES (1, 'keyboard'), (2, 'monitor'), (3, 'mouse'); ALTER TABLE orders OWNER TO app;"); err != nil {
		t.Fatal(err)
	}
	d := mcpDeployment(t, service{"staging-db:postgres:staging", fmt.Sprintf(`  - name: staging-db
    kind: postgres
    upstream: %s
    environment: staging
    postgres: {user: app, database: staging, password_file: pg.password, sslmode: disable}
`, pg.Addr), map[string]string{"pg.password": "pg-secret\n"}})
	c := d.mcpStdio(t, "--max-rows", "2")
	if got := toolNames(t, c.ClientSession); !slices.Equal(got, []string{"staging-api_request", "staging-db_query", "staging-db_schema"}) {
		t.Fatalf("tools = %v", got)
	}
	out, e := callTool(t, c.ClientSession, "staging-db_query", map[string]any{"sql": "SELECT id, item FROM orders ORDER BY id", "max_rows": 10})
	if e != "" || fmt.Sprint(out["columns"]) != "[map[name:id type:int4] map[name:item type:text]]" ||
		fmt.Sprint(out["rows"]) != "[[1 keyboard] [2 monitor]]" || out["truncated"] != true || out["row_count"] != 2.0 {
		t.Errorf("query: %v %s", out, e)
	}
	ctxl, cancell := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancell()
	res, err := c.ListTools(ctxl, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tl := range res.Tools {
		if ro := tl.Annotations != nil && tl.Annotations.ReadOnlyHint; !ro {
			t.Errorf("%s: no readOnlyHint, though the coding agent may only read staging", tl.Name)
		}
	}
	if _, e := callTool(t, c.ClientSession, "staging-db_query", map[string]any{"sql": "DELETE FROM orders WHERE id = 1"}); !strings.Contains(e, "42501") || !strings.Contains(e, "no policy permits sql:delete") {
		t.Errorf("DELETE through the query tool: %q, want the connector's 42501 denial", e)
	}
	if out, e := callTool(t, c.ClientSession, "staging-db_query", map[string]any{"sql": "SELECT count(*) AS n FROM orders"}); e != "" || fmt.Sprint(out["rows"]) != "[[3]]" {
		t.Errorf("after the denied DELETE: %v %s", out, e)
	}
	d.relay.waitLine(&d.relay.stdout, `"msg":"open.allow".*"binding":"staging-db".*"details":\{"mcp_tool":"staging-db_query"\}`)

	out, e = callTool(t, c.ClientSession, "staging-db_schema", map[string]any{"table": "orders"})
	if e != "" || !strings.Contains(fmt.Sprint(out["tables"]), "map[name:id nullable:false type:integer] map[name:item nullable:true type:text]") {
		t.Errorf("schema: %v %s", out, e)
	}
	if strings.Contains(c.stderr.String(), "pg-secret") {
		t.Error("postern mcp's log shows the database password")
	}
}

// TestBinaryMCPHTTP: --http beyond loopback is refused without
// --allow-remote, and without a bearer token; with both, a request
// without the token (or with another) gets 401, a browser's cross-site
// request 403, and the SDK's client
// sending it lists and calls the tools. SIGTERM ends it with exit 0.
func TestBinaryMCPHTTP(t *testing.T) {
	d := mcpDeployment(t)
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"not loopback", []string{"--http", "0.0.0.0:0"}, "is not a loopback address"},
		{"no token", []string{"--http", "0.0.0.0:0", "--allow-remote"}, "needs a bearer token"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := runPostern(t, d.dir, append([]string{"mcp"}, tt.args...)...)
			if code != 2 || !strings.Contains(stderr, tt.want) {
				t.Errorf("exit %d, stderr %q; want 2 and %q", code, stderr, tt.want)
			}
		})
	}

	const token = "mcp-bearer-token-1"
	p := start(t, d.dir, append(d.agentEnv(), "POSTERN_MCP_TOKEN="+token), "mcp", "--http", "0.0.0.0:0", "--allow-remote")
	m := p.waitLine(&p.stderr, `msg="postern mcp ready" transport=http url=http://\S+:(\d+)/mcp bearer=true`)
	url := "http://127.0.0.1:" + m[1] + "/mcp"
	for _, tt := range []struct {
		auth, fetchSite string
		want            int
	}{
		{"", "", http.StatusUnauthorized},
		{"Bearer wrong", "", http.StatusUnauthorized},
		{"Basic " + token, "", http.StatusUnauthorized},
		// A web page's request, even one carrying the token.
		{"Bearer " + token, "cross-site", http.StatusForbidden},
	} {
		req, _ := http.NewRequest("POST", url, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		if tt.auth != "" {
			req.Header.Set("Authorization", tt.auth)
		}
		if tt.fetchSite != "" {
			req.Header.Set("Sec-Fetch-Site", tt.fetchSite)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("Authorization %q, Sec-Fetch-Site %q: status %d, want %d", tt.auth, tt.fetchSite, resp.StatusCode, tt.want)
		}
	}

	hc := &http.Client{Transport: bearerTransport{token}}
	client := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "v0"}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: url, HTTPClient: hc}, nil)
	if err != nil {
		t.Fatalf("connect: %v\n%s", err, p.stderr.String())
	}
	if got := toolNames(t, s); !slices.Equal(got, []string{"staging-api_request"}) {
		t.Errorf("tools over HTTP = %v", got)
	}
	if out, e := callTool(t, s, "staging-api_request", map[string]any{"path": "/orders"}); e != "" || out["status"] != 200.0 {
		t.Errorf("GET /orders over HTTP: %v %s", out, e)
	}
	s.Close()
	if code := p.stop(syscall.SIGTERM); code != 0 {
		t.Errorf("exit %d:\n%s", code, p.stderr.String())
	}
	if strings.Contains(p.stderr.String(), token) {
		t.Error("the log shows the bearer token")
	}
}

type bearerTransport struct{ token string }

func (b bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return http.DefaultTransport.RoundTrip(r)
}
