package telemetry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.opentelemetry.io/otel"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/postern/postern"
	"github.com/postern/postern/binding"
	"github.com/postern/postern/internal/meshtest"
	"github.com/postern/postern/internal/telemetry"
	"github.com/postern/postern/mesh"
	"github.com/postern/postern/mesh/connector"
	"github.com/postern/postern/mesh/relay"
)

// The agent SDK reports through the global tracer provider, and binds to
// the first one installed (agentTP, bench_test.go): every test of this
// package that traces points it at provider, and finds its own spans by
// the trace ID of a root span it starts.
var (
	spans    = tracetest.NewInMemoryExporter()
	provider = sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
)

func globalTracing() { agentTP.use(provider) }

// readPolicies lets coding agents read staging (GET) and write nothing.
const readPolicies = `
@id("read-staging")
permit (principal in Group::"coding-agents", action in Action::"read", resource in Environment::"staging");
`

// upstream is an HTTP server that remembers the traceparent of each
// request.
type upstream struct {
	srv *httptest.Server
	mu  sync.Mutex
	tps []string
}

func newUpstream(t *testing.T) *upstream {
	u := &upstream{}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.tps = append(u.tps, r.Header.Get("traceparent"))
		u.mu.Unlock()
		io.WriteString(w, "orders")
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *upstream) addr() string { return strings.TrimPrefix(u.srv.URL, "http://") }

func (u *upstream) traceparents() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.tps...)
}

