package bench

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/postern/postern"
	"github.com/postern/postern/internal/tcpserve"
	"github.com/postern/postern/mesh"
	"github.com/postern/postern/mesh/connector"
	"github.com/postern/postern/mesh/identity"
	"github.com/postern/postern/mesh/relay"
	"github.com/postern/postern/policy"
	"github.com/postern/postern/transport"
)

// The relay-failure test (-relayfail N): two relays, each its own
// process on a fixed address with one certificate, two connectors
// connected to both, and agents in this process. Each round kills a relay
// with SIGKILL (no CONNECTION_CLOSE: what its peers see of a dead
// machine) and measures, from the kill or from the restarted relay's
// ready line:
//
//   - failover: an agent configured with both relays, four openers
//     opening bench-echo back to back (two of them with a 1 KiB round
//     trip on each stream); the killed relay is the one it uses: the kill
//     to the first open (Dial returning) through the other relay; how
//     many opens failed meanwhile (none should: an open not yet answered
//     is made again through the other relay), and how many round trips
//     under way on the killed relay did (they end at the idle timeout);
//   - read error: a download through the relay that is killed: the kill
//     to the agent's Read returning its error (checked: not io.EOF, every
//     byte before it right);
//   - restart: an agent configured with the killed relay alone, opening
//     back to back through the outage (2 s): the restarted relay's ready
//     line to the end of the first successful open; and the connectors'
//     sessions with it.

const bindBulk = "bench-bulk"

func init() {
	roles["fail-relay"] = startFailRelay
	roles["fail-connector"] = startFailConnector
}

type failRelayConfig struct {
	Addr     string `json:"addr"`
	JWKS     []byte `json:"jwks"`
	Policies string `json:"policies"`
	CertPEM  []byte `json:"cert_pem"`
	KeyPEM   []byte `json:"key_pem"`
}

func startFailRelay(b []byte) (any, func(), error) {
	var cfg failRelayConfig
	if err := decodeConfig(b, &cfg); err != nil {
		return nil, nil, err
	}
	cert, err := tls.X509KeyPair(cfg.CertPEM, cfg.KeyPEM)
	if err != nil {
		return nil, nil, err
	}
	v, err := identity.NewVerifier(context.Background(), identity.VerifierConfig{Audience: audience, Issuer: issuer, KeySet: cfg.JWKS})
	if err != nil {
		return nil, nil, err
	}
	set, err := policy.Parse("bench.cedar", []byte(cfg.Policies))
	if err != nil {
		v.Close()
		return nil, nil, err
	}
	r, err := relay.Listen(relay.Config{
		Addr:        cfg.Addr,
		Certificate: cert,
		Verifier:    v,
		Policy:      policy.NewEngine(set),
		Audit:       slog.New(slog.DiscardHandler),
		Logger:      slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		v.Close()
		return nil, nil, err
	}
	statsHook = func() any { return r.Stats() }
	return relayReady{Addr: r.Addr().String(), Pin: transport.Pin(cert)}, func() { r.Close(); v.Close() }, nil
}

type failConnectorConfig struct {
	Relays   []string  `json:"relays"`
	Pin      string    `json:"pin"`
	Token    string    `json:"token"`
	Services []service `json:"services"`
}

// cmdConnected asks a fail-connector which relays it has a session with.
const cmdConnected = "connected"

func startFailConnector(b []byte) (any, func(), error) {
	var cfg failConnectorConfig
	if err := decodeConfig(b, &cfg); err != nil {
		return nil, nil, err
	}
	var svcs []connector.Service
	for _, s := range cfg.Services {
		svcs = append(svcs, connector.Service{Name: s.Name, Kind: s.Kind, Upstream: s.Upstream, Environment: "staging"})
	}
	c, err := connector.New(connector.Config{
		Relays:   cfg.Relays,
		Token:    cfg.Token,
		Pin:      cfg.Pin,
		Services: svcs,
		Logger:   slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})),
	})
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	select {
	case <-c.Ready():
	case err := <-done:
		cancel()
		return nil, nil, fmt.Errorf("connector stopped: %w", err)
	case <-time.After(30 * time.Second):
		cancel()
		<-done
		return nil, nil, errors.New("connector not connected after 30s")
	}
	commandHook = func(cmd, _ string) (any, bool) {
		if cmd != cmdConnected {
			return nil, false
		}
		return c.Connected(), true
	}
	stop := func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
		}
	}
	return struct{}{}, stop, nil
}

