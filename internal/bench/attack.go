package bench

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/postern/postern/internal/quicnet"
	"github.com/postern/postern/internal/wire"
	"github.com/postern/postern/mesh"
	"github.com/postern/postern/mesh/identity"
	"github.com/postern/postern/mesh/relay"
	"github.com/postern/postern/transport"
)

// The attack test (-attack) measures what hostile peers cost a Postern
// relay process with its default limits, while a legitimate agent (the
// driver) runs 1 KiB round trips on a warm stream through it. The attacker
// is a child process of its own ("attacker"), in three phases:
//
//   - initials: Initial packets shaped like a client's first flight, each
//     with a fresh connection ID, from spoofed sources all over
//     127.0.0.0/8 (a raw socket; as root) or, without root, from many
//     ports of 127.0.0.1;
//   - nohello: QUIC connections that complete the handshake and never send
//     a Hello, from sockets on many addresses of 127.0.0.0/8, held at the
//     target count for the phase (redialed as the relay closes them);
//   - badtokens: Hellos at a fixed rate whose token is signed by a key the
//     relay does not trust, each on a connection of its own;
//   - tcp-nohello, tcp-badtokens: the same two over TLS on TCP, which a
//     relay listens on beside QUIC by default, from the same addresses.
//
// Each phase reports the relay's peak resident memory against its idle
// size, the agent's round-trip percentiles against its unloaded ones, and
// what the attacker saw; the bad-token phase also counts the session.reject
// events the relay's audit trail gained, and the refusals they sum.

// attackBounds are the targets the attack test checks.
const (
	attackInitialsRSS = 64 << 20  // initials: peak RSS within this of idle
	attackPeakRSS     = 256 << 20 // nohello, badtokens: peak RSS below this
	attackP99Factor   = 2.0       // agent p99 within this many times unloaded
	attackSources     = 200       // addresses the attacker's QUIC connections come from
)

type attackerConfig struct {
	Relay string `json:"relay"`
	Pin   string `json:"pin"`
}

// attackResult is the attacker's answer to one phase.
type attackResult struct {
	Sent       int    `json:"sent"`       // packets (initials) or connections attempted
	Handshakes int    `json:"handshakes"` // connections whose handshake completed
	Refused    int    `json:"refused"`    // connections the relay refused
	Rejected   int    `json:"rejected"`   // Hellos answered with a Reject
	Held       int    `json:"held"`       // nohello: most connections held at once
	Spoofed    bool   `json:"spoofed"`    // initials: from a raw socket
	Error      string `json:"error,omitempty"`
	Seconds    float64
}

func startAttacker(b []byte) (any, func(), error) {
	var cfg attackerConfig
	if err := decodeConfig(b, &cfg); err != nil {
		return nil, nil, err
	}
	tlsConf, err := transport.Trust{Pin: cfg.Pin}.ClientTLS("127.0.0.1")
	if err != nil {
		return nil, nil, err
	}
	a := &attacker{cfg: cfg, tls: tlsConf}
	commandHook = func(cmd, arg string) (any, bool) {
		f := strings.Fields(arg)
		num := func(i int) int {
			if i >= len(f) {
				return 0
			}
			n, _ := strconv.Atoi(f[i])
			return n
		}
		start := time.Now()
		var res attackResult
		switch cmd {
		case "initials": // initials COUNT RATE
			res = a.initials(num(0), num(1))
		case "nohello", "tcp-nohello": // nohello CONNS SECONDS
			res = a.noHello(network(cmd), num(0), time.Duration(num(1))*time.Second)
		case "badtokens", "tcp-badtokens": // badtokens RATE SECONDS
			res = a.badTokens(network(cmd), num(0), time.Duration(num(1))*time.Second)
		default:
			return nil, false
		}
		res.Seconds = time.Since(start).Seconds()
		return res, true
	}
	return struct{}{}, func() {}, nil
}

type attacker struct {
	cfg attackerConfig
	tls *tls.Config
}

