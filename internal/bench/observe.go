package bench

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/postern/postern/internal/telemetry"
)

// The postern-observed path is the postern path with everything an
// operator turns on to see inside (issue "See inside"): the relay and the
// connector count into Prometheus registries served on their metrics
// listeners and scraped every -observe-scrape (default 15s, Prometheus's
// usual interval), and trace with OpenTelemetry at 1% (the agent's sampler decides,
// relay and connector follow it), exporting over OTLP/HTTP to a collector
// in the driver that discards what it receives. The agent, which is the
// driver, traces only while the observed path is measured: its global
// tracer provider is switched on for that path and off for every other.

// observeSampling is the share of opens the agent traces.
const observeSampling = 0.01

// observeConfig is what a relay or connector child turns on.
type observeConfig struct {
	// OTLP is the collector's base URL ("http://host:port").
	OTLP string `json:"otlp"`
	// Scrape is the interval between scrapes of the child's /metrics.
	Scrape time.Duration `json:"scrape"`
}

// startObserving gives a child its registry (with a scrape of its own
// /metrics every cfg.Scrape) and tracer provider; stop flushes and closes.
func startObserving(cfg *observeConfig, ready func() error) (prometheus.Registerer, trace.TracerProvider, func(), error) {
	if cfg == nil {
		return nil, nil, func() {}, nil
	}
	reg := telemetry.NewRegistry()
	srv, err := telemetry.Serve("127.0.0.1:0", reg, ready, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, nil, nil, err
	}
	exp, err := otlptracehttp.New(context.Background(), otlptracehttp.WithEndpointURL(cfg.OTLP+"/v1/traces"))
	if err != nil {
		srv.Close()
		return nil, nil, nil, err
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(observeSampling))))
	done := make(chan struct{})
	scraped := make(chan struct{})
	go func() {
		defer close(scraped)
		t := time.NewTicker(cfg.Scrape)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				if resp, err := http.Get(srv.URL() + "/metrics"); err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			case <-done:
				return
			}
		}
	}()
	stop := func() {
		close(done)
		<-scraped
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		tp.Shutdown(ctx)
		cancel()
	}
	return reg, tp, stop, nil
}

// otlpSink is an OTLP/HTTP collector that discards what it receives, and
// counts the requests.
type otlpSink struct {
	srv      *http.Server
	url      string
	requests atomic.Int64
}

func startOTLPSink() (*otlpSink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &otlpSink{url: "http://" + ln.Addr().String()}
	s.srv = &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		s.requests.Add(1)
		w.Header().Set("Content-Type", "application/x-protobuf")
	})}
	go s.srv.Serve(ln)
	return s, nil
}

func (s *otlpSink) close() { s.srv.Close() }

// switchProvider is the driver's global tracer provider: the SDK's while
// on, a no-op otherwise.
type switchProvider struct {
	embedded.TracerProvider
	on  atomic.Bool
	sdk *sdktrace.TracerProvider
	off trace.TracerProvider
}

func newSwitchProvider(otlp string) (*switchProvider, error) {
	exp, err := otlptracehttp.New(context.Background(), otlptracehttp.WithEndpointURL(otlp+"/v1/traces"))
	if err != nil {
		return nil, err
	}
	return &switchProvider{
		sdk: sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithSampler(sdktrace.TraceIDRatioBased(observeSampling))),
		off: noop.NewTracerProvider(),
	}, nil
}

func (p *switchProvider) Tracer(name string, opts ...trace.TracerOption) trace.Tracer {
	return &switchTracer{p: p, on: p.sdk.Tracer(name, opts...), off: p.off.Tracer(name, opts...)}
}

func (p *switchProvider) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p.sdk.Shutdown(ctx)
}

type switchTracer struct {
	embedded.Tracer
	p       *switchProvider
	on, off trace.Tracer
}

func (t *switchTracer) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	if t.p.on.Load() {
		return t.on.Start(ctx, name, opts...)
	}
	return t.off.Start(ctx, name, opts...)
}

// setupObserved starts a relay and a connector of their own with metrics
// and tracing on, serving the same upstreams as postern, and installs the
// agent's switchable tracer provider.
func (r *runner) setupObserved(me *proc) (*path, error) {
	if r.keys == nil {
		k, err := newMeshKeys()
		if err != nil {
			return nil, err
		}
		r.keys = k
	}
	sink, err := startOTLPSink()
	if err != nil {
		return nil, err
	}
	r.onStop(sink.close)
	r.otlp = sink
	sw, err := newSwitchProvider(sink.url)
	if err != nil {
		return nil, err
	}
	r.onStop(sw.shutdown)
	r.tracing = sw
	otel.SetTracerProvider(sw)
	obs := &observeConfig{OTLP: sink.url, Scrape: r.o.observeScrape}
	var info relayReady
	cfg := relayConfig{JWKS: r.keys.jwks, Policies: policies(r.o.policies), Observe: obs}
	if r.o.audit == "file" {
		cfg.Audit = r.dir + string(os.PathSeparator) + "relay-observed-audit.jsonl"
	}
	relay, err := startChild(r.dir, "relay-observed", "relay", cfg, &info)
	if err != nil {
		return nil, err
	}
	r.onStop(relay.stop)
	relay.name = "relay"
	svcs := []service{{Name: bindEcho, Kind: "tcp", Upstream: r.up.Addr}, {Name: bindHTTP, Kind: "http", Upstream: r.up.HTTP}}
	conn, err := startChild(r.dir, "connector-observed", "connector", connectorConfig{Relay: info.Addr, Pin: info.Pin, Token: r.keys.connector, Services: svcs, Observe: obs}, &struct{}{})
	if err != nil {
		return nil, err
	}
	r.onStop(conn.stop)
	conn.name = "connector"
	return posternPath(pathObserved, info.Addr, info.Pin, r.keys.agent, "", []*proc{me, relay, conn, r.upstream})
}
