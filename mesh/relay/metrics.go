package relay

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/quic-go/quic-go"

	"github.com/postern/postern/internal/wire"
)

// Metrics. With Config.Metrics set, the relay registers the collectors
// below on it; without, r.m is nil, every hook returns at once and nothing
// is counted. Labels are bounded: role, a wire code or reason, a stage, a
// direction, and the binding, which is one the relay knows (declared in
// its configuration or granted by a connector's signed token); an open of
// a name it does not know counts under binding "(unknown)". Never a
// subject, a session or a token ID.
//
//	postern_relay_sessions{role}                      gauge: live sessions (agent, connector)
//	postern_relay_sessions_started_total{role}        counter
//	postern_relay_handshake_failures_total{role,reason} counter: sessions refused (token, version, services, ...)
//	postern_relay_token_failures_total{reason}        counter: token verifications that failed, at a Hello or a Refresh
//	postern_relay_unverified_connections              gauge: connections (QUIC and TLS over TCP) waiting for their Hello
//	postern_relay_connections_refused_total{transport,reason} counter: connections refused before their handshake
//	                                                  (quic, tcp; unverified_connections: at a cap of the gate,
//	                                                  rejects_per_source: from a source refused too often,
//	                                                  handshake_budget: from an unfamiliar source while flooded)
//	postern_relay_flooded                             gauge: 1 while refused Hellos reach limits.flood_rejects
//	postern_relay_opens_total{binding,code}           counter: every open, by outcome (ok, denied, no_connector, upstream_failure, ...)
//	postern_relay_open_duration_seconds{stage}        histogram: decision (policy), connector (Dial to the
//	                                                  connector's Result, its upstream dial included),
//	                                                  first_byte (Open read to the agent's Result, when data may flow)
//	postern_relay_stream_bytes_total{binding,direction} counter: up (agent to upstream), down, at each stream's end
//	postern_relay_streams                             gauge: binding streams being served
//	postern_relay_policy_decisions_total{decision,cached} counter: open decisions (allow, deny); cached: from the decision cache
//	postern_relay_policy_decision_duration_seconds    histogram
//	postern_relay_denials_total{binding,policy}       counter: opens denied by policy, by each deciding forbid's @id,
//	                                                  or policy "(no permit)" for the default deny
//	postern_relay_recent_denials                      gauge: opens denied by policy in the last 60 seconds
//	postern_relay_policies                            gauge: policies in the set in force
//	postern_relay_binding_connectors{binding}         gauge: connectors serving each known binding
//	postern_relay_audit_events_total{event}           counter: audit events written
//	postern_relay_audit_errors_total                  counter: audit events the audit writer failed to take (lost)
//	postern_relay_audit_queue_depth                   gauge: audit events queued, not yet written
//	postern_relay_audit_queue_capacity                gauge: the queue's size (audit_queue.size)
//	postern_relay_audit_dropped_total                 counter: audit events dropped because the queue was full
//	                                                  (audit_queue.full: drop; with block, opens wait instead)
//	postern_relay_quic_smoothed_rtt_seconds{role}     histogram over live sessions, sampled at each scrape
//	postern_relay_quic_congestion_window_bytes{role}  histogram over live sessions, sampled at each scrape
//	postern_relay_quic_packets_sent{role}             gauge: sum over live sessions, sampled at each scrape
//	postern_relay_quic_packets_lost{role}             gauge: sum over live sessions, sampled at each scrape
//
// The audit trail is written through a bounded queue (see AuditQueue): its
// depth, capacity and drops are reported; an event its writer refuses is
// counted in audit_errors_total.

// UnknownBinding is the binding label of opens of a name the relay does
// not know: agents choose what they open, and a label per name they send
// would let them grow the metric without bound.
const UnknownBinding = "(unknown)"

// latencyBuckets spans a loopback open (100 us) to a slow upstream (10 s).
var latencyBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