// initialPacket is a datagram a QUIC server takes for a client's first
// Initial: a long header of version 1 with a fresh 8-byte destination
// connection ID, padded to 1200 bytes. Its payload is random, so no
// handshake follows; a server that keeps state for it holds that state
// until its handshake times out.
func initialPacket(b []byte) []byte {
	b = b[:0]
	b = append(b, 0xc3, 0, 0, 0, 1) // long header, Initial, 4-byte packet number; version 1
	b = append(b, 8)
	var id [16]byte
	rand.Read(id[:])
	b = append(b, id[:8]...)
	b = append(b, 8)
	b = append(b, id[8:]...)
	b = append(b, 0) // no token
	rest := 1200 - len(b) - 2
	b = append(b, 0x40|byte(rest>>8), byte(rest))
	pad := make([]byte, rest)
	rand.Read(pad)
	return append(b, pad...)
}

// initials sends n Initial packets at rate a second.
func (a *attacker) initials(n, rate int) attackResult {
	dst, err := netip.ParseAddrPort(a.cfg.Relay)
	if err != nil {
		return attackResult{Error: err.Error()}
	}
	send, spoofed, closeFn, err := spoofer(dst)
	if err != nil {
		return attackResult{Error: err.Error()}
	}
	defer closeFn()
	res := attackResult{Spoofed: spoofed}
	buf := make([]byte, 0, 1500)
	begin := time.Now()
	for i := range n {
		if rate > 0 {
			if w := time.Until(begin.Add(time.Duration(float64(i) / float64(rate) * float64(time.Second)))); w > 0 {
				time.Sleep(w)
			}
		}
		if err := send(initialPacket(buf), i); err == nil {
			res.Sent++
		} else if res.Error == "" {
			res.Error = err.Error()
		}
	}
	return res
}

// spoofer returns a function that sends a UDP payload to dst from the i-th
// source: with a raw socket (root), from 127.x.y.z and a port, all made
// up; otherwise from one of 512 sockets on 127.0.0.1.
func spoofer(dst netip.AddrPort) (send func(p []byte, i int) error, spoofed bool, closeFn func(), err error) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_RAW, syscall.IPPROTO_RAW)
	if err == nil {
		to := &syscall.SockaddrInet4{Addr: dst.Addr().As4()}
		pkt := make([]byte, 0, 1500)
		return func(p []byte, i int) error {
			src := [4]byte{127, byte(1 + i>>16%254), byte(i >> 8), byte(i)}
			pkt = pkt[:0]
			total := 20 + 8 + len(p)
			pkt = append(pkt, 0x45, 0, byte(total>>8), byte(total), 0, 0, 0, 0, 64, syscall.IPPROTO_UDP, 0, 0)
			pkt = append(pkt, src[:]...)
			d := dst.Addr().As4()
			pkt = append(pkt, d[:]...)
			sport := 1024 + uint16(i*7919%60000)
			ulen := 8 + len(p)
			pkt = append(pkt, byte(sport>>8), byte(sport), byte(dst.Port()>>8), byte(dst.Port()), byte(ulen>>8), byte(ulen), 0, 0)
			pkt = append(pkt, p...)
			return syscall.Sendto(fd, pkt, 0, to)
		}, true, func() { syscall.Close(fd) }, nil
	}
	var socks []*net.UDPConn
	for range 512 {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			break
		}
		socks = append(socks, c)
	}
	if len(socks) == 0 {
		return nil, false, nil, errors.New("no raw socket and no UDP socket")
	}
	to := net.UDPAddrFromAddrPort(dst)
	return func(p []byte, i int) error {
			_, err := socks[i%len(socks)].WriteToUDP(p, to)
			return err
		}, false, func() {
			for _, s := range socks {
				s.Close()
			}
		}, nil
}

// network is the transport an attack command uses: "tcp" for the
// commands that start with "tcp-", "quic" for the others.
func network(cmd string) string {
	if strings.HasPrefix(cmd, "tcp-") {
		return transport.NetworkTCP
	}
	return transport.NetworkQUIC
}

// sourceIP is the i-th of the attacker's source addresses, in 127.10/16.
func sourceIP(i int) net.IP { return net.IPv4(127, 10, byte(i>>8), byte(1+i%250)) }

