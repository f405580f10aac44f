package cli

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/postern/postern/internal/telemetry"
)

// observer is what a relay or a connector is observed with: a metrics
// registry when metrics.listen is set, and the trace pipeline the
// OTEL_EXPORTER_OTLP_* variables describe.
type observer struct {
	listen   string
	reg      *prometheus.Registry // nil: no metrics
	tp       trace.TracerProvider // nil: tracing off
	shutdown func(context.Context) error
	srv      *telemetry.Server
	log      *slog.Logger
}

func newObserver(ctx context.Context, service, listen string, log *slog.Logger) (*observer, error) {
	o := &observer{listen: listen, log: log}
	if listen != "" {
		o.reg = telemetry.NewRegistry()
	}
	tp, shutdown, err := telemetry.Tracing(ctx, service)
	if err != nil {
		return nil, err
	}
	o.tp, o.shutdown = tp, shutdown
	if tp != nil {
		log.Info(service + ": tracing: exporting spans over OTLP (OTEL_EXPORTER_OTLP_* variables)")
	}
	return o, nil
}

// registerer is what the relay's or the connector's Config.Metrics takes:
// nil when metrics are off (a nil *Registry would not be a nil interface).
func (o *observer) registerer() prometheus.Registerer {
	if o.reg == nil {
		return nil
	}
	return o.reg
}

// serve starts the /metrics, /healthz and /readyz listener, when
// metrics.listen is set.
func (o *observer) serve(ready func() error) error {
	if o.reg == nil {
		return nil
	}
	srv, err := telemetry.Serve(o.listen, o.reg, ready, o.log)
	if err != nil {
		return err
	}
	o.srv = srv
	return nil
}

// url is the metrics listener's base URL, "" when off.
func (o *observer) url() string {
	if o.srv == nil {
		return ""
	}
	return o.srv.URL()
}

// close stops the listener and flushes buffered spans.
func (o *observer) close() {
	if o.srv != nil {
		o.srv.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := o.shutdown(ctx); err != nil {
		o.log.Warn("tracing: flushing spans at exit", "err", err)
	}
}

// metricsField is the start-up line's metrics field: the listener's URL,
// or "off".
func metricsField(o *observer) string {
	if u := o.url(); u != "" {
		return u + "/metrics"
	}
	return "off"
}