type metrics struct {
	sessions          *prometheus.GaugeVec
	sessionsStarted   *prometheus.CounterVec
	handshakeFailures *prometheus.CounterVec
	tokenFailures     *prometheus.CounterVec
	opens             *prometheus.CounterVec
	stage             *prometheus.HistogramVec
	stageDecision     prometheus.Observer
	stageConnector    prometheus.Observer
	stageFirstByte    prometheus.Observer
	bytes             *prometheus.CounterVec
	streams           prometheus.Gauge
	decisions         *prometheus.CounterVec
	decisionSeconds   prometheus.Histogram
	auditEvents       *prometheus.CounterVec
	auditByEvent      map[string]prometheus.Counter // the events of audit.go, resolved once
	auditErrors       prometheus.Counter
	denials           minuteCount
	denialsByPolicy   *prometheus.CounterVec
	decisionCounters  [2][2]prometheus.Counter // [allowed][cached]
}

// bindingMetrics are one binding's counters of the common case, resolved
// once per route rather than looked up by label at every open.
type bindingMetrics struct {
	ok, denied prometheus.Counter
	up, down   prometheus.Counter
}

// forRoute returns rt's counters; nil for a name the relay does not know.
func (m *metrics) forRoute(rt *route) *bindingMetrics {
	if rt == nil {
		return nil
	}
	if bm := rt.metrics.Load(); bm != nil {
		return bm
	}
	bm := &bindingMetrics{
		ok:     m.opens.WithLabelValues(rt.name, CodeLabel(wire.CodeOK)),
		denied: m.opens.WithLabelValues(rt.name, CodeLabel(wire.CodeDenied)),
		up:     m.bytes.WithLabelValues(rt.name, "up"),
		down:   m.bytes.WithLabelValues(rt.name, "down"),
	}
	rt.metrics.CompareAndSwap(nil, bm)
	return rt.metrics.Load()
}