// sources makes a dialer whose i-th dial comes from the (i mod n)-th of n
// local addresses of 127.0.0.0/8, over QUIC (a socket bound on each) or
// TLS on TCP: the relay caps unverified connections per source, and an
// attacker has many.
func (a *attacker) sources(network string, n int) (dial func(ctx context.Context, i int) (quicnet.Session, error), closeAll func(), err error) {
	if network == transport.NetworkTCP {
		cfg := &transport.Config{Network: transport.NetworkTCP}
		return func(ctx context.Context, i int) (quicnet.Session, error) {
			return quicnet.DialTCPFrom(ctx, &net.TCPAddr{IP: sourceIP(i % n)}, a.cfg.Relay, a.tls, cfg)
		}, func() {}, nil
	}
	addr, err := net.ResolveUDPAddr("udp", a.cfg.Relay)
	if err != nil {
		return nil, nil, err
	}
	var trs []*quic.Transport
	closeAll = func() {
		for _, t := range trs {
			t.Close()
			t.Conn.Close()
		}
	}
	for i := range n {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: sourceIP(i)})
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		trs = append(trs, &quic.Transport{Conn: c})
	}
	c := a.tls.Clone()
	c.NextProtos = []string{wire.ALPN}
	c.MinVersion = tls.VersionTLS13
	return func(ctx context.Context, i int) (quicnet.Session, error) {
		conn, err := trs[i%len(trs)].Dial(ctx, addr, c, quicnet.QUICConfig(nil))
		if err != nil {
			return nil, err
		}
		return quicnet.QUICSession{Conn: conn}, nil
	}, closeAll, nil
}

// isConnRefused says whether a dial failed because the relay refused the
// connection before its handshake: CONNECTION_REFUSED over QUIC, a reset
// (or a close) before the TLS handshake ended over TCP.
func isConnRefused(err error) bool {
	var te *quic.TransportError
	if errors.As(err, &te) {
		return te.ErrorCode == quic.ConnectionRefused
	}
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) || errors.Is(err, syscall.EPIPE)
}

// noHello holds target connections that completed the handshake and sent
// nothing, for d, redialing those the relay closes.
func (a *attacker) noHello(network string, target int, d time.Duration) attackResult {
	dial, closeAll, err := a.sources(network, attackSources)
	if err != nil {
		return attackResult{Error: err.Error()}
	}
	defer closeAll()
	var (
		res              attackResult
		mu               sync.Mutex
		held, handshakes atomic.Int64
		refused, sent    atomic.Int64
		wg               sync.WaitGroup
	)
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	const workers = 64
	for w := range workers {
		wg.Go(func() {
			for i := w; ctx.Err() == nil; i += workers {
				if held.Load() >= int64(target) {
					time.Sleep(20 * time.Millisecond)
					continue
				}
				sent.Add(1)
				dctx, dcancel := context.WithTimeout(ctx, 5*time.Second)
				conn, err := dial(dctx, i)
				dcancel()
				if err != nil {
					if isConnRefused(err) {
						refused.Add(1)
						time.Sleep(50 * time.Millisecond)
					}
					continue
				}
				handshakes.Add(1)
				held.Add(1)
				mu.Lock()
				res.Held = max(res.Held, int(held.Load()))
				mu.Unlock()
				go func() {
					select {
					case <-conn.Context().Done():
					case <-ctx.Done():
						conn.CloseWithError(0, "")
					}
					held.Add(-1)
				}()
			}
		})
	}
	wg.Wait()
	res.Sent, res.Handshakes, res.Refused = int(sent.Load()), int(handshakes.Load()), int(refused.Load())
	return res
}

