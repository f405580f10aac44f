package bench

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/postern/postern/mesh"
	"github.com/postern/postern/mesh/relay"
)

// scaleReport is the scale test: idle agent sessions held open against
// one relay process, its memory, and then the rate of binding opens it
// sustains with all of them connected.
type scaleReport struct {
	// BaselineRSS is the relay's resident memory with only the
	// connector and the bench's openers connected.
	BaselineRSS  int64        `json:"baseline_rss_bytes"`
	BaselineHeap uint64       `json:"baseline_heap_inuse_bytes"`
	Points       []scalePoint `json:"points"`
	Openers      int          `json:"opener_sessions"`
}

type pacedRun struct {
	loadResult
	// RelayCPUPerOpen is the relay's CPU per open; NetCPUPerOpen the
	// same without what the relay spends idle in as long (keep-alives of
	// the idle sessions).
	RelayCPUPerOpen float64 `json:"relay_cpu_us_per_open"`
	NetCPUPerOpen   float64 `json:"relay_net_cpu_us_per_open"`
}

type scalePoint struct {
	Sessions       int     `json:"sessions"`
	Connected      int     `json:"connected"`
	Failed         int     `json:"failed"`
	FirstError     string  `json:"first_error,omitempty"`
	ConnectSeconds float64 `json:"connect_seconds"`
	RelayAgents    int     `json:"relay_agent_sessions"`
	RSS            int64   `json:"relay_rss_bytes"`
	RSSPerSession  float64 `json:"relay_rss_bytes_per_session"`
	HeapInuse      uint64  `json:"relay_heap_inuse_bytes"`
	HeapPerSession float64 `json:"relay_heap_bytes_per_session"`
	Goroutines     int     `json:"relay_goroutines"`
	// IdleCPU is the relay's CPU while the sessions are idle (keep-alives),
	// in percent of one core.
	IdleCPU float64 `json:"relay_idle_cpu_percent"`
	// Paced are open loops at the offered rates; Max is a closed loop
	// of back-to-back openers.
	Paced []*pacedRun `json:"paced"`
	Max   *loadResult `json:"max"`
}

// scaleOpeners is how many agent sessions of the driver open bindings in
// the scale test, and scaleWorkers how many opens may be in flight.
const (
	scaleOpeners = 4
	scaleWorkers = 256
)

func (r *runner) runScale(ctx context.Context) error {
	if r.keys == nil {
		k, err := newMeshKeys()
		if err != nil {
			return err
		}
		r.keys = k
	}
	if r.upstream == nil {
		up, err := startChild(r.dir, "upstream", "upstream", struct{}{}, &r.up)
		if err != nil {
			return err
		}
		r.upstream = up
		r.onStop(up.stop)
	}
	// Every idle session holds the one agent token of the bench: the
	// per-subject caps, which a deployment keeps for one identity, would
	// stop the test at their default.
	relay, info, err := r.startRelayWith("scale-relay", "", relay.Limits{SessionsPerSubject: 1 << 30, StreamsPerSubject: 1 << 30})
	if err != nil {
		return err
	}
	conn, err := r.startConnector("scale-connector", info, []service{{Name: bindEcho, Kind: "tcp", Upstream: r.up.Addr}})
	if err != nil {
		return err
	}
	var clients []*mesh.Client
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	for range scaleOpeners {
		c, err := mesh.NewClient(mesh.Config{Relay: info.Addr, Token: r.keys.agent, Pin: info.Pin})
		if err != nil {
			return err
		}
		clients = append(clients, c)
		if err := c.Connect(ctx); err != nil {
			return err
		}
	}
	rep := &scaleReport{Openers: scaleOpeners}
	r.scale = rep
	// Let the setup's garbage be collected before taking the baseline.
	settle := 3 * time.Second
	if r.o.quick {
		settle = time.Second
	}
	time.Sleep(settle)
	if rep.BaselineRSS, err = relay.rss(); err != nil {
		return err
	}
	var st childStats
	if err := relay.command(cmdStats, &st); err != nil {
		return err
	}
	rep.BaselineHeap = st.HeapInuse
	r.logf("scale: relay baseline %s resident, %s heap", mib(rep.BaselineRSS), mib(int64(st.HeapInuse)))

	have, nproc := 0, 0
	connected, failed := 0, 0
	for _, n := range r.o.scale {
		pt := scalePoint{Sessions: n}
		t0 := time.Now()
		var (
			wg sync.WaitGroup
			mu sync.Mutex
		)
		for have < n {
			k := min(r.o.scaleProcs, n-have)
			have += k
			nproc++
			name := fmt.Sprintf("agents-%d", nproc)
			wg.Add(1)
			go func() {
				defer wg.Done()
				var ready agentsReady
				p, err := startChildWait(r.dir, name, "agents", agentsConfig{Relay: info.Addr, Pin: info.Pin, Token: r.keys.agent, Count: k, Concurrency: 16}, &ready, 10*time.Minute)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					failed += k
					if pt.FirstError == "" {
						pt.FirstError = err.Error()
					}
					return
				}
				r.onStop(p.stop)
				connected += ready.Connected
				failed += ready.Failed
				if pt.FirstError == "" {
					pt.FirstError = ready.Error
				}
			}()
		}
		wg.Wait()
		pt.Connected, pt.Failed = connected, failed
		pt.ConnectSeconds = time.Since(t0).Seconds()
		r.logf("scale: %d sessions connected (%d failed) in %.1fs", connected, failed, pt.ConnectSeconds)
		time.Sleep(settle) // let handshakes' garbage be collected
		if pt.RSS, err = relay.rss(); err != nil {
			return err
		}
		var st childStats
		if err := relay.command(cmdStats, &st); err != nil {
			return err
		}
		pt.HeapInuse, pt.Goroutines = st.HeapInuse, st.Goroutines
		if m, ok := st.Extra.(map[string]any); ok {
			if a, ok := m["Agents"].(float64); ok {
				pt.RelayAgents = int(a)
			}
		}
		if connected > 0 {
			pt.RSSPerSession = float64(pt.RSS-rep.BaselineRSS) / float64(connected)
			pt.HeapPerSession = (float64(pt.HeapInuse) - float64(rep.BaselineHeap)) / float64(connected)
		}
		idle := 2 * settle
		if r.o.profileDir != "" {
			var rep reply
			relay.command(cmdProfile+" "+filepath.Join(r.o.profileDir, fmt.Sprintf("relay-idle-%d.pprof", n)), &rep)
		}
		s0 := sampleCPU([]*proc{relay})
		time.Sleep(idle)
		pt.IdleCPU = 100 * s0.since([]*proc{relay})["relay"].Seconds() / idle.Seconds()
		if r.o.profileDir != "" {
			var rep reply
			relay.command(cmdStopProfile, &rep)
		}
		r.logf("scale: relay %s resident (%.1f KiB per session), %d goroutines, %.1f%% of a core while idle", mib(pt.RSS), pt.RSSPerSession/1024, pt.Goroutines, pt.IdleCPU)

		var next atomic.Uint64
		op := func(ctx context.Context) error {
			c := clients[next.Add(1)%uint64(len(clients))]
			_, err := openOnce(ctx, &path{open: func(ctx context.Context) (benchConn, error) {
				return c.DialEarly(ctx, "tcp", bindEcho)
			}})
			return err
		}
		for _, rate := range r.o.scaleRates {
			if r.o.profileDir != "" {
				var rep reply
				relay.command(cmdProfile+" "+filepath.Join(r.o.profileDir, fmt.Sprintf("relay-opens-%d-%.0f.pprof", n, rate)), &rep)
			}
			s0 := sampleCPU([]*proc{relay, conn})
			paced := &pacedRun{loadResult: load(ctx, time.Duration(r.o.scaleSecs*float64(time.Second)), rate, scaleWorkers, op)}
			cpu := s0.since([]*proc{relay, conn})
			if r.o.profileDir != "" {
				var rep reply
				relay.command(cmdStopProfile, &rep)
			}
			if paced.Ops > 0 {
				paced.RelayCPUPerOpen = us(cpu["relay"]) / float64(paced.Ops)
				idle := time.Duration(pt.IdleCPU / 100 * paced.Seconds * float64(time.Second))
				paced.NetCPUPerOpen = us(cpu["relay"]-idle) / float64(paced.Ops)
			}
			pt.Paced = append(pt.Paced, paced)
			r.logf("scale: %d sessions: offered %.0f opens/s, achieved %.0f/s, %s, %d errors", connected, paced.Offered, paced.Achieved, latLine(paced.Latency), paced.Errors)
		}
		maxed := load(ctx, time.Duration(r.o.scaleSecs*float64(time.Second)), 0, 64, op)
		pt.Max = &maxed
		r.logf("scale: %d sessions: back to back, 64 at a time: %.0f opens/s, %s, %d errors", connected, maxed.Achieved, latLine(maxed.Latency), maxed.Errors)
		rep.Points = append(rep.Points, pt)
	}
	return nil
}