func get(t *testing.T, ctx context.Context, c *mesh.Client, name, method, path string) int {
	t.Helper()
	b, err := binding.OpenWith(c, name)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	hc, err := b.HTTPClient()
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(ctx, method, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	hc.CloseIdleConnections()
	return resp.StatusCode
}

// traceSpans waits until the trace has every span named in want and
// returns them by name.
func traceSpans(t *testing.T, id trace.TraceID, want ...string) map[string]tracetest.SpanStub {
	t.Helper()
	var got map[string]tracetest.SpanStub
	meshtest.WaitFor(t, "spans "+strings.Join(want, ", "), func() bool {
		got = map[string]tracetest.SpanStub{}
		for _, s := range spans.GetSpans() {
			if s.SpanContext.TraceID() == id {
				got[s.Name] = s
			}
		}
		for _, n := range want {
			if _, ok := got[n]; !ok {
				return false
			}
		}
		return true
	})
	return got
}

// TestTraceChain follows one HTTP request from the agent's context through
// the relay and the connector to the upstream: every span is the child of
// the one before, and the upstream receives the connector's request span
// as its parent in traceparent.
func TestTraceChain(t *testing.T) {
	globalTracing()
	m := meshtest.New(t, meshtest.Options{Policies: readPolicies, TracerProvider: provider})
	up := newUpstream(t)
	m.ConnectorWith(connector.Config{
		Token:          m.ConnectorToken("office", meshtest.Describe(connector.Service{Name: "staging-api", Kind: postern.KindHTTP, Upstream: up.addr(), Environment: "staging"})...),
		Services:       []connector.Service{{Name: "staging-api", Kind: postern.KindHTTP, Upstream: up.addr(), Environment: "staging"}},
		TracerProvider: provider,
	})
	c := m.Client(m.AgentToken("coding-agent", "coding-agents"))

	ctx, root := provider.Tracer("test").Start(context.Background(), "agent-task")
	if code := get(t, ctx, c, "staging-api", http.MethodGet, "/orders"); code != http.StatusOK {
		t.Fatalf("GET /orders: %d", code)
	}
	root.End()
	id := root.SpanContext().TraceID()
	got := traceSpans(t, id, "postern.open", "postern.relay.open", "postern.relay.decide", "postern.relay.route",
		"postern.connector.stream", "postern.connector.request", "postern.connector.upstream_dial")

	chain := []struct{ child, parent string }{
		{"postern.open", "agent-task"},
		{"postern.relay.open", "postern.open"},
		{"postern.relay.decide", "postern.relay.open"},
		{"postern.relay.route", "postern.relay.open"},
		{"postern.connector.stream", "postern.relay.route"},
		{"postern.connector.request", "postern.connector.stream"},
		{"postern.connector.upstream_dial", "postern.connector.request"},
	}
	parentID := func(name string) trace.SpanID {
		if name == "agent-task" {
			return root.SpanContext().SpanID()
		}
		return got[name].SpanContext.SpanID()
	}
	for _, l := range chain {
		if p := got[l.child].Parent.SpanID(); p != parentID(l.parent) {
			t.Errorf("%s: parent %s, want %s (%s)", l.child, p, l.parent, parentID(l.parent))
		}
	}
	if !got["postern.relay.open"].Parent.IsRemote() || !got["postern.connector.stream"].Parent.IsRemote() {
		t.Error("the relay's and the connector's spans should continue a remote parent (from the Open and the Dial)")
	}
	attr := func(s tracetest.SpanStub, key string) string {
		for _, a := range s.Attributes {
			if string(a.Key) == key {
				return a.Value.Emit()
			}
		}
		return ""
	}
	if v := attr(got["postern.relay.decide"], "postern.decision"); v != "allow" {
		t.Errorf("decide span: decision %q", v)
	}
	if v := attr(got["postern.connector.request"], "postern.action"); v != "http:GET" {
		t.Errorf("request span: action %q", v)
	}
	want := "00-" + id.String() + "-" + got["postern.connector.request"].SpanContext.SpanID().String() + "-01"
	if tps := up.traceparents(); len(tps) != 1 || tps[0] != want {
		t.Errorf("upstream traceparent %q, want [%s]", tps, want)
	}
}

// TestTraceContextPassesThrough: a relay and a connector that trace
// nothing still carry the agent's trace context to the upstream, and an
// agent without a span sends none.
func TestTraceContextPassesThrough(t *testing.T) {
	globalTracing()
	quiet := noop.NewTracerProvider()
	m := meshtest.New(t, meshtest.Options{Policies: readPolicies, TracerProvider: quiet})
	up := newUpstream(t)
	svc := connector.Service{Name: "staging-api", Kind: postern.KindHTTP, Upstream: up.addr(), Environment: "staging"}
	m.ConnectorWith(connector.Config{Token: m.ConnectorToken("office", meshtest.Describe(svc)...), Services: []connector.Service{svc}, TracerProvider: quiet})
	c := m.Client(m.AgentToken("coding-agent", "coding-agents"))

	ctx, root := provider.Tracer("test").Start(context.Background(), "agent-task")
	get(t, ctx, c, "staging-api", http.MethodGet, "/orders")
	root.End()
	open := traceSpans(t, root.SpanContext().TraceID(), "postern.open")["postern.open"]
	want := "00-" + root.SpanContext().TraceID().String() + "-" + open.SpanContext.SpanID().String() + "-01"

	// An agent context whose span context is invalid sends none.
	get(t, trace.ContextWithSpanContext(context.Background(), trace.SpanContext{}), c, "staging-api", http.MethodGet, "/orders")
	tps := up.traceparents()
	if len(tps) != 2 || tps[0] != want {
		t.Fatalf("upstream traceparents %q, want the agent's open span %s first", tps, want)
	}
	// The agent's own open span is still made (the global provider is
	// installed), so the second request carries a trace too, of its own.
	if tps[1] == "" || strings.Contains(tps[1], root.SpanContext().TraceID().String()) {
		t.Errorf("second request: traceparent %q, want a trace of its own", tps[1])
	}
}

// gather returns the registry's metrics as "name{label=value,...}" ->
// value (a histogram's sample count), and fails on any label value in
// forbidden.
func gather(t *testing.T, reg *prometheus.Registry, forbidden ...string) map[string]float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range fams {
		for _, m := range f.Metric {
			var b strings.Builder
			b.WriteString(f.GetName())
			b.WriteByte('{')
			for i, l := range m.Label {
				for _, bad := range forbidden {
					if strings.Contains(l.GetValue(), bad) {
						t.Errorf("%s has label %s=%q: a subject must never be a label", f.GetName(), l.GetName(), l.GetValue())
					}
				}
				if i > 0 {
					b.WriteByte(',')
				}
				b.WriteString(l.GetName() + "=" + l.GetValue())
			}
			b.WriteByte('}')
			out[b.String()] = value(m)
		}
	}
	return out
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return m.GetUntyped().GetValue()
}

type observed struct {
	m         *meshtest.Mesh
	relayReg  *prometheus.Registry
	connReg   *prometheus.Registry
	conn      *connector.Connector
	agent     *mesh.Client
	up        *upstream
	deadRelay string
}