// badTokens sends rate Hellos a second for d, each on a new connection,
// with a token the relay cannot verify (signed by a key of the attacker's
// own) and counts the Rejects.
func (a *attacker) badTokens(network string, rate int, d time.Duration) attackResult {
	key, err := identity.GenerateSigningKey(identity.EdDSA)
	if err != nil {
		return attackResult{Error: err.Error()}
	}
	tok, err := key.Issue(identity.Claims{Issuer: issuer, Audience: []string{audience}, Subject: "attacker", Role: identity.RoleAgent, ExpiresAt: time.Now().Add(time.Hour)})
	if err != nil {
		return attackResult{Error: err.Error()}
	}
	hello, err := wire.AppendFrame(nil, &wire.Hello{Version: wire.Version, Role: wire.RoleAgent, Token: tok})
	if err != nil {
		return attackResult{Error: err.Error()}
	}
	dial, closeAll, err := a.sources(network, attackSources)
	if err != nil {
		return attackResult{Error: err.Error()}
	}
	defer closeAll()
	var (
		sent, handshakes, refused, rejected atomic.Int64
		wg                                  sync.WaitGroup
		firstErr                            atomic.Pointer[string]
	)
	one := func(i int) {
		defer wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn, err := dial(ctx, i)
		if err != nil {
			if isConnRefused(err) {
				refused.Add(1)
			} else {
				s := err.Error()
				firstErr.CompareAndSwap(nil, &s)
			}
			return
		}
		defer conn.CloseWithError(0, "")
		handshakes.Add(1)
		st, err := conn.OpenStreamSync(ctx)
		if err != nil {
			return
		}
		st.SetDeadline(time.Now().Add(5 * time.Second))
		st.Write(hello)
		var rej wire.Reject
		if wire.ReadExpected(st, 1<<16, &rej) == nil && rej.Code == wire.CodeUnauthenticated {
			rejected.Add(1)
		}
	}
	begin := time.Now()
	interval := time.Duration(float64(time.Second) / float64(rate))
	for i := 0; time.Since(begin) < d; i++ {
		if w := time.Until(begin.Add(time.Duration(i) * interval)); w > 0 {
			time.Sleep(w)
		}
		sent.Add(1)
		wg.Add(1)
		go one(i)
	}
	wg.Wait()
	res := attackResult{Sent: int(sent.Load()), Handshakes: int(handshakes.Load()), Refused: int(refused.Load()), Rejected: int(rejected.Load())}
	if p := firstErr.Load(); p != nil {
		res.Error = *p
	}
	return res
}

// attackPhase is one phase's figures, as the report shows them.
type attackPhase struct {
	Name     string       `json:"name"`
	Attacker attackResult `json:"attacker"`
	Unloaded *summary     `json:"agent_rtt_unloaded"` // right before the phase
	// Control is the agent's round trips while the same attack went to a
	// decoy relay beside the attacker (-attack-control): the share of the
	// agent's p99 that the attacker's presence on this machine costs.
	Control     *summary    `json:"agent_rtt_control,omitempty"`
	IdleRSS     int64       `json:"relay_idle_rss_bytes"`
	PeakRSS     int64       `json:"relay_peak_rss_bytes"`
	Agent       *summary    `json:"agent_rtt"`
	AgentErrors int         `json:"agent_errors"`
	RelayStats  relay.Stats `json:"relay_stats"`
	Rejects     int         `json:"audit_reject_events,omitempty"`
	RejectCount int         `json:"audit_reject_count,omitempty"`
	Verdict     []string    `json:"verdict"`
	// RelayCPU and AttackerCPU are the processes' CPU over the phase, in
	// percent of one core: on one machine the attacker's handshakes
	// compete with the agent for the same cores as the relay's do.
	RelayCPU    float64       `json:"relay_cpu_percent"`
	AttackerCPU float64       `json:"attacker_cpu_percent"`
	Duration    time.Duration `json:"-"`
}

type attackReport struct {
	Placement string   `json:"placement"` // which CPUs the processes ran on
	Unloaded  *summary `json:"agent_rtt_unloaded"`
	// Burn is the agent's round trips beside a busy loop on every CPU
	// under SCHED_IDLE (-attack-control): what any work at all on this
	// machine, however low its priority, costs the agent's p99. It sets
	// the floor under what the decoy column can show.
	Burn *summary `json:"agent_rtt_idle_burn,omitempty"`
	// BurnUnloaded is the agent's round trips right before the burner
	// started: what Burn is compared with, measured close in time, as
	// each phase's is.
	BurnUnloaded *summary       `json:"agent_rtt_before_burn,omitempty"`
	IdleRSS      int64          `json:"relay_idle_rss_bytes"`
	Phases       []*attackPhase `json:"phases"`
}

