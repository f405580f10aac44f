package bench

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/postern/postern/mesh/relay"
	"github.com/postern/postern/transport"
)

// options are the command's flags.
type options struct {
	quick      bool
	jsonPath   string
	rounds     int
	bulkMiB    int
	rttN       int
	opensN     int
	loadSecs   float64
	paths      []string
	phases     []string
	sshCipher  string
	audit      string
	policies   int
	profileDir string
	scale      []int
	attack     []string // attack phases to run (-attack)
	attackPin  bool     // place the attack test's processes on CPUs (-attack-pin)
	attackCtl  bool     // run each attack against a decoy relay first, and the agent beside a burner (-attack-control)
	scaleRates []float64
	scaleSecs  float64
	scaleProcs int
	relayFail  int
	keep       bool
	failover   bool
	soak       time.Duration
	doc        string
	verbose    bool
	args       []string

	observeScrape time.Duration // the postern-observed path's scrape interval
}

var allPaths = []string{pathDirect, pathBare, pathPostern, pathObserved, pathPosternTCP, pathUngated, pathSSH, pathWireGuard}

// defaultPaths are those measured without -paths: all but postern-observed,
// which is for its own comparison with postern.
var defaultPaths = []string{pathDirect, pathBare, pathPostern, pathPosternTCP, pathUngated, pathSSH, pathWireGuard}

const (
	phaseBulk = "bulk"
	phaseRTT  = "rtt"
	phaseOpen = "open"
	phasePG   = "pg"
	phaseHTTP = "http"
	// phaseForward: PostgreSQL through a postern forward port, against
	// direct (forward.go).
	phaseForward = "forward"
)

var allAttacks = []string{"initials", "nohello", "badtokens", "tcp-nohello", "tcp-badtokens"}

var allPhases = []string{phaseBulk, phaseRTT, phaseOpen, phasePG, phaseHTTP, phaseForward}