// failMesh is the relay-failure test's processes.
type failMesh struct {
	r      *runner
	cfgs   []failRelayConfig
	relays []*proc
	conns  []*proc
	pin    string
	agent  string // token
	echo   string // upstream addresses, served by this process
	bulk   string
}

// failRound is one round's figures.
type failRound struct {
	Failover      time.Duration `json:"failover_ns"`
	FailedOpens   int           `json:"failed_opens"`
	CutTrips      int           `json:"cut_round_trips"`
	ReadError     time.Duration `json:"read_error_ns"`
	ReadBytes     int64         `json:"read_bytes"`
	Restart       time.Duration `json:"restart_open_ns"`
	ConnectorBack time.Duration `json:"connector_back_ns"`
	// GracefulRestart is Restart after a clean stop (the relay closes
	// every connection, saying so) instead of SIGKILL.
	GracefulRestart time.Duration `json:"graceful_restart_open_ns"`
}

// startFailMesh makes the keys, tokens and certificate of a relay-failure
// mesh, serves its upstreams from this process (echo, the echo upstream's
// handler, and bulkConn) and starts its two relays as children. It returns
// the connectors' token; the caller starts them, and stops the relays
// with stopRelays.
func (r *runner) startFailMesh(echo func(net.Conn)) (*failMesh, string, error) {
	key, err := identity.GenerateSigningKey(identity.EdDSA)
	if err != nil {
		return nil, "", err
	}
	jwks, err := key.PublicJWKS()
	if err != nil {
		return nil, "", err
	}
	exp := time.Now().Add(48 * time.Hour)
	agentTok, err := key.Issue(identity.Claims{Issuer: issuer, Audience: []string{audience}, Subject: "bench-agent",
		Role: identity.RoleAgent, Groups: []string{"coding-agents"}, ExpiresAt: exp})
	if err != nil {
		return nil, "", err
	}
	connTok, err := key.Issue(identity.Claims{Issuer: issuer, Audience: []string{audience}, Subject: "bench-connector",
		Role: identity.RoleConnector, ExpiresAt: exp, Services: []identity.Service{
			{Name: bindEcho, Kind: postern.KindTCP, Environment: "staging"},
			{Name: bindBulk, Kind: postern.KindTCP, Environment: "staging"},
		}})
	if err != nil {
		return nil, "", err
	}
	cert, err := transport.SelfSigned("127.0.0.1")
	if err != nil {
		return nil, "", err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		return nil, "", err
	}
	m := &failMesh{r: r, agent: agentTok}
	if m.echo, err = failUpstream(r, echo); err != nil {
		return nil, "", err
	}
	if m.bulk, err = failUpstream(r, bulkConn); err != nil {
		return nil, "", err
	}
	for i := range 2 {
		m.cfgs = append(m.cfgs, failRelayConfig{JWKS: jwks, Policies: policies(0),
			CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}),
			KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})})
		m.relays = append(m.relays, nil)
		// The relays are restarted on their addresses, so each is chosen
		// here, free on UDP and TCP; another process may still take it
		// (an ephemeral port of someone's connection) before the relay
		// binds it: then another address.
		for attempt := 0; ; attempt++ {
			if m.cfgs[i].Addr, err = freeAddr(); err != nil {
				return nil, "", err
			}
			err = m.startRelay(i)
			if err == nil {
				break
			}
			if attempt == 4 || !strings.Contains(err.Error(), "address already in use") {
				return nil, "", err
			}
		}
	}
	return m, connTok, nil
}

