package bench

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"io"
	"math"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary be the bench's children too: the bench
// re-executes its own binary for each endpoint.
func TestMain(m *testing.M) {
	if handled, code := RunRole(os.Args); handled {
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// TestQuickRun runs the byte-moving tests with tiny sizes on direct, the
// bare relay and Postern, each endpoint in its own process, and checks
// that the instrument measured everything it should, every byte
// verified. It asserts nothing about the numbers.
func TestQuickRun(t *testing.T) {
	t.Parallel() // a run of processes of its own
	rep, stdout := runMain(t, "-quick", "-rounds", "2", "-paths", "direct,bare-quic,postern", "-phases", "bulk,rtt,open",
		"-bytes", "1", "-rtt", "200", "-opens", "30")
	if len(rep.Errors) > 0 {
		t.Fatalf("errors: %q", rep.Errors)
	}
	want := map[string]bool{}
	for _, b := range bulkPhases {
		want[b.name] = true
	}
	want["rtt-1k.p99"], want["open.p50"], want["cpu-per-gb.relay"] = true, true, true
	for _, m := range rep.Metrics {
		if !want[m.Key] {
			continue
		}
		delete(want, m.Key)
		for _, p := range []string{pathDirect, pathBare, pathPostern} {
			if _, ok := m.Values[p]; !ok && !(m.Key == "cpu-per-gb.relay" && p == pathDirect) {
				t.Errorf("metric %s has no value for %s", m.Key, p)
			}
		}
		if _, ok := m.VsBare[pathPostern]; !ok {
			t.Errorf("metric %s has no ratio of postern to the bare relay", m.Key)
		}
		if s := m.VsBareSpread[pathPostern]; s == nil || s.Rounds != 2 {
			t.Errorf("metric %s: spread of postern ÷ bare over the rounds: %+v", m.Key, s)
		}
	}
	for k := range want {
		t.Errorf("no metric %s", k)
	}
	for _, m := range rep.Metrics {
		for p := range m.Values {
			checkSpread(t, m.Key+" on "+p, m.Spread[p], 2)
		}
		if strings.HasPrefix(m.Key, "cpu-") {
			// A round's CPU, in 10 ms ticks, may be 0 at these sizes:
			// no ratio can be formed in that round.
			continue
		}
		for p := range m.VsDirect {
			checkSpread(t, m.Key+" ÷ direct on "+p, m.VsDirectSpread[p], 2)
		}
	}
	for _, r := range rep.Tests {
		if strings.HasPrefix(r.Test, "bulk-") && r.Bytes != 2<<20 {
			t.Errorf("%s on %s moved %d bytes in 2 rounds, want %d", r.Test, r.Path, r.Bytes, 2<<20)
		}
	}
	if !strings.Contains(stdout, "| postern ÷ bare |") {
		t.Errorf("no table with the ratio to the bare relay:\n%s", stdout)
	}
}

// checkSpread checks that a spread over rounds is there and in order.
func checkSpread(t *testing.T, what string, s *spread, rounds int) {
	t.Helper()
	if s == nil {
		t.Errorf("%s: no spread", what)
		return
	}
	if s.Rounds != rounds || !(s.Min <= s.Median && s.Median <= s.Max) {
		t.Errorf("%s: spread %+v, want %d rounds and min <= median <= max", what, s, rounds)
	}
}

// TestSpread covers what the runs cannot: a spread of several rounds in
// order, and ratios formed round by round.
func TestSpread(t *testing.T) {
	tests := []struct {
		name string
		v    []float64
		want *spread
	}{
		{"none", nil, nil},
		{"one", []float64{3}, &spread{3, 3, 3, 1}},
		{"odd, unsorted", []float64{5, 1, 3}, &spread{1, 3, 5, 3}},
		{"even", []float64{4, 1, 2, 10}, &spread{1, 3, 10, 4}},
		{"a round without a value", []float64{2, math.NaN(), 4}, &spread{2, 3, 4, 2}},
		{"no round with a value", []float64{math.NaN()}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := spreadOf(tt.v)
			if (got == nil) != (tt.want == nil) || got != nil && *got != *tt.want {
				t.Errorf("spreadOf(%v) = %+v, want %+v", tt.v, got, tt.want)
			}
		})
	}
	// Round by round, postern is twice direct though the rounds differ
	// fivefold: the ratio's spread is none at all.
	values := map[string]float64{pathDirect: 30, pathPostern: 60}
	perRound := map[string][]float64{pathDirect: {10, 50}, pathPostern: {20, 100}}
	r, sp := ratios(values, perRound, pathDirect, nil)
	if r[pathPostern] != 2 || sp[pathPostern] == nil || *sp[pathPostern] != (spread{2, 2, 2, 2}) {
		t.Errorf("ratios: %v, spread %+v", r, sp[pathPostern])
	}
	if _, ok := r[pathDirect]; ok {
		t.Errorf("ratio of direct to itself: %v", r)
	}
	// A round without a value on either side forms no ratio, and the
	// others stay paired round by round.
	perRound = map[string][]float64{pathDirect: {10, math.NaN(), 0, 40}, pathPostern: {20, 7, 5, math.NaN()}}
	_, sp = ratios(values, perRound, pathDirect, nil)
	if sp[pathPostern] == nil || *sp[pathPostern] != (spread{2, 2, 2, 1}) {
		t.Errorf("ratios with rounds missing: spread %+v, want only round 1's ratio 2", sp[pathPostern])
	}
}

// echoPath is a path to an in-process echo server that corrupts the
// answer to request number corrupt (from 0; -1 for none) and burns burn
// of CPU on each of the first busy requests.
func echoPath(t *testing.T, size, corrupt, busy int, burn time.Duration) *path {
	t.Helper()
	dial := func(context.Context) (benchConn, error) {
		c, s := net.Pipe()
		go func() {
			defer s.Close()
			var op [1]byte
			if _, err := io.ReadFull(s, op[:]); err != nil {
				return
			}
			buf := make([]byte, size)
			for i := 0; ; i++ {
				if _, err := io.ReadFull(s, buf); err != nil {
					return
				}
				if i < busy {
					for t0 := time.Now(); time.Since(t0) < burn; {
					}
				}
				if i == corrupt {
					buf[size/2] ^= 1
				}
				if _, err := s.Write(buf); err != nil {
					return
				}
			}
		}()
		return c, nil
	}
	return &path{name: "echo", procs: []*proc{self()}, dial: dial, open: dial, close: func() {}}
}

func TestRTTChecksEveryEcho(t *testing.T) {
	tests := []struct {
		name    string
		corrupt int
		fails   bool
	}{
		{"intact", -1, false},
		{"during the warm-up", 3, true},
		{"first measured", 10, true},
		{"in the middle", 17, true},
		{"last", 29, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lat, err := rtt(context.Background(), echoPath(t, 1024, tt.corrupt, 0, 0), 1024, 10, 20, nil)
			if (err != nil) != tt.fails {
				t.Fatalf("err = %v, want failure %v", err, tt.fails)
			}
			if err == nil && len(lat) != 20 {
				t.Errorf("%d latencies, want 20", len(lat))
			}
		})
	}
}