func parseFlags(args []string, usage io.Writer) (*options, error) {
	o := &options{args: args}
	fs := flag.NewFlagSet("postern-bench", flag.ContinueOnError)
	fs.SetOutput(usage)
	fs.Usage = func() {
		fmt.Fprint(usage, `Usage: postern-bench [flags]

Measures, side by side in one run, each endpoint in its own process:
direct TCP to the upstream, a bare QUIC relay built from quic-go alone,
Postern (agent -> relay -> connector -> upstream, with tokens, policy and
audit on), ssh -L through a temporary sshd (when ssh and sshd are
installed), and a wireguard-go tunnel between two network namespaces of
its own (as root, with /dev/net/tun). Prints a Markdown table with each
value's spread over the rounds and ratios to direct, to the bare relay
and to WireGuard.

Flags:
`)
		fs.PrintDefaults()
	}
	fs.BoolVar(&o.quick, "quick", false, "small sizes and one round: finishes in under a minute")
	fs.StringVar(&o.jsonPath, "json", "", "also write the results as JSON to this `file`")
	fs.IntVar(&o.rounds, "rounds", 0, "interleaved rounds of every test; throughput is the median, latencies are pooled (default 3, quick 1)")
	fs.IntVar(&o.bulkMiB, "bytes", 0, "MiB moved per bulk transfer (default 512, quick 64)")
	fs.IntVar(&o.rttN, "rtt", 0, "1 KiB round trips per round (default 20000, quick 5000)")
	fs.IntVar(&o.opensN, "opens", 0, "opens per round (default 2000, quick 500)")
	fs.Float64Var(&o.loadSecs, "load-seconds", 0, "seconds of each rate test: PostgreSQL transactions, HTTP GETs (default 10, quick 2)")
	pathList := fs.String("paths", strings.Join(defaultPaths, ","), "paths to measure (also "+pathObserved+": postern with metrics and 1% tracing on)")
	phaseList := fs.String("phases", strings.Join(allPhases, ","), "tests to run (none for only -scale)")
	fs.StringVar(&o.sshCipher, "ssh-cipher", "", "ssh -c cipher for the ssh path (default: ssh's own choice)")
	fs.StringVar(&o.audit, "audit", "file", "Postern relay audit trail: file (JSON lines in the work directory) or discard (JSON handler to io.Discard)")
	fs.IntVar(&o.policies, "policies", 0, "extra Cedar policies loaded in the Postern relay (that decide nothing for the bench agent)")
	fs.StringVar(&o.profileDir, "cpuprofile", "", "write CPU profiles (and, beside each, allocation profiles at its start and end) to this `dir`: the relays, connectors, tunnel endpoints and agents during an extra, unmeasured round of the bulk and 1 KiB RTT tests, and the relay while the scale test idles and opens")
	attackList := fs.String("attack", "", "comma-separated attack phases against a relay of its own with default limits, while an agent runs 1 KiB round trips: "+strings.Join(allAttacks, ",")+" (or all)")
	fs.BoolVar(&o.attackPin, "attack-pin", true, "in the attack test, give the relay the last CPU to itself and run the attacker under SCHED_IDLE on the others, beside the agent, connector and upstream, so that the attacker's own work does not take the agent's cores (as from another machine)")
	fs.BoolVar(&o.attackCtl, "attack-control", false, "in the attack test, run each phase first against a decoy relay placed with the attacker, while the agent's round trips go through the real one: what the attacker's presence on this machine costs the agent, which an attacker on another machine would not; and, before the phases, the agent beside a busy loop on every CPU under SCHED_IDLE: what any work at all on this machine costs its p99")
	scaleList := fs.String("scale", "", "comma-separated idle session counts (e.g. 1000,10000): run the scale test")
	rateList := fs.String("scale-rate", "5000", "comma-separated opens per second offered in the scale test, each an open-loop run")
	fs.Float64Var(&o.scaleSecs, "scale-seconds", 0, "seconds of each open-rate run in the scale test (default 10, quick 3)")
	fs.IntVar(&o.scaleProcs, "scale-per-proc", 2500, "idle sessions per client process in the scale test")
	fs.IntVar(&o.relayFail, "relayfail", 0, "rounds of the relay-failure test (relayfail.go): SIGKILL of a relay, timed to the first open through the other relay, to a download's Read error, and from its restart to the first open (0 skips it)")
	fs.StringVar(&o.doc, "doc", "", "also write the tables into this Markdown `file`, between the lines "+docBegin+" and "+docEnd)
	fs.BoolVar(&o.failover, "failover", false, "run the failover test (a connector killed with SIGKILL during opens and live streams) and the isolation test (round trips beside three unread 256 MiB downloads); see failover.go")
	fs.DurationVar(&o.soak, "soak", 0, "run the soak test (soak.go) for this `duration` (e.g. 3m): 20 agents opening and closing streams while a connector and a relay are killed and restarted; goroutines, RSS and fds at start, middle and end must stay flat (0 skips it)")
	fs.BoolVar(&o.keep, "keep", false, "keep the work directory (logs, audit trail, ssh keys)")
	fs.BoolVar(&o.verbose, "v", false, "print each measurement as it is taken")
	fs.DurationVar(&o.observeScrape, "observe-scrape", 15*time.Second, "how often the "+pathObserved+" path's relay and connector are scraped (/metrics)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	def := func(v *int, full, quick int) {
		if *v <= 0 {
			*v = full
			if o.quick {
				*v = quick
			}
		}
	}
	deff := func(v *float64, full, quick float64) {
		if *v <= 0 {
			*v = full
			if o.quick {
				*v = quick
			}
		}
	}
	def(&o.rounds, 3, 1)
	def(&o.bulkMiB, 512, 64)
	def(&o.rttN, 20000, 5000)
	def(&o.opensN, 2000, 500)
	deff(&o.loadSecs, 10, 2)
	deff(&o.scaleSecs, 10, 3)
	var err error
	if o.paths, err = list(*pathList, allPaths); err != nil {
		return nil, fmt.Errorf("-paths: %w", err)
	}
	if *phaseList != "none" {
		if o.phases, err = list(*phaseList, allPhases); err != nil {
			return nil, fmt.Errorf("-phases: %w", err)
		}
	}
	if *attackList == "all" {
		*attackList = strings.Join(allAttacks, ",")
	}
	if *attackList != "" {
		if o.attack, err = list(*attackList, allAttacks); err != nil {
			return nil, fmt.Errorf("-attack: %w", err)
		}
	}
	if *scaleList != "" {
		for _, f := range strings.Split(*scaleList, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n <= 0 {
				return nil, fmt.Errorf("-scale: %q is not a session count", f)
			}
			o.scale = append(o.scale, n)
		}
		slices.Sort(o.scale)
	}
	for _, f := range strings.Split(*rateList, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("-scale-rate: %q is not a rate", f)
		}
		o.scaleRates = append(o.scaleRates, v)
	}
	if o.observeScrape < 100*time.Millisecond {
		return nil, errors.New("-observe-scrape: at least 100ms")
	}
	if o.soak != 0 && o.soak < 10*time.Second {
		return nil, errors.New("-soak: at least 10s (a warm-up, then a third of the run after each restart)")
	}
	if o.audit != "file" && o.audit != "discard" {
		return nil, errors.New("-audit: want file or discard")
	}
	return o, nil
}