func latLine(s *summary) string {
	if s == nil {
		return "no latency"
	}
	return fmt.Sprintf("p50 %.0f us, p99 %.0f us, p99.9 %.0f us", s.P50, s.P99, s.P999)
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func (s *scaleReport) print(w io.Writer) {
	fmt.Fprintf(w, "\nScale: idle agent sessions held open against one relay process (its baseline: %s resident), then binding opens (open + first byte back) from %d more sessions, at offered rates (latency from each open's scheduled start) and back to back.\n\n", mib(s.BaselineRSS), s.Openers)
	fmt.Fprintf(w, "| sessions | connected | relay RSS | RSS per session | heap per session | relay goroutines | relay CPU while idle |\n")
	fmt.Fprintf(w, "|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, p := range s.Points {
		fmt.Fprintf(w, "| %d | %d | %s | %.1f KiB | %.1f KiB | %d | %.1f%% of a core |\n", p.Sessions, p.Connected, mib(p.RSS), p.RSSPerSession/1024, p.HeapPerSession/1024, p.Goroutines, p.IdleCPU)
	}
	fmt.Fprintf(w, "\n| sessions | offered opens/s | achieved opens/s | p50 | p99 | p99.9 | errors | relay CPU per open (idle cost taken out) |\n")
	fmt.Fprintf(w, "|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, p := range s.Points {
		for _, l := range p.Paced {
			if l.Latency == nil {
				fmt.Fprintf(w, "| %d | %.0f | %.0f | – | – | – | %d | – |\n", p.Connected, l.Offered, l.Achieved, l.Errors)
				continue
			}
			fmt.Fprintf(w, "| %d | %.0f | %.0f | %s | %s | %s | %d | %.0f us |\n", p.Connected, l.Offered, l.Achieved, dur(l.Latency.P50), dur(l.Latency.P99), dur(l.Latency.P999), l.Errors, l.NetCPUPerOpen)
		}
		if l := p.Max; l != nil && l.Latency != nil {
			fmt.Fprintf(w, "| %d | back to back, %d at a time | %.0f | %s | %s | %s | %d | |\n", p.Connected, l.Workers, l.Achieved, dur(l.Latency.P50), dur(l.Latency.P99), dur(l.Latency.P999), l.Errors)
		}
	}
}

// dur formats microseconds for a person.
func dur(us float64) string {
	if us >= 1000 {
		return fmt.Sprintf("%.2f ms", us/1000)
	}
	return fmt.Sprintf("%.0f us", us)
}
