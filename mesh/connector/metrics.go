package connector

import (
	"context"
	"net"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/quic-go/quic-go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"

	"github.com/postern/postern/internal/wire"
)

// Metrics. With Config.Metrics set, the connector registers the
// collectors below on it; without, c.m is nil and every hook returns at
// once. Labels are bounded by the configuration: relay addresses from
// Config.Relays, binding names from Config.Services, actions from the
// fixed hierarchy (sql:*, http:*, "none" when a request was refused before
// it had one), decisions and reasons from fixed sets. Never a subject, a
// session or a statement.
//
//	postern_connector_relay_session{relay}                      gauge: 1 while a session with the relay is up
//	postern_connector_relay_sessions_started_total{relay}       counter
//	postern_connector_streams{binding}                          gauge: streams being served
//	postern_connector_streams_total{binding,code}               counter: streams by the answer to the relay's Dial
//	postern_connector_upstream_dial_duration_seconds{binding}   histogram: upstream dials (a PostgreSQL login included)
//	postern_connector_upstream_dial_failures_total{binding,reason} counter
//	postern_connector_decisions_total{binding,kind,action,outcome} counter: statement (kind sql) and request (kind http)
//	                                                            decisions; outcome allow, deny, refused, no_policy, ungated
//	postern_connector_decision_duration_seconds{kind}           histogram
//	postern_connector_quic_smoothed_rtt_seconds{relay}          gauge, sampled at each scrape
//	postern_connector_quic_congestion_window_bytes{relay}       gauge, sampled at each scrape
//	postern_connector_quic_packets_sent{relay}                  gauge, sampled at each scrape
//	postern_connector_quic_packets_lost{relay}                  gauge, sampled at each scrape

var latencyBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

type metrics struct {
	relaySession    *prometheus.GaugeVec
	relayStarted    *prometheus.CounterVec
	streams         *prometheus.GaugeVec
	streamsTotal    *prometheus.CounterVec
	dialSeconds     *prometheus.HistogramVec
	dialFailures    *prometheus.CounterVec
	decisions       *prometheus.CounterVec
	decisionSeconds *prometheus.HistogramVec
	services        map[string]*serviceMetrics // by service, made in newMetrics, read-only after
}

// serviceMetrics are one service's metrics of the common case, resolved
// once rather than looked up by label at every stream.
type serviceMetrics struct {
	streams prometheus.Gauge
	ok      prometheus.Counter
	dial    prometheus.Observer
}

func newMetrics(reg prometheus.Registerer, c *Connector) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	m := &metrics{
		relaySession: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "postern_connector_relay_session",
			Help: "1 while the connector has a session with the relay."}, []string{"relay"}),
		relayStarted: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "postern_connector_relay_sessions_started_total",
			Help: "Sessions the relay welcomed."}, []string{"relay"}),
		streams: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "postern_connector_streams",
			Help: "Streams being served, by binding."}, []string{"binding"}),
		streamsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "postern_connector_streams_total",
			Help: "Streams by binding and the code the connector answered the relay's Dial with."}, []string{"binding", "code"}),
		dialSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "postern_connector_upstream_dial_duration_seconds",
			Help: "Upstream dials by binding, a PostgreSQL login included.", Buckets: latencyBuckets}, []string{"binding"}),
		dialFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "postern_connector_upstream_dial_failures_total",
			Help: "Upstream dials that failed, by binding and reason."}, []string{"binding", "reason"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "postern_connector_decisions_total",
			Help: "Statement (sql) and request (http) decisions by binding, action and outcome."}, []string{"binding", "kind", "action", "outcome"}),
		decisionSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "postern_connector_decision_duration_seconds",
			Help: "Time to decide a statement or a request.", Buckets: []float64{1e-6, 5e-6, 1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 1e-2, 0.1, 1}}, []string{"kind"}),
	}
	for _, r := range c.cfg.Relays {
		m.relaySession.WithLabelValues(r)
		m.relayStarted.WithLabelValues(r)
	}
	m.services = make(map[string]*serviceMetrics, len(c.services))
	for name := range c.services {
		m.services[name] = &serviceMetrics{
			streams: m.streams.WithLabelValues(name),
			ok:      m.streamsTotal.WithLabelValues(name, "ok"),
			dial:    m.dialSeconds.WithLabelValues(name),
		}
	}
	for _, col := range []prometheus.Collector{m.relaySession, m.relayStarted, m.streams, m.streamsTotal,
		m.dialSeconds, m.dialFailures, m.decisions, m.decisionSeconds, &sampler{c: c}} {
		if err := reg.Register(col); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) relayUp(relay string, up bool) {
	if m == nil {
		return
	}
	v := 0.0
	if up {
		v = 1
		m.relayStarted.WithLabelValues(relay).Inc()
	}
	m.relaySession.WithLabelValues(relay).Set(v)
}

