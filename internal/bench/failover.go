package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/postern/postern"
	"github.com/postern/postern/mesh"
	"github.com/postern/postern/mesh/identity"
)

// The failover test (-failover): a relay and two connectors serving one
// binding, each in its own process; one connector is killed with
// SIGKILL during a steady stream of opens while live streams run through
// both. It reports what the kill cost: the opens that failed and when
// they had started, how long after the kill opens succeed again, the
// slowest open started after it (one that went to the dead connector and
// moved), and how long a stream through the dead connector took to end
// in an error, and whether any ended cleanly instead (a truncation).
//
// The isolation test (-failover too): a relay and a connector; a fourth
// agent's 1 KiB round trips and opens, alone and then while three other
// agents each leave a 256 MiB download unread.

// failoverReport is both tests' results.
type failoverReport struct {
	Rounds    []*failoverRound `json:"rounds"`
	Isolation *isolationResult `json:"isolation,omitempty"`
	// OpenEvery is the pace of the opens during a kill.
	OpenEveryMs float64 `json:"open_every_ms"`
}

type failoverRound struct {
	Opens      int `json:"opens"`       // started in the run
	AfterKill  int `json:"after_kill"`  // started after the kill
	InFlight   int `json:"in_flight"`   // started before the kill, not answered by it
	Failed     int `json:"failed"`      // all failures
	FailedLate int `json:"failed_late"` // failures of opens started 2s or more after the kill
	// FirstFailure and LastFailure are when the failed opens had
	// started, relative to the kill, in ms.
	FirstFailureMs float64 `json:"first_failure_start_ms,omitempty"`
	LastFailureMs  float64 `json:"last_failure_start_ms,omitempty"`
	FirstError     string  `json:"first_error,omitempty"`
	// FirstSuccessMs is when the first open started after the kill
	// succeeded, relative to the kill.
	FirstSuccessMs float64 `json:"first_success_ms"`
	// SlowestAfterMs is the slowest open started after the kill;
	// MovedOpens how many of them took longer than half a second (they
	// went to the dead connector first).
	SlowestAfterMs float64 `json:"slowest_after_ms"`
	MovedOpens     int     `json:"moved_opens"`
	// Streams through the killed connector: how many, how long after
	// the kill each ended in an error, and how many ended cleanly or did
	// not end within 15s (both failures).
	DeadStreams    int       `json:"dead_streams"`
	StreamErrorMs  []float64 `json:"stream_error_ms"`
	StreamCleanEnd int       `json:"stream_clean_end"`
	StreamHung     int       `json:"stream_hung"`
	// Streams through the other connector that failed (must be 0).
	LiveStreamsFailed int `json:"live_streams_failed"`
}

type isolationResult struct {
	Downloads     int      `json:"stalled_downloads"`
	DownloadBytes int64    `json:"download_bytes"`
	Unloaded      *summary `json:"rtt_unloaded"`
	Loaded        *summary `json:"rtt_loaded"`
	OpensUnloaded *summary `json:"opens_unloaded"`
	OpensLoaded   *summary `json:"opens_loaded"`
	OpenFailures  int      `json:"open_failures"`
	FirstError    string   `json:"first_error,omitempty"`
	P99Ratio      float64  `json:"rtt_p99_ratio"`
	OpenP99Ratio  float64  `json:"open_p99_ratio"`
}

// failoverKeys are a signing key's JWKS and the tokens of the failover
// test: two connectors under their own names, so that a stream says
// which one serves it, and agents.
type failoverKeys struct {
	jwks       []byte
	connectors [2]string
	agents     []string
}

func newFailoverKeys(agents int) (*failoverKeys, error) {
	key, err := identity.GenerateSigningKey(identity.EdDSA)
	if err != nil {
		return nil, err
	}
	k := &failoverKeys{}
	if k.jwks, err = key.PublicJWKS(); err != nil {
		return nil, err
	}
	exp := time.Now().Add(48 * time.Hour)
	for i := range k.connectors {
		if k.connectors[i], err = key.Issue(identity.Claims{Issuer: issuer, Audience: []string{audience}, Subject: fmt.Sprintf("connector-%c", 'a'+i),
			Role: identity.RoleConnector, ExpiresAt: exp,
			Services: []identity.Service{{Name: bindEcho, Kind: postern.KindTCP, Environment: "staging"}}}); err != nil {
			return nil, err
		}
	}
	for i := range agents {
		tok, err := key.Issue(identity.Claims{Issuer: issuer, Audience: []string{audience}, Subject: fmt.Sprintf("agent-%d", i),
			Role: identity.RoleAgent, Groups: []string{"coding-agents"}, ExpiresAt: exp})
		if err != nil {
			return nil, err
		}
		k.agents = append(k.agents, tok)
	}
	return k, nil
}