func list(s string, known []string) ([]string, error) {
	var out []string
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !slices.Contains(known, f) {
			return nil, fmt.Errorf("%q is not one of %s", f, strings.Join(known, ", "))
		}
		if !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	// The table's order, whatever the flag's.
	slices.SortFunc(out, func(a, b string) int { return slices.Index(known, a) - slices.Index(known, b) })
	return out, nil
}

// Main runs the bench with args (the flags, without the program name),
// printing progress to stderr and the table to stdout. It returns the
// exit code: 0, 1 when a measurement failed (an integrity check above
// all), 2 for bad flags.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "revoke" {
		return RevokeMain(args[1:], stdout, stderr)
	}
	// --help prints the usage to stdout, as every postern command does; a
	// bad flag prints it to stderr.
	var usage bytes.Buffer
	o, err := parseFlags(args, &usage)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			stdout.Write(usage.Bytes())
			return 0
		}
		stderr.Write(usage.Bytes())
		fmt.Fprintln(stderr, "postern-bench:", err)
		return 2
	}
	r := &runner{o: o, out: stdout, log: stderr, skipped: map[string]string{}, accs: map[phaseKey]*acc{}}
	stop := r.cleanupOnSignal()
	defer stop()
	err = r.run()
	if err != nil {
		fmt.Fprintln(stderr, "postern-bench:", err)
		return 1
	}
	if len(r.errors) > 0 {
		return 1
	}
	return 0
}

// runner is one run of the bench.
type runner struct {
	o         *options
	out, log  io.Writer
	dir       string
	started   time.Time
	loadStart string

	upstream *proc
	up       upstreamReady
	paths    []*path
	skipped  map[string]string
	// interrupted is set on a signal: the children are going, and what
	// fails from then on is not a measurement's failure.
	interrupted atomic.Bool
	stopMu      sync.Mutex
	stops       []func()
	cleanOnce   sync.Once
	keys        *meshKeys
	relayInfo   relayReady
	relay       *proc // Postern's
	pg          *pgServer
	pgErr       error
	pgInfo      string

	accs     map[phaseKey]*acc
	order    []phaseKey
	errors   []string
	profiles []string
	scale    *scaleReport
	attack   *attackReport
	// relayProcs is the GOMAXPROCS of the relays started while it is set
	// (the attack test's, placed on one CPU).
	relayProcs int
	failover   *failoverReport
	soak       *soakReport

	relayFailRounds []failRound

	selfProfile *os.File // the agent's CPU profile, while one is taken

	otlp    *otlpSink       // the collector of the postern-observed path
	tracing *switchProvider // the agent's tracer provider, on while postern-observed is measured
}

// onStop adds f to what cleanup does, first the last added.
func (r *runner) onStop(f func()) {
	r.stopMu.Lock()
	defer r.stopMu.Unlock()
	r.stops = append(r.stops, f)
}