// stopRelays stops the relays that are running.
func (m *failMesh) stopRelays() {
	for _, p := range m.relays {
		if p != nil {
			p.stop()
		}
	}
}

func (r *runner) runRelayFail(ctx context.Context) error {
	m, connTok, err := r.startFailMesh(echoConn)
	if err != nil {
		return err
	}
	defer m.stopRelays()
	svcs := []service{{Name: bindEcho, Kind: "tcp", Upstream: m.echo}, {Name: bindBulk, Kind: "tcp", Upstream: m.bulk}}
	for i := range 2 {
		p, err := startChild(r.dir, fmt.Sprintf("fail-connector-%d", i), "fail-connector",
			failConnectorConfig{Relays: m.addrs(), Pin: m.pin, Token: connTok, Services: svcs}, &struct{}{})
		if err != nil {
			return err
		}
		r.onStop(p.stop)
		m.conns = append(m.conns, p)
	}

	var rounds []failRound
	for round := 1; round <= r.o.relayFail; round++ {
		fr, err := m.round(ctx, round)
		if err != nil {
			return fmt.Errorf("round %d: %w", round, err)
		}
		r.logf("relayfail round %d: failover %s (%d opens failed, %d round trips cut), read error %s after %d MiB, restart→open %s, connectors back %s, clean restart→open %s",
			round, msText(fr.Failover), fr.FailedOpens, fr.CutTrips, msText(fr.ReadError), fr.ReadBytes>>20, msText(fr.Restart), msText(fr.ConnectorBack), msText(fr.GracefulRestart))
		rounds = append(rounds, fr)
	}
	r.relayFailRounds = rounds
	return nil
}

func (m *failMesh) addrs() []string {
	var a []string
	for _, c := range m.cfgs {
		a = append(a, c.Addr)
	}
	return a
}

// startRelay starts relay i on its address; it returns once the relay is
// ready.
func (m *failMesh) startRelay(i int) error {
	var ready relayReady
	p, err := startChild(m.r.dir, fmt.Sprintf("fail-relay-%d", i), "fail-relay", m.cfgs[i], &ready)
	if err != nil {
		return err
	}
	m.pin = ready.Pin
	m.relays[i] = p
	return nil
}

// kill9 kills relay i with SIGKILL.
func (m *failMesh) kill9(i int) (time.Time, error) {
	p := m.relays[i]
	m.relays[i] = nil
	if err := p.cmd.Process.Kill(); err != nil {
		return time.Time{}, err
	}
	at := time.Now()
	<-p.exited
	return at, nil
}

func (m *failMesh) client(relays ...string) (*mesh.Client, error) {
	return mesh.NewClient(mesh.Config{Relays: relays, Pin: m.pin, Token: m.agent})
}