// runAttack runs the attack test against a relay and connector of its own.
func (r *runner) runAttack(ctx context.Context) error {
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
	var pl *placement
	if r.o.attackPin {
		pl = newPlacement()
	}
	name := "attack-relay"
	if pl != nil {
		r.relayProcs = 1 // the one CPU it is placed on
	}
	rl, info, err := r.startRelay(name)
	r.relayProcs = 0
	if err != nil {
		return err
	}
	auditPath := filepath.Join(r.dir, name+"-audit.jsonl")
	conr, err := r.startConnector("attack-connector", info, []service{{Name: bindEcho, Kind: "tcp", Upstream: r.up.Addr}})
	if err != nil {
		return err
	}
	att, err := startChild(r.dir, "attacker", "attacker", attackerConfig{Relay: info.Addr, Pin: info.Pin}, &struct{}{})
	if err != nil {
		return err
	}
	r.onStop(att.stop)
	var decoy, decoyAtt *proc // -attack-control
	if r.o.attackCtl {
		var dinfo relayReady
		if decoy, dinfo, err = r.startRelay("attack-decoy"); err != nil {
			return err
		}
		if decoyAtt, err = startChild(r.dir, "decoy-attacker", "attacker", attackerConfig{Relay: dinfo.Addr, Pin: dinfo.Pin}, &struct{}{}); err != nil {
			return err
		}
		r.onStop(decoyAtt.stop)
	}
	defer pl.undo()
	for _, p := range []struct {
		pid            int
		relay, restore bool
		low            bool
	}{
		{rl.pid, true, false, false},
		{conr.pid, false, false, false},
		{r.upstream.pid, false, true, false},
		{os.Getpid(), false, true, false},
		{att.pid, false, false, true},
		{pidOf(decoy), false, false, true},
		{pidOf(decoyAtt), false, false, true},
	} {
		if p.pid == 0 {
			continue // no decoy
		}
		if err := pl.put(p.pid, p.relay, p.low, p.restore); err != nil {
			return fmt.Errorf("attack: placing processes on CPUs: %w (run with -attack-pin=false)", err)
		}
	}
	agent, err := mesh.NewClient(mesh.Config{Relay: info.Addr, Token: r.keys.agent, Pin: info.Pin})
	if err != nil {
		return err
	}
	defer agent.Close()
	conn, err := agent.Dial(ctx, "tcp", bindEcho)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.Write([]byte{opEcho}); err != nil {
		return err
	}

	phaseSecs := 10 * time.Second
	if r.o.quick {
		phaseSecs = 4 * time.Second
	}
	time.Sleep(2 * time.Second)
	rep := &attackReport{Placement: pl.describe()}
	r.attack = rep
	if rep.IdleRSS, err = rl.rss(); err != nil {
		return err
	}
	unloaded, errs := roundTrips(conn, phaseSecs)
	if rep.Unloaded = unloaded.summary(); rep.Unloaded == nil {
		return fmt.Errorf("no 1 KiB round trip through the relay succeeded (%d failed)", errs)
	}
	r.logf("attack: relay idle %s resident; agent unloaded p50 %.0f us, p99 %.0f us", mib(rep.IdleRSS), rep.Unloaded.P50, rep.Unloaded.P99)
	if r.o.attackCtl && pl != nil {
		before, errs := roundTrips(conn, phaseSecs)
		if rep.BurnUnloaded = before.summary(); rep.BurnUnloaded == nil {
			return fmt.Errorf("no 1 KiB round trip through the relay succeeded (%d failed)", errs)
		}
		if rep.Burn, err = burnRoundTrips(r.dir, pl, conn, phaseSecs); err != nil {
			return err
		}
		r.logf("attack: agent beside an idle-priority busy loop on every CPU: p50 %.0f us, p99 %.0f us (%.2f× unloaded right before, %.0f us)",
			rep.Burn.P50, rep.Burn.P99, rep.Burn.P99/rep.BurnUnloaded.P99, rep.BurnUnloaded.P99)
	}

	phases := []struct {
		name, cmd string
	}{
		{"initials", fmt.Sprintf("initials 100000 %d", int(100000/phaseSecs.Seconds()))},
		{"nohello", fmt.Sprintf("nohello 2000 %d", int(phaseSecs.Seconds()))},
		{"badtokens", fmt.Sprintf("badtokens 500 %d", int(phaseSecs.Seconds()))},
		{"tcp-nohello", fmt.Sprintf("tcp-nohello 2000 %d", int(phaseSecs.Seconds()))},
		{"tcp-badtokens", fmt.Sprintf("tcp-badtokens 500 %d", int(phaseSecs.Seconds()))},
	}
	for _, ph := range phases {
		if !slices.Contains(r.o.attack, ph.name) {
			continue
		}
		// Let the previous phase's connections time out and be collected.
		time.Sleep(6 * time.Second)
		idle, _ := rl.rss()
		before := auditRejects(auditPath)
		p := &attackPhase{Name: ph.name, IdleRSS: idle, Duration: phaseSecs}
		// The agent's unloaded round trips again, right before: the
		// machine's own load drifts, and what is compared should be
		// measured close in time.
		base, _ := roundTrips(conn, phaseSecs)
		p.Unloaded = base.summary()
		if decoyAtt != nil {
			// The same attack on the decoy, as the agent's round trips go
			// through the real relay: the cost of the attacker's presence.
			var res attackResult
			done := make(chan struct{})
			var ctl latencies
			go func() {
				defer close(done)
				ctl, _ = roundTrips(conn, phaseSecs)
			}()
			if err := decoyAtt.commandWait(ph.cmd, &res, phaseSecs+2*time.Minute); err != nil {
				return fmt.Errorf("attack %s on the decoy: %w", ph.name, err)
			}
			<-done
			p.Control = ctl.summary()
			time.Sleep(3 * time.Second)
		}
		stats0 := relayStats(rl)
		stopSample := sampleRSS(rl, &p.PeakRSS)
		cpu0, acpu0, t0 := rl.cpuTime(), att.cpuTime(), time.Now()
		done := make(chan struct{})
		var lat latencies
		var agentErr int
		go func() {
			defer close(done)
			lat, agentErr = roundTrips(conn, phaseSecs)
		}()
		if r.o.profileDir != "" {
			var rep reply
			rl.command(cmdProfile+" "+filepath.Join(r.o.profileDir, "relay-attack-"+ph.name+".pprof"), &rep)
		}
		if err := att.commandWait(ph.cmd, &p.Attacker, phaseSecs+2*time.Minute); err != nil {
			stopSample()
			return fmt.Errorf("attack %s: %w", ph.name, err)
		}
		<-done
		if r.o.profileDir != "" {
			var rep reply
			rl.command(cmdStopProfile, &rep)
		}
		el := time.Since(t0)
		p.RelayCPU = 100 * float64(rl.cpuTime()-cpu0) / float64(el)
		p.AttackerCPU = 100 * float64(att.cpuTime()-acpu0) / float64(el)
		// What the attack left behind, for a few seconds after it.
		time.Sleep(3 * time.Second)
		stopSample()
		var ok reply
		if err := rl.command(cmdSyncAudit, &ok); err != nil || !ok.OK {
			return fmt.Errorf("attack %s: audit sync: %v %s", ph.name, err, ok.Error)
		}
		// The counters since the relay started, made the phase's own.
		p.RelayStats = relayStats(rl)
		p.RelayStats.Refused -= stats0.Refused
		p.RelayStats.RefusedTCP -= stats0.RefusedTCP
		p.RelayStats.RefusedBudget -= stats0.RefusedBudget
		p.RelayStats.Retried -= stats0.Retried
		p.Agent, p.AgentErrors = lat.summary(), agentErr
		after := auditRejects(auditPath)
		p.Rejects, p.RejectCount = after.events-before.events, after.count-before.count
		p.verdict(rep)
		rep.Phases = append(rep.Phases, p)
		ctlNote := ""
		if p.Control != nil {
			ctlNote = fmt.Sprintf("; with the attack on a decoy %.0f us", p.Control.P99)
		}
		r.logf("attack %-13s relay peak %s (idle %s); agent p99 %.0f us (unloaded right before %.0f%s); attacker %+v; %s",
			ph.name, mib(p.PeakRSS), mib(p.IdleRSS), p.Agent.P99, p.Unloaded.P99, ctlNote, p.Attacker, strings.Join(p.Verdict, "; "))
	}
	for _, p := range rep.Phases {
		for _, v := range p.Verdict {
			if strings.HasPrefix(v, "FAIL") {
				r.errors = append(r.errors, "attack "+p.Name+": "+v)
			}
		}
	}
	return nil
}