// TestMeterSkipsWarmUp: CPU spent on the warm-up round trips is not the
// measured round trips'.
func TestMeterSkipsWarmUp(t *testing.T) {
	p := echoPath(t, 1024, -1, 10, 30*time.Millisecond) // 300 ms of CPU in the warm-up
	m := newMeter(p.procs)
	if _, err := rtt(context.Background(), p, 1024, 10, 20, m); err != nil {
		t.Fatal(err)
	}
	if got := m.used["agent"]; got >= 150*time.Millisecond {
		t.Errorf("the measured round trips used %v of CPU: the warm-up's was counted", got)
	}
}

// TestProfileRound: -cpuprofile profiles every bench process of every
// path in a round of its own, whose numbers are not the measured ones.
func TestProfileRound(t *testing.T) {
	t.Parallel() // a run of processes of its own
	prof := filepath.Join(t.TempDir(), "prof")
	rep, _ := runMain(t, "-quick", "-paths", "direct,bare-quic", "-phases", "bulk,rtt", "-bytes", "1", "-rtt", "100",
		"-cpuprofile", prof)
	for _, f := range []string{"agent.pprof", "bare-quic-relay.pprof", "bare-quic-connector.pprof"} {
		if fi, err := os.Stat(filepath.Join(prof, f)); err != nil || fi.Size() == 0 {
			t.Errorf("profile %s: %v", f, err)
		}
	}
	for _, r := range rep.Tests {
		if strings.HasPrefix(r.Test, "bulk-") && r.Bytes != 1<<20 {
			t.Errorf("%s on %s counts %d bytes, want one measured round's %d", r.Test, r.Path, r.Bytes, 1<<20)
		}
		if r.Test == "rtt-1k" && r.Ops != 100 {
			t.Errorf("rtt-1k on %s counts %d round trips, want one measured round's 100", r.Path, r.Ops)
		}
	}
}

