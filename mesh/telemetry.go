package mesh

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/postern/postern"
)

// The client reports through OpenTelemetry's global providers
// (otel.SetTracerProvider, otel.SetMeterProvider), which a program
// installs if it wants them; until it does, both are no-ops and an open
// costs a non-recording span and two Enabled checks. The SDK and any
// exporter are the program's choice: this package imports the API only.
//
// Spans: "postern.open" (client), one per Dial or DialEarly, from the
// call to the relay's answer, with postern.binding, and postern.code and
// postern.reason when refused. Its W3C trace context travels in the Open
// to the relay, which continues the trace, and on to the connector and an
// HTTP upstream (traceparent).
//
// Metrics: postern.client.opens (counter; postern.binding,
// postern.outcome: "ok" or the refusal's code) and
// postern.client.open.duration (histogram, seconds; postern.binding).

const instrumentation = "github.com/postern/postern/mesh"

// The span kinds, as the options Start takes: made once, since an
// option made at each call costs an allocation on every open even when
// nothing is recorded.
var (
	clientSpan = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient)}
	serverSpan = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindServer)}
)

var (
	tracer       = otel.Tracer(instrumentation)
	meter        = otel.Meter(instrumentation)
	openCount, _ = meter.Int64Counter("postern.client.opens",
		metric.WithDescription("Binding opens by binding and outcome (ok, or the refusal's code)."))
	openDuration, _ = meter.Float64Histogram("postern.client.open.duration", metric.WithUnit("s"),
		metric.WithDescription("Time from Dial to the relay's answer."),
		metric.WithExplicitBucketBoundaries(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
)

// openTrace is one open's span and start, ended once with its outcome.
type openTrace struct {
	span    trace.Span
	binding string
	start   time.Time
}

func startOpen(ctx context.Context, binding string) (context.Context, openTrace) {
	ctx, span := tracer.Start(ctx, "postern.open", clientSpan...)
	if span.IsRecording() {
		span.SetAttributes(attribute.String("postern.binding", binding))
	}
	return ctx, openTrace{span: span, binding: binding, start: time.Now()}
}

// end records the open's outcome: err nil is an open the relay allowed.
func (o *openTrace) end(err error) {
	if o.span == nil {
		return
	}
	outcome := "ok"
	if err != nil {
		outcome = "error"
		var pe *postern.Error
		if errors.As(err, &pe) {
			outcome = codeName(pe.Err)
			if o.span.IsRecording() {
				o.span.SetAttributes(attribute.String("postern.code", outcome), attribute.String("postern.reason", pe.Reason))
			}
		}
		o.span.SetStatus(codes.Error, outcome)
	}
	o.span.End()
	o.span = nil
	ctx := context.Background()
	if openCount.Enabled(ctx) {
		openCount.Add(ctx, 1, metric.WithAttributes(attribute.String("postern.binding", o.binding), attribute.String("postern.outcome", outcome)))
	}
	if openDuration.Enabled(ctx) {
		openDuration.Record(ctx, time.Since(o.start).Seconds(), metric.WithAttributes(attribute.String("postern.binding", o.binding)))
	}
}

// codeName is a bounded name for a refusal's sentinel.
func codeName(err error) string {
	for _, c := range []struct {
		err  error
		name string
	}{
		{postern.ErrDenied, "denied"},
		{postern.ErrUnauthenticated, "unauthenticated"},
		{postern.ErrUnknownBinding, "unknown_binding"},
		{postern.ErrNoConnector, "no_connector"},
		{postern.ErrUpstream, "upstream"},
		{postern.ErrLimitExceeded, "limit"},
		{postern.ErrTimeout, "timeout"},
		{postern.ErrUnavailable, "unavailable"},
		{postern.ErrProtocol, "protocol"},
		{postern.ErrClosed, "closed"},
	} {
		if errors.Is(err, c.err) {
			return c.name
		}
	}
	return "error"
}