// relayStats asks the relay process for its relay.Stats; zero when it
// cannot say.
func relayStats(rl *proc) relay.Stats {
	var st childStats
	var rs relay.Stats
	if err := rl.command(cmdStats, &st); err == nil {
		b, _ := json.Marshal(st.Extra)
		json.Unmarshal(b, &rs)
	}
	return rs
}

// verdict checks the phase against the targets.
func (p *attackPhase) verdict(rep *attackReport) {
	check := func(ok bool, format string, args ...any) {
		s := "ok "
		if !ok {
			s = "FAIL "
		}
		p.Verdict = append(p.Verdict, s+fmt.Sprintf(format, args...))
	}
	if p.Name == "initials" {
		check(p.PeakRSS-p.IdleRSS <= attackInitialsRSS, "relay RSS +%s over idle (bound %s)", mib(p.PeakRSS-p.IdleRSS), mib(attackInitialsRSS))
	} else {
		check(p.PeakRSS <= attackPeakRSS, "relay peak RSS %s (bound %s)", mib(p.PeakRSS), mib(attackPeakRSS))
	}
	if p.Agent != nil && p.Unloaded != nil {
		f := p.Agent.P99 / p.Unloaded.P99
		check(f <= attackP99Factor, "agent p99 %.2fx unloaded (bound %.0fx)", f, attackP99Factor)
	} else {
		check(false, "no agent round trips")
	}
	if strings.HasSuffix(p.Name, "badtokens") {
		per := math.Inf(1)
		if p.Rejects > 0 {
			per = float64(p.RejectCount) / float64(p.Rejects)
		}
		// One event per source per interval, and one more for its first
		// refusal: the attacker's 200 sources, over each 10s interval.
		intervals := int(p.Duration/(10*time.Second)) + 2
		check(p.Rejects <= 2*attackSources*intervals, "%d refusals in %d session.reject events (%.0f per event; %d sources)", p.RejectCount, p.Rejects, per, attackSources)
	}
}