const (
	failoverOpenEvery = 10 * time.Millisecond
	failoverLiveN     = 8 // streams held open through the kill
	isolationStalled  = 3
	isolationDownload = 256 << 20
)

func (r *runner) runFailover(ctx context.Context) error {
	if r.upstream == nil {
		up, err := startChild(r.dir, "upstream", "upstream", struct{}{}, &r.up)
		if err != nil {
			return err
		}
		r.upstream = up
		r.onStop(up.stop)
	}
	keys, err := newFailoverKeys(isolationStalled + 2)
	if err != nil {
		return err
	}
	rep := &failoverReport{OpenEveryMs: ms(failoverOpenEvery)}
	r.failover = rep
	rounds := 3
	if r.o.quick {
		rounds = 1
	}
	for i := range rounds {
		fr, err := r.failoverRound(ctx, keys, i)
		if err != nil {
			return fmt.Errorf("failover round %d: %w", i+1, err)
		}
		rep.Rounds = append(rep.Rounds, fr)
		r.logf("failover: %d opens, %d after the kill, %d failed (%d started 2s or more after it); first success %.0f ms after the kill, slowest open after it %.0f ms (%d moved); %d streams through the dead connector ended in an error after %v ms, %d cleanly, %d hung",
			fr.Opens, fr.AfterKill, fr.Failed, fr.FailedLate, fr.FirstSuccessMs, fr.SlowestAfterMs, fr.MovedOpens, len(fr.StreamErrorMs), roundMs(fr.StreamErrorMs), fr.StreamCleanEnd, fr.StreamHung)
	}
	iso, err := r.isolation(ctx, keys)
	if err != nil {
		return fmt.Errorf("isolation: %w", err)
	}
	rep.Isolation = iso
	r.logf("isolation: 1 KiB round trip p99 %s alone, %s beside %d unread downloads (%.2fx); open p99 %s and %s (%.2fx); %d opens failed",
		dur(iso.Unloaded.P99), dur(iso.Loaded.P99), iso.Downloads, iso.P99Ratio, dur(iso.OpensUnloaded.P99), dur(iso.OpensLoaded.P99), iso.OpenP99Ratio, iso.OpenFailures)
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func roundMs(v []float64) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(int(x))
	}
	return out
}