// observedMesh is a relay and a connector with metrics, an HTTP service
// and a TCP service whose upstream is down.
func observedMesh(t *testing.T) *observed {
	o := &observed{relayReg: prometheus.NewRegistry(), connReg: prometheus.NewRegistry()}
	o.m = meshtest.New(t, meshtest.Options{Policies: readPolicies, Metrics: o.relayReg})
	o.up = newUpstream(t)
	svcs := []connector.Service{
		{Name: "staging-api", Kind: postern.KindHTTP, Upstream: o.up.addr(), Environment: "staging"},
		{Name: "staging-down", Kind: postern.KindTCP, Upstream: meshtest.DeadAddr(t), Environment: "staging"},
	}
	o.conn, _ = o.m.StartConnector(connector.Config{Token: o.m.ConnectorToken("office", meshtest.Describe(svcs...)...), Services: svcs, Metrics: o.connReg})
	o.agent = o.m.Client(o.m.AgentToken("coding-agent", "coding-agents"))
	return o
}

// drive sends an allowed GET and a denied POST, an open policy denies, one
// of an unknown binding, one whose upstream is down, and a session with a
// token of another issuer.
func drive(t *testing.T, o *observed) {
	t.Helper()
	ctx := context.Background()
	if code := get(t, ctx, o.agent, "staging-api", http.MethodGet, "/orders"); code != http.StatusOK {
		t.Fatalf("GET: %d", code)
	}
	if code := get(t, ctx, o.agent, "staging-api", http.MethodPost, "/orders"); code != http.StatusForbidden {
		t.Fatalf("POST: %d, want 403", code)
	}
	intern := o.m.Client(o.m.AgentToken("intern-bot", "interns"))
	if _, err := intern.Dial(ctx, "tcp", "staging-api"); !errors.Is(err, postern.ErrDenied) {
		t.Fatalf("intern's open: %v, want denied", err)
	}
	if _, err := o.agent.Dial(ctx, "tcp", "no-such-binding-"+strings.Repeat("x", 20)); !errors.Is(err, postern.ErrUnknownBinding) {
		t.Fatalf("unknown binding: %v", err)
	}
	if _, err := o.agent.Dial(ctx, "tcp", "staging-down"); !errors.Is(err, postern.ErrUpstream) {
		t.Fatalf("down upstream: %v", err)
	}
	other := meshtest.New(t, meshtest.Options{}) // another issuer's key
	forged := o.m.Client(other.AgentToken("coding-agent", "coding-agents"))
	if _, err := forged.Dial(ctx, "tcp", "staging-api"); !errors.Is(err, postern.ErrUnauthenticated) {
		t.Fatalf("forged token: %v", err)
	}

}

