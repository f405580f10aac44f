package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestBinaryMetrics: a relay and a connector started as processes, with
// metrics.listen, serve /metrics, /healthz and /readyz, and postern
// status, a third process, summarizes each.
func TestBinaryMetrics(t *testing.T) {
	d := deploy(t, "2s")
	c := d.client(t)
	conn, err := c.Dial(context.Background(), "tcp", "staging-echo")
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(conn, "ping\n")
	buf := make([]byte, 5)
	io.ReadFull(conn, buf)
	conn.Close()
	c.Dial(context.Background(), "tcp", "prod-ledger") // denied: forbid-financial

	get := func(u string) (int, string) {
		t.Helper()
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, u := range []string{d.relayMetrics, d.connectorMetrics} {
		if code, body := get(u + "/healthz"); code != 200 || body != "ok\n" {
			t.Errorf("%s/healthz: %d %q", u, code, body)
		}
		if code, body := get(u + "/readyz"); code != 200 || body != "ready\n" {
			t.Errorf("%s/readyz: %d %q", u, code, body)
		}
	}
	_, body := get(d.relayMetrics + "/metrics")
	for _, want := range []string{`postern_relay_opens_total{binding="staging-echo",code="ok"} 1`, `postern_relay_opens_total{binding="prod-ledger",code="denied"} 1`,
		"go_goroutines", "process_resident_memory_bytes"} {
		if !strings.Contains(body, want) {
			t.Errorf("relay /metrics lacks %q", want)
		}
	}
	if strings.Contains(body, "coding-agent") || strings.Contains(body, "office-connector") {
		t.Error("a subject is in the relay's metrics")
	}

	out := mustPostern(t, d.dir, "status", "--metrics", d.relayMetrics, "--interval", "200ms")
	for _, want := range []string{"readiness: ready", "sessions: 1 agents, 1 connectors", "staging-echo: 1 connector", "prod-ledger: 1 connector", "denials in the last minute: 1"} {
		if !strings.Contains(out, want) {
			t.Errorf("postern status (relay) lacks %q:\n%s", want, out)
		}
	}
	out = mustPostern(t, d.dir, "status", "--metrics", d.connectorMetrics+"/metrics", "--interval", "200ms")
	for _, want := range []string{"readiness: ready", d.addr + ": up", "staging-echo: 0 streams open"} {
		if !strings.Contains(out, want) {
			t.Errorf("postern status (connector) lacks %q:\n%s", want, out)
		}
	}
}
