package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern"
	"github.com/postern/postern/internal/meshtest"
	"github.com/postern/postern/mesh"
)

// TestDev runs postern dev's mesh in process, without PostgreSQL, and uses
// it as an agent would: the catalog, a TCP binding, an HTTP binding whose
// credential the connector holds, a denial naming its policy.
func TestDev(t *testing.T) {
	var audit, logs meshtest.Log
	dir := t.TempDir()
	m, err := startDev(context.Background(), devOptions{
		listen: "127.0.0.1:0", dir: dir, ttl: time.Hour,
		log: slog.New(slog.NewTextHandler(&logs, nil)), audit: &audit,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer m.stop()

	var banner bytes.Buffer
	m.printBanner(&banner)
	env := map[string]string{}
	for _, line := range strings.Split(banner.String(), "\n") {
		if rest, ok := strings.CutPrefix(line, "export "); ok {
			k, v, _ := strings.Cut(rest, "=")
			env[k] = v
		}
	}
	if env["POSTERN_RELAY"] != m.relay.Addr().String() || env["POSTERN_RELAY_PIN"] != m.pin || env["POSTERN_TOKEN_FILE"] != filepath.Join(dir, "coding-agent.token") {
		t.Fatalf("banner exports %v:\n%s", env, banner.String())
	}
	for _, want := range []string{"staging-api", "deny (forbid-financial)", "GET  /orders  allow (coding-agents-read-staging)", "POST /orders  deny (no policy permits)", "allow (oncall-reads-prod, oncall-writes-prod-status)", "POST /v1/incidents/42  allow (oncall-writes-prod-status)", "POST /v1/config        deny (no policy permits)", "PostgreSQL: skipped"} {
		if !strings.Contains(banner.String(), want) {
			t.Errorf("banner lacks %q:\n%s", want, banner.String())
		}
	}

	// The signing key and the tokens are secrets: only their owner reads them.
	for _, f := range []string{"signing-key.jwk", "coding-agent.token", "oncall-agent.token", "connector.token"} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Error(err)
		} else if st.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", f, st.Mode().Perm())
		}
	}

	tok, err := os.ReadFile(env["POSTERN_TOKEN_FILE"])
	if err != nil {
		t.Fatal(err)
	}
	c, err := mesh.NewClient(mesh.Config{Relay: env["POSTERN_RELAY"], Pin: env["POSTERN_RELAY_PIN"], Token: strings.TrimSpace(string(tok))})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cat, err := c.Catalog(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, b := range cat {
		names = append(names, b.Name)
	}
	if strings.Join(names, ",") != "staging-api,staging-echo" {
		t.Errorf("coding agent's catalog %v", names)
	}

	conn, err := c.Dial(ctx, "tcp", "staging-echo")
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(conn, "ping\n")
	line, err := bufio.NewReader(conn).ReadString('\n')
	conn.Close()
	if err != nil || line != "ping\n" {
		t.Errorf("echo: %q %v", line, err)
	}

	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
		return c.Dial(ctx, "tcp", addr)
	}}}
	defer hc.CloseIdleConnections()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://staging-api/orders", nil)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var body struct{ Orders []map[string]any }
	json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || len(body.Orders) != 3 {
		t.Errorf("GET /orders through the binding: %s, %d orders (the connector must inject the Authorization header)", resp.Status, len(body.Orders))
	}

	// The connector decides each request: reading is permitted, writing
	// is not, and the answer says why.
	req, _ = http.NewRequestWithContext(ctx, "POST", "http://staging-api/orders", strings.NewReader("{}"))
	resp, err = hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var denial struct {
		Error    string
		Policies []string
		Message  string
	}
	json.NewDecoder(resp.Body).Decode(&denial)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || denial.Error != "denied" || !strings.Contains(denial.Message, "no policy permits http:POST (a write)") {
		t.Errorf("POST /orders through the binding: %s, %+v", resp.Status, denial)
	}

	// The on-call agent may write to prod-status, under /v1/incidents/
	// only: the condition reads the request's normalized path.
	oncallTok, err := os.ReadFile(filepath.Join(dir, "oncall-agent.token"))
	if err != nil {
		t.Fatal(err)
	}
	oc, err := mesh.NewClient(mesh.Config{Relay: env["POSTERN_RELAY"], Pin: env["POSTERN_RELAY_PIN"], Token: strings.TrimSpace(string(oncallTok))})
	if err != nil {
		t.Fatal(err)
	}
	defer oc.Close()
	ohc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
		return oc.Dial(ctx, "tcp", addr)
	}}}
	defer ohc.CloseIdleConnections()
	for _, tt := range []struct {
		path string
		want int
	}{{"/v1/incidents/42", http.StatusOK}, {"/v1/../v1/incidents/7", http.StatusOK}, {"/v1/config", http.StatusForbidden}, {"/v1/incidents/../config", http.StatusForbidden}} {
		req, _ := http.NewRequestWithContext(ctx, "POST", "http://prod-status"+tt.path, strings.NewReader("{}"))
		resp, err := ohc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("the on-call agent's POST %s: %s, want %d", tt.path, resp.Status, tt.want)
		}
	}

	_, err = c.Dial(ctx, "tcp", "prod-finance")
	var me *postern.Error
	if !errors.Is(err, postern.ErrDenied) || !errors.As(err, &me) || strings.Join(me.Policies, ",") != "forbid-financial" {
		t.Errorf("prod-finance: %v", err)
	}
	meshtest.WaitFor(t, "the audit events", func() bool {
		a := audit.String()
		return strings.Contains(a, `"msg":"open.deny"`) && strings.Contains(a, `"msg":"open.allow"`)
	})
	for _, secret := range []string{strings.TrimSpace(string(tok)), "Bearer "} {
		if strings.Contains(audit.String(), secret) || strings.Contains(logs.String(), secret) || strings.Contains(banner.String(), secret) {
			t.Errorf("a secret appears in the output: %.20q", secret)
		}
	}
}

