package bench

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"time"
)

// Report is everything a run measured; -json writes it.
type Report struct {
	Started time.Time         `json:"started"`
	Seconds float64           `json:"seconds"`
	Command string            `json:"command"`
	Machine Machine           `json:"machine"`
	Source  Source            `json:"source"`
	Options map[string]any    `json:"options"`
	Paths   []string          `json:"paths"`
	Skipped map[string]string `json:"skipped,omitempty"`
	// Metrics are the table's rows.
	Metrics []*metric `json:"metrics"`
	// Tests are the raw results of each test on each path.
	Tests    []testResult    `json:"tests"`
	Profiles []string        `json:"profiles,omitempty"`
	Scale    *scaleReport    `json:"scale,omitempty"`
	Attack   *attackReport   `json:"attack,omitempty"`
	Failover *failoverReport `json:"failover,omitempty"`
	Soak     *soakReport     `json:"soak,omitempty"`
	Errors   []string        `json:"errors,omitempty"`
	// LoadAvg is /proc/loadavg when the run started and when it ended:
	// other work on the machine shows there, and in the numbers.
	LoadAvg [2]string `json:"loadavg"`
}

// Source is the code that was measured.
type Source struct {
	Revision string `json:"revision,omitempty"`
	// Modified says the work tree had changes not committed.
	Modified bool `json:"modified"`
}

// source reads the revision from the build, or from git in the current
// directory (go run does not stamp it).
func source() Source {
	var s Source
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, kv := range bi.Settings {
			switch kv.Key {
			case "vcs.revision":
				s.Revision = kv.Value
			case "vcs.modified":
				s.Modified = kv.Value == "true"
			}
		}
	}
	if s.Revision != "" {
		return s
	}
	if out, err := exec.Command("git", "rev-parse", "HEAD").Output(); err == nil {
		s.Revision = strings.TrimSpace(string(out))
		if out, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil {
			s.Modified = len(strings.TrimSpace(string(out))) > 0
		}
	}
	return s
}

// Machine is what the numbers were measured on.
type Machine struct {
	CPU        string `json:"cpu"`
	Cores      int    `json:"cores"`
	Kernel     string `json:"kernel"`
	Go         string `json:"go"`
	QUICGo     string `json:"quic_go"`
	SSH        string `json:"ssh,omitempty"`
	PostgreSQL string `json:"postgresql,omitempty"`
}

type metric struct {
	Key    string             `json:"key"`
	Title  string             `json:"title"`
	Unit   string             `json:"unit"`
	Higher bool               `json:"higher_is_better"`
	Values map[string]float64 `json:"values"`
	// Spread is each path's minimum, median and maximum over the rounds.
	Spread map[string]*spread `json:"spread"`
	// Ratios are each path's value divided by direct's and by the bare
	// relay's; their spreads are those of the same ratio formed in each
	// round, of values measured close in time.
	VsDirect       map[string]float64 `json:"vs_direct,omitempty"`
	VsBare         map[string]float64 `json:"vs_bare,omitempty"`
	VsDirectSpread map[string]*spread `json:"vs_direct_spread,omitempty"`
	VsBareSpread   map[string]*spread `json:"vs_bare_spread,omitempty"`

	perRound map[string][]float64 // each path's value in each round
}