// cleanup stops every child, removes the namespaces and the work
// directory, once: when the run ends, however it ends, or on a signal.
func (r *runner) cleanup() {
	r.cleanOnce.Do(func() {
		r.stopMu.Lock()
		stops := r.stops
		r.stops = nil
		r.stopMu.Unlock()
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
		if r.dir == "" {
			return
		}
		if r.o.keep {
			r.logf("work directory kept: %s", r.dir)
		} else {
			os.RemoveAll(r.dir)
		}
	})
}

// cleanupOnSignal runs cleanup and exits on SIGINT or SIGTERM, until
// the returned function is called. Ctrl-C reaches the children through
// the process group; the namespaces and the work directory need the
// driver.
func (r *runner) cleanupOnSignal() (stop func()) {
	sig := make(chan os.Signal, 1)
	done := make(chan struct{})
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		select {
		case s := <-sig:
			r.interrupted.Store(true)
			r.logf("postern-bench: %v: cleaning up", s)
			r.cleanup()
			os.Exit(130)
		case <-done:
		}
	}()
	return func() {
		signal.Stop(sig)
		close(done)
	}
}

func (r *runner) logf(format string, args ...any) {
	fmt.Fprintf(r.log, format+"\n", args...)
}

func (r *runner) run() (err error) {
	r.started = time.Now()
	r.loadStart = loadavg()
	r.dir, err = os.MkdirTemp("", "postern-bench-")
	if err != nil {
		return err
	}
	defer r.cleanup()
	if r.o.profileDir != "" {
		if err := os.MkdirAll(r.o.profileDir, 0o755); err != nil {
			return err
		}
	}
	if len(r.o.phases) > 0 {
		if err := r.setup(); err != nil {
			return err
		}
		ctx := context.Background()
		if r.o.profileDir != "" {
			r.profileRound(ctx)
		}
		for round := 1; round <= r.o.rounds; round++ {
			if r.o.rounds > 1 {
				r.logf("round %d of %d", round, r.o.rounds)
			}
			r.round(ctx, round)
		}
		r.bindingPhases(ctx)
		for _, p := range r.paths {
			p.close()
		}
	}
	if len(r.o.scale) > 0 {
		if err := r.runScale(context.Background()); err != nil {
			r.errors = append(r.errors, "scale: "+err.Error())
			r.logf("scale: %v", err)
		}
	}
	if len(r.o.attack) > 0 {
		if err := r.runAttack(context.Background()); err != nil {
			r.errors = append(r.errors, "attack: "+err.Error())
			r.logf("attack: %v", err)
		}
	}
	if r.o.relayFail > 0 {
		if err := r.runRelayFail(context.Background()); err != nil {
			r.errors = append(r.errors, "relayfail: "+err.Error())
			r.logf("relayfail: %v", err)
		}
	}
	if r.o.failover {
		if err := r.runFailover(context.Background()); err != nil {
			r.errors = append(r.errors, "failover: "+err.Error())
			r.logf("failover: %v", err)
		}
	}
	if r.o.soak > 0 {
		if err := r.runSoak(context.Background()); err != nil {
			r.errors = append(r.errors, "soak: "+err.Error())
			r.logf("soak: %v", err)
		}
	}
	rep := r.report()
	var table bytes.Buffer
	r.printTable(io.MultiWriter(r.out, &table), rep)
	printAttack(io.MultiWriter(r.out, &table), r.attack)
	printRelayFail(io.MultiWriter(r.out, &table), r.relayFailRounds)
	printSoak(io.MultiWriter(r.out, &table), r.soak)
	if r.o.doc != "" {
		if err := updateDoc(r.o.doc, table.Bytes()); err != nil {
			return err
		}
		r.logf("tables written into %s", r.o.doc)
	}
	if r.o.jsonPath != "" {
		if err := writeJSON(r.o.jsonPath, rep); err != nil {
			return err
		}
		r.logf("results written to %s", r.o.jsonPath)
	}
	return nil
}