// burnerConfig is the burner's configuration: how many threads to keep
// busy.
type burnerConfig struct {
	Threads int `json:"threads"`
}

// startBurner keeps Threads threads busy until it is stopped, doing
// nothing else: no system call, no memory.
func startBurner(b []byte) (any, func(), error) {
	var cfg burnerConfig
	if err := decodeConfig(b, &cfg); err != nil {
		return nil, nil, err
	}
	n := max(cfg.Threads, 1)
	runtime.GOMAXPROCS(n)
	var stop atomic.Bool
	var started, ended sync.WaitGroup
	started.Add(n)
	ended.Add(n)
	for range n {
		go func() {
			defer ended.Done()
			runtime.LockOSThread()
			started.Done()
			for !stop.Load() {
			}
		}()
	}
	started.Wait() // every thread exists, for the placement to find
	return &struct{}{}, func() { stop.Store(true); ended.Wait() }, nil
}

// burnRoundTrips measures the agent's round trips on conn for d beside a
// burner placed on every CPU under SCHED_IDLE.
func burnRoundTrips(dir string, pl *placement, conn net.Conn, d time.Duration) (*summary, error) {
	burn, err := startChild(dir, "burner", "burner", burnerConfig{Threads: runtime.NumCPU()}, &struct{}{})
	if err != nil {
		return nil, err
	}
	defer burn.stop()
	if err := pl.putIdleEverywhere(burn.pid); err != nil {
		return nil, fmt.Errorf("attack: placing the burner: %w", err)
	}
	time.Sleep(500 * time.Millisecond)
	lat, errs := roundTrips(conn, d)
	s := lat.summary()
	if s == nil {
		return nil, fmt.Errorf("attack: beside the burner, no round trip succeeded (%d failed)", errs)
	}
	return s, nil
}

// pidOf is p's process ID, 0 for none.
func pidOf(p *proc) int {
	if p == nil {
		return 0
	}
	return p.pid
}

// roundTrips runs 1 KiB echoes on conn for d, every echo checked.
func roundTrips(conn net.Conn, d time.Duration) (latencies, int) {
	msg := make([]byte, 1024)
	rand.Read(msg)
	got := make([]byte, len(msg))
	var lat latencies
	errs := 0
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		t0 := time.Now()
		conn.SetDeadline(t0.Add(10 * time.Second))
		// A round trip that fails leaves the stream unusable: the
		// phase's figures end there, and the failure is counted.
		if _, err := conn.Write(msg); err != nil {
			fmt.Fprintln(os.Stderr, "attack: agent write:", err)
			return lat, errs + 1
		}
		if _, err := io.ReadFull(conn, got); err != nil || string(got) != string(msg) {
			fmt.Fprintln(os.Stderr, "attack: agent read:", err)
			return lat, errs + 1
		}
		lat = append(lat, time.Since(t0))
	}
	conn.SetDeadline(time.Time{})
	return lat, errs
}

