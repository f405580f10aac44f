package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/postern/postern/internal/config"
	"github.com/postern/postern/mesh"
	"github.com/postern/postern/mesh/relay"
)

// The soak test (-soak DURATION): the relay-failure test's mesh (two
// relays and two connectors, each its own process, every connector on
// both relays) and soakAgents agents in this process, each its own
// mesh.Client with both relays (half of them relay 0 first, half relay 1
// first), each in a loop: open bench-echo, a 64-byte round trip, close,
// a short pause. At a third of the run connector 0 is killed with
// SIGKILL and started again; at two thirds relay 1, on the same address.
//
// The goroutines, RSS and open file descriptors of every process are
// sampled three times: after the warm-up (start), halfway (between the
// two restarts) and at the end (a third of the run after the relay's
// restart). The agents are paused for each sample, so that streams under
// way at that instant do not count: what is left is what the sessions
// hold, and what a leak would add to: each sample waits until the echo
// upstream has no connection left open, then half a second more.
//
// Flat is judged on each role's total (the relays, the connectors, the
// driver), not on each process: after a relay restart the agents that
// were on it stay on the other, which moves sessions from one relay to
// the other without adding any. The tolerances, end against start:
// goroutines +20% or +20 (whichever is larger: a session's goroutines
// come and go with its keepalives and handshakes), file descriptors +10
// (one socket per session; a leak of one per open would be thousands),
// RSS +50% (Go's collector lets the heap grow to twice what is live
// before it runs, so two samples of the same live heap differ by tens of
// percent; a leak of a few hundred bytes per open is tens of MiB), and
// for the relays the garbage collector's floor of headroom besides, per
// relay (gc_headroom_mib: a relay's heap may sit that far above what is
// live whatever its size).

const (
	soakAgents = 20
	soakPause  = 5 * time.Millisecond
)

// soakSample is one process's figures at one instant.
type soakSample struct {
	Goroutines int   `json:"goroutines"`
	RSS        int64 `json:"rss"`
	FDs        int   `json:"fds"`
}

// soakPhase counts the opens of one third of the run.
type soakPhase struct {
	OK     int64 `json:"ok"`
	Failed int64 `json:"failed"`
	Trips  int64 `json:"failed_round_trips"`
}

type soakReport struct {
	Duration time.Duration `json:"duration_ns"`
	// Procs names the processes in order; Samples[i][j] is process j at
	// sample i (start, middle, end).
	Procs   []string          `json:"procs"`
	Roles   []string          `json:"roles"`
	Samples [3][]soakSample   `json:"samples"`
	Phases  [3]soakPhase      `json:"phases"`
	Errors  []string          `json:"errors"`
	Flat    bool              `json:"flat"`
	Verdict []string          `json:"verdict"`
	Events  map[string]string `json:"events"`
}

// soakLoad is the agents' loop and its counters.
type soakLoad struct {
	gate   sync.RWMutex // held for reading by each iteration; a sample holds it to pause them
	phase  atomic.Int32
	ok     [3]atomic.Int64
	failed [3]atomic.Int64
	trips  [3]atomic.Int64
	mu     sync.Mutex
	errs   []string
}

func (l *soakLoad) fail(counter *[3]atomic.Int64, err error) {
	counter[l.phase.Load()].Add(1)
	l.mu.Lock()
	if len(l.errs) < 8 {
		l.errs = append(l.errs, time.Now().UTC().Format("15:04:05.000")+" "+err.Error())
	}
	l.mu.Unlock()
}

func (l *soakLoad) run(ctx context.Context, c *mesh.Client) {
	msg := []byte("soak: 64 bytes of a round trip, echoed back by the upstream.....")
	got := make([]byte, len(msg))
	for ctx.Err() == nil {
		l.gate.RLock()
		octx, cancel := context.WithTimeout(ctx, 10*time.Second)
		conn, err := c.Dial(octx, "tcp", bindEcho)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				l.fail(&l.failed, err)
			}
		} else {
			l.ok[l.phase.Load()].Add(1)
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			_, err := conn.Write(msg)
			if err == nil {
				_, err = io.ReadFull(conn, got)
			}
			if err == nil && string(got) != string(msg) {
				err = fmt.Errorf("echo came back wrong: %q", got)
			}
			if err != nil && ctx.Err() == nil {
				l.fail(&l.trips, err)
			}
			conn.Close()
		}
		l.gate.RUnlock()
		time.Sleep(soakPause)
	}
}