func (r *runner) has(phase string) bool { return slices.Contains(r.o.phases, phase) }

// setup starts the upstream and every path's processes.
func (r *runner) setup() error {
	up, err := startChild(r.dir, "upstream", "upstream", struct{}{}, &r.up)
	if err != nil {
		return err
	}
	r.upstream = up
	r.onStop(up.stop)
	r.postgres()
	me := self()
	for _, name := range r.o.paths {
		var p *path
		var err error
		switch name {
		case pathDirect:
			p = tcpPath(pathDirect, r.up.Addr, []*proc{me, up})
		case pathBare:
			p, err = r.setupBare(me)
		case pathPostern:
			p, err = r.setupPostern(me)
		case pathUngated:
			p, err = r.setupUngated(me)
		case pathObserved:
			p, err = r.setupObserved(me)
		case pathPosternTCP:
			p, err = r.setupPosternTCP(me)
		case pathSSH:
			if why := sshMissing(); why != "" {
				r.skipped[pathSSH] = why
				r.logf("ssh -L: skipped: %s", why)
				continue
			}
			t, err := startSSH(r.dir, r.up.Addr, r.o.sshCipher)
			if err != nil {
				// Installed but not startable here (no privilege
				// separation user, say): not the bench's failure.
				r.skipped[pathSSH] = "could not start sshd and ssh -L: " + err.Error()
				r.logf("ssh -L: skipped: %v", err)
				continue
			}
			r.onStop(t.stop)
			p = tcpPath(pathSSH, t.addr, []*proc{me, t.ssh, t.sshd, up})
		case pathWireGuard:
			if why := wireguardMissing(); why != "" {
				r.skipped[pathWireGuard] = why
				r.logf("wireguard: skipped: %s", why)
				continue
			}
			wp, err := r.setupWireGuard()
			if err != nil {
				// Root with a TUN device, but no namespaces here (a
				// container without CAP_SYS_ADMIN, say).
				r.skipped[pathWireGuard] = "could not set up the namespaces and wireguard-go: " + err.Error()
				r.logf("wireguard: skipped: %v", err)
				continue
			}
			p = wp
		}
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		r.paths = append(r.paths, p)
	}
	return nil
}

func (r *runner) setupBare(me *proc) (*path, error) {
	var br bareRelayReady
	relay, err := startChild(r.dir, "bare-relay", "bare-relay", struct{}{}, &br)
	if err != nil {
		return nil, err
	}
	r.onStop(relay.stop)
	relay.name = "relay"
	conn, err := startChild(r.dir, "bare-connector", "bare-connector", bareConnectorConfig{Relay: br.Addr, Upstream: r.up.Addr}, &struct{}{})
	if err != nil {
		return nil, err
	}
	r.onStop(conn.stop)
	conn.name = "connector"
	return barePath(br.Addr, []*proc{me, relay, conn, r.upstream})
}

func (r *runner) setupPostern(me *proc) (*path, error) {
	if r.keys == nil {
		k, err := newMeshKeys()
		if err != nil {
			return nil, err
		}
		r.keys = k
	}
	relay, info, err := r.startRelay("relay")
	if err != nil {
		return nil, err
	}
	r.relay, r.relayInfo = relay, info
	svcs := []service{{Name: bindEcho, Kind: "tcp", Upstream: r.up.Addr}, {Name: bindHTTP, Kind: "http", Upstream: r.up.HTTP}}
	if pg := r.postgres(); pg != nil {
		svcs = append(svcs, *pg)
	}
	conn, err := r.startConnector("connector", info, svcs)
	if err != nil {
		return nil, err
	}
	return posternPath(pathPostern, info.Addr, info.Pin, r.keys.agent, "", []*proc{me, relay, conn, r.upstream})
}