// TestScaleRun holds a few idle sessions and opens bindings at a low
// rate.
func TestScaleRun(t *testing.T) {
	t.Parallel() // a run of processes of its own
	rep, _ := runMain(t, "-quick", "-phases", "none", "-scale", "20", "-scale-per-proc", "10", "-scale-rate", "200", "-scale-seconds", "0.5")
	if rep.Scale == nil || len(rep.Scale.Points) != 1 {
		t.Fatalf("scale report: %+v", rep.Scale)
	}
	pt := rep.Scale.Points[0]
	if pt.Connected != 20 || pt.RelayAgents != 20+scaleOpeners {
		t.Errorf("connected %d sessions, relay counts %d agents; want 20 and %d", pt.Connected, pt.RelayAgents, 20+scaleOpeners)
	}
	if pt.RSS <= 0 || len(pt.Paced) != 1 || pt.Paced[0].Ops == 0 || pt.Paced[0].Errors != 0 {
		t.Errorf("scale point: %+v", pt)
	}
}

func TestPercentile(t *testing.T) {
	l := make(latencies, 1000)
	for i := range l {
		l[i] = time.Duration(i+1) * time.Microsecond // sorted: 1 us .. 1000 us
	}
	tests := []struct {
		name string
		q    float64
		want time.Duration
	}{
		{"p50", 0.5, 500 * time.Microsecond},
		{"p99", 0.99, 990 * time.Microsecond},
		{"p99.9", 0.999, 999 * time.Microsecond},
		{"max", 1, 1000 * time.Microsecond},
		{"min", 0, 1 * time.Microsecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := l.percentile(tt.q); got != tt.want {
				t.Errorf("percentile(%v) = %v, want %v", tt.q, got, tt.want)
			}
		})
	}
	if s := (latencies{3, 1, 2}).summary(); s.N != 3 || s.P50 != us(2) || s.Max != us(3) {
		t.Errorf("summary of unsorted latencies: %+v", s)
	}
}

func TestPatternSum(t *testing.T) {
	// The upstream's upload check and the driver's download check agree
	// with a plain SHA-256 of the pattern, across the block boundary.
	for _, n := range []int64{0, 1, ioSize, patternSize, patternSize + 12345} {
		var buf bytes.Buffer
		if err := writePattern(&buf, n); err != nil {
			t.Fatal(err)
		}
		if int64(buf.Len()) != n || sha256.Sum256(buf.Bytes()) != patternSum(n) {
			t.Errorf("pattern of %d bytes: wrote %d, sums differ", n, buf.Len())
		}
	}
}

func TestUpdateDoc(t *testing.T) {
	tests := []struct {
		name, doc, want string
		fails           bool
	}{
		{"replaces", "# B\n\n" + docBegin + "\nold\n" + docEnd + "\n\nreading\n", "# B\n\n" + docBegin + "\nnew table\n" + docEnd + "\n\nreading\n", false},
		{"empty section", docBegin + "\n" + docEnd + "\n", docBegin + "\nnew table\n" + docEnd + "\n", false},
		{"no markers", "# B\n", "# B\n", true},
		{"markers reversed", docEnd + "\n" + docBegin + "\n", docEnd + "\n" + docBegin + "\n", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "B.md")
			if err := os.WriteFile(p, []byte(tt.doc), 0o644); err != nil {
				t.Fatal(err)
			}
			err := updateDoc(p, []byte("\nnew table\n\n"))
			if (err != nil) != tt.fails {
				t.Fatalf("err = %v, want failure %v", err, tt.fails)
			}
			got, _ := os.ReadFile(p)
			if string(got) != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// runMain runs the bench with args and -json, fails the test unless it
// exits 0, and returns the report it wrote and what it printed.
func runMain(t *testing.T, args ...string) (Report, string) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "bench.json")
	var stdout, stderr bytes.Buffer
	if code := Main(append(args, "-json", out), &stdout, &stderr); code != 0 {
		t.Fatalf("exit code %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var rep Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	return rep, stdout.String()
}

// TestObservedRun measures postern and postern-observed (metrics and 1%
// tracing on) side by side, and reports their ratio.
func TestObservedRun(t *testing.T) {
	t.Parallel()
	rep, stdout := runMain(t, "-quick", "-paths", "postern,postern-observed", "-phases", "rtt,open", "-rtt", "200", "-opens", "30")
	if len(rep.Errors) > 0 {
		t.Fatalf("errors: %q", rep.Errors)
	}
	found := 0
	for _, m := range rep.Metrics {
		switch m.Key {
		case "rtt-1k.p99", "open.rate", "open.p99":
			found++
			for _, p := range []string{pathPostern, pathObserved} {
				if v, ok := m.Values[p]; !ok || v <= 0 {
					t.Errorf("metric %s on %s: %v", m.Key, p, v)
				}
			}
		}
	}
	if found != 3 {
		t.Errorf("found %d of the metrics rtt-1k.p99, open.rate, open.p99", found)
	}
	if !strings.Contains(stdout, "| observed ÷ postern |") {
		t.Errorf("no ratio of observed to postern:\n%s", stdout)
	}
}