// TestDevMetrics: postern dev serves the relay's and the connector's
// metrics, prints where, and postern status reads them; when the address
// asked for is taken and it was the default, another port is used.
func TestDevMetrics(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	var logs meshtest.Log
	m, err := startDev(context.Background(), devOptions{
		listen: "127.0.0.1:0", dir: t.TempDir(), ttl: time.Hour,
		log: slog.New(slog.NewTextHandler(&logs, nil)), audit: io.Discard,
		metrics: busy.Addr().String(), metricsFallback: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer m.stop()
	u := m.obs.url()
	if u == "" || strings.Contains(u, busy.Addr().String()) {
		t.Fatalf("metrics URL %q: want another port than the busy %s", u, busy.Addr())
	}
	var banner bytes.Buffer
	m.printBanner(&banner)
	if want := "metrics   " + u + "/metrics (Prometheus), " + u + "/readyz; a summary: postern status --metrics " + u; !strings.Contains(banner.String(), want) {
		t.Errorf("banner lacks %q:\n%s", want, banner.String())
	}

	var out, errs bytes.Buffer
	if code := runStatus(context.Background(), Env{Stdout: &out, Stderr: &errs}, []string{"--metrics", u, "--interval", "200ms"}); code != ExitOK {
		t.Fatalf("status: exit %d: %s", code, errs.String())
	}
	for _, want := range []string{"readiness: ready", "relay\n", "sessions: 0 agents, 1 connectors", "staging-api: 1 connector", "connector\n", ": up", "denials in the last minute: 0"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, out.String())
		}
	}

	// Without the fallback, a taken address is an error.
	_, err = startDev(context.Background(), devOptions{
		listen: "127.0.0.1:0", dir: t.TempDir(), ttl: time.Hour,
		log: slog.New(slog.DiscardHandler), audit: io.Discard, metrics: busy.Addr().String(),
	})
	if err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("dev on a taken metrics address: %v", err)
	}
}

// TestStatusFlags: bad flags and unreachable listeners are clear errors.
func TestStatusFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"interval too short", []string{"--interval", "1ms"}, ExitUsage, "--interval must be between 100ms and 1m"},
		{"argument", []string{"extra"}, ExitUsage, `unexpected argument "extra"`},
		{"not a URL", []string{"--metrics", "127.0.0.1:9464"}, ExitFailure, "is not an http URL"},
		{"nothing listening", []string{"--metrics", "http://" + meshtest.DeadAddr(t)}, ExitFailure, "connection refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errs bytes.Buffer
			if code := runStatus(context.Background(), Env{Stdout: &out, Stderr: &errs}, tt.args); code != tt.code || !strings.Contains(errs.String(), tt.want) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, errs.String(), tt.code, tt.want)
			}
		})
	}
}