// connectorsOn waits until relay i routes both services to every
// connector and returns when. (A connector's own view would not do: it
// takes a relay for up until it notices the silence.)
func (m *failMesh) connectorsOn(i int, within time.Duration) (time.Time, error) {
	deadline := time.Now().Add(within)
	for {
		var st struct {
			Extra relay.Stats `json:"extra"`
		}
		if err := m.relays[i].command(cmdStats, &st); err != nil {
			return time.Time{}, err
		}
		if st.Extra.Bindings[bindEcho] == len(m.conns) && st.Extra.Bindings[bindBulk] == len(m.conns) {
			return time.Now(), nil
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("connectors not back on relay %d after %s", i, within)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// openLoop opens bench-echo back to back until stopped, and records when
// each open succeeded.
type openLoop struct {
	mu     sync.Mutex
	ok     []time.Time  // when each open succeeded ...
	local  []string     // ... and over which session (the agent's address on it)
	failed atomic.Int64 // opens that failed
	cut    atomic.Int64 // round trips on an open stream that failed
	errs   []string     // the first few failures, for the log
	stop   context.CancelFunc
	done   chan struct{}
}

// startOpenLoop runs n openers. Every other one makes a 1 KiB round trip
// on each stream it opens; the others only open and close, so that
// openers whose round trip the kill cut (they wait for the idle timeout)
// do not hide when opens got through again.
func startOpenLoop(c *mesh.Client, n int) *openLoop {
	ctx, cancel := context.WithCancel(context.Background())
	l := &openLoop{stop: cancel, done: make(chan struct{})}
	var wg sync.WaitGroup
	go func() {
		wg.Wait()
		close(l.done)
	}()
	for i := range n {
		wg.Add(1)
		go l.run(ctx, c, i%2 == 0, &wg)
	}
	return l
}

func (l *openLoop) run(ctx context.Context, c *mesh.Client, exchange bool, wg *sync.WaitGroup) {
	defer wg.Done()
	msg := make([]byte, 1024)
	got := make([]byte, 1024)
	fail := func(counter *atomic.Int64, err error) {
		counter.Add(1)
		l.mu.Lock()
		if len(l.errs) < 4 {
			l.errs = append(l.errs, time.Now().Format("15:04:05.000")+" "+err.Error())
		}
		l.mu.Unlock()
	}
	for ctx.Err() == nil {
		octx, ocancel := context.WithTimeout(ctx, 10*time.Second)
		conn, err := c.Dial(octx, "tcp", bindEcho)
		ocancel()
		if err != nil {
			if ctx.Err() == nil {
				fail(&l.failed, err)
				time.Sleep(time.Millisecond) // no busy loop while nothing answers
			}
			continue
		}
		// The open is done when Dial returns: the relay authorized it
		// and the connector reached the upstream.
		l.mu.Lock()
		l.ok = append(l.ok, time.Now())
		l.local = append(l.local, conn.LocalAddr().String())
		l.mu.Unlock()
		if exchange {
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			_, err := conn.Write(msg)
			if err == nil {
				_, err = io.ReadFull(conn, got)
			}
			if err != nil && ctx.Err() == nil {
				fail(&l.cut, err)
			}
		}
		conn.Close()
	}
}

// firstAfter waits up to within for an open that succeeded after t over
// another session than the one with the agent's address not (any, if
// empty).
func (l *openLoop) firstAfter(t time.Time, not string, within time.Duration) (time.Duration, error) {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		l.mu.Lock()
		i, _ := slices.BinarySearchFunc(l.ok, t, func(a, b time.Time) int { return a.Compare(b) })
		for ; i < len(l.ok); i++ {
			if l.local[i] != not {
				d := l.ok[i].Sub(t)
				l.mu.Unlock()
				return d, nil
			}
		}
		l.mu.Unlock()
		time.Sleep(time.Millisecond)
	}
	return 0, fmt.Errorf("no open succeeded within %s (%d failed)", within, l.failed.Load())
}

func (l *openLoop) close() {
	l.stop()
	<-l.done
}

// round kills the relay the failover agent uses (it alternates), and
// measures the three figures, restarting the relay after each kill.
func (m *failMesh) round(ctx context.Context, round int) (failRound, error) {
	var fr failRound
	// Failover.
	agent, err := m.client(m.addrs()...)
	if err != nil {
		return fr, err
	}
	defer agent.Close()
	if err := agent.Connect(ctx); err != nil {
		return fr, err
	}
	victim := (round - 1) % 2
	if victim == 1 {
		// The agent is on relay 0, its first; move it to relay 1 the
		// way it would be: relay 0 gone, then back.
		agent.Close()
		if agent, err = m.client(m.cfgs[1].Addr, m.cfgs[0].Addr); err != nil {
			return fr, err
		}
		defer agent.Close()
		if err := agent.Connect(ctx); err != nil {
			return fr, err
		}
	}
	loop := startOpenLoop(agent, 4)
	time.Sleep(300 * time.Millisecond)
	// The agent's address on its session with the victim: an open
	// answered there just before the kill is not a failover.
	loop.mu.Lock()
	onVictim := loop.local[len(loop.local)-1]
	loop.mu.Unlock()
	failedBefore, cutBefore := loop.failed.Load(), loop.cut.Load()
	killed, err := m.kill9(victim)
	if err != nil {
		loop.close()
		return fr, err
	}
	fr.Failover, err = loop.firstAfter(killed, onVictim, 30*time.Second)
	time.Sleep(500 * time.Millisecond)
	loop.close()
	fr.FailedOpens = int(loop.failed.Load() - failedBefore)
	fr.CutTrips = int(loop.cut.Load() - cutBefore)
	if fr.FailedOpens+fr.CutTrips > 0 && m.r.o.verbose {
		m.r.logf("relayfail: killed at %s; failed: %s", killed.Format("15:04:05.000"), strings.Join(loop.errs, "; "))
	}
	if err != nil {
		return fr, fmt.Errorf("failover: %w", err)
	}
	if err := m.restart(victim, nil, &fr); err != nil {
		return fr, err
	}

	// Read error mid-transfer, through relay victim.
	dl, err := m.client(m.cfgs[victim].Addr)
	if err != nil {
		return fr, err
	}
	defer dl.Close()
	if fr.ReadError, fr.ReadBytes, err = m.killMidTransfer(ctx, dl, victim); err != nil {
		return fr, fmt.Errorf("read error: %w", err)
	}

	// Restart, with an agent that has only that relay opening throughout.
	lone, err := m.client(m.cfgs[victim].Addr)
	if err != nil {
		return fr, err
	}
	defer lone.Close()
	if err := lone.Connect(ctx); err != nil {
		return fr, err
	}
	if _, err := m.kill9(victim); err != nil {
		return fr, err
	}
	loop = startOpenLoop(lone, 1)
	defer loop.close()
	time.Sleep(2 * time.Second)
	if err := m.restart(victim, loop, &fr); err != nil {
		return fr, err
	}

	// The same after a clean stop.
	sigkill := fr
	m.relays[victim].stop()
	m.relays[victim] = nil
	time.Sleep(2 * time.Second)
	if err := m.restart(victim, loop, &fr); err != nil {
		return fr, fmt.Errorf("after a clean stop: %w", err)
	}
	fr.GracefulRestart = fr.Restart
	fr.Restart, fr.ConnectorBack = sigkill.Restart, sigkill.ConnectorBack
	return fr, nil
}

// restart starts relay i again and waits for the connectors; with loop,
// it measures the ready line to the loop's first open, and to the
// connectors' sessions.
func (m *failMesh) restart(i int, loop *openLoop, fr *failRound) error {
	if err := m.startRelay(i); err != nil {
		return err
	}
	ready := time.Now()
	back, err := m.connectorsOn(i, 30*time.Second)
	if err != nil {
		return err
	}
	if loop == nil {
		return nil
	}
	fr.ConnectorBack = back.Sub(ready)
	fr.Restart, err = loop.firstAfter(ready, "", 30*time.Second)
	if err != nil {
		return fmt.Errorf("restart: %w", err)
	}
	return nil
}

// killMidTransfer downloads bench-bulk through relay i, kills it after
// 8 MiB and returns how long Read took to fail, and how many bytes came,
// all checked.
func (m *failMesh) killMidTransfer(ctx context.Context, c *mesh.Client, i int) (time.Duration, int64, error) {
	conn, err := c.Dial(ctx, "tcp", bindBulk)
	if err != nil {
		return 0, 0, err
	}
	defer conn.Close()
	buf := make([]byte, 64<<10)
	var off int64
	var corrupt error
	read := func() error {
		n, err := conn.Read(buf)
		for j := range n {
			if buf[j] != bulkByte(off+int64(j)) && corrupt == nil {
				corrupt = fmt.Errorf("byte %d of the download is wrong", off+int64(j))
			}
		}
		off += int64(n)
		return err
	}
	for off < 8<<20 && corrupt == nil {
		if err := read(); err != nil {
			return 0, off, err
		}
	}
	killed, err := m.kill9(i)
	if err != nil {
		return 0, off, err
	}
	for err == nil && corrupt == nil {
		err = read()
		if time.Since(killed) > time.Minute {
			return 0, off, errors.New("Read still returns data a minute after the kill")
		}
	}
	took := time.Since(killed)
	switch {
	case corrupt != nil:
		return took, off, corrupt
	case errors.Is(err, io.EOF):
		return took, off, fmt.Errorf("Read returned io.EOF after %d bytes", off)
	}
	return took, off, m.restart(i, nil, &failRound{})
}

func bulkByte(i int64) byte { return byte(i % 251) }

func echoConn(c net.Conn) { io.Copy(c, c) }

func bulkConn(c net.Conn) {
	buf := make([]byte, 64<<10)
	var off int64
	for {
		for i := range buf {
			buf[i] = bulkByte(off + int64(i))
		}
		n, err := c.Write(buf)
		off += int64(n)
		if err != nil {
			return
		}
	}
}

// failUpstream serves handle on 127.0.0.1 from this process until the
// run ends.
func failUpstream(r *runner, handle func(net.Conn)) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	r.onStop(tcpserve.Serve(ln, handle))
	return ln.Addr().String(), nil
}

// freeAddr is an address of 127.0.0.1 whose port is free on UDP and on
// TCP, for a relay that listens on both. The port is below Linux's
// ephemeral range (32768 and up), where no other process's connection
// takes it as its local port while a killed relay is down, before it
// restarts on the same address.
func freeAddr() (string, error) {
	for range 100 {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(20000+rand.IntN(12000)))
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			continue
		}
		tl, err := net.Listen("tcp", addr)
		pc.Close()
		if err != nil {
			continue
		}
		tl.Close()
		return addr, nil
	}
	return "", errors.New("no port of 127.0.0.1 free on both UDP and TCP")
}