func (r *runner) runSoak(ctx context.Context) error {
	d := r.o.soak
	// The echo upstream counts its open connections: a sample waits for
	// none, every stream closed end to end, so that the driver's fds are
	// its sessions' and not the upstream's connections still closing.
	var upstreamConns atomic.Int64
	m, connTok, err := r.startFailMesh(func(c net.Conn) {
		upstreamConns.Add(1)
		defer upstreamConns.Add(-1)
		echoConn(c)
		c.Close()
	})
	if err != nil {
		return err
	}
	defer m.stopRelays()
	connCfg := failConnectorConfig{Relays: m.addrs(), Pin: m.pin, Token: connTok,
		Services: []service{{Name: bindEcho, Kind: "tcp", Upstream: m.echo}, {Name: bindBulk, Kind: "tcp", Upstream: m.bulk}}}
	startConn := func(i int) error {
		p, err := startChild(r.dir, fmt.Sprintf("soak-connector-%d", i), "fail-connector", connCfg, &struct{}{})
		if err != nil {
			return err
		}
		m.conns[i] = p
		return nil
	}
	m.conns = make([]*proc, 2)
	defer func() {
		for _, p := range m.conns {
			if p != nil {
				p.stop()
			}
		}
	}()
	for i := range 2 {
		if err := startConn(i); err != nil {
			return err
		}
	}
	for i := range 2 {
		if _, err := m.soakConnectorsOn(i, time.Minute); err != nil {
			return err
		}
	}

	var clients []*mesh.Client
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	for i := range soakAgents {
		relays := m.addrs()
		if i%2 == 1 {
			relays = []string{relays[1], relays[0]}
		}
		c, err := m.client(relays...)
		if err != nil {
			return err
		}
		clients = append(clients, c)
		if err := c.Connect(ctx); err != nil {
			return fmt.Errorf("agent %d: %w", i, err)
		}
	}

	rep := &soakReport{Duration: d, Events: map[string]string{}}
	load := &soakLoad{}
	lctx, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Add(1)
		go func() { defer wg.Done(); load.run(lctx, c) }()
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			stopLoad()
			wg.Wait()
		}
	}
	defer stop()

	began := time.Now()
	at := func(f float64) time.Time { return began.Add(time.Duration(f * float64(d))) }
	warm := max(d/12, 2*time.Second)
	sleepUntil := func(t time.Time) { time.Sleep(time.Until(t)) }
	sample := func(i int) error {
		load.gate.Lock()
		defer load.gate.Unlock()
		for wait := time.Now().Add(10 * time.Second); upstreamConns.Load() > 0 && time.Now().Before(wait); {
			time.Sleep(10 * time.Millisecond)
		}
		if n := upstreamConns.Load(); n > 0 {
			r.logf("soak: sample %d: %d upstream connections still open 10s after the agents paused", i, n)
		}
		time.Sleep(500 * time.Millisecond) // closed streams' goroutines end
		procs := []*proc{self()}
		procs = append(procs, m.relays...)
		procs = append(procs, m.conns...)
		names := []string{"driver (20 agents)", "relay-0", "relay-1", "connector-0", "connector-1"}
		roles := []string{"driver", "relays", "relays", "connectors", "connectors"}
		rep.Procs, rep.Roles = names, roles
		var row []soakSample
		for j, p := range procs {
			var s soakSample
			var err error
			if j == 0 {
				s.Goroutines = runtime.NumGoroutine()
			} else {
				var st childStats
				if err := p.command(cmdStats, &st); err != nil {
					return err
				}
				s.Goroutines = st.Goroutines
			}
			if s.RSS, err = p.rss(); err != nil {
				return err
			}
			if s.FDs, err = openFDs(p.pid); err != nil {
				return err
			}
			row = append(row, s)
		}
		rep.Samples[i] = row
		r.logf("soak: sample %d at %s: %v", i, time.Since(began).Round(time.Second), row)
		return nil
	}

	sleepUntil(began.Add(warm))
	if err := sample(0); err != nil {
		return err
	}
	sleepUntil(at(1.0 / 3))
	load.phase.Store(1)
	if err := m.soakKillConnector(0); err != nil {
		return err
	}
	killed := time.Now()
	if err := startConn(0); err != nil {
		return err
	}
	back, err := m.soakConnectorsOn(0, time.Minute)
	if err != nil {
		return err
	}
	if _, err := m.soakConnectorsOn(1, time.Minute); err != nil {
		return err
	}
	rep.Events["connector-0 SIGKILL → back on both relays"] = msText(back.Sub(killed))
	sleepUntil(at(0.5))
	if err := sample(1); err != nil {
		return err
	}
	sleepUntil(at(2.0 / 3))
	load.phase.Store(2)
	killed, err = m.kill9(1)
	if err != nil {
		return err
	}
	if err := m.startRelay(1); err != nil {
		return err
	}
	if back, err = m.soakConnectorsOn(1, time.Minute); err != nil {
		return err
	}
	rep.Events["relay-1 SIGKILL → restarted, both connectors on it"] = msText(back.Sub(killed))
	sleepUntil(at(1))
	if err := sample(2); err != nil {
		return err
	}
	stop()
	for i := range 3 {
		rep.Phases[i] = soakPhase{OK: load.ok[i].Load(), Failed: load.failed[i].Load(), Trips: load.trips[i].Load()}
	}
	rep.Errors = load.errs
	rep.judge()
	r.soak = rep
	if !rep.Flat {
		return fmt.Errorf("not flat: %s", strings.Join(rep.Verdict, "; "))
	}
	return nil
}

