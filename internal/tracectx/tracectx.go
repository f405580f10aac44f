// Package tracectx carries a W3C trace context (traceparent, tracestate)
// between a context.Context and the protocol's wire.TraceContext, with
// OpenTelemetry's W3C propagator. It uses the OpenTelemetry API only, so
// the agent SDK can import it without an SDK or an exporter.
//
// The W3C propagator is used as such, not the global one: the protocol
// documents W3C trace context, and a program that installed a tracer
// provider but no global propagator still propagates.
package tracectx

import (
	"context"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/postern/postern/internal/wire"
)

var w3c propagation.TraceContext

// Inject returns the trace context of the span in ctx, or nil when ctx
// carries no valid span context: nothing is sent then.
func Inject(ctx context.Context) *wire.TraceContext {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return nil
	}
	var c carrier
	w3c.Inject(ctx, &c)
	if c.parent == "" {
		return nil
	}
	return &wire.TraceContext{Traceparent: c.parent, Tracestate: c.state}
}

// Extract returns ctx with the remote span context tc carries; ctx as is
// when tc is nil or does not parse (W3C: a malformed traceparent is
// ignored).
func Extract(ctx context.Context, tc *wire.TraceContext) context.Context {
	if tc == nil || tc.Traceparent == "" {
		return ctx
	}
	return w3c.Extract(ctx, &carrier{parent: tc.Traceparent, state: tc.Tracestate})
}

// InjectHeader sets the traceparent and tracestate of the span in ctx on
// h (an http.Header or any TextMapCarrier) and reports whether it did:
// not when ctx carries no valid span context.
func InjectHeader(ctx context.Context, h propagation.TextMapCarrier) bool {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return false
	}
	w3c.Inject(ctx, h)
	return true
}

// carrier is a TextMapCarrier of the two W3C fields.
type carrier struct{ parent, state string }

func (c *carrier) Get(key string) string {
	switch key {
	case "traceparent":
		return c.parent
	case "tracestate":
		return c.state
	}
	return ""
}

func (c *carrier) Set(key, value string) {
	switch key {
	case "traceparent":
		c.parent = value
	case "tracestate":
		c.state = value
	}
}

func (c *carrier) Keys() []string { return []string{"traceparent", "tracestate"} }
