package relay

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/postern/postern/internal/quicnet"

	"go.opentelemetry.io/otel/trace"

	"github.com/postern/postern/internal/wire"
	"github.com/postern/postern/policy"
)

// serveStream serves one binding stream of an agent: read the Open,
// authorize, route to a connector, splice.
func (r *Relay) serveStream(a *agentSession, st quicnet.Stream) {
	start := time.Now()
	n := a.streams.Add(1)
	defer a.streams.Add(-1)

	st.SetReadDeadline(start.Add(r.limits.OpenTimeout))
	var open wire.Open
	if err := wire.ReadExpected(st, r.limits.MaxFrameSize, &open); err != nil {
		res := &wire.Result{Code: wire.CodeProtocol, Reason: "malformed_open", Message: err.Error()}
		switch {
		case errors.Is(err, wire.ErrFrameTooLarge):
			res = &wire.Result{Code: wire.CodeLimit, Reason: "frame_too_large", Message: err.Error()}
		case errors.Is(err, os.ErrDeadlineExceeded):
			res = &wire.Result{Code: wire.CodeTimeout, Reason: "open_timeout", Message: "no open frame in time"}
		case !errors.Is(err, wire.ErrMalformed):
			st.CancelRead(quicnet.StreamRefused)
			st.CancelWrite(quicnet.StreamRefused)
			return
		}
		quicnet.Refuse(st, res)
		return
	}
	st.SetReadDeadline(time.Time{})
	action := open.Action
	if action == "" {
		action = policy.ActionConnect
	}
	// Attributes every open's audit event carries, besides the session and
	// subject that a.audit adds.
	attrs := make([]slog.Attr, 0, 12)
	attrs = append(attrs,
		slog.String("binding", open.Binding),
		slog.String("action", action),
	)
	if len(open.Details) > 0 {
		// The agent's own words (postern mcp names the tool here): audited
		// as claimed, beside what the relay verified.
		attrs = append(attrs, slog.Any("details", detailMap(open.Details)))
	}
	ospan := r.startOpenSpan(&open, action)
	var rt *route // nil until the binding is known: metrics label it "(unknown)"
	// A refusal is audited before the agent hears of it.
	// With Config.HideDenied the agent may be sent something else than
	// what is audited.
	denyAs := func(res, sent *wire.Result, extra ...slog.Attr) {
		r.m.opened(rt, res.Code)
		ospan.end(res)
		attrs = append(attrs, slog.String("decision", "deny"), slog.String("code", res.Code.Text()), slog.String("reason", res.Reason))
		if res.Policies != nil {
			attrs = append(attrs, slog.Any("policies", res.Policies))
		}
		emit(a.audit, slog.LevelWarn, EventOpenDeny, append(attrs, extra...)...)
		quicnet.Refuse(st, sent)
	}
	deny := func(res *wire.Result, extra ...slog.Attr) { denyAs(res, res, extra...) }

	if n > int64(r.limits.StreamsPerAgent) {
		deny(&wire.Result{Code: wire.CodeLimit, Reason: ReasonStreamsPerAgent,
			Message: fmt.Sprintf("this agent has %d binding streams open, the limit is %d", n-1, r.limits.StreamsPerAgent)})
		return
	}
	subject := a.claims.Load().Subject
	if res := r.subjects.startStream(subject); res != nil {
		deny(res)
		return
	}
	defer r.subjects.endStream(subject)
	if r.draining.Load() {
		deny(&wire.Result{Code: wire.CodeShutdown, Reason: "relay_shutdown", Message: "the relay is shutting down"})
		return
	}
	r.mu.RLock()
	rt = r.routes[open.Binding]
	r.mu.RUnlock()
	if rt == nil {
		deny(unknownBinding())
		return
	}
	meta := rt.meta.Load()
	details := detailMap(open.Details)
	// The set and principal the decision is made with, so that track can
	// tell whether either changed before the stream was registered.
	set, principal := r.policy.Set(), a.principal.Load()
	preq := policy.Request{
		Principal: *principal,
		Action:    action,
		Resource:  meta.resource,
		Time:      start,
		SourceIP:  a.remoteIP,
		Details:   details,
	}
	decStart := time.Now()
	dec := decideOpen(r.policy, preq)
	r.m.decided(dec.Allowed, dec.Cached, time.Since(decStart))
	ospan.decided(trace.WithTimestamp(decStart), &dec)
	if len(dec.Errors) > 0 {
		r.log.Warn("relay: policy evaluation errors", "binding", open.Binding, "subject", a.principal.Load().ID, "errors", dec.Errors)
	}
	if !dec.Allowed {
		r.m.denied(rt, dec.Policies)
		policies := dec.Policies
		if policies == nil {
			policies = []string{}
		}
		res := &wire.Result{Code: wire.CodeDenied, Reason: "policy", Message: dec.String(), Policies: policies}
		sent := res
		if r.cfg.HideDenied {
			// The agent hears what it would for a name that does not
			// exist; the trail keeps the truth.
			sent = unknownBinding()
		}
		denyAs(res, sent, slog.String("decision_detail", dec.String()), slog.Bool("hidden", r.cfg.HideDenied))
		return
	}
	attrs = append(attrs, slog.Any("policies", dec.Policies))

	down := quicnet.NewConn(st, a.conn.LocalAddr(), a.conn.RemoteAddr())
	routeStart := time.Now()
	routeSpan, routeTrace := ospan.route()
	dial := &wire.Dial{
		Binding:  open.Binding,
		Session:  a.id,
		Identity: a.ident.Load(),
		Action:   action,
		Details:  open.Details,
		Source:   a.remote,
		Early:    open.Early,
		Trace:    routeTrace, // the connector's spans are the route's children
	}
	// The splice from the agent starts with the first Dial: what it sent
	// with the Open (a pipelined first request) reaches the connector
	// while it dials the upstream, and stays with the relay until a
	// connector took the open, in case it moves to another one.
	up, sp, cs, cres, tries := r.connect(rt, down, dial)
	if tries > 1 {
		attrs = append(attrs, slog.Int("connectors_tried", tries))
	}
	if up == nil {
		endRoute(routeSpan, cres)
		deny(cres)
		return
	}
	if cs != nil {
		attrs = append(attrs, slog.String("connector", cs.name()))
		cres.Connector = cs.name()
	}
	r.m.connectorAnswered(time.Since(routeStart))
	endRoute(routeSpan, cres)
	if cres.Code != wire.CodeOK {
		r.m.opened(rt, cres.Code)
		ospan.end(cres)
		// Tell the agent, discard the rest of what it sent, and cut the
		// connector's stream.
		attrs = append(attrs, slog.String("decision", "allow"), slog.String("code", cres.Code.Text()), slog.String("reason", cres.Reason))
		emit(a.audit, slog.LevelWarn, EventOpenFail, attrs...)
		quicnet.Refuse(st, cres)
		quicnet.Abort(up)
		sp.Wait()
		return
	}
	emit(a.audit, slog.LevelInfo, EventOpenAllow, append(attrs, slog.String("decision", "allow"))...)
	up.release()
	// From here on the stream is live: a policy swap or a token refresh
	// decides it again, and cuts it when it is now denied; and the stall
	// watch resets it when its reader stops for too long.
	ls := &liveStream{a: a, id: uint64(st.StreamID()), rt: rt, action: action, details: details, attrs: attrs, start: start,
		reset: func() { revokeLegs(st, up.conn()) }}
	r.track(ls, set, principal)
	defer a.live.remove(ls)
	ss := a.track(down, up)
	defer a.untrack(ss)
	r.m.opened(rt, cres.Code)
	err := wire.WriteFrame(down, cres)
	r.m.firstByte(time.Since(start))
	ospan.end(cres)
	// An agent that closed its read side already (a DialEarly write and a
	// Close at once) reads no Result, but what it sent still goes up: the
	// splice delivers it and stops the other direction.
	if err != nil && !quicnet.PeerClosedRead(err) {
		down.CloseRead()
		quicnet.Abort(down)
		quicnet.Abort(up)
		sp.Wait()
		return
	}
	upBytes, downBytes, err := sp.Finish()
	r.m.streamClosed(rt, upBytes, downBytes)
	closeAttrs := append(attrs[:len(attrs):len(attrs)],
		slog.Int64("bytes_up", upBytes),
		slog.Int64("bytes_down", downBytes),
		slog.Int64("duration_ms", time.Since(start).Milliseconds()))
	if err != nil && !quicnet.IsClosed(err) {
		closeAttrs = append(closeAttrs, slog.String("error", err.Error()))
	}
	emit(a.audit, slog.LevelInfo, EventStreamClose, closeAttrs...)
}