type testResult struct {
	Test    string    `json:"test"`
	Path    string    `json:"path"`
	MBps    []float64 `json:"mb_per_s,omitempty"`
	Median  float64   `json:"median_mb_per_s,omitempty"`
	Bytes   int64     `json:"bytes,omitempty"`
	Ops     int       `json:"ops,omitempty"`
	Seconds float64   `json:"seconds"`
	Latency *summary  `json:"latency,omitempty"`
	// CPU is each process's user+system CPU seconds during the test,
	// from /proc/<pid>/stat (10 ms resolution).
	CPU      map[string]float64 `json:"cpu_seconds"`
	CPUPerGB map[string]float64 `json:"cpu_seconds_per_gb,omitempty"`
	CPUPerOp map[string]float64 `json:"cpu_us_per_op,omitempty"`
	Load     *loadResult        `json:"load,omitempty"`
	Error    string             `json:"error,omitempty"`
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func (r *runner) report() *Report {
	rep := &Report{
		Started: r.started,
		Seconds: time.Since(r.started).Seconds(),
		Command: commandLine(r.o.args),
		Machine: machine(r.pgInfo),
		Source:  source(),
		Options: map[string]any{
			"quick": r.o.quick, "rounds": r.o.rounds, "bulk_mib": r.o.bulkMiB, "rtt": r.o.rttN, "opens": r.o.opensN,
			"load_seconds": r.o.loadSecs, "audit": r.o.audit, "extra_policies": r.o.policies, "ssh_cipher": r.o.sshCipher,
			"phases": r.o.phases, "scale": r.o.scale, "scale_rates": r.o.scaleRates, "scale_seconds": r.o.scaleSecs,
		},
		Skipped:  r.skipped,
		Profiles: r.profiles,
		Scale:    r.scale,
		Attack:   r.attack,
		Failover: r.failover,
		Soak:     r.soak,
		Errors:   r.errors,
		LoadAvg:  [2]string{r.loadStart, loadavg()},
	}
	for _, p := range r.paths {
		rep.Paths = append(rep.Paths, p.name)
	}
	for _, k := range r.order {
		a := r.accs[k]
		t := testResult{Test: k.phase, Path: k.path, MBps: a.mbps, Median: median(a.mbps), Bytes: a.bytes, Ops: a.ops,
			Seconds: a.secs, Latency: a.lat.summary(), CPU: map[string]float64{}, Load: a.load, Error: a.err}
		for name, d := range a.cpu {
			t.CPU[name] = d.Seconds()
			if a.bytes > 0 {
				if t.CPUPerGB == nil {
					t.CPUPerGB = map[string]float64{}
				}
				t.CPUPerGB[name] = d.Seconds() / (float64(a.bytes) / 1e9)
			}
			if a.ops > 0 {
				if t.CPUPerOp == nil {
					t.CPUPerOp = map[string]float64{}
				}
				t.CPUPerOp[name] = us(d) / float64(a.ops)
			}
		}
		rep.Tests = append(rep.Tests, t)
	}
	rep.Metrics = r.metrics()
	return rep
}

// cpuRoles are the CPU rows: a process of each path plays each.
var cpuRoles = []struct{ row, title string }{
	{"agent", "agent (this process; wireguard: the measuring child)"},
	{"relay", "relay (ssh: ssh client; wireguard: the agent's wireguard-go)"},
	{"connector", "connector (ssh: sshd; wireguard: the upstream's wireguard-go)"},
	{"upstream", "upstream"},
}

func roleOf(proc string) string {
	switch proc {
	case "ssh":
		return "relay"
	case "sshd":
		return "connector"
	}
	return proc
}

// spread is a metric's minimum, median and maximum over the rounds, each
// round's value computed as the metric's is (a latency percentile of the
// round's latencies alone, say).
type spread struct {
	Min    float64 `json:"min"`
	Median float64 `json:"median"`
	Max    float64 `json:"max"`
	Rounds int     `json:"rounds"`
}

// spreadOf is the spread of the values v of the rounds; a NaN is a round
// without a value.
func spreadOf(v []float64) *spread {
	v = slices.DeleteFunc(slices.Clone(v), math.IsNaN)
	if len(v) == 0 {
		return nil
	}
	return &spread{Min: slices.Min(v), Median: median(v), Max: slices.Max(v), Rounds: len(v)}
}

// getter returns a path's results of a test: pooled over the rounds, or
// one round's.
type getter func(phase string) *acc

// metricDef is a row of the table: how to read its value from a path's
// results.
type metricDef struct {
	key, title, unit string
	higher           bool
	value            func(p *path, get getter) (float64, bool)
}

func (r *runner) metricDefs() []metricDef {
	var defs []metricDef
	add := func(key, title, unit string, higher bool, value func(p *path, get getter) (float64, bool)) {
		defs = append(defs, metricDef{key, title, unit, higher, value})
	}
	ok := func(a *acc) bool { return a != nil && a.err == "" }
	for _, b := range bulkPhases {
		dir := "↓ download"
		if !b.down {
			dir = "↑ upload"
		}
		streams := "1 stream"
		if b.streams > 1 {
			streams = fmt.Sprintf("%d streams", b.streams)
		}
		add(b.name, fmt.Sprintf("bulk %s, %s", dir, streams), "MB/s", true, func(_ *path, get getter) (float64, bool) {
			a := get(b.name)
			if !ok(a) || len(a.mbps) == 0 {
				return 0, false
			}
			return median(a.mbps), true
		})
	}
	lat := func(phase string, q float64) func(*path, getter) (float64, bool) {
		return func(_ *path, get getter) (float64, bool) {
			a := get(phase)
			if !ok(a) || len(a.lat) == 0 {
				return 0, false
			}
			s := a.lat.summary()
			switch q {
			case 0.5:
				return s.P50, true
			case 0.99:
				return s.P99, true
			}
			return s.P999, true
		}
	}
	add("rtt-1k.p50", "1 KiB request/response, warm, p50", "us", false, lat("rtt-1k", 0.5))
	add("rtt-1k.p99", "1 KiB request/response, warm, p99", "us", false, lat("rtt-1k", 0.99))
	add("rtt-1k.p999", "1 KiB request/response, warm, p99.9", "us", false, lat("rtt-1k", 0.999))
	add("open.p50", "open + first byte back, p50", "us", false, lat("open", 0.5))
	add("open.p99", "open + first byte back, p99", "us", false, lat("open", 0.99))
	add("open.rate", "opens + first byte back, one after another", "opens/s", true, func(_ *path, get getter) (float64, bool) {
		a := get("open")
		if !ok(a) || a.secs == 0 {
			return 0, false
		}
		return float64(a.ops) / a.secs, true
	})
	// CPU per GB over all bulk tests together, per role.
	for _, role := range append(cpuRoles, struct{ row, title string }{"total", "all processes"}) {
		add("cpu-per-gb."+role.row, "CPU s/GB, "+role.title, "s/GB", false, func(p *path, get getter) (float64, bool) {
			if role.row != "total" && !hasRole(p, role.row) {
				return 0, false
			}
			var cpu time.Duration
			var bytes int64
			for _, b := range bulkPhases {
				a := get(b.name)
				if !ok(a) {
					return 0, false
				}
				bytes += a.bytes
				for name, d := range a.cpu {
					if role.row == "total" || roleOf(name) == role.row {
						cpu += d
					}
				}
			}
			if bytes == 0 {
				return 0, false
			}
			return cpu.Seconds() / (float64(bytes) / 1e9), true
		})
	}
	for _, role := range []string{"relay", "total"} {
		title := "CPU per 1 KiB round trip, relay (ssh: ssh client; wireguard: the agent's wireguard-go)"
		if role == "total" {
			title = "CPU per 1 KiB round trip, all processes"
		}
		add("cpu-per-rtt."+role, title, "us", false, func(_ *path, get getter) (float64, bool) {
			a := get("rtt-1k")
			if !ok(a) || a.ops == 0 {
				return 0, false
			}
			var cpu time.Duration
			found := false
			for name, d := range a.cpu {
				if role == "total" || roleOf(name) == role {
					cpu += d
					found = true
				}
			}
			return us(cpu) / float64(a.ops), found
		})
	}
	add("pg-select1.p50", "PostgreSQL SELECT 1, p50", "us", false, lat("pg-select1", 0.5))
	add("pg-select1.p99", "PostgreSQL SELECT 1, p99", "us", false, lat("pg-select1", 0.99))
	rate := func(phase string) func(*path, getter) (float64, bool) {
		return func(_ *path, get getter) (float64, bool) {
			a := get(phase)
			if !ok(a) || a.load == nil {
				return 0, false
			}
			return a.load.Achieved, true
		}
	}
	add("pg-tx8", "PostgreSQL TPC-B-like transactions, 8 clients", "tx/s", true, rate("pg-tx8"))
	add("fwd-select1.p50", "PostgreSQL SELECT 1, pgx, postern: through a postern forward port, p50", "us", false, lat("fwd-select1", 0.5))
	add("fwd-select1.p99", "PostgreSQL SELECT 1, pgx, postern: through a postern forward port, p99", "us", false, lat("fwd-select1", 0.99))
	add("fwd-sdk-select1.p50", "PostgreSQL SELECT 1, pgx, postern: dialing with the Go SDK (no forward), p50", "us", false, lat("fwd-sdk-select1", 0.5))
	add("fwd-sdk-select1.p99", "PostgreSQL SELECT 1, pgx, postern: dialing with the Go SDK (no forward), p99", "us", false, lat("fwd-sdk-select1", 0.99))
	add("fwd-pgbench", "pgbench -S, 1 client (postern: through postern forward)", "tx/s", true, rate("fwd-pgbench"))
	add("http-get.p50", "HTTP GET, 1 client, p50", "us", false, lat("http-get", 0.5))
	add("http-get.p99", "HTTP GET, 1 client, p99", "us", false, lat("http-get", 0.99))
	add("http-get8", "HTTP GETs, 8 clients", "GET/s", true, rate("http-get8"))
	return defs
}

// rounds is how many rounds p has results of for the test behind key
// (all tests of a key run in the same rounds).
func (r *runner) rounds(p *path, key string) int {
	phase, _, _ := strings.Cut(key, ".")
	switch {
	case strings.HasPrefix(key, "cpu-per-rtt."):
		phase = "rtt-1k"
	case strings.HasPrefix(key, "cpu-per-gb."):
		phase = bulkPhases[0].name
	}
	if a := r.accs[phaseKey{phase, p.name}]; a != nil {
		return len(a.runs)
	}
	return 0
}

func (r *runner) metrics() []*metric {
	var ms []*metric
	for _, d := range r.metricDefs() {
		m := &metric{Key: d.key, Title: d.title, Unit: d.unit, Higher: d.higher, Values: map[string]float64{}, Spread: map[string]*spread{}}
		perRound := map[string][]float64{}
		for _, p := range r.paths {
			pooled := func(phase string) *acc { return r.accs[phaseKey{phase, p.name}] }
			v, ok := d.value(p, pooled)
			if !ok {
				continue
			}
			m.Values[p.name] = v
			var vs []float64
			for i := range r.rounds(p, d.key) {
				round := func(phase string) *acc { return r.accs[phaseKey{phase, p.name}].round(i) }
				v, ok := d.value(p, round)
				if !ok {
					v = math.NaN() // kept, so that round i is vs[i] on every path
				}
				vs = append(vs, v)
			}
			perRound[p.name] = vs
			m.Spread[p.name] = spreadOf(vs)
		}
		m.perRound = perRound
		if len(m.Values) == 0 {
			continue
		}
		m.VsDirect, m.VsDirectSpread = ratios(m.Values, perRound, pathDirect, nil)
		m.VsBare, m.VsBareSpread = ratios(m.Values, perRound, pathBare, []string{pathDirect})
		ms = append(ms, m)
	}
	return ms
}

// ratios divides each path's value by base's, except base's own and
// skip's, and the values of each round by base's of the same round, for
// their spread.
func ratios(values map[string]float64, perRound map[string][]float64, base string, skip []string) (map[string]float64, map[string]*spread) {
	b, ok := values[base]
	if !ok || b == 0 {
		return nil, nil
	}
	out, sp := map[string]float64{}, map[string]*spread{}
	for p, v := range values {
		if p == base || slices.Contains(skip, p) {
			continue
		}
		out[p] = v / b
		pr, br := perRound[p], perRound[base]
		if len(pr) == 0 || len(pr) != len(br) {
			continue
		}
		rs := make([]float64, len(pr))
		for i := range pr {
			rs[i] = math.NaN()
			if br[i] != 0 {
				rs[i] = pr[i] / br[i] // NaN when either round has no value
			}
		}
		if s := spreadOf(rs); s != nil {
			sp[p] = s
		}
	}
	return out, sp
}

func hasRole(p *path, role string) bool {
	for _, pr := range p.procs {
		if roleOf(pr.name) == role {
			return true
		}
	}
	return false
}

func (r *runner) printTable(w io.Writer, rep *Report) {
	m := rep.Machine
	fmt.Fprintf(w, "- machine: %s, %d cores, Linux %s, %s, quic-go %s\n", m.CPU, m.Cores, m.Kernel, m.Go, m.QUICGo)
	var peers []string
	if m.SSH != "" {
		peers = append(peers, m.SSH)
	}
	if m.PostgreSQL != "" {
		peers = append(peers, "PostgreSQL "+m.PostgreSQL)
	}
	if len(peers) > 0 {
		fmt.Fprintf(w, "- peers: %s\n", strings.Join(peers, "; "))
	}
	if rev := rep.Source.Revision; rev != "" {
		fmt.Fprintf(w, "- source: revision %.12s", rev)
		if rep.Source.Modified {
			fmt.Fprintf(w, ", work tree modified")
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "- command: `%s`\n", rep.Command)
	fmt.Fprintf(w, "- load average (1, 5, 15 min): %s at start, %s at end; %s, %.0f s in all\n",
		rep.LoadAvg[0], rep.LoadAvg[1], rep.Started.UTC().Format(time.RFC3339), rep.Seconds)
	paths := rep.Paths
	type ratioCol struct{ path, vs, title string }
	var ratioCols []ratioCol
	for _, c := range []ratioCol{
		{pathPostern, pathDirect, "postern ÷ direct"},
		{pathPostern, pathBare, "postern ÷ bare"},
		{pathPostern, pathUngated, "postern ÷ nogate"},
		{pathObserved, pathPostern, "observed ÷ postern"},
		{pathPosternTCP, pathPostern, "tcp ÷ quic"},
		{pathBare, pathDirect, "bare ÷ direct"},
		{pathSSH, pathDirect, "ssh ÷ direct"},
		{pathWireGuard, pathDirect, "wireguard ÷ direct"},
		{pathPostern, pathWireGuard, "postern ÷ wireguard"},
	} {
		if slices.Contains(paths, c.path) && slices.Contains(paths, c.vs) {
			ratioCols = append(ratioCols, c)
		}
	}
	if len(rep.Metrics) > 0 {
		if r.o.rounds > 1 {
			fmt.Fprintf(w, "\nEach cell: the value, then the minimum–median–maximum over the %d rounds. Throughput "+
				"is the median of the rounds; a latency pools them, and its spread is of each round's own percentile; "+
				"a ratio's spread is of the ratio formed in each round, of values measured close in time.\n", r.o.rounds)
		}
		fmt.Fprintf(w, "\n| metric | unit |")
		for _, p := range paths {
			fmt.Fprintf(w, " %s |", p)
		}
		for _, c := range ratioCols {
			fmt.Fprintf(w, " %s |", c.title)
		}
		fmt.Fprintf(w, "\n|---|---|")
		for range len(paths) + len(ratioCols) {
			fmt.Fprintf(w, "---:|")
		}
		fmt.Fprintln(w)
		for _, m := range rep.Metrics {
			fmt.Fprintf(w, "| %s | %s |", m.Title, m.Unit)
			for _, p := range paths {
				if v, ok := m.Values[p]; ok {
					fmt.Fprintf(w, " %s%s |", num(v), spreadCell(m.Spread[p], num))
				} else {
					fmt.Fprintf(w, " – |")
				}
			}
			for _, c := range ratioCols {
				v, ok1 := m.Values[c.path]
				d, ok2 := m.Values[c.vs]
				if ok1 && ok2 && d != 0 {
					_, sp := ratios(map[string]float64{c.path: v, c.vs: d}, m.perRound, c.vs, nil)
					fmt.Fprintf(w, " %.2f×%s |", v/d, spreadCell(sp[c.path], func(v float64) string { return fmt.Sprintf("%.2f", v) }))
				} else {
					fmt.Fprintf(w, " – |")
				}
			}
			fmt.Fprintln(w)
		}
	}
	for _, p := range allPaths {
		if why, ok := rep.Skipped[p]; ok {
			fmt.Fprintf(w, "\n%s: skipped: %s\n", p, why)
		}
	}
	if rep.Scale != nil {
		rep.Scale.print(w)
	}
	if rep.Failover != nil {
		rep.Failover.print(w)
	}
	for _, e := range rep.Errors {
		fmt.Fprintf(w, "\nFAILED: %s\n", e)
	}
}

// spreadCell is " (min–median–max)" over several rounds, or "".
func spreadCell(s *spread, f func(float64) string) string {
	if s == nil || s.Rounds < 2 {
		return ""
	}
	return fmt.Sprintf(" (%s–%s–%s)", f(s.Min), f(s.Median), f(s.Max))
}

// num formats a value with about three significant digits.
func num(v float64) string {
	switch a := abs(v); {
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func abs(v float64) float64 {
	if v < 0 {
		return -v
	}
	return v
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func machine(pg string) Machine {
	m := Machine{Cores: runtime.NumCPU(), Go: runtime.Version(), PostgreSQL: pg}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				m.CPU = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "github.com/quic-go/quic-go" {
				m.QUICGo = d.Version
				if d.Replace != nil {
					m.QUICGo += " => " + d.Replace.Path + " " + d.Replace.Version
				}
			}
		}
	}
	if out, err := exec.Command("ssh", "-V").CombinedOutput(); err == nil {
		m.SSH = strings.TrimSpace(string(out))
	}
	return m
}

// loadavg returns the 1, 5 and 15 minute load averages.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// The lines between which -doc writes the tables.
const (
	docBegin = "<!-- postern-bench:begin -->"
	docEnd   = "<!-- postern-bench:end -->"
)

// updateDoc replaces what lies between docBegin and docEnd in the
// Markdown file path with text.
func updateDoc(path string, text []byte) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	i := bytes.Index(b, []byte(docBegin+"\n"))
	j := bytes.Index(b, []byte(docEnd))
	if i < 0 || j < i {
		return errors.New(path + ": no " + docBegin + " ... " + docEnd + " section to write the tables into")
	}
	var out bytes.Buffer
	out.Write(b[:i+len(docBegin)+1])
	out.Write(bytes.TrimSpace(text))
	out.WriteString("\n")
	out.Write(b[j:])
	return os.WriteFile(path, out.Bytes(), 0o644)
}

// commandLine is the command that ran, as a person would type it.
func commandLine(args []string) string {
	// go run builds the binary in a go-build directory; a binary built
	// by hand is named as it was run.
	prog := "go run ./cmd/postern-bench"
	if !strings.Contains(os.Args[0], "go-build") {
		prog = filepath.Base(os.Args[0])
	}
	return strings.TrimSpace(prog + " " + strings.Join(args, " "))
}