// sampleRSS records p's peak resident memory in *peak until stop.
func sampleRSS(p *proc, peak *int64) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			if v, err := p.rss(); err == nil && v > *peak {
				*peak = v
			}
			select {
			case <-t.C:
			case <-done:
				return
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

type rejectTally struct{ events, count int }

// auditRejects counts the session.reject events in the audit file, and
// the refusals they sum.
func auditRejects(path string) rejectTally {
	var t rejectTally
	f, err := os.Open(path)
	if err != nil {
		return t
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if !strings.Contains(sc.Text(), `"msg":"session.reject"`) {
			continue
		}
		var ev struct {
			Count int `json:"count"`
		}
		json.Unmarshal(sc.Bytes(), &ev)
		t.events++
		t.count += max(ev.Count, 1)
	}
	return t
}

// printAttack writes the attack test's table.
func printAttack(w io.Writer, rep *attackReport) {
	if rep == nil || rep.Unloaded == nil {
		return
	}
	fmt.Fprintf(w, "\n### Under attack (relay defaults; agent 1 KiB round trips: unloaded p50 %.0f us, p99 %.0f us; relay idle %s; %s)\n\n",
		rep.Unloaded.P50, rep.Unloaded.P99, mib(rep.IdleRSS), rep.Placement)
	if rep.Burn != nil && rep.BurnUnloaded != nil {
		fmt.Fprintf(w, "Beside a busy loop on every CPU under SCHED_IDLE, with no attack, the agent's p99 is %.0f us (%.2f× %.0f us unloaded right before): on this machine any other work, at the lowest priority, costs that much.\n\n",
			rep.Burn.P99, rep.Burn.P99/rep.BurnUnloaded.P99, rep.BurnUnloaded.P99)
	}
	fmt.Fprintln(w, "| phase | attacker | relay peak RSS | agent p50 | agent p99 (× unloaded right before) | agent p99, attack on a decoy | CPU relay / attacker | relay refused / retried | audit | verdict |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|")
	for _, p := range rep.Phases {
		a := p.Attacker
		var what string
		switch p.Name {
		case "initials":
			what = fmt.Sprintf("%d Initials sent (spoofed: %v)", a.Sent, a.Spoofed)
		case "nohello", "tcp-nohello":
			what = fmt.Sprintf("%d dials, %d handshakes, %d refused, at most %d held", a.Sent, a.Handshakes, a.Refused, a.Held)
		case "badtokens", "tcp-badtokens":
			what = fmt.Sprintf("%d bad-token Hellos, %d rejected, %d refused", a.Sent, a.Rejected, a.Refused)
		}
		p50, p99, f := 0.0, 0.0, 0.0
		if p.Agent != nil {
			p50, p99, f = p.Agent.P50, p.Agent.P99, p.Agent.P99/p.Unloaded.P99
		}
		ctl := "not run (-attack-control)"
		if p.Control != nil {
			ctl = fmt.Sprintf("%.0f us (%.2f×)", p.Control.P99, p.Control.P99/p.Unloaded.P99)
		}
		audit := ""
		if p.Rejects > 0 {
			audit = fmt.Sprintf("%d session.reject events for %d refusals", p.Rejects, p.RejectCount)
		}
		refused := fmt.Sprint(p.RelayStats.Refused)
		var of []string
		if n := p.RelayStats.RefusedTCP; n > 0 {
			of = append(of, fmt.Sprintf("%d over TCP", n))
		}
		if n := p.RelayStats.RefusedBudget; n > 0 {
			of = append(of, fmt.Sprintf("%d for the handshake budget", n))
		}
		if len(of) > 0 {
			refused += " (" + strings.Join(of, ", ") + ")"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %.0f us | %.0f us (%.2f× %.0f us) | %s | %.0f%% / %.0f%% | %s / %d | %s | %s |\n", p.Name, what, mib(p.PeakRSS), p50, p99, f, p.Unloaded.P99, ctl,
			p.RelayCPU, p.AttackerCPU, refused, p.RelayStats.Retried, audit, strings.Join(p.Verdict, "; "))
	}
}
