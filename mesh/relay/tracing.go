package relay

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/postern/postern/internal/tracectx"
	"github.com/postern/postern/internal/wire"
	"github.com/postern/postern/policy"
)

// Traces. Each open is a span "postern.relay.open" (server), a child of
// the agent's span when its Open carries a trace context (wire.Open.trace),
// with two children: "postern.relay.decide", the policy decision, and
// "postern.relay.route", from picking a connector to its answer. The
// route span's context goes to the connector in the Dial (wire.Dial.trace),
// where the trace goes on. Spans are made by Config.TracerProvider, or
// the global one (otel.GetTracerProvider) when it is nil; with neither
// installed they are no-ops, and an agent's trace context is still passed
// on to the connector as it came.

const instrumentation = "github.com/postern/postern/mesh/relay"

// The span kinds, as the options Start takes: made once, since an
// option made at each call costs an allocation on every open even when
// nothing is recorded.
var (
	clientSpan = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient)}
	serverSpan = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindServer)}
)

func tracerOf(tp trace.TracerProvider) trace.Tracer {
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	return tp.Tracer(instrumentation)
}

// openSpan is the trace of one open at the relay.
type openSpan struct {
	t     trace.Tracer
	ctx   context.Context
	span  trace.Span
	agent *wire.TraceContext // the Open's
}

func (r *Relay) startOpenSpan(open *wire.Open, action string) *openSpan {
	ctx := tracectx.Extract(context.Background(), open.Trace)
	ctx, span := r.tracer.Start(ctx, "postern.relay.open", serverSpan...)
	if span.IsRecording() {
		span.SetAttributes(attribute.String("postern.binding", open.Binding), attribute.String("postern.action", action))
	}
	return &openSpan{t: r.tracer, ctx: ctx, span: span, agent: open.Trace}
}

// decided records the policy decision as a child span that ran from start.
func (o *openSpan) decided(start trace.SpanStartEventOption, d *policy.Decision) {
	if !o.span.IsRecording() {
		return // a child of a span nobody records is not recorded either
	}
	_, span := o.t.Start(o.ctx, "postern.relay.decide", start)
	if span.IsRecording() {
		dec := "deny"
		if d.Allowed {
			dec = "allow"
		}
		span.SetAttributes(attribute.String("postern.decision", dec), attribute.StringSlice("postern.policies", d.Policies), attribute.Bool("postern.cached", d.Cached))
	}
	span.End()
}

// route starts the routing span and returns the trace context to send in
// the Dial. When the open is not recorded (not sampled, or no tracer), no
// span of the relay's is either, and the Dial carries the Open's trace
// context as it came, at no cost.
func (o *openSpan) route() (trace.Span, *wire.TraceContext) {
	if !o.span.IsRecording() {
		return o.span, o.agent // ending o.span twice is a no-op
	}
	ctx, span := o.t.Start(o.ctx, "postern.relay.route", clientSpan...)
	return span, tracectx.Inject(ctx)
}

// end ends the open's span with its outcome, the Result the agent got.
func (o *openSpan) end(res *wire.Result) {
	if o.span.IsRecording() {
		o.span.SetAttributes(attribute.String("postern.code", res.Code.Text()))
		if res.Connector != "" {
			o.span.SetAttributes(attribute.String("postern.connector", res.Connector))
		}
		if res.Code != wire.CodeOK {
			o.span.SetAttributes(attribute.String("postern.reason", res.Reason))
			o.span.SetStatus(codes.Error, res.Code.Text())
		}
	}
	o.span.End()
}

// endRoute ends a routing span with the connector's answer.
func endRoute(span trace.Span, res *wire.Result) {
	if span.IsRecording() && res != nil {
		span.SetAttributes(attribute.String("postern.code", res.Code.Text()), attribute.String("postern.connector", res.Connector))
		if res.Code != wire.CodeOK {
			span.SetStatus(codes.Error, res.Reason)
		}
	}
	span.End()
}
