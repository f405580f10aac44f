package connector

import (
	"context"
	"net/http"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/postern/postern/internal/sqlclass"
	"github.com/postern/postern/internal/tracectx"
	"github.com/postern/postern/internal/wire"
)

// Traces. Each stream the relay opens is a span "postern.connector.stream"
// (server), a child of the relay's routing span when the Dial carries a
// trace context (wire.Dial.trace), for as long as the stream lasts. Its
// children: "postern.connector.upstream_dial" for each dial of the
// upstream (a PostgreSQL login included), "postern.connector.statement"
// for each SQL statement decided, "postern.connector.request" for each
// HTTP request, whose context goes to the upstream as the traceparent and
// tracestate headers. Spans are made by Config.TracerProvider, or the
// global one when it is nil; with neither installed they are no-ops, and
// a trace context from the relay still reaches an HTTP upstream as it
// came.

const instrumentation = "github.com/postern/postern/mesh/connector"

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

// startStream starts a stream's span, from the Dial's trace context.
func (c *Connector) startStream(dial *wire.Dial, svc *Service) (context.Context, trace.Span) {
	ctx := tracectx.Extract(context.Background(), dial.Trace)
	ctx, span := c.tracer.Start(ctx, "postern.connector.stream", serverSpan...)
	if span.IsRecording() {
		span.SetAttributes(attribute.String("postern.binding", svc.Name), attribute.String("postern.kind", svc.Kind))
	}
	return ctx, span
}

// endSpan ends span, marking it failed with reason unless reason is "".
func endSpan(span trace.Span, reason string) {
	if reason != "" {
		span.SetStatus(codes.Error, reason)
	}
	span.End()
}

// startUpstreamDial starts the span of an upstream dial that is not a
// net.Dialer's (a PostgreSQL login); done ends it and counts the dial,
// with the failure's reason or "".
func (c *Connector) startUpstreamDial(ctx context.Context, binding string) (context.Context, func(reason string)) {
	ctx, span := c.tracer.Start(ctx, "postern.connector.upstream_dial", clientSpan...)
	start := time.Now()
	return ctx, func(reason string) {
		c.m.upstreamDialed(binding, time.Since(start), reason)
		if reason != "" && span.IsRecording() {
			span.SetAttributes(attribute.String("postern.reason", reason))
		}
		endSpan(span, reason)
	}
}

// startStatement starts a statement's span; done ends it with the
// decision.
func (c *Connector) startStatement(ctx context.Context, st *sqlclass.Statement) func(outcome string, policies []string) {
	_, span := c.tracer.Start(ctx, "postern.connector.statement")
	if !span.IsRecording() {
		return func(string, []string) { span.End() }
	}
	span.SetAttributes(attribute.StringSlice("postern.actions", st.Actions), attribute.String("db.query.summary", st.Class),
		attribute.String("postern.fingerprint", st.Fingerprint))
	return func(outcome string, policies []string) {
		span.SetAttributes(attribute.String("postern.decision", outcome), attribute.StringSlice("postern.policies", policies))
		if outcome != "allow" {
			span.SetStatus(codes.Error, outcome)
		}
		span.End()
	}
}

// startRequest starts an HTTP request's span and returns the request
// with it, and the function that ends it with the verdict and the status.
func (c *Connector) startRequest(r *http.Request) (*http.Request, func(v *verdict, w *countingWriter)) {
	ctx, span := c.tracer.Start(r.Context(), "postern.connector.request", serverSpan...)
	if span.IsRecording() {
		span.SetAttributes(attribute.String("http.request.method", r.Method))
	}
	return r.WithContext(ctx), func(v *verdict, w *countingWriter) {
		if span.IsRecording() {
			span.SetAttributes(attribute.String("url.path", v.path), attribute.String("postern.action", v.action),
				attribute.String("postern.decision", v.decision), attribute.Int("http.response.status_code", w.status()))
			if v.decision != "allow" && v.decision != "ungated" {
				span.SetStatus(codes.Error, v.decision)
			}
		}
		span.End()
	}
}