// setupPosternTCP starts a relay listening on TCP only and a connector of
// its own, both (and the agent) on TLS over TCP: the same mesh as
// postern, on the transport for networks that drop UDP.
func (r *runner) setupPosternTCP(me *proc) (*path, error) {
	if r.keys == nil {
		k, err := newMeshKeys()
		if err != nil {
			return nil, err
		}
		r.keys = k
	}
	relay, info, err := r.startRelayOn("relay-tcp", transport.NetworkTCP)
	if err != nil {
		return nil, err
	}
	svcs := []service{{Name: bindEcho, Kind: "tcp", Upstream: r.up.Addr}, {Name: bindHTTP, Kind: "http", Upstream: r.up.HTTP}}
	p, err := startChild(r.dir, "connector-tcp", "connector", connectorConfig{Relay: info.Addr, Pin: info.Pin, Token: r.keys.connector, Services: svcs, Network: transport.NetworkTCP}, &struct{}{})
	if err != nil {
		return nil, err
	}
	r.onStop(p.stop)
	p.name = "connector"
	return posternPath(pathPosternTCP, info.Addr, info.Pin, r.keys.agent, transport.NetworkTCP, []*proc{me, relay, p, r.upstream})
}

// setupUngated starts a relay and a connector of their own, the
// connector with its gate off, serving the same upstreams as postern.
func (r *runner) setupUngated(me *proc) (*path, error) {
	if r.keys == nil {
		k, err := newMeshKeys()
		if err != nil {
			return nil, err
		}
		r.keys = k
	}
	relay, info, err := r.startRelay("relay-nogate")
	if err != nil {
		return nil, err
	}
	svcs := []service{{Name: bindEcho, Kind: "tcp", Upstream: r.up.Addr}, {Name: bindHTTP, Kind: "http", Upstream: r.up.HTTP}}
	if pg := r.postgres(); pg != nil {
		svcs = append(svcs, *pg)
	}
	conn, err := r.startConnectorWith("connector-nogate", info, svcs, true)
	if err != nil {
		return nil, err
	}
	p, err := posternPath(pathUngated, info.Addr, info.Pin, r.keys.agent, "", []*proc{me, relay, conn, r.upstream})
	if err != nil {
		return nil, err
	}
	p.bindingsOnly = true
	return p, nil
}

// streamPaths are the paths of the stream tests.
func (r *runner) streamPaths() []*path {
	var ps []*path
	for _, p := range r.paths {
		if !p.bindingsOnly {
			ps = append(ps, p)
		}
	}
	return ps
}

func (r *runner) startRelay(name string) (*proc, relayReady, error) {
	return r.startRelayOn(name, "")
}

// startRelayOn starts a relay listening as network says
// (transport.Config.Network).
func (r *runner) startRelayOn(name, network string) (*proc, relayReady, error) {
	return r.startRelayWith(name, network, relay.Limits{})
}

// startRelayWith starts a relay with limits (zero fields: its defaults).
func (r *runner) startRelayWith(name, network string, limits relay.Limits) (*proc, relayReady, error) {
	var info relayReady
	cfg := relayConfig{JWKS: r.keys.jwks, Policies: policies(r.o.policies), Network: network, Limits: limits, Procs: r.relayProcs}
	if r.o.audit == "file" {
		cfg.Audit = filepath.Join(r.dir, name+"-audit.jsonl")
	}
	p, err := startChild(r.dir, name, "relay", cfg, &info)
	if err != nil {
		return nil, info, err
	}
	r.onStop(p.stop)
	p.name = "relay"
	return p, info, nil
}

func (r *runner) startConnector(name string, info relayReady, svcs []service) (*proc, error) {
	return r.startConnectorWith(name, info, svcs, false)
}

func (r *runner) startConnectorWith(name string, info relayReady, svcs []service, ungated bool) (*proc, error) {
	p, err := startChild(r.dir, name, "connector", connectorConfig{Relay: info.Addr, Pin: info.Pin, Token: r.keys.connector, Services: svcs, Ungated: ungated}, &struct{}{})
	if err != nil {
		return nil, err
	}
	r.onStop(p.stop)
	p.name = "connector"
	return p, nil
}

// phaseKey names one test on one path.
type phaseKey struct{ phase, path string }