func newMetrics(reg prometheus.Registerer, r *Relay) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	m := &metrics{
		sessions: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "postern_relay_sessions",
			Help: "Live sessions by role."}, []string{"role"}),
		sessionsStarted: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "postern_relay_sessions_started_total",
			Help: "Sessions authenticated, by role."}, []string{"role"}),
		handshakeFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "postern_relay_handshake_failures_total",
			Help: "Sessions refused at their handshake, by role and reason."}, []string{"role", "reason"}),
		tokenFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "postern_relay_token_failures_total",
			Help: "Token verifications that failed (Hello or Refresh), by reason."}, []string{"reason"}),
		opens: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "postern_relay_opens_total",
			Help: "Binding opens by binding and outcome code."}, []string{"binding", "code"}),
		stage: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "postern_relay_open_duration_seconds",
			Help: "Open latency by stage: decision, connector (Dial to the connector's answer), first_byte (Open to the agent's answer).", Buckets: latencyBuckets}, []string{"stage"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "postern_relay_stream_bytes_total",
			Help: "Bytes carried by binding streams, by binding and direction (up: agent to upstream), counted when a stream ends."}, []string{"binding", "direction"}),
		streams: prometheus.NewGauge(prometheus.GaugeOpts{Name: "postern_relay_streams",
			Help: "Binding streams being served."}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "postern_relay_policy_decisions_total",
			Help: "Policy decisions on opens, by decision and whether the decision cache answered."}, []string{"decision", "cached"}),
		decisionSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "postern_relay_policy_decision_duration_seconds",
			Help: "Time to decide an open.", Buckets: []float64{1e-7, 1e-6, 5e-6, 1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 1e-2}}),
		auditEvents: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "postern_relay_audit_events_total",
			Help: "Audit events written, by event."}, []string{"event"}),
		auditErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "postern_relay_audit_errors_total",
			Help: "Audit events the audit writer failed to take: lost."}),
		denialsByPolicy: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "postern_relay_denials_total",
			Help: "Opens denied by policy, by binding and deciding policy (\"(no permit)\": the default deny)."}, []string{"binding", "policy"}),
	}
	m.auditByEvent = make(map[string]prometheus.Counter)
	for _, ev := range []string{EventSessionStart, EventSessionReject, EventSessionEnd, EventOpenAllow, EventOpenDeny, EventOpenFail, EventStreamClose} {
		m.auditByEvent[ev] = m.auditEvents.WithLabelValues(ev)
	}
	for i, dec := range []string{"deny", "allow"} {
		for j, cached := range []string{"false", "true"} {
			m.decisionCounters[i][j] = m.decisions.WithLabelValues(dec, cached)
		}
	}
	m.stageDecision = m.stage.WithLabelValues("decision")
	m.stageConnector = m.stage.WithLabelValues("connector")
	m.stageFirstByte = m.stage.WithLabelValues("first_byte")
	for _, role := range []string{wire.RoleAgent, wire.RoleConnector} {
		m.sessions.WithLabelValues(role)
		m.sessionsStarted.WithLabelValues(role)
	}
	for _, c := range []prometheus.Collector{m.sessions, m.sessionsStarted, m.handshakeFailures, m.tokenFailures,
		m.opens, m.stage, m.bytes, m.streams, m.decisions, m.decisionSeconds, m.auditEvents, m.auditErrors, m.denialsByPolicy, &sampler{r: r},
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "postern_relay_recent_denials",
			Help: "Opens denied by policy in the last 60 seconds."}, func() float64 { return float64(m.denials.total(time.Now())) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "postern_relay_audit_queue_depth",
			Help: "Audit events queued and not yet written."}, func() float64 {
			if q := r.auditQ; q != nil {
				return float64(len(q.ch))
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "postern_relay_audit_queue_capacity",
			Help: "Audit events the queue holds at most (audit_queue.size)."}, func() float64 {
			if q := r.auditQ; q != nil {
				return float64(cap(q.ch))
			}
			return 0
		}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "postern_relay_audit_dropped_total",
			Help: "Audit events dropped because the audit queue was full (audit_queue.full: drop)."}, func() float64 {
			if q := r.auditQ; q != nil {
				return float64(q.total.Load())
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "postern_relay_flooded",
			Help: "1 while the relay's refused Hellos in the last interval reach limits.flood_rejects: unfamiliar sources are then held to limits.handshake_budget."}, func() float64 {
			if r.gate.isFlooded() {
				return 1
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "postern_relay_unverified_connections",
			Help: "Connections, QUIC and TLS over TCP, waiting for their Hello."}, func() float64 { return float64(r.gate.unverified()) }),
	} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for via, transport := range []string{"quic", "tcp"} {
		for reason, n := range map[string]*atomic.Uint64{ReasonUnverified: &r.gate.refused[via].capped, reasonPenalized: &r.gate.refused[via].penalized, reasonBudget: &r.gate.refused[via].budget} {
			c := prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "postern_relay_connections_refused_total",
				Help:        "Connections refused before their handshake, by transport and reason (unverified_connections: at Limits.MaxUnverified or MaxUnverifiedPerSource; rejects_per_source: from a source past Limits.RejectsPerSource; handshake_budget: from an unfamiliar source while flooded, past Limits.HandshakeBudget).",
				ConstLabels: prometheus.Labels{"transport": transport, "reason": reason}}, func() float64 { return float64(n.Load()) })
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

func (m *metrics) sessionStarted(role string) {
	if m == nil {
		return
	}
	m.sessionsStarted.WithLabelValues(role).Inc()
	m.sessions.WithLabelValues(role).Inc()
}

func (m *metrics) sessionEnded(role string) {
	if m == nil {
		return
	}
	m.sessions.WithLabelValues(role).Dec()
}

func (m *metrics) handshakeFailed(role, reason string) {
	if m == nil {
		return
	}
	if role != wire.RoleAgent && role != wire.RoleConnector {
		role = "unknown" // what the Hello said, when it said something else
	}
	m.handshakeFailures.WithLabelValues(role, reason).Inc()
}

func (m *metrics) tokenFailed(reason string) {
	if m == nil {
		return
	}
	m.tokenFailures.WithLabelValues(reason).Inc()
}

func (m *metrics) streamStarted() {
	if m != nil {
		m.streams.Inc()
	}
}

func (m *metrics) streamEnded() {
	if m != nil {
		m.streams.Dec()
	}
}

func (m *metrics) decided(allowed, cached bool, d time.Duration) {
	if m == nil {
		return
	}
	m.decisionCounters[b2i(allowed)][b2i(cached)].Inc()
	m.decisionSeconds.Observe(d.Seconds())
	m.stageDecision.Observe(d.Seconds())
}