// soakConnectorsOn waits until relay i routes bench-echo to exactly the
// two connectors (a killed connector's session counts until the relay
// notices its silence).
func (m *failMesh) soakConnectorsOn(i int, within time.Duration) (time.Time, error) {
	deadline := time.Now().Add(within)
	for {
		var st struct {
			Extra relay.Stats `json:"extra"`
		}
		if err := m.relays[i].command(cmdStats, &st); err != nil {
			return time.Time{}, err
		}
		if st.Extra.Bindings[bindEcho] == 2 {
			return time.Now(), nil
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("relay-%d routes bench-echo to %d connectors after %s, want 2", i, st.Extra.Bindings[bindEcho], within)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (m *failMesh) soakKillConnector(i int) error {
	p := m.conns[i]
	m.conns[i] = nil
	if err := p.cmd.Process.Kill(); err != nil {
		return err
	}
	<-p.exited
	return nil
}

func openFDs(pid int) (int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(ents), err
}

// judge sets Flat and Verdict: each role's total at the end against the
// start, with the tolerances of the comment at the top.
func (rep *soakReport) judge() {
	rep.Flat = true
	total := func(i int, role string) (s soakSample) {
		for j, r := range rep.Roles {
			if r == role {
				s.Goroutines += rep.Samples[i][j].Goroutines
				s.RSS += rep.Samples[i][j].RSS
				s.FDs += rep.Samples[i][j].FDs
			}
		}
		return s
	}
	for _, role := range []string{"driver", "relays", "connectors"} {
		a, z := total(0, role), total(2, role)
		check := func(what string, start, end, limit int64) {
			ok := end <= limit
			if !ok {
				rep.Flat = false
			}
			verdict := "flat"
			if !ok {
				verdict = "GREW"
			}
			rep.Verdict = append(rep.Verdict, fmt.Sprintf("%s %s %d → %d (limit %d): %s", role, what, start, end, limit, verdict))
		}
		g := int64(a.Goroutines)
		check("goroutines", g, int64(z.Goroutines), g+max(g/5, 20))
		check("fds", int64(a.FDs), int64(z.FDs), int64(a.FDs)+10)
		limit := a.RSS + a.RSS/2
		if role == "relays" {
			limit += int64(count(rep.Roles, role)) * config.DefaultGCHeadroom
		}
		check("RSS KiB", a.RSS>>10, z.RSS>>10, limit>>10)
	}
}

func count(roles []string, role string) (n int) {
	for _, r := range roles {
		if r == role {
			n++
		}
	}
	return n
}

// printSoak prints the soak test's table.
func printSoak(w io.Writer, rep *soakReport) {
	if rep == nil {
		return
	}
	fmt.Fprintf(w, "\nSoak, %s: %d agents opening, 64 B round trip, closing; connector-0 SIGKILL+restart at 1/3, relay-1 SIGKILL+restart at 2/3:\n\n", rep.Duration, soakAgents)
	fmt.Fprintln(w, "| process | goroutines start / mid / end | RSS MiB start / mid / end | fds start / mid / end |")
	fmt.Fprintln(w, "|---|---|---|---|")
	for j, name := range rep.Procs {
		s := func(i int) soakSample { return rep.Samples[i][j] }
		mib := func(b int64) string { return fmt.Sprintf("%.1f", float64(b)/(1<<20)) }
		fmt.Fprintf(w, "| %s | %d / %d / %d | %s / %s / %s | %d / %d / %d |\n", name,
			s(0).Goroutines, s(1).Goroutines, s(2).Goroutines,
			mib(s(0).RSS), mib(s(1).RSS), mib(s(2).RSS),
			s(0).FDs, s(1).FDs, s(2).FDs)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| third of the run | opens ok | opens failed | round trips failed |")
	fmt.Fprintln(w, "|---|---|---|---|")
	for i, name := range []string{"first (warm-up, start sample)", "second (connector-0 restarted; middle sample)", "third (relay-1 restarted; end sample)"} {
		p := rep.Phases[i]
		fmt.Fprintf(w, "| %s | %d | %d | %d |\n", name, p.OK, p.Failed, p.Trips)
	}
	fmt.Fprintln(w)
	for _, k := range []string{"connector-0 SIGKILL → back on both relays", "relay-1 SIGKILL → restarted, both connectors on it"} {
		fmt.Fprintf(w, "- %s: %s\n", k, rep.Events[k])
	}
	for _, v := range rep.Verdict {
		fmt.Fprintf(w, "- %s\n", v)
	}
	verdict := "flat"
	if !rep.Flat {
		verdict = "NOT FLAT"
	}
	fmt.Fprintf(w, "- verdict: %s\n", verdict)
	for _, e := range rep.Errors {
		fmt.Fprintf(w, "- error: %s\n", e)
	}
}