// TestMetrics drives a relay and a connector through allowed, denied and
// failed opens and requests, and reads what their registries say.
func TestMetrics(t *testing.T) {
	o := observedMesh(t)
	drive(t, o)

	subjects := []string{"coding-agent", "intern-bot", "office"}
	var r map[string]float64
	meshtest.WaitFor(t, "the last stream's bytes", func() bool {
		r = gather(t, o.relayReg, subjects...)
		return r["postern_relay_stream_bytes_total{binding=staging-api,direction=down}"] > 0 && r["postern_relay_streams{}"] == 0
	})
	want := map[string]float64{
		"postern_relay_opens_total{binding=staging-api,code=ok}":                  2, // one per binding.Open's HTTP connection
		"postern_relay_opens_total{binding=staging-api,code=denied}":              1,
		"postern_relay_opens_total{binding=(unknown),code=unknown_binding}":       1,
		"postern_relay_opens_total{binding=staging-down,code=upstream_failure}":   1,
		"postern_relay_sessions{role=agent}":                                      2,
		"postern_relay_sessions{role=connector}":                                  1,
		"postern_relay_sessions_started_total{role=connector}":                    1,
		"postern_relay_recent_denials{}":                                          1,
		"postern_relay_denials_total{binding=staging-api,policy=(no permit)}":     1,
		"postern_relay_binding_connectors{binding=staging-api}":                   1,
		"postern_relay_policies{}":                                                1,
		"postern_relay_open_duration_seconds{stage=first_byte}":                   2,
		"postern_relay_open_duration_seconds{stage=connector}":                    3,
		"postern_relay_open_duration_seconds{stage=decision}":                     4,
		"postern_relay_quic_smoothed_rtt_seconds{role=agent}":                     2,
		"postern_relay_quic_congestion_window_bytes{role=connector}":              1,
		"postern_relay_audit_events_total{event=open.deny}":                       2,
		"postern_relay_audit_events_total{event=open.fail}":                       1,
		"postern_relay_policy_decision_duration_seconds{}":                        4,
		"postern_relay_handshake_failures_total{reason=bad_signature,role=agent}": 1,
		"postern_relay_token_failures_total{reason=bad_signature}":                1,
	}
	for k, v := range want {
		if r[k] != v {
			t.Errorf("relay %s = %v, want %v", k, r[k], v)
		}
	}
	if r["postern_relay_policy_decisions_total{cached=false,decision=allow}"]+r["postern_relay_policy_decisions_total{cached=true,decision=allow}"] != 3 {
		t.Errorf("allowed decisions: %v", r)
	}
	if r["postern_relay_policy_decisions_total{cached=true,decision=allow}"] < 1 {
		t.Error("the second open of staging-api by the same agent should be a cache hit")
	}
	if r["postern_relay_quic_packets_sent{role=agent}"] <= 0 {
		t.Error("no QUIC packets sampled")
	}

	c := gather(t, o.connReg, subjects...)
	relay := o.m.Addr()
	cwant := map[string]float64{
		"postern_connector_decisions_total{action=http:GET,binding=staging-api,kind=http,outcome=allow}": 1,
		"postern_connector_decisions_total{action=http:POST,binding=staging-api,kind=http,outcome=deny}": 1,
		"postern_connector_relay_session{relay=" + relay + "}":                                           1,
		"postern_connector_relay_sessions_started_total{relay=" + relay + "}":                            1,
		"postern_connector_streams_total{binding=staging-api,code=ok}":                                   2,
		"postern_connector_streams_total{binding=staging-down,code=upstream_failure}":                    1,
		"postern_connector_upstream_dial_failures_total{binding=staging-down,reason=upstream_refused}":   1,
		"postern_connector_upstream_dial_duration_seconds{binding=staging-api}":                          1,
		"postern_connector_upstream_dial_duration_seconds{binding=staging-down}":                         1,
		"postern_connector_decision_duration_seconds{kind=http}":                                         2,
		"postern_connector_streams{binding=staging-api}":                                                 0,
	}
	for k, v := range cwant {
		if c[k] != v {
			t.Errorf("connector %s = %v, want %v", k, c[k], v)
		}
	}
	if c["postern_connector_quic_packets_sent{relay="+relay+"}"] <= 0 {
		t.Error("connector: no QUIC packets sampled")
	}
}

// TestMetricsOff: without a registry nothing is registered anywhere, and
// the mesh works as before.
func TestMetricsOff(t *testing.T) {
	m := meshtest.New(t, meshtest.Options{Policies: readPolicies})
	up := newUpstream(t)
	svc := connector.Service{Name: "staging-api", Kind: postern.KindHTTP, Upstream: up.addr(), Environment: "staging"}
	m.Connector("office", svc)
	if code := get(t, context.Background(), m.Client(m.AgentToken("coding-agent", "coding-agents")), "staging-api", http.MethodGet, "/"); code != http.StatusOK {
		t.Fatalf("GET: %d", code)
	}
	// Registering twice on one registry fails: a relay's collectors are
	// its own, and a second relay on the same registry is refused.
	reg := prometheus.NewRegistry()
	m2 := meshtest.New(t, meshtest.Options{Metrics: reg})
	r, err := relay.Listen(relay.Config{Addr: "127.0.0.1:0", Certificate: m2.Cert, Verifier: m2.Verifier, Metrics: reg})
	if err == nil {
		r.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "relay: config: metrics") {
		t.Fatalf("second relay on one registry: %v", err)
	}
}