// opened counts an open's outcome; rt is nil for a name the relay does not know.
func (m *metrics) opened(rt *route, code wire.Code) {
	if m == nil {
		return
	}
	switch bm := m.forRoute(rt); {
	case bm != nil && code == wire.CodeOK:
		bm.ok.Inc()
	case bm != nil && code == wire.CodeDenied:
		bm.denied.Inc()
	default:
		m.opens.WithLabelValues(bindingLabel(rt), CodeLabel(code)).Inc()
	}
	if code == wire.CodeDenied {
		m.denials.add(time.Now())
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// NoPermit is the policy label of a denial no forbid decided: no permit
// matched.
const NoPermit = "(no permit)"

// denied counts a policy denial by the policies that decided it. Policy
// IDs are the operator's, bounded by the policy files.
func (m *metrics) denied(rt *route, policies []string) {
	if m == nil {
		return
	}
	b := bindingLabel(rt)
	if len(policies) == 0 {
		m.denialsByPolicy.WithLabelValues(b, NoPermit).Inc()
	}
	for _, p := range policies {
		m.denialsByPolicy.WithLabelValues(b, p).Inc()
	}
}

// minuteCount counts events over the last minute, in one-second slots.
type minuteCount struct {
	mu    sync.Mutex
	secs  [60]int64 // the Unix second each slot counts
	count [60]uint64
}

func (c *minuteCount) add(now time.Time) {
	sec := now.Unix()
	i := sec % 60
	c.mu.Lock()
	if c.secs[i] != sec {
		c.secs[i], c.count[i] = sec, 0
	}
	c.count[i]++
	c.mu.Unlock()
}

func (c *minuteCount) total(now time.Time) uint64 {
	sec := now.Unix()
	c.mu.Lock()
	defer c.mu.Unlock()
	var n uint64
	for i := range c.secs {
		if sec-c.secs[i] < 60 {
			n += c.count[i]
		}
	}
	return n
}

func (m *metrics) connectorAnswered(d time.Duration) {
	if m != nil {
		m.stageConnector.Observe(d.Seconds())
	}
}

func (m *metrics) firstByte(d time.Duration) {
	if m != nil {
		m.stageFirstByte.Observe(d.Seconds())
	}
}

func (m *metrics) streamClosed(rt *route, up, down int64) {
	if m == nil {
		return
	}
	if bm := m.forRoute(rt); bm != nil {
		bm.up.Add(float64(up))
		bm.down.Add(float64(down))
		return
	}
	b := bindingLabel(rt)
	m.bytes.WithLabelValues(b, "up").Add(float64(up))
	m.bytes.WithLabelValues(b, "down").Add(float64(down))
}

// CodeLabel is a wire code as a metric label: its text in snake_case
// ("ok", "denied", "unknown_binding", "no_connector", "upstream_failure").
func CodeLabel(c wire.Code) string { return strings.ReplaceAll(c.Text(), " ", "_") }

func bindingLabel(rt *route) string {
	if rt == nil {
		return UnknownBinding
	}
	return rt.name
}

// auditHandler counts the audit events its handler takes, and those it
// fails to.
type auditHandler struct {
	slog.Handler
	m *metrics
}

func (h auditHandler) Handle(ctx context.Context, rec slog.Record) error {
	err := h.Handler.Handle(ctx, rec)
	if err != nil {
		h.m.auditErrors.Inc()
	} else if c := h.m.auditByEvent[rec.Message]; c != nil {
		c.Inc()
	} else {
		h.m.auditEvents.WithLabelValues(rec.Message).Inc()
	}
	return err
}

func (h auditHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return auditHandler{h.Handler.WithAttrs(attrs), h.m}
}

func (h auditHandler) WithGroup(name string) slog.Handler {
	return auditHandler{h.Handler.WithGroup(name), h.m}
}

// sampler collects, at each scrape, what the relay holds rather than
// counts: policies, the connectors of each binding, and the QUIC state of
// every live session (quic.Conn.ConnectionStats), so that none of it
// costs anything between scrapes.
type sampler struct{ r *Relay }

var (
	policiesDesc = prometheus.NewDesc("postern_relay_policies", "Policies in the set in force.", nil, nil)
	bindingDesc  = prometheus.NewDesc("postern_relay_binding_connectors", "Connectors serving each binding the relay knows.", []string{"binding"}, nil)
	rttDesc      = prometheus.NewDesc("postern_relay_quic_smoothed_rtt_seconds", "Smoothed RTT of live sessions, sampled at the scrape.", []string{"role"}, nil)
	cwndDesc     = prometheus.NewDesc("postern_relay_quic_congestion_window_bytes", "Congestion window of live sessions, sampled at the scrape.", []string{"role"}, nil)
	sentDesc     = prometheus.NewDesc("postern_relay_quic_packets_sent", "Packets sent, summed over live sessions.", []string{"role"}, nil)
	lostDesc     = prometheus.NewDesc("postern_relay_quic_packets_lost", "Packets declared lost, summed over live sessions.", []string{"role"}, nil)
)

var (
	rttBuckets  = []float64{0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1}
	cwndBuckets = []float64{16 << 10, 32 << 10, 64 << 10, 128 << 10, 256 << 10, 512 << 10, 1 << 20, 4 << 20, 16 << 20}
)

func (s *sampler) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{policiesDesc, bindingDesc, rttDesc, cwndDesc, sentDesc, lostDesc} {
		ch <- d
	}
}

// connStats is what the sampler reads of a session's connection; a
// connection that does not have it (not QUIC) is skipped.
type connStats interface {
	ConnectionStats() quic.ConnectionStats
}

func (s *sampler) Collect(ch chan<- prometheus.Metric) {
	r := s.r
	ch <- prometheus.MustNewConstMetric(policiesDesc, prometheus.GaugeValue, float64(r.policy.Set().Len()))
	type conn struct {
		role string
		c    connStats
	}
	r.mu.RLock()
	conns := make([]conn, 0, len(r.agents)+len(r.connectors))
	for a := range r.agents {
		if cs, ok := any(a.conn).(connStats); ok {
			conns = append(conns, conn{wire.RoleAgent, cs})
		}
	}
	for c := range r.connectors {
		if cs, ok := any(c.conn).(connStats); ok {
			conns = append(conns, conn{wire.RoleConnector, cs})
		}
	}
	for name, rt := range r.routes {
		ch <- prometheus.MustNewConstMetric(bindingDesc, prometheus.GaugeValue, float64(len(*rt.conns.Load())), name)
	}
	r.mu.RUnlock()
	for _, role := range []string{wire.RoleAgent, wire.RoleConnector} {
		rtt := newConstHist(rttBuckets)
		cwnd := newConstHist(cwndBuckets)
		var sent, lost uint64
		for _, c := range conns {
			if c.role != role {
				continue
			}
			st := c.c.ConnectionStats()
			rtt.observe(st.SmoothedRTT.Seconds())
			cwnd.observe(float64(st.CongestionWindow))
			sent += st.PacketsSent
			lost += st.PacketsLost
		}
		ch <- prometheus.MustNewConstHistogram(rttDesc, rtt.count, rtt.sum, rtt.buckets, role)
		ch <- prometheus.MustNewConstHistogram(cwndDesc, cwnd.count, cwnd.sum, cwnd.buckets, role)
		ch <- prometheus.MustNewConstMetric(sentDesc, prometheus.GaugeValue, float64(sent), role)
		ch <- prometheus.MustNewConstMetric(lostDesc, prometheus.GaugeValue, float64(lost), role)
	}
}

// constHist builds the cumulative buckets of a const histogram.
type constHist struct {
	bounds  []float64
	buckets map[float64]uint64
	count   uint64
	sum     float64
}

func newConstHist(bounds []float64) *constHist {
	h := &constHist{bounds: bounds, buckets: make(map[float64]uint64, len(bounds))}
	for _, b := range bounds {
		h.buckets[b] = 0
	}
	return h
}

func (h *constHist) observe(v float64) {
	h.count++
	h.sum += v
	for _, b := range h.bounds {
		if v <= b {
			h.buckets[b]++
		}
	}
}