// acc accumulates one test on one path over the rounds: the pooled
// results, and each round's own in runs, for the spread.
type acc struct {
	mbps  []float64
	secs  float64
	bytes int64
	ops   int
	lat   latencies
	cpu   map[string]time.Duration
	err   string
	load  *loadResult
	runs  []*acc
}

func newAcc() *acc { return &acc{cpu: map[string]time.Duration{}} }

func (r *runner) acc(phase, path string) *acc {
	k := phaseKey{phase, path}
	a := r.accs[k]
	if a == nil {
		a = newAcc()
		r.accs[k] = a
		r.order = append(r.order, k)
	}
	return a
}

// add pools one round's results into a.
func (a *acc) add(rn *acc) {
	a.mbps = append(a.mbps, rn.mbps...)
	a.secs += rn.secs
	a.bytes += rn.bytes
	a.ops += rn.ops
	a.lat = append(a.lat, rn.lat...)
	for name, d := range rn.cpu {
		a.cpu[name] += d
	}
	if rn.load != nil {
		a.load = rn.load
	}
	a.runs = append(a.runs, rn)
}

// round returns round i's results alone (as the pooled ones are read),
// or nil.
func (a *acc) round(i int) *acc {
	if a == nil || i >= len(a.runs) {
		return nil
	}
	rn := a.runs[i]
	rn.err = a.err
	return rn
}

// measure runs f on p, accounting the CPU of p's processes to the test.
func (r *runner) measure(phase string, p *path, f func(a *acc, m *meter) error) {
	if p.name == pathObserved && r.tracing != nil {
		r.tracing.on.Store(true)
		defer r.tracing.on.Store(false)
	}
	r.measureOn(phase, p.name, p.procs, f)
}

// measureOn runs f as one round of the test phase on path. f records its
// results in a and has m sample the CPU of procs around exactly the
// operations it measures; if it does not, m samples around all of f.
func (r *runner) measureOn(phase, path string, procs []*proc, f func(a *acc, m *meter) error) {
	pooled := r.acc(phase, path)
	if pooled.err != "" {
		return // failed in an earlier round
	}
	rn := newAcc()
	m := newMeter(procs)
	s0 := sampleCPU(procs)
	err := f(rn, m)
	if m.used == nil {
		m.used = s0.since(procs)
	}
	for name, d := range m.used {
		rn.cpu[name] += d
	}
	if r.interrupted.Load() {
		select {} // cleanupOnSignal exits
	}
	if err != nil {
		pooled.err = err.Error()
		r.errors = append(r.errors, fmt.Sprintf("%s on %s: %v", phase, path, err))
		r.logf("%-12s %-10s FAILED: %v", phase, path, err)
		return
	}
	pooled.add(rn)
}

// bulkPhases are the throughput tests, in order.
var bulkPhases = []struct {
	name    string
	streams int
	down    bool
}{
	{"bulk-down-1", 1, true},
	{"bulk-up-1", 1, false},
	{"bulk-down-8", 8, true},
	{"bulk-up-8", 8, false},
}