func (m *metrics) streamStarted(binding string) {
	if m != nil {
		m.services[binding].streams.Inc()
	}
}

func (m *metrics) streamEnded(binding string) {
	if m != nil {
		m.services[binding].streams.Dec()
	}
}

func (m *metrics) answered(binding string, code wire.Code) {
	if m == nil {
		return
	}
	if code == wire.CodeOK {
		m.services[binding].ok.Inc()
		return
	}
	m.streamsTotal.WithLabelValues(binding, strings.ReplaceAll(code.Text(), " ", "_")).Inc()
}

// upstreamDialed counts an upstream dial; reason is "" when it succeeded.
func (m *metrics) upstreamDialed(binding string, d time.Duration, reason string) {
	if m == nil {
		return
	}
	m.services[binding].dial.Observe(d.Seconds())
	if reason != "" {
		m.dialFailures.WithLabelValues(binding, reason).Inc()
	}
}

func (m *metrics) decided(binding, kind string, actions []string, outcome string, d time.Duration) {
	if m == nil {
		return
	}
	if len(actions) == 0 {
		m.decisions.WithLabelValues(binding, kind, "none", outcome).Inc()
	}
	for _, a := range actions {
		m.decisions.WithLabelValues(binding, kind, a, outcome).Inc()
	}
	m.decisionSeconds.WithLabelValues(kind).Observe(d.Seconds())
}

// instrumentDial wraps an upstream dial function with the dial's metrics
// and span.
func (c *Connector) instrumentDial(binding string, dial func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		ctx, span := c.tracer.Start(ctx, "postern.connector.upstream_dial", clientSpan...)
		start := time.Now()
		conn, err := dial(ctx, network, addr)
		reason := ""
		if err != nil {
			reason = upstreamFailure(binding, err).Reason
			span.SetStatus(codes.Error, reason)
			if span.IsRecording() {
				span.SetAttributes(attribute.String("postern.reason", reason))
			}
		}
		c.m.upstreamDialed(binding, time.Since(start), reason)
		span.End()
		return conn, err
	}
}

// sampler collects, at each scrape, the QUIC state of the session with
// each relay (quic.Conn.ConnectionStats).
type sampler struct{ c *Connector }

var (
	rttDesc  = prometheus.NewDesc("postern_connector_quic_smoothed_rtt_seconds", "Smoothed RTT of the session with the relay, sampled at the scrape.", []string{"relay"}, nil)
	cwndDesc = prometheus.NewDesc("postern_connector_quic_congestion_window_bytes", "Congestion window of the session with the relay, sampled at the scrape.", []string{"relay"}, nil)
	sentDesc = prometheus.NewDesc("postern_connector_quic_packets_sent", "Packets sent on the session with the relay.", []string{"relay"}, nil)
	lostDesc = prometheus.NewDesc("postern_connector_quic_packets_lost", "Packets declared lost on the session with the relay.", []string{"relay"}, nil)
)

func (s *sampler) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{rttDesc, cwndDesc, sentDesc, lostDesc} {
		ch <- d
	}
}

// connStats is what the sampler reads of a session's connection; a
// connection that does not have it (not QUIC) is skipped.
type connStats interface {
	ConnectionStats() quic.ConnectionStats
}

func (s *sampler) Collect(ch chan<- prometheus.Metric) {
	s.c.mu.Lock()
	conns := make(map[string]connStats, len(s.c.conns))
	for relay, conn := range s.c.conns {
		if cs, ok := conn.(connStats); ok {
			conns[relay] = cs
		}
	}
	s.c.mu.Unlock()
	for relay, cs := range conns {
		st := cs.ConnectionStats()
		ch <- prometheus.MustNewConstMetric(rttDesc, prometheus.GaugeValue, st.SmoothedRTT.Seconds(), relay)
		ch <- prometheus.MustNewConstMetric(cwndDesc, prometheus.GaugeValue, float64(st.CongestionWindow), relay)
		ch <- prometheus.MustNewConstMetric(sentDesc, prometheus.GaugeValue, float64(st.PacketsSent), relay)
		ch <- prometheus.MustNewConstMetric(lostDesc, prometheus.GaugeValue, float64(st.PacketsLost), relay)
	}
}
