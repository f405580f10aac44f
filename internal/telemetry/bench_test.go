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

// agentTracing is the agent's global tracer provider in the benchmarks:
// a 1%-sampling SDK while on, a no-op otherwise. The agent binds to the
// first global provider installed, so it is installed once and switched.
type switchTP struct {
	embedded.TracerProvider
	on  atomic.Bool
	sdk trace.TracerProvider
}

func (p *switchTP) Tracer(name string, opts ...trace.TracerOption) trace.Tracer {
	return &switchTracer{p: p, on: p.sdk.Tracer(name, opts...), off: noop.NewTracerProvider().Tracer(name)}
}

type switchTracer struct {
	embedded.Tracer
	p       *switchTP
	on, off trace.Tracer
}

func (t *switchTracer) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	if t.p.on.Load() {
		return t.on.Start(ctx, name, opts...)
	}
	return t.off.Start(ctx, name, opts...)
}

type discardExporter struct{}

func (discardExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardExporter) Shutdown(context.Context) error                             { return nil }

func sampled() *sdktrace.TracerProvider {
	return sdktrace.NewTracerProvider(sdktrace.WithBatcher(discardExporter{}),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0.01))))
}

var agentTP = &switchTP{sdk: sampled()}

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
				agentTP.on.Store(true)
				defer agentTP.on.Store(false)
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