// round runs every byte-moving test once on every path, path after path
// within each test, so that what is compared was measured close in time.
func (r *runner) round(ctx context.Context, round int) {
	if r.has(phaseBulk) {
		total := int64(r.o.bulkMiB) << 20
		for _, b := range bulkPhases {
			for _, p := range r.streamPaths() {
				r.measure(b.name, p, func(a *acc, m *meter) error {
					tctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
					defer cancel()
					out, err := runTest(tctx, p, testSpec{Test: testBulk, Streams: b.streams, Total: total, Down: b.down}, m)
					if err != nil {
						return err
					}
					mbps := float64(total) / out.Elapsed.Seconds() / 1e6
					a.mbps = append(a.mbps, mbps)
					a.secs += out.Elapsed.Seconds()
					a.bytes += total
					if r.o.verbose {
						r.logf("%-12s %-10s %8.1f MB/s", b.name, p.name, mbps)
					}
					return nil
				})
			}
		}
	}
	if r.has(phaseRTT) {
		for _, p := range r.streamPaths() {
			r.measure("rtt-1k", p, func(a *acc, m *meter) error {
				t0 := time.Now()
				out, err := runTest(ctx, p, testSpec{Test: testRTT, Size: 1024, Warm: max(100, r.o.rttN/20), N: r.o.rttN}, m)
				if err != nil {
					return err
				}
				a.secs += time.Since(t0).Seconds()
				a.ops += len(out.Lat)
				a.lat = append(a.lat, out.Lat...)
				if r.o.verbose {
					s := out.Lat.summary()
					r.logf("%-12s %-10s p50 %6.0f us  p99 %6.0f us  p99.9 %6.0f us", "rtt-1k", p.name, s.P50, s.P99, s.P999)
				}
				return nil
			})
		}
	}
	if r.has(phaseOpen) && round > 0 {
		for _, p := range r.streamPaths() {
			r.measure("open", p, func(a *acc, m *meter) error {
				t0 := time.Now()
				out, err := runTest(ctx, p, testSpec{Test: testOpen, Warm: 20, N: r.o.opensN}, m)
				if err != nil {
					return err
				}
				a.secs += time.Since(t0).Seconds()
				a.ops += len(out.Lat)
				a.lat = append(a.lat, out.Lat...)
				if r.o.verbose {
					s := out.Lat.summary()
					r.logf("%-12s %-10s p50 %6.0f us  p99 %6.0f us", "open", p.name, s.P50, s.P99)
				}
				return nil
			})
		}
	}
	if !r.o.verbose && round > 0 {
		r.logf("round %d done (%s)", round, time.Since(r.started).Round(time.Second))
	}
}

// profileRound is round 0: with -cpuprofile, the bulk and 1 KiB tests run
// once before the measured rounds with every bench process of every path
// profiled, and their numbers are dropped. No measured round runs a
// profiler, on any path.
func (r *runner) profileRound(ctx context.Context) {
	if !r.has(phaseBulk) && !r.has(phaseRTT) {
		return
	}
	r.logf("profiling round (not measured)")
	accs, order := r.accs, r.order
	r.accs, r.order = map[phaseKey]*acc{}, nil
	r.startProfiles()
	r.round(ctx, 0)
	r.stopProfiles()
	r.accs, r.order = accs, order
}

// profiled are the processes profiled with -cpuprofile: every bench
// child on a path but the upstreams (sshd and ssh are not Go programs).
func (r *runner) profiled() []*proc {
	var ps []*proc
	for _, p := range r.paths {
		for _, pr := range p.procs {
			if pr.stdin != nil && pr.name != "upstream" && !slices.Contains(ps, pr) {
				ps = append(ps, pr)
			}
		}
	}
	return ps
}

func (r *runner) profileFile(p *proc) string {
	for _, pa := range r.paths {
		if slices.Contains(pa.procs, p) {
			return filepath.Join(r.o.profileDir, pa.name+"-"+p.name+".pprof")
		}
	}
	return filepath.Join(r.o.profileDir, p.name+".pprof")
}

func (r *runner) startProfiles() {
	for _, p := range r.profiled() {
		f := r.profileFile(p)
		if err := p.command(cmdProfile+" "+f, &reply{}); err != nil {
			r.logf("profile: %v", err)
			continue
		}
		r.profiles = append(r.profiles, f)
	}
	f, err := os.Create(filepath.Join(r.o.profileDir, "agent.pprof"))
	if err == nil {
		if pprof.StartCPUProfile(f) == nil {
			r.selfProfile = f
			r.profiles = append(r.profiles, f.Name())
		} else {
			f.Close()
		}
	}
}

func (r *runner) stopProfiles() {
	for _, p := range r.profiled() {
		if err := p.command(cmdStopProfile, &reply{}); err != nil {
			r.logf("profile: %v", err)
		}
	}
	if r.selfProfile != nil {
		pprof.StopCPUProfile()
		r.selfProfile.Close()
		r.selfProfile = nil
	}
	r.logf("CPU profiles (bulk and 1 KiB RTT, the profiling round) in %s", r.o.profileDir)
}