// TestHealth serves a relay's and a connector's /healthz and /readyz.
func TestHealth(t *testing.T) {
	o := observedMesh(t)
	r := o.m.Relay()
	srv, err := telemetry.Serve("127.0.0.1:0", o.relayReg, r.CheckReady, discard())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	csrv, err := telemetry.Serve("127.0.0.1:0", o.connReg, o.conn.CheckReady, discard())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { csrv.Close() })

	check := func(base, path string, code int, body string) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != code || !strings.Contains(string(b), body) {
			t.Errorf("%s%s: %d %q, want %d %q", base, path, resp.StatusCode, b, code, body)
		}
	}
	meshtest.WaitFor(t, "the connector's session to count", func() bool {
		return gather(t, o.relayReg)["postern_relay_sessions{role=connector}"] == 1
	})
	check(srv.URL(), "/healthz", 200, "ok")
	check(srv.URL(), "/readyz", 200, "ready")
	check(srv.URL(), "/metrics", 200, "postern_relay_sessions{role=\"connector\"} 1")
	check(csrv.URL(), "/readyz", 200, "ready")
	check(csrv.URL(), "/metrics", 200, "postern_connector_relay_session{relay=")

	// No policies: every open would be denied, so not ready.
	set := o.m.Policy.Set()
	o.m.Policy.Swap(nil)
	check(srv.URL(), "/readyz", 503, "no policies loaded")
	o.m.Policy.Swap(set)
	check(srv.URL(), "/readyz", 200, "ready")

	// The relay gone: the connector has no session, and the relay is closed.
	o.m.StopRelay()
	meshtest.WaitFor(t, "the connector to lose its session", func() bool { return o.conn.CheckReady() != nil })
	check(csrv.URL(), "/readyz", 503, "no session with any relay")
	check(csrv.URL(), "/healthz", 200, "ok")
	check(srv.URL(), "/readyz", 503, "relay: closed")

	if _, err := telemetry.Serve("127.0.0.1:notaport", o.relayReg, r.CheckReady, discard()); err == nil {
		t.Error("Serve on a bad address: no error")
	}
}

// TestStatus summarizes two scrapes of a real relay's and connector's
// /metrics.
func TestStatus(t *testing.T) {
	o := observedMesh(t)
	srv, err := telemetry.Serve("127.0.0.1:0", o.relayReg, o.m.Relay().CheckReady, discard())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	csrv, err := telemetry.Serve("127.0.0.1:0", o.connReg, o.conn.CheckReady, discard())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { csrv.Close() })
	ctx := context.Background()
	before, err := telemetry.Scrape(ctx, http.DefaultClient, srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	cbefore, err := telemetry.Scrape(ctx, http.DefaultClient, csrv.URL()+"/metrics")
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		get(t, ctx, o.agent, "staging-api", http.MethodGet, "/orders")
	}
	intern := o.m.Client(o.m.AgentToken("intern-bot", "interns"))
	intern.Dial(ctx, "tcp", "staging-api")
	after, err := telemetry.Scrape(ctx, http.DefaultClient, srv.URL()+"/")
	if err != nil {
		t.Fatal(err)
	}
	cafter, err := telemetry.Scrape(ctx, http.DefaultClient, csrv.URL())
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	telemetry.Summarize(&out, before, after)
	for _, want := range []string{"readiness: ready", "sessions: 2 agents, 1 connectors", "staging-api: 1 connector", "staging-down: 1 connector",
		"(3 allowed, 1 refused)", "p99 to first byte ", "denials in the last minute: 1"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("relay summary lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	telemetry.Summarize(&out, cbefore, cafter)
	for _, want := range []string{"readiness: ready", o.m.Addr() + ": up", "staging-api: 0 streams open", "(3 allowed, 0 refused)", "upstream dial failures: 0"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("connector summary lacks %q:\n%s", want, out.String())
		}
	}

	for _, bad := range []string{"127.0.0.1:9464", "ftp://x/metrics", "http://"} {
		if _, err := telemetry.Scrape(ctx, http.DefaultClient, bad); err == nil || !strings.Contains(err.Error(), "not an http URL") {
			t.Errorf("Scrape(%q): %v", bad, err)
		}
	}
	notMetrics := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "<html>hello</html>\n")
	}))
	defer notMetrics.Close()
	if _, err := telemetry.Scrape(ctx, http.DefaultClient, notMetrics.URL); err == nil {
		t.Error("Scrape of a page that is not metrics: no error")
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := "http://" + ln.Addr().String()
	ln.Close()
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := telemetry.Scrape(sctx, http.DefaultClient, dead); err == nil {
		t.Error("Scrape of a closed port: no error")
	}
}