// decideOpen decides an open by the open rule (a permit to read or write a
// binding also opens it; see policy.Set.AuthorizeOpen). An action the agent
// names in its Open can only narrow that, never widen it: it must be
// allowed too. The agent may say what it means to do; what is decided at
// the open is always the open itself, so that naming sql:select, or an
// action a deployment declared for its own policies, cannot dodge a forbid
// on connect.
func decideOpen(e *policy.Engine, req policy.Request) policy.Decision {
	d := e.AuthorizeOpen(req)
	if !d.Allowed || req.Action == "" || req.Action == policy.ActionConnect {
		return d
	}
	if named := e.Authorize(req); !named.Allowed {
		return named
	}
	return d
}

// unknownBinding is the answer to an open of a name no binding has, and,
// with Config.HideDenied, to an open that policy denied: the same bytes.
func unknownBinding() *wire.Result {
	return &wire.Result{Code: wire.CodeUnknownBinding, Reason: "unknown_binding", Message: "no binding has this name"}
}

// detailMap returns an Open's details as policy and the audit trail take
// them; nil for none.
func detailMap(ds []*wire.Detail) map[string]string {
	if len(ds) == 0 {
		return nil
	}
	m := make(map[string]string, len(ds))
	for _, kv := range ds {
		m[kv.Key] = kv.Value
	}
	return m
}
