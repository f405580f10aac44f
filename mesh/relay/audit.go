package relay

import (
	"context"
	"log/slog"
	"time"
)

// Audit events. Each is one log/slog record whose message is the event
// name; its attributes say who (session, subject, groups, remote), what
// (binding, action), the decision and the policies that made it, and which
// connector served the stream. No event carries a token or a secret.
const (
	// EventSessionStart: an agent or connector was authenticated.
	// Attributes: session, role, subject, groups, remote, key_bound
	// (whether the token is bound to the key the client proved); bindings (the
	// agent's catalog size) or services (what the connector advertises).
	EventSessionStart = "session.start"
	// EventSessionReject: handshakes were refused, summed per source
	// address and Config.RejectInterval. The first refusal from a source
	// in an interval is written at once, with count 1 and the attributes
	// remote, role, subject (when the token was valid), code, reason,
	// message. Further ones are counted, and when the interval ends one
	// event gives remote (the source IP, or "other" past 4096 sources),
	// role, count, reasons (reason -> count), first, last and
	// interval_ms.
	EventSessionReject = "session.reject"
	// EventSessionEnd: a session ended. Attributes: as session.start,
	// plus reason and duration_ms.
	EventSessionEnd = "session.end"
	// EventOpenAllow: policy allowed an open and a connector reached the
	// upstream. Attributes: session, subject, binding, action, decision,
	// policies (the permits that allowed it), connector, and
	// connectors_tried when the open moved from a connector that did not
	// acknowledge it, or could not reach the upstream, to another.
	EventOpenAllow = "open.allow"
	// EventOpenDeny: an open was refused before reaching a connector:
	// by policy (code "denied", with the deciding policies), or for an
	// unknown binding, no connector, a limit, a shutdown.
	EventOpenDeny = "open.deny"
	// EventOpenFail: policy allowed an open but no connector reached the
	// upstream: each one tried did not answer in time or could not reach
	// it. Attributes: as open.allow, plus code and reason (of the last
	// connector's failure; "connector_timeout" when none acknowledged).
	EventOpenFail = "open.fail"
	// EventStreamClose: an allowed stream ended. Attributes: as open.allow,
	// plus bytes_up (agent to upstream), bytes_down, duration_ms, and
	// error when it did not end cleanly.
	EventStreamClose = "stream.close"
	// EventStreamRevoked: the relay cut a live stream. Attributes: as
	// open.allow, plus trigger (policy_reload, token_refresh or
	// revocation_list), code "revoked", reason ("policy", or
	// token_revoked / subject_revoked), policies (the ones that now deny
	// it; empty for the default deny and for the revocation list) and
	// duration_ms. The stream's stream.close follows, with its error.
	EventStreamRevoked = "stream.revoked"
	// EventRelayFlood: refused handshakes from all sources together
	// reached Limits.FloodRejects in the last Config.RejectInterval, and
	// new connections from sources with no Hello verified lately are held
	// to Limits.HandshakeBudget (see Limits.FloodRejects). state is "on"
	// when it starts, "continues" at the end of each interval it lasts
	// through, "off" at the end of the first whole interval below it.
	// Attributes: state, refused (refusals counted in the interval, or,
	// for "on", in the last one as it slides), budget_refused
	// (connections refused for the budget since the last relay.flood
	// event), flood_rejects, handshake_budget, interval_ms.
	EventRelayFlood = "relay.flood"
)

// emit writes one audit event. It skips what slog.Logger.LogAttrs would do
// on every call that an audit trail does not need (the caller's program
// counter, found by unwinding the stack), which is a measurable part of an
// open's cost on the relay.
func emit(l *slog.Logger, level slog.Level, msg string, attrs ...slog.Attr) {
	ctx := context.Background()
	if !l.Enabled(ctx, level) {
		return
	}
	rec := slog.NewRecord(time.Now(), level, msg, 0)
	rec.AddAttrs(attrs...)
	l.Handler().Handle(ctx, rec)
}
