package telemetry

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Snapshot is one scrape of a /metrics page.
type Snapshot struct {
	At       time.Time
	Ready    string // the /readyz answer, trimmed: "ready", "not ready: ...", or why it could not be read
	families map[string]*dto.MetricFamily
}

// maxScrape caps what Scrape reads of a /metrics page.
const maxScrape = 16 << 20

// Scrape reads base's /metrics and /readyz. base is the server's URL,
// "http://host:port", with or without the /metrics path.
func Scrape(ctx context.Context, hc *http.Client, base string) (*Snapshot, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("status: %q is not an http URL (want http://HOST:PORT)", base)
	}
	u.Path = strings.TrimSuffix(strings.TrimSuffix(u.Path, "/"), "/metrics")
	root := u.String()
	body, code, err := get(ctx, hc, root+"/metrics")
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("status: %s/metrics answered %d", root, code)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("status: %s/metrics: %w", root, err)
	}
	s := &Snapshot{At: time.Now(), families: fams}
	if rb, _, err := get(ctx, hc, root+"/readyz"); err != nil {
		s.Ready = "unknown: " + err.Error()
	} else {
		s.Ready = strings.TrimSpace(rb)
	}
	return s, nil
}

func get(ctx context.Context, hc *http.Client, u string) (string, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", 0, fmt.Errorf("status: %w", err)
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := hc.Do(req)
	if err != nil {
		return "", 0, fmt.Errorf("status: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxScrape+1))
	if err != nil {
		return "", 0, fmt.Errorf("status: reading %s: %w", u, err)
	}
	if len(b) > maxScrape {
		return "", 0, fmt.Errorf("status: %s is larger than %d bytes", u, maxScrape)
	}
	return string(b), resp.StatusCode, nil
}

// IsRelay and IsConnector say whose page it is.
func (s *Snapshot) IsRelay() bool     { return s.families["postern_relay_sessions"] != nil }
func (s *Snapshot) IsConnector() bool { return s.families["postern_connector_relay_session"] != nil }

// sum adds up the values of name's series whose labels include match.
func (s *Snapshot) sum(name string, match map[string]string) float64 {
	f := s.families[name]
	if f == nil {
		return 0
	}
	var total float64
	for _, m := range f.Metric {
		if !matches(m, match) {
			continue
		}
		switch {
		case m.Counter != nil:
			total += m.Counter.GetValue()
		case m.Gauge != nil:
			total += m.Gauge.GetValue()
		case m.Untyped != nil:
			total += m.Untyped.GetValue()
		}
	}
	return total
}

func matches(m *dto.Metric, match map[string]string) bool {
	for k, v := range match {
		found := false
		for _, l := range m.Label {
			if l.GetName() == k && l.GetValue() == v {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.Label {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// histogram returns the cumulative buckets (upper bound -> count) and the
// count of name's series matching match, added up.
func (s *Snapshot) histogram(name string, match map[string]string) (map[float64]uint64, uint64) {
	f := s.families[name]
	out := map[float64]uint64{}
	var n uint64
	if f == nil {
		return out, 0
	}
	for _, m := range f.Metric {
		if m.Histogram == nil || !matches(m, match) {
			continue
		}
		n += m.Histogram.GetSampleCount()
		for _, b := range m.Histogram.Bucket {
			out[b.GetUpperBound()] += b.GetCumulativeCount()
		}
	}
	return out, n
}

// quantile estimates the q quantile of the observations between before
// (nil: since start) and after, as Prometheus's histogram_quantile does:
// linear within the bucket. ok is false with no observation.
func quantile(q float64, after map[float64]uint64, afterN uint64, before map[float64]uint64, beforeN uint64) (float64, bool) {
	n := afterN - beforeN
	if n == 0 {
		return 0, false
	}
	bounds := make([]float64, 0, len(after))
	for b := range after {
		bounds = append(bounds, b)
	}
	sort.Float64s(bounds)
	rank := q * float64(n)
	lower, prev := 0.0, uint64(0)
	for _, b := range bounds {
		c := after[b] - before[b]
		if float64(c) >= rank {
			if math.IsInf(b, 1) {
				return lower, true // beyond the last bound: its lower edge
			}
			if c == prev {
				return b, true
			}
			return lower + (b-lower)*(rank-float64(prev))/float64(c-prev), true
		}
		lower, prev = b, c
	}
	return lower, true
}

// Summarize writes a short summary of what happened between before and
// after, two scrapes of one relay's or connector's /metrics.
func Summarize(w io.Writer, before, after *Snapshot) {
	dt := after.At.Sub(before.At).Seconds()
	fmt.Fprintf(w, "readiness: %s\n", after.Ready)
	if after.IsRelay() {
		summarizeRelay(w, before, after, dt)
	}
	if after.IsConnector() {
		summarizeConnector(w, before, after, dt)
	}
	if !after.IsRelay() && !after.IsConnector() {
		fmt.Fprintln(w, "no postern_relay_* or postern_connector_* metrics on this page")
	}
}

func summarizeRelay(w io.Writer, before, after *Snapshot, dt float64) {
	fmt.Fprintln(w, "relay")
	fmt.Fprintf(w, "sessions: %d agents, %d connectors\n",
		int(after.sum("postern_relay_sessions", map[string]string{"role": "agent"})),
		int(after.sum("postern_relay_sessions", map[string]string{"role": "connector"})))
	if f := after.families["postern_relay_binding_connectors"]; f != nil && len(f.Metric) > 0 {
		var lines []string
		for _, m := range f.Metric {
			n := int(m.Gauge.GetValue())
			what := fmt.Sprintf("%d connectors", n)
			switch n {
			case 0:
				what = "no connector"
			case 1:
				what = "1 connector"
			}
			lines = append(lines, fmt.Sprintf("  %s: %s", label(m, "binding"), what))
		}
		slices.Sort(lines)
		fmt.Fprintf(w, "bindings served:\n%s\n", strings.Join(lines, "\n"))
	} else {
		fmt.Fprintln(w, "bindings served: none")
	}
	opens := after.sum("postern_relay_opens_total", nil) - before.sum("postern_relay_opens_total", nil)
	ok := after.sum("postern_relay_opens_total", map[string]string{"code": "ok"}) - before.sum("postern_relay_opens_total", map[string]string{"code": "ok"})
	fb := map[string]string{"stage": "first_byte"}
	ab, an := after.histogram("postern_relay_open_duration_seconds", fb)
	bb, bn := before.histogram("postern_relay_open_duration_seconds", fb)
	line := fmt.Sprintf("opens: %.1f/s over %.1fs (%.0f allowed, %.0f refused)", opens/dt, dt, ok, opens-ok)
	if p99, ok := quantile(0.99, ab, an, bb, bn); ok {
		line += fmt.Sprintf(", p99 to first byte %s", fmtSeconds(p99))
	} else if p99, ok := quantile(0.99, ab, an, nil, 0); ok {
		line += fmt.Sprintf(", p99 to first byte since start %s", fmtSeconds(p99))
	}
	fmt.Fprintln(w, line)
	fmt.Fprintf(w, "denials in the last minute: %d\n", int(after.sum("postern_relay_recent_denials", nil)))
}

func summarizeConnector(w io.Writer, before, after *Snapshot, dt float64) {
	fmt.Fprintln(w, "connector")
	if f := after.families["postern_connector_relay_session"]; f != nil {
		var lines []string
		for _, m := range f.Metric {
			state := "down"
			if m.Gauge.GetValue() > 0 {
				state = "up"
			}
			lines = append(lines, fmt.Sprintf("  %s: %s", label(m, "relay"), state))
		}
		slices.Sort(lines)
		fmt.Fprintf(w, "relay sessions:\n%s\n", strings.Join(lines, "\n"))
	}
	if f := after.families["postern_connector_streams"]; f != nil {
		var lines []string
		for _, m := range f.Metric {
			lines = append(lines, fmt.Sprintf("  %s: %d streams open", label(m, "binding"), int(m.Gauge.GetValue())))
		}
		slices.Sort(lines)
		fmt.Fprintf(w, "bindings served:\n%s\n", strings.Join(lines, "\n"))
	}
	streams := after.sum("postern_connector_streams_total", nil) - before.sum("postern_connector_streams_total", nil)
	fmt.Fprintf(w, "streams: %.1f/s over %.1fs\n", streams/dt, dt)
	allow := after.sum("postern_connector_decisions_total", map[string]string{"outcome": "allow"}) - before.sum("postern_connector_decisions_total", map[string]string{"outcome": "allow"})
	all := after.sum("postern_connector_decisions_total", nil) - before.sum("postern_connector_decisions_total", nil)
	fmt.Fprintf(w, "statements and requests: %.1f/s (%.0f allowed, %.0f refused)\n", all/dt, allow, all-allow)
	fails := after.sum("postern_connector_upstream_dial_failures_total", nil) - before.sum("postern_connector_upstream_dial_failures_total", nil)
	fmt.Fprintf(w, "upstream dial failures: %.0f\n", fails)
}

func fmtSeconds(s float64) string {
	return time.Duration(s * float64(time.Second)).Round(time.Microsecond).String()
}