// TestTracingFromEnv: no endpoint, no tracing; an endpoint, spans go to
// it over OTLP/HTTP; grpc is refused.
func TestTracingFromEnv(t *testing.T) {
	ctx := context.Background()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	tp, shutdown, err := telemetry.Tracing(ctx, "postern-test")
	if err != nil || tp != nil {
		t.Fatalf("without an endpoint: %v, %v", tp, err)
	}
	shutdown(ctx)

	got := make(chan string, 16)
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- r.URL.Path + " " + r.Header.Get("Content-Type") + " " + string(b)
	}))
	defer collector.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.URL)
	if _, _, err := telemetry.Tracing(ctx, "postern-test"); err == nil || !strings.Contains(err.Error(), "only http/protobuf") {
		t.Fatalf("grpc: %v", err)
	}
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	t.Setenv("OTEL_SERVICE_NAME", "")
	prev := otel.GetTracerProvider()
	defer otel.SetTracerProvider(prev)
	tp, shutdown, err = telemetry.Tracing(ctx, "postern-relay")
	if err != nil || tp == nil {
		t.Fatalf("with an endpoint: %v, %v", tp, err)
	}
	_, span := tp.Tracer("test").Start(ctx, "exported-span")
	span.End()
	if err := shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case req := <-got:
		for _, want := range []string{"/v1/traces", "application/x-protobuf", "exported-span", "postern-relay"} {
			if !strings.Contains(req, want) {
				t.Errorf("OTLP request lacks %q", want)
			}
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no OTLP request")
	}
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// TestAgentMetrics: with a global meter provider installed, the agent
// counts its opens and their durations, by binding and outcome.
func TestAgentMetrics(t *testing.T) {
	meterOnce.Do(func() { otel.SetMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))) })
	before := agentOpens(t)
	m := meshtest.New(t, meshtest.Options{Policies: readPolicies})
	up := newUpstream(t)
	m.Connector("office", connector.Service{Name: "staging-api", Kind: postern.KindHTTP, Upstream: up.addr(), Environment: "staging"})
	get(t, context.Background(), m.Client(m.AgentToken("coding-agent", "coding-agents")), "staging-api", http.MethodGet, "/")
	intern := m.Client(m.AgentToken("intern-bot", "interns"))
	intern.Dial(context.Background(), "tcp", "staging-api")

	after := agentOpens(t)
	if d := after["staging-api ok"] - before["staging-api ok"]; d != 1 {
		t.Errorf("ok opens counted: %d, want 1", d)
	}
	if d := after["staging-api denied"] - before["staging-api denied"]; d != 1 {
		t.Errorf("denied opens counted: %d, want 1", d)
	}
	if d := after["durations"] - before["durations"]; d != 2 {
		t.Errorf("open durations recorded: %d, want 2", d)
	}
}

// The agent binds its instruments to the first global meter provider:
// one, with reader, for every run of TestAgentMetrics.
var (
	reader    = sdkmetric.NewManualReader()
	meterOnce sync.Once
)

// agentOpens reads the agent's cumulative postern.client.opens by
// "binding outcome", and the count of open durations as "durations".
func agentOpens(t *testing.T) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, mt := range sm.Metrics {
			switch d := mt.Data.(type) {
			case metricdata.Sum[int64]:
				if mt.Name != "postern.client.opens" {
					continue
				}
				for _, p := range d.DataPoints {
					b, _ := p.Attributes.Value("postern.binding")
					o, _ := p.Attributes.Value("postern.outcome")
					out[b.AsString()+" "+o.AsString()] += p.Value
				}
			case metricdata.Histogram[float64]:
				if mt.Name == "postern.client.open.duration" {
					for _, p := range d.DataPoints {
						out["durations"] += int64(p.Count)
					}
				}
			}
		}
	}
	return out
}

// TestDashboard: every metric the Grafana dashboard queries is one a
// relay or a connector exports, and its README lists every query.
func TestDashboard(t *testing.T) {
	b, err := os.ReadFile("../../examples/grafana/postern.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("postern.json: %v", err)
	}
	readme, err := os.ReadFile("../../examples/grafana/README.md")
	if err != nil {
		t.Fatal(err)
	}
	o := observedMesh(t)
	drive(t, o)
	exported := map[string]bool{}
	for _, reg := range []*prometheus.Registry{o.relayReg, o.connReg} {
		fams, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fams {
			exported[f.GetName()] = true
		}
	}
	name := regexp.MustCompile(`postern_[a-z_]+`)
	queries := 0
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			queries++
			if !strings.Contains(string(readme), strings.ReplaceAll(tg.Expr, "|", `\|`)) {
				t.Errorf("panel %q: query %s is not in examples/grafana/README.md", p.Title, tg.Expr)
			}
			for _, m := range name.FindAllString(tg.Expr, -1) {
				if base := strings.TrimSuffix(m, "_bucket"); !exported[base] {
					t.Errorf("panel %q queries %s, which no relay or connector exports", p.Title, m)
				}
			}
		}
	}
	if queries < 20 {
		t.Errorf("only %d queries in the dashboard", queries)
	}
}

