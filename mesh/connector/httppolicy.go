package connector

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/postern/postern/internal/httpreq"
	"github.com/postern/postern/internal/wire"
	"github.com/postern/postern/policy"
)

// Each HTTP request through a binding is decided here, before anything of
// it reaches the upstream: its target normalized once (internal/httpreq),
// its action policy.HTTPAction(method), the agent the relay attested in
// the Dial as principal, the service as the connector serves it (its
// kind, environment and labels, which the relay has checked against their
// authority) as resource, and context.http. The upstream receives exactly
// the normalized target (Target.RequestURI), so that the path policy
// judged is the path served.

// EventHTTPRequest is the audit event of one HTTP request through a
// binding, allowed or refused. Attributes: subject, session, binding,
// method, path (normalized; the target as sent when it could not be),
// action, decision ("allow", "deny", "refused" for a target or method
// refused before policy, "no_policy" when the connector held no set),
// policies (the deciding @ids), policy_version, status, bytes_in (request
// body bytes read from the agent), bytes_out (response body bytes sent to
// it), duration_ms; reason when refused.
const EventHTTPRequest = "http.request"

// httpGate decides the requests of one stream.
type httpGate struct {
	streamPolicy
	binding string
	ungated bool // for measurement: allow without deciding
}

func newHTTPGate(c *Connector, svc *Service, dial *wire.Dial, pol *relayPolicy) (*httpGate, error) {
	sp, err := newStreamPolicy(c, svc, dial, pol)
	if err != nil {
		return nil, err
	}
	return &httpGate{streamPolicy: sp, binding: svc.Name, ungated: c.ungated}, nil
}

// verdict is what the gate decided about one request, for its audit event.
type verdict struct {
	target   httpreq.Target
	path     string // for the audit event
	action   string
	decision string
	policies []string
	version  uint64
	reason   string
}

// metricAction is the action's metric label: "none" for a request
// refused before it had one.
func (v *verdict) metricAction() string {
	if v.action == "" {
		return "none"
	}
	return v.action
}

// decide answers a request that may not go on (and returns false), or
// returns the normalized target it may go on with.
func (g *httpGate) decide(w http.ResponseWriter, r *http.Request, v *verdict) bool {
	v.path = r.RequestURI
	switch strings.ToUpper(r.Method) {
	case http.MethodTrace, http.MethodConnect:
		// TRACE echoes the request, headers included, so the agent would
		// read the credentials the connector injects; CONNECT would make
		// the connector a tunnel to wherever the agent names.
		v.decision, v.reason = "refused", "method_not_allowed"
		w.Header().Set("Allow", "GET, HEAD, OPTIONS, POST, PUT, PATCH, DELETE")
		httpJSON(w, http.StatusMethodNotAllowed, map[string]any{"error": "method_not_allowed",
			"message": fmt.Sprintf("postern: %s is refused through a binding: the connector never forwards it (TRACE would echo the credentials it injects; CONNECT would tunnel)", strings.ToUpper(r.Method))})
		return false
	}
	t, err := httpreq.Parse(r.Method, r.RequestURI)
	if err != nil {
		v.decision, v.reason = "refused", "bad_target"
		httpJSON(w, http.StatusBadRequest, map[string]any{"error": "bad_request",
			"message": "postern: " + strings.TrimPrefix(err.Error(), "httpreq: ")})
		return false
	}
	v.target, v.path = t, t.Path
	v.action = policy.HTTPAction(t.Method)
	if g.ungated {
		v.decision = "ungated"
		return true
	}
	eng, why := g.pol.current(r.Context())
	if eng == nil {
		v.decision, v.reason = "no_policy", why
		httpJSON(w, http.StatusForbidden, map[string]any{"error": "no_policy", "message": "postern: " + why})
		return false
	}
	v.version = g.pol.snapshot().Version
	d := eng.Authorize(policy.Request{
		Principal: g.principal,
		Action:    v.action,
		Resource:  g.resource,
		Time:      time.Now(),
		SourceIP:  g.source,
		Details:   g.details,
		HTTP:      &policy.HTTP{Method: t.Method, Path: t.Path, Query: t.Query},
	})
	v.policies = d.Policies
	if d.Allowed {
		v.decision = "allow"
		return true
	}
	v.decision = "deny"
	policies := d.Policies
	if policies == nil {
		policies = []string{}
	}
	httpJSON(w, http.StatusForbidden, map[string]any{"error": "denied", "policies": policies,
		"message": denialMessage(t, v.action, g.binding, d)})
	return false
}

// denialMessage says why, in words an agent's author can act on.
func denialMessage(t httpreq.Target, action, binding string, d policy.Decision) string {
	group, _ := policy.ActionParent(action)
	what := action
	if group != "" {
		what = fmt.Sprintf("%s (a %s)", action, group)
	}
	switch {
	case len(d.Policies) > 0:
		return fmt.Sprintf("postern: %s %s on %s denied by %s", t.Method, t.Path, binding, strings.Join(d.Policies, ", "))
	case len(d.Errors) > 0 && d.Errors[0].PolicyID == "":
		return fmt.Sprintf("postern: %s %s on %s denied: invalid request: %s", t.Method, t.Path, binding, d.Errors[0].Message)
	}
	return fmt.Sprintf("postern: %s %s on %s denied: no policy permits %s", t.Method, t.Path, binding, what)
}

// httpJSON writes an answer of the connector's own, a JSON object. The
// X-Postern-Error header tells it from an upstream's.
func httpJSON(w http.ResponseWriter, code int, body map[string]any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("X-Postern-Error", body["error"].(string))
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(body)
}

func (g *httpGate) auditRequest(r *http.Request, v *verdict, rw *countingWriter, body *countingBody, start time.Time) {
	ctx := context.Background()
	level := slog.LevelInfo
	if v.decision != "allow" {
		level = slog.LevelWarn
	}
	if !g.audit.Enabled(ctx, level) {
		return
	}
	method := v.target.Method
	if method == "" {
		method = r.Method
	}
	var in int64
	if body != nil {
		in = body.n.Load()
	}
	attrs := []slog.Attr{
		slog.String("method", method),
		slog.String("path", v.path),
		slog.String("action", v.action),
		slog.String("decision", v.decision),
		slog.Any("policies", v.policies),
		slog.Uint64("policy_version", v.version),
		slog.Int("status", rw.status()),
		slog.Int64("bytes_in", in),
		slog.Int64("bytes_out", rw.n),
		slog.Int64("duration_ms", time.Since(start).Milliseconds()),
	}
	if v.reason != "" {
		attrs = append(attrs, slog.String("reason", v.reason))
	}
	g.audit.LogAttrs(ctx, level, EventHTTPRequest, attrs...)
}

// countingWriter counts the response body bytes and keeps the status.
// Unwrap lets http.ResponseController (the reverse proxy's flushes and
// hijacks) reach the real writer.
type countingWriter struct {
	http.ResponseWriter
	code int
	n    int64
}

func (w *countingWriter) WriteHeader(code int) {
	if w.code == 0 && code >= 200 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *countingWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.n += int64(n)
	return n, err
}

func (w *countingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *countingWriter) status() int {
	if w.code == 0 {
		return http.StatusOK
	}
	return w.code
}

// countingBody counts the request body bytes read. The count is atomic:
// the transport reads the body on its own goroutine.
type countingBody struct {
	io.ReadCloser
	n atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}
