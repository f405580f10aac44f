package telemetry_test

import (
	"context"
	"io"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/postern/postern/internal/meshtest"
	"github.com/postern/postern/internal/telemetry"
	"github.com/postern/postern/mesh/connector"
)

// The whole mesh in one process, with metrics and 1% tracing off and on:
// the code path's cost in CPU and allocations, which a multi-process
// bench on a loaded machine blurs (internal/bench's postern-observed path
// measures what a deployment sees).

// switchTP is the agent's global tracer provider in this package's tests
// and benchmarks: it delegates to the provider set with use, or to a
// no-op. The agent binds to the first global provider installed, so it is
// installed once (init) and switched.
type switchTP struct {
	embedded.TracerProvider
	to atomic.Pointer[trace.TracerProvider]
}

func (p *switchTP) use(tp trace.TracerProvider) {
	if tp == nil {
		p.to.Store(nil)
		return
	}
	p.to.Store(&tp)
}

func (p *switchTP) Tracer(name string, opts ...trace.TracerOption) trace.Tracer {
	return &switchTracer{p: p, name: name, opts: opts}
}

type switchTracer struct {
	embedded.Tracer
	p    *switchTP
	name string
	opts []trace.TracerOption
}

func (t *switchTracer) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	if tp := t.p.to.Load(); tp != nil {
		return (*tp).Tracer(t.name, t.opts...).Start(ctx, name, opts...)
	}
	return noop.NewTracerProvider().Tracer(t.name).Start(ctx, name, opts...)
}

type discardExporter struct{}

func (discardExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardExporter) Shutdown(context.Context) error                             { return nil }

func sampled() *sdktrace.TracerProvider {
	return sdktrace.NewTracerProvider(sdktrace.WithBatcher(discardExporter{}),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0.01))))
}

var agentTP = new(switchTP)

func init() { otel.SetTracerProvider(agentTP) }

func BenchmarkOpenObserved(b *testing.B) {
	for _, on := range []bool{false, true} {
		name := "off"
		if on {
			name = "on"
		}
		b.Run(name, func(b *testing.B) {
			opts := meshtest.Options{TracerProvider: noop.NewTracerProvider()}
			var ccfg connector.Config
			if on {
				reg := telemetry.NewRegistry()
				opts = meshtest.Options{Metrics: reg, TracerProvider: sampled()}
				ccfg.Metrics, ccfg.TracerProvider = prometheus.NewRegistry(), sampled()
				agentTP.use(sampled())
				defer agentTP.use(nil)
			} else {
				ccfg.TracerProvider = noop.NewTracerProvider()
			}
			m := meshtest.New(b, opts)
			svc := connector.Service{Name: "staging-db", Upstream: meshtest.EchoServer(b), Environment: "staging"}
			ccfg.Token, ccfg.Services = m.ConnectorToken("office-1", meshtest.Describe(svc)...), []connector.Service{svc}
			m.ConnectorWith(ccfg)
			agent := m.Client(m.AgentToken("coding-agent", "coding-agents"))
			ctx := context.Background()
			buf := []byte{1}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				c, err := agent.DialEarly(ctx, "tcp", "staging-db")
				if err != nil {
					b.Fatal(err)
				}
				if _, err := c.Write(buf); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, buf); err != nil {
					b.Fatal(err)
				}
				c.Close()
			}
		})
	}
}