// failingWriter refuses every write, as a full disk would.
type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

// TestAuditLossAndPolicyLabels: audit events the writer refuses are
// counted as lost, and a denial by a forbid is counted under its @id.
func TestAuditLossAndPolicyLabels(t *testing.T) {
	m := meshtest.New(t, meshtest.Options{})
	reg := prometheus.NewRegistry()
	r, err := relay.Listen(relay.Config{Addr: "127.0.0.1:0", Certificate: m.Cert, Verifier: m.Verifier, Policy: m.Policy,
		Audit: slog.New(slog.NewJSONHandler(failingWriter{}, nil)), Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	c, err := mesh.NewClient(mesh.Config{Relay: r.Addr().String(), Pin: m.Pin, Token: m.AgentToken("coding-agent", "coding-agents")})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// A connector serving a financial binding: forbid-financial denies it.
	svc := connector.Service{Name: "ledger", Upstream: meshtest.EchoServer(t), Environment: "staging", Labels: []string{"financial"}}
	cc := connector.Config{Relays: []string{r.Addr().String()}, Token: m.ConnectorToken("office", meshtest.Describe(svc)...), Services: []connector.Service{svc}}
	m.ConnectorWith(cc)
	if _, err := c.Dial(context.Background(), "tcp", "ledger"); !errors.Is(err, postern.ErrDenied) {
		t.Fatalf("ledger: %v, want denied", err)
	}
	r.SyncAudit() // the audit queue writes, and fails, after the open returns
	got := gather(t, reg)
	if got["postern_relay_denials_total{binding=ledger,policy=forbid-financial}"] != 1 {
		t.Errorf("denial by forbid-financial not counted under its id: %v", got)
	}
	if got["postern_relay_audit_errors_total{}"] < 3 { // the sessions' starts and the denial
		t.Errorf("lost audit events: %v, want at least 3", got["postern_relay_audit_errors_total{}"])
	}
	if n := got["postern_relay_audit_events_total{event=open.deny}"]; n != 0 {
		t.Errorf("a refused audit event counted as written: %v", n)
	}
}

// stalledWriter blocks every Write until release is closed: an audit
// collector that stopped reading.
type stalledWriter struct{ release chan struct{} }

func (w stalledWriter) Write(p []byte) (int, error) { <-w.release; return len(p), nil }

// TestAuditQueueMetrics: the audit queue's capacity, depth and drops are
// exported. With a collector that has stalled and audit_queue.full: drop,
// events past the queue's size are dropped and counted, and the opens
// that emit them go on.
func TestAuditQueueMetrics(t *testing.T) {
	m := meshtest.New(t, meshtest.Options{})
	reg := prometheus.NewRegistry()
	w := stalledWriter{release: make(chan struct{})}
	r, err := relay.Listen(relay.Config{Addr: "127.0.0.1:0", Certificate: m.Cert, Verifier: m.Verifier, Policy: m.Policy,
		Audit: slog.New(slog.NewJSONHandler(w, nil)), AuditQueue: relay.AuditQueue{Size: 4, Drop: true}, Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer close(w.release) // before Close, which writes what is queued
	c, err := mesh.NewClient(mesh.Config{Relay: r.Addr().String(), Pin: m.Pin, Token: m.AgentToken("coding-agent", "coding-agents")})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for range 12 {
		if _, err := c.Dial(context.Background(), "tcp", "nowhere"); !errors.Is(err, postern.ErrUnknownBinding) {
			t.Fatalf("an open of nowhere: %v", err)
		}
	}
	got := gather(t, reg)
	if got["postern_relay_audit_queue_capacity{}"] != 4 {
		t.Errorf("capacity %v, want 4", got["postern_relay_audit_queue_capacity{}"])
	}
	if d := got["postern_relay_audit_queue_depth{}"]; d < 1 || d > 4 {
		t.Errorf("depth %v with a stalled collector, want 1 to 4", d)
	}
	// 13 events (a session start, 12 denials), 4 queued, one held by the
	// stalled writer: at least 8 dropped.
	if n := got["postern_relay_audit_dropped_total{}"]; n < 8 {
		t.Errorf("dropped %v, want at least 8", n)
	}
}