// failoverRound starts a relay and two connectors, runs opens and live
// streams, kills connector b, and measures.
func (r *runner) failoverRound(ctx context.Context, keys *failoverKeys, round int) (*failoverRound, error) {
	relay, info, err := r.startFailoverRelay(fmt.Sprintf("failover-relay-%d", round), keys)
	if err != nil {
		return nil, err
	}
	defer relay.stop()
	svcs := []service{{Name: bindEcho, Kind: "tcp", Upstream: r.up.Addr}}
	var conns [2]*proc
	for i := range conns {
		p, err := startChild(r.dir, fmt.Sprintf("failover-connector-%d-%c", round, 'a'+i), "connector",
			connectorConfig{Relay: info.Addr, Pin: info.Pin, Token: keys.connectors[i], Services: svcs}, &struct{}{})
		if err != nil {
			return nil, err
		}
		r.onStop(p.stop)
		defer p.stop()
		conns[i] = p
	}
	c, err := mesh.NewClient(mesh.Config{Relay: info.Addr, Token: keys.agents[0], Pin: info.Pin})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if err := c.Connect(ctx); err != nil {
		return nil, err
	}
	// Both connectors registered: opens reach each.
	seen := map[string]bool{}
	for try := 0; len(seen) < 2; try++ {
		if try > 100 {
			return nil, errors.New("opens did not reach both connectors")
		}
		conn, err := c.Dial(ctx, "tcp", bindEcho)
		if err == nil {
			seen[conn.(*mesh.Conn).Connector()] = true
			conn.Close()
		}
		time.Sleep(10 * time.Millisecond)
	}
	const dead = "connector-b"

	// Live streams, each pinging every 20ms, until they fail or stop.
	type live struct {
		connector string
		end       time.Time
		err       error
	}
	lives := make([]*live, failoverLiveN)
	stopLive := make(chan struct{})
	var lwg sync.WaitGroup
	for i := range lives {
		conn, err := c.Dial(ctx, "tcp", bindEcho)
		if err != nil {
			return nil, err
		}
		l := &live{connector: conn.(*mesh.Conn).Connector()}
		lives[i] = l
		if _, err := conn.Write([]byte{opEcho}); err != nil {
			return nil, err
		}
		lwg.Go(func() {
			defer conn.Close()
			var b [1]byte
			for {
				select {
				case <-stopLive:
					return
				case <-time.After(20 * time.Millisecond):
				}
				conn.SetDeadline(time.Now().Add(15 * time.Second))
				_, err := conn.Write([]byte{'p'})
				if err == nil {
					_, err = io.ReadFull(conn, b[:])
				}
				if err != nil {
					l.end, l.err = time.Now(), err
					return
				}
			}
		})
	}

	// The steady stream of opens.
	type openRec struct {
		start, end time.Time
		err        error
	}
	var (
		mu    sync.Mutex
		recs  []*openRec
		owg   sync.WaitGroup
		kill  time.Time
		total = 6 * time.Second
	)
	runStart := time.Now()
	tick := time.NewTicker(failoverOpenEvery)
	killed := false
	for now := range tick.C {
		if now.Sub(runStart) > total {
			break
		}
		if !killed && now.Sub(runStart) >= 2*time.Second {
			killed = true
			kill = time.Now()
			conns[1].cmd.Process.Kill() // SIGKILL: no goodbye to the relay
		}
		rec := &openRec{start: time.Now()}
		mu.Lock()
		recs = append(recs, rec)
		mu.Unlock()
		owg.Go(func() {
			octx, cancel := context.WithTimeout(ctx, 15*time.Second)
			defer cancel()
			_, err := openOnceMesh(octx, c)
			mu.Lock()
			rec.end, rec.err = time.Now(), err
			mu.Unlock()
		})
	}
	tick.Stop()
	owg.Wait()
	// Give a stream through the dead connector up to 15s to fail.
	deadline := kill.Add(15 * time.Second)
	for time.Now().Before(deadline) {
		pending := false
		for _, l := range lives {
			if l.connector == dead && l.end.IsZero() {
				pending = true
			}
		}
		if !pending {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(stopLive)
	lwg.Wait()

	fr := &failoverRound{Opens: len(recs)}
	first := time.Time{}
	for _, rec := range recs {
		if rec.start.After(kill) {
			fr.AfterKill++
			if d := rec.end.Sub(rec.start); ms(d) > fr.SlowestAfterMs {
				fr.SlowestAfterMs = ms(d)
			}
			if rec.end.Sub(rec.start) > 500*time.Millisecond {
				fr.MovedOpens++
			}
			if rec.err == nil && (first.IsZero() || rec.end.Before(first)) {
				first = rec.end
			}
		} else if rec.end.After(kill) {
			fr.InFlight++
		}
		if rec.err != nil {
			if fr.Failed == 0 {
				fr.FirstFailureMs = ms(rec.start.Sub(kill))
				fr.FirstError = rec.err.Error()
			}
			fr.Failed++
			fr.LastFailureMs = ms(rec.start.Sub(kill))
			if rec.start.Sub(kill) >= 2*time.Second {
				fr.FailedLate++
			}
		}
	}
	if !first.IsZero() {
		fr.FirstSuccessMs = ms(first.Sub(kill))
	}
	for _, l := range lives {
		switch {
		case l.connector != dead:
			if l.err != nil {
				fr.LiveStreamsFailed++
			}
		case l.end.IsZero():
			fr.DeadStreams++
			fr.StreamHung++
		case errors.Is(l.err, io.EOF):
			fr.DeadStreams++
			fr.StreamCleanEnd++
		default:
			fr.DeadStreams++
			fr.StreamErrorMs = append(fr.StreamErrorMs, ms(l.end.Sub(kill)))
		}
	}
	slices.Sort(fr.StreamErrorMs)
	return fr, nil
}

func (r *runner) startFailoverRelay(name string, keys *failoverKeys) (*proc, relayReady, error) {
	var info relayReady
	p, err := startChild(r.dir, name, "relay", relayConfig{JWKS: keys.jwks, Policies: basePolicies}, &info)
	if err != nil {
		return nil, info, err
	}
	r.onStop(p.stop)
	p.name = "relay"
	return p, info, nil
}

// openOnceMesh opens the echo binding, sends the command and a byte with
// the open, and reads the byte back.
func openOnceMesh(ctx context.Context, c *mesh.Client) (time.Duration, error) {
	t0 := time.Now()
	conn, err := c.DialEarly(ctx, "tcp", bindEcho)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if _, err := conn.Write([]byte{opEcho, 'x'}); err != nil {
		return 0, err
	}
	var b [1]byte
	if _, err := io.ReadFull(conn, b[:]); err != nil {
		return 0, err
	}
	if b[0] != 'x' {
		return 0, errors.New("integrity: wrong first byte")
	}
	return time.Since(t0), nil
}

// isolation measures one agent's round trips and opens, alone and beside
// three agents' unread downloads, through one relay and one connector.
func (r *runner) isolation(ctx context.Context, keys *failoverKeys) (*isolationResult, error) {
	relay, info, err := r.startFailoverRelay("isolation-relay", keys)
	if err != nil {
		return nil, err
	}
	defer relay.stop()
	conn, err := startChild(r.dir, "isolation-connector", "connector",
		connectorConfig{Relay: info.Addr, Pin: info.Pin, Token: keys.connectors[0], Services: []service{{Name: bindEcho, Kind: "tcp", Upstream: r.up.Addr}}}, &struct{}{})
	if err != nil {
		return nil, err
	}
	r.onStop(conn.stop)
	defer conn.stop()
	client := func(tok string) (*mesh.Client, error) {
		c, err := mesh.NewClient(mesh.Config{Relay: info.Addr, Token: tok, Pin: info.Pin})
		if err != nil {
			return nil, err
		}
		return c, c.Connect(ctx)
	}
	me, err := client(keys.agents[isolationStalled])
	if err != nil {
		return nil, err
	}
	defer me.Close()
	n, nOpens := r.o.rttN, r.o.opensN/4
	res := &isolationResult{Downloads: isolationStalled, DownloadBytes: isolationDownload}
	measure := func() (rtts, opens latencies, err error) {
		rtts, err = meshRTT(ctx, me, 1024, 200, n)
		if err != nil {
			return nil, nil, err
		}
		for range nOpens {
			octx, cancel := context.WithTimeout(ctx, 15*time.Second)
			d, err := openOnceMesh(octx, me)
			cancel()
			if err != nil {
				res.OpenFailures++
				if res.FirstError == "" {
					res.FirstError = err.Error()
				}
				continue
			}
			opens = append(opens, d)
		}
		return rtts, opens, nil
	}
	// Alone, beside the stalled downloads, alone again: the two alone
	// runs pooled, so that the machine's drift over the run (it is
	// shared) does not pass for the downloads' effect.
	rtt0, open0, err := measure()
	if err != nil {
		return nil, err
	}
	var stalled []*mesh.Client
	for i := range isolationStalled {
		c, err := client(keys.agents[i])
		if err != nil {
			return nil, err
		}
		stalled = append(stalled, c)
		d, err := c.Dial(ctx, "tcp", bindEcho)
		if err != nil {
			return nil, err
		}
		if _, err := d.Write(header(opDownload, isolationDownload)); err != nil {
			return nil, err
		}
		// Not one byte read.
	}
	time.Sleep(2 * time.Second) // their windows fill and they stall
	rtt1, open1, err := measure()
	for _, c := range stalled {
		c.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("beside stalled downloads: %w", err)
	}
	time.Sleep(time.Second)
	rtt2, open2, err := measure()
	if err != nil {
		return nil, err
	}
	res.Unloaded, res.OpensUnloaded = append(rtt0, rtt2...).summary(), append(open0, open2...).summary()
	res.Loaded, res.OpensLoaded = rtt1.summary(), open1.summary()
	if res.Unloaded != nil && res.Loaded != nil && res.Unloaded.P99 > 0 {
		res.P99Ratio = res.Loaded.P99 / res.Unloaded.P99
	}
	if res.OpensUnloaded != nil && res.OpensLoaded != nil && res.OpensUnloaded.P99 > 0 {
		res.OpenP99Ratio = res.OpensLoaded.P99 / res.OpensUnloaded.P99
	}
	return res, nil
}

// meshRTT is rtt on a binding stream of c.
func meshRTT(ctx context.Context, c *mesh.Client, size, warm, n int) (latencies, error) {
	conn, err := c.Dial(ctx, "tcp", bindEcho)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if _, err := conn.Write([]byte{opEcho}); err != nil {
		return nil, err
	}
	req := pattern()[:size]
	resp := make([]byte, size)
	lat := make(latencies, 0, n)
	for i := range warm + n {
		t0 := time.Now()
		if _, err := conn.Write(req); err != nil {
			return nil, err
		}
		if _, err := io.ReadFull(conn, resp); err != nil {
			return nil, err
		}
		if i >= warm {
			lat = append(lat, time.Since(t0))
		}
	}
	return lat, nil
}

func (f *failoverReport) print(w io.Writer) {
	fmt.Fprintf(w, "\nFailover: a relay and two connectors serving one binding, each its own process; one connector killed with SIGKILL 2 s into a 6 s run of opens (open + first byte back, one started every %.0f ms) while %d streams, pinging every 20 ms, ran through the two.\n\n", f.OpenEveryMs, failoverLiveN)
	fmt.Fprintf(w, "| round | opens | in flight at the kill | failed | failed, started 2 s+ after | first success after the kill | slowest open started after | opens that moved (> 500 ms) | streams through the dead one: error after | clean end / hung |\n")
	fmt.Fprintf(w, "|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|\n")
	for i, r := range f.Rounds {
		errs := "–"
		if len(r.StreamErrorMs) > 0 {
			errs = fmt.Sprintf("%.0f to %.0f ms (%d)", r.StreamErrorMs[0], r.StreamErrorMs[len(r.StreamErrorMs)-1], len(r.StreamErrorMs))
		}
		fmt.Fprintf(w, "| %d | %d | %d | %d | %d | %.0f ms | %.0f ms | %d | %s | %d / %d |\n", i+1, r.Opens, r.InFlight, r.Failed, r.FailedLate, r.FirstSuccessMs, r.SlowestAfterMs, r.MovedOpens, errs, r.StreamCleanEnd, r.StreamHung)
	}
	for i, r := range f.Rounds {
		if r.Failed > 0 {
			fmt.Fprintf(w, "\nRound %d: the failed opens had started %.0f to %.0f ms from the kill; the first said: %s\n", i+1, r.FirstFailureMs, r.LastFailureMs, r.FirstError)
		}
	}
	if iso := f.Isolation; iso != nil && iso.Unloaded != nil && iso.Loaded != nil {
		fmt.Fprintf(w, "\nIsolation: one agent's 1 KiB round trips on a warm stream and its opens (open + first byte back), through one relay and one connector, alone (before and after, pooled) and while %d other agents each leave a %d MiB download through the same connector unread.\n\n", iso.Downloads, iso.DownloadBytes>>20)
		fmt.Fprintf(w, "| | RTT p50 | RTT p99 | open p50 | open p99 | opens failed |\n|---|---:|---:|---:|---:|---:|\n")
		fmt.Fprintf(w, "| alone | %s | %s | %s | %s | |\n", dur(iso.Unloaded.P50), dur(iso.Unloaded.P99), durOf(iso.OpensUnloaded, 50), durOf(iso.OpensUnloaded, 99))
		fmt.Fprintf(w, "| beside %d unread downloads | %s | %s | %s | %s | %d |\n", iso.Downloads, dur(iso.Loaded.P50), dur(iso.Loaded.P99), durOf(iso.OpensLoaded, 50), durOf(iso.OpensLoaded, 99), iso.OpenFailures)
		fmt.Fprintf(w, "| ratio | | %.2fx | | %.2fx | |\n", iso.P99Ratio, iso.OpenP99Ratio)
	}
}

func durOf(s *summary, p int) string {
	if s == nil {
		return "–"
	}
	if p == 50 {
		return dur(s.P50)
	}
	return dur(s.P99)
}