func msText(d time.Duration) string { return fmt.Sprintf("%.0f ms", ms(d)) }

// printRelayFail prints the relay-failure figures: median, min and max of
// each over the rounds.
func printRelayFail(w io.Writer, rounds []failRound) {
	if len(rounds) == 0 {
		return
	}
	stat := func(get func(failRound) float64) string {
		v := make([]float64, len(rounds))
		for i, r := range rounds {
			v[i] = get(r)
		}
		slices.Sort(v)
		return fmt.Sprintf("%.0f | %.0f | %.0f", v[len(v)/2], v[0], v[len(v)-1])
	}
	msOf := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	fmt.Fprintf(w, "\nRelay failure (SIGKILL), %d rounds:\n\n", len(rounds))
	fmt.Fprintln(w, "| measurement | median | min | max |")
	fmt.Fprintln(w, "|---|---|---|---|")
	fmt.Fprintf(w, "| kill → first open through the other relay (ms) | %s |\n", stat(func(r failRound) float64 { return msOf(r.Failover) }))
	fmt.Fprintf(w, "| opens failed during the failover | %s |\n", stat(func(r failRound) float64 { return float64(r.FailedOpens) }))
	fmt.Fprintf(w, "| round trips under way on the killed relay, failed (of 2 openers) | %s |\n", stat(func(r failRound) float64 { return float64(r.CutTrips) }))
	fmt.Fprintf(w, "| kill → Read error mid-transfer (ms) | %s |\n", stat(func(r failRound) float64 { return msOf(r.ReadError) }))
	fmt.Fprintf(w, "| restarted relay ready → first open (ms) | %s |\n", stat(func(r failRound) float64 { return msOf(r.Restart) }))
	fmt.Fprintf(w, "| restarted relay ready → connectors back (ms) | %s |\n", stat(func(r failRound) float64 { return msOf(r.ConnectorBack) }))
	fmt.Fprintf(w, "| relay stopped cleanly, restarted: ready → first open (ms) | %s |\n", stat(func(r failRound) float64 { return msOf(r.GracefulRestart) }))
}
