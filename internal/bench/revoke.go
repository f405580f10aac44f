package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/postern/postern"
	"github.com/postern/postern/mesh"
	"github.com/postern/postern/mesh/identity"
	"github.com/postern/postern/mesh/relay"
	"github.com/postern/postern/policy"
	"github.com/postern/postern/transport"
)

// postern-bench revoke measures how fast access taken away reaches live
// streams, with the relay, the connector and the upstream each in its own
// process and the agents in the driver:
//
//   - policy reload -> live stream reset: the relay swaps in a set that
//     forbids the binding; the time from the swap (taken in the relay
//     process, same clock) to the agent's Read failing with
//     postern.ErrRevoked.
//   - revocation-list entry -> reset: the relay's list gets the agent's
//     subject; the time to the agent's Read failing.
//   - scale: -streams live streams are decided again by one reload that
//     cuts them all, while another agent keeps opening a second binding:
//     the time until the last stream failed, and the opens' latency
//     before and during.

const (
	revokeA = "revoke-a" // the binding the reloads forbid
	revokeB = "revoke-b" // the binding opens go on through

	revokeAllow = `
@id("staging-for-coding-agents")
permit (principal in Group::"coding-agents", action == Action::"connect", resource in Environment::"staging");
`
	// revokeAllowToo decides every open as revokeAllow does: a reload to
	// it decides every live stream again and cuts none.
	revokeAllowToo = revokeAllow + `
@id("unrelated") forbid (principal in Group::"contractors", action, resource in Environment::"prod");
`
	revokeDeny = revokeAllow + `
@id("revoke-a-frozen")
forbid (principal, action, resource == Binding::"revoke-a");
`
)

func init() { roles["revoke-relay"] = startRevokeRelay }

type revokeRelayConfig struct {
	JWKS []byte `json:"jwks"`
}

// startRevokeRelay is a relay that swaps its policy set and its revocation
// list on command, answering with the instant it did, in Unix nanoseconds:
//
//	policy allow|allow-too|deny
//	revoke SUBJECT   (the list becomes that subject alone)
//	unrevoke         (the list becomes empty)
func startRevokeRelay(b []byte) (any, func(), error) {
	var cfg revokeRelayConfig
	if err := decodeConfig(b, &cfg); err != nil {
		return nil, nil, err
	}
	v, err := identity.NewVerifier(context.Background(), identity.VerifierConfig{Audience: audience, Issuer: issuer, KeySet: cfg.JWKS})
	if err != nil {
		return nil, nil, err
	}
	allow, err := policy.Parse("allow.cedar", []byte(revokeAllow))
	if err != nil {
		return nil, nil, err
	}
	deny, err := policy.Parse("deny.cedar", []byte(revokeDeny))
	if err != nil {
		return nil, nil, err
	}
	allowToo, err := policy.Parse("allow-too.cedar", []byte(revokeAllowToo))
	if err != nil {
		return nil, nil, err
	}
	cert, err := transport.SelfSigned("127.0.0.1")
	if err != nil {
		return nil, nil, err
	}
	engine := policy.NewEngine(allow)
	list := relay.NewRevocationList()
	r, err := relay.Listen(relay.Config{
		Addr:        "127.0.0.1:0",
		Certificate: cert,
		Verifier:    v,
		Policy:      engine,
		Revocations: list,
		Limits:      relay.Limits{StreamsPerAgent: 2048},
		Audit:       slog.New(slog.NewJSONHandler(io.Discard, nil)),
		Logger:      slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})),
	})
	if err != nil {
		v.Close()
		return nil, nil, err
	}
	statsHook = func() any { return r.Stats() }
	commandHook = func(cmd, arg string) (any, bool) {
		var at time.Time
		switch {
		case cmd == "policy" && arg == "allow":
			at = time.Now()
			engine.Swap(allow)
		case cmd == "policy" && arg == "allow-too":
			at = time.Now()
			engine.Swap(allowToo)
		case cmd == "policy" && arg == "deny":
			at = time.Now()
			engine.Swap(deny)
		case cmd == "revoke" && arg != "":
			at = time.Now()
			list.Replace(relay.Revoked{Subjects: []string{arg}})
		case cmd == "unrevoke":
			at = time.Now()
			list.Replace(relay.Revoked{})
		default:
			return nil, false
		}
		return revokeAt{OK: true, UnixNano: at.UnixNano()}, true
	}
	stop := func() {
		r.Close()
		v.Close()
	}
	return relayReady{Addr: r.Addr().String(), Pin: transport.Pin(cert)}, stop, nil
}

type revokeAt struct {
	OK       bool   `json:"ok"`
	Error    string `json:"error,omitempty"`
	UnixNano int64  `json:"unix_nano"`
}

type revokeOptions struct {
	trials  int
	streams int
	perConn int
	keep    bool
	profile string
	verbose bool
}

// RevokeMain runs "postern-bench revoke".
func RevokeMain(args []string, stdout, stderr io.Writer) int {
	o := revokeOptions{}
	fs := flag.NewFlagSet("postern-bench revoke", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: postern-bench revoke [flags]

Measures revocation latency with the relay, the connector and the upstream
each in its own process: policy reload -> live stream reset, revocation-list
entry -> live stream reset, and a reload that decides -streams live streams
again (and cuts them) while another agent keeps opening.

Flags:
`)
		fs.PrintDefaults()
	}
	fs.IntVar(&o.trials, "trials", 50, "trials of each latency measurement")
	fs.IntVar(&o.streams, "streams", 10000, "live streams decided again in the scale measurement")
	fs.IntVar(&o.perConn, "per-agent", 1000, "live streams per agent session in the scale measurement")
	fs.BoolVar(&o.keep, "keep", false, "keep the work directory (child logs)")
	fs.BoolVar(&o.verbose, "v", false, "print each open made during the mass cut")
	fs.StringVar(&o.profile, "cpuprofile", "", "write the relay's CPU profile during the mass cut to this `file`")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if err := runRevoke(o, stdout, stderr); err != nil {
		fmt.Fprintln(stderr, "postern-bench revoke:", err)
		return 1
	}
	return 0
}

type revokeBench struct {
	o          revokeOptions
	log        io.Writer
	relay      *proc
	addr, pin  string
	key        *identity.SigningKey
	ctx        context.Context
	clientsMu  sync.Mutex
	clientList []*mesh.Client
}

func runRevoke(o revokeOptions, stdout, log io.Writer) error {
	dir, err := os.MkdirTemp("", "postern-bench-revoke-")
	if err != nil {
		return err
	}
	if o.keep {
		fmt.Fprintln(log, "work directory:", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	key, err := identity.GenerateSigningKey(identity.EdDSA)
	if err != nil {
		return err
	}
	jwks, err := key.PublicJWKS()
	if err != nil {
		return err
	}
	var up upstreamReady
	upstream, err := startChild(dir, "upstream", "upstream", upstreamConfig{}, &up)
	if err != nil {
		return err
	}
	defer upstream.stop()
	var rr relayReady
	rp, err := startChild(dir, "relay", "revoke-relay", revokeRelayConfig{JWKS: jwks}, &rr)
	if err != nil {
		return err
	}
	defer rp.stop()
	connTok, err := key.Issue(identity.Claims{Issuer: issuer, Audience: []string{audience}, Subject: "revoke-connector",
		Role: identity.RoleConnector, ExpiresAt: time.Now().Add(12 * time.Hour),
		Services: []identity.Service{
			{Name: revokeA, Kind: postern.KindTCP, Environment: "staging"},
			{Name: revokeB, Kind: postern.KindTCP, Environment: "staging"},
		}})
	if err != nil {
		return err
	}
	cp, err := startChild(dir, "connector", "connector", connectorConfig{Relay: rr.Addr, Pin: rr.Pin, Token: connTok, Services: []service{
		{Name: revokeA, Kind: postern.KindTCP, Upstream: up.Addr, MaxConns: o.streams + 1024},
		{Name: revokeB, Kind: postern.KindTCP, Upstream: up.Addr, MaxConns: o.streams + 1024},
	}}, &struct{}{})
	if err != nil {
		return err
	}
	defer cp.stop()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	b := &revokeBench{o: o, log: log, relay: rp, addr: rr.Addr, pin: rr.Pin, key: key, ctx: ctx}
	defer b.closeClients()

	fmt.Fprintf(log, "revoke: %d trials of policy reload -> reset\n", o.trials)
	reload, err := b.reloadTrials()
	if err != nil {
		return fmt.Errorf("policy reload: %w", err)
	}
	fmt.Fprintf(log, "revoke: %d trials of revocation-list entry -> reset\n", o.trials)
	listed, err := b.listTrials()
	if err != nil {
		return fmt.Errorf("revocation list: %w", err)
	}
	fmt.Fprintf(log, "revoke: %d live streams decided again while opening\n", o.streams)
	sc, err := b.scale()
	if err != nil {
		return fmt.Errorf("scale: %w", err)
	}

	fmt.Fprintf(stdout, "## Revocation latency (postern-bench revoke -trials %d -streams %d)\n\n", o.trials, o.streams)
	fmt.Fprintln(stdout, "Relay, connector and upstream each in its own process on one host; the agents in the driver. From the instant the relay swaps its policy set or its revocation list (taken in the relay, same clock) to the agent's Read failing with postern.ErrRevoked.")
	fmt.Fprintln(stdout)
	fmt.Fprintln(stdout, "| measurement | n | p50 | p90 | p99 | max |")
	fmt.Fprintln(stdout, "|---|---|---|---|---|---|")
	row := func(name string, s *summary) {
		if s == nil {
			fmt.Fprintf(stdout, "| %s | 0 | | | | |\n", name)
			return
		}
		fmt.Fprintf(stdout, "| %s | %d | %s | %s | %s | %s |\n", name, s.N, dur(s.P50), dur(s.P90), dur(s.P99), dur(s.Max))
	}
	row("policy reload -> live stream reset", reload.summary())
	row("revocation-list entry (subject) -> session's stream reset", listed.summary())
	row(fmt.Sprintf("reload cutting %d live streams -> each stream's reset", o.streams), sc.cuts.summary())
	row("open + 1 KiB echo on another binding, before the reloads", sc.before.summary())
	row(fmt.Sprintf("open + 1 KiB echo on another binding, during %d reloads each deciding %d streams again (none cut)", sc.reloads, o.streams), sc.nocut.summary())
	row(fmt.Sprintf("open + 1 KiB echo on another binding, while the reload cuts %d streams", o.streams), sc.during.summary())
	fmt.Fprintln(stdout)
	fmt.Fprintf(stdout, "Last of the %d streams reset %s after the reload that cut them; %d opens completed meanwhile, none failed. The relay's own time to decide the streams again is in its log (relay: live streams decided again, took=...).\n", o.streams, dur(us(sc.last)), len(sc.during))
	return nil
}

func (b *revokeBench) closeClients() {
	b.clientsMu.Lock()
	defer b.clientsMu.Unlock()
	for _, c := range b.clientList {
		c.Close()
	}
}

func (b *revokeBench) client(sub string) (*mesh.Client, error) {
	tok, err := b.key.Issue(identity.Claims{Issuer: issuer, Audience: []string{audience}, Subject: sub,
		Role: identity.RoleAgent, Groups: []string{"coding-agents"}, ExpiresAt: time.Now().Add(12 * time.Hour)})
	if err != nil {
		return nil, err
	}
	c, err := mesh.NewClient(mesh.Config{Relay: b.addr, Pin: b.pin, Token: tok})
	if err != nil {
		return nil, err
	}
	b.clientsMu.Lock()
	b.clientList = append(b.clientList, c)
	b.clientsMu.Unlock()
	return c, nil
}

// command sends cmd to the relay and returns the instant it acted.
func (b *revokeBench) command(cmd string) (time.Time, error) {
	var at revokeAt
	if err := b.relay.command(cmd, &at); err != nil {
		return time.Time{}, err
	}
	if !at.OK {
		return time.Time{}, fmt.Errorf("%s: %s", cmd, at.Error)
	}
	return time.Unix(0, at.UnixNano), nil
}

// liveEcho opens an echo stream to binding and checks one round trip.
func liveEcho(ctx context.Context, c *mesh.Client, binding string) (*mesh.Conn, error) {
	conn, err := c.Dial(ctx, "tcp", binding)
	if err != nil {
		return nil, err
	}
	mc := conn.(*mesh.Conn)
	if err := echoRound(mc, 1024); err != nil {
		mc.Close()
		return nil, err
	}
	return mc, nil
}

var echoPayload = strings.Repeat("r", 1024)

// echoRound sends the echo command byte (on a fresh stream) and n bytes,
// and reads them back.
func echoRound(c *mesh.Conn, n int) error {
	c.SetDeadline(time.Now().Add(30 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write(append([]byte{opEcho}, echoPayload[:n]...)); err != nil {
		return err
	}
	buf := make([]byte, n)
	_, err := io.ReadFull(c, buf)
	return err
}

// failedAt blocks in Read until the stream fails and returns when; the
// error must be a revocation.
func failedAt(c *mesh.Conn) (time.Time, error) {
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	buf := make([]byte, 256)
	for {
		if _, err := c.Read(buf); err != nil {
			at := time.Now()
			if !errors.Is(err, postern.ErrRevoked) {
				return at, fmt.Errorf("the stream failed with %v, not postern.ErrRevoked", err)
			}
			return at, nil
		}
	}
}

func (b *revokeBench) reloadTrials() (latencies, error) {
	c, err := b.client("reload-agent")
	if err != nil {
		return nil, err
	}
	var out latencies
	for range b.o.trials {
		conn, err := liveEcho(b.ctx, c, revokeA)
		if err != nil {
			return nil, err
		}
		failed := make(chan time.Time, 1)
		errc := make(chan error, 1)
		go func() {
			at, err := failedAt(conn)
			failed <- at
			errc <- err
		}()
		time.Sleep(5 * time.Millisecond) // the reader is in Read
		t0, err := b.command("policy deny")
		if err != nil {
			return nil, err
		}
		t1 := <-failed
		if err := <-errc; err != nil {
			return nil, err
		}
		conn.Close()
		out = append(out, t1.Sub(t0))
		if _, err := b.command("policy allow"); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (b *revokeBench) listTrials() (latencies, error) {
	var out latencies
	for i := range b.o.trials {
		sub := fmt.Sprintf("victim-%d", i)
		c, err := b.client(sub)
		if err != nil {
			return nil, err
		}
		conn, err := liveEcho(b.ctx, c, revokeA)
		if err != nil {
			return nil, err
		}
		failed := make(chan time.Time, 1)
		errc := make(chan error, 1)
		go func() {
			at, err := failedAt(conn)
			failed <- at
			errc <- err
		}()
		time.Sleep(5 * time.Millisecond)
		t0, err := b.command("revoke " + sub)
		if err != nil {
			return nil, err
		}
		t1 := <-failed
		if err := <-errc; err != nil {
			return nil, err
		}
		out = append(out, t1.Sub(t0))
		if _, err := c.Dial(b.ctx, "tcp", revokeA); !errors.Is(err, postern.ErrRevoked) {
			return nil, fmt.Errorf("a revoked subject reconnected: %v", err)
		}
		c.Close()
		if _, err := b.command("unrevoke"); err != nil {
			return nil, err
		}
	}
	return out, nil
}

type scaleResult struct {
	cuts                  latencies // reload -> each stream's failure
	last                  time.Duration
	before, during, nocut latencies // open + echo on revokeB
	reloads               int       // reloads during nocut
}

func (b *revokeBench) scale() (*scaleResult, error) {
	if _, err := b.command("policy allow"); err != nil {
		return nil, err
	}
	agents := (b.o.streams + b.o.perConn - 1) / b.o.perConn
	conns := make([]*mesh.Conn, 0, b.o.streams)
	var mu sync.Mutex
	var firstErr error
	for i := range agents {
		c, err := b.client(fmt.Sprintf("holder-%d", i))
		if err != nil {
			return nil, err
		}
		n := min(b.o.perConn, b.o.streams-i*b.o.perConn)
		var wg sync.WaitGroup
		tickets := make(chan struct{}, n)
		for range n {
			tickets <- struct{}{}
		}
		close(tickets)
		for range 32 {
			wg.Go(func() {
				for range tickets {
					conn, err := liveEcho(b.ctx, c, revokeA)
					mu.Lock()
					if err != nil && firstErr == nil {
						firstErr = err
					}
					if err == nil {
						conns = append(conns, conn)
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if firstErr != nil {
			return nil, fmt.Errorf("opening live streams: %w", firstErr)
		}
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	fmt.Fprintf(b.log, "revoke: %d live streams open\n", len(conns))

	opener, err := b.client("opener")
	if err != nil {
		return nil, err
	}
	var lastDial time.Duration // of the last open, for -v
	openOnce := func() (time.Duration, error) {
		start := time.Now()
		conn, err := opener.Dial(b.ctx, "tcp", revokeB)
		if err != nil {
			return 0, err
		}
		lastDial = time.Since(start)
		mc := conn.(*mesh.Conn)
		defer mc.Close()
		if err := echoRound(mc, 1024); err != nil {
			return 0, err
		}
		return time.Since(start), nil
	}
	res := &scaleResult{}
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); {
		d, err := openOnce()
		if err != nil {
			return nil, err
		}
		res.before = append(res.before, d)
	}

	// Reloads that decide every stream again and cut none, while the
	// opener keeps opening.
	stopOpen := make(chan struct{})
	nocutDone := make(chan error, 1)
	go func() {
		for {
			select {
			case <-stopOpen:
				nocutDone <- nil
				return
			default:
			}
			d, err := openOnce()
			if err != nil {
				nocutDone <- err
				return
			}
			res.nocut = append(res.nocut, d)
		}
	}()
	for i := range 10 {
		set := "allow-too"
		if i%2 == 1 {
			set = "allow"
		}
		if _, err := b.command("policy " + set); err != nil {
			return nil, err
		}
		res.reloads++
		time.Sleep(200 * time.Millisecond)
	}
	close(stopOpen)
	if err := <-nocutDone; err != nil {
		return nil, fmt.Errorf("an open during a reload that cuts nothing failed: %w", err)
	}
	var st struct {
		Extra struct{ Streams int64 } `json:"extra"`
	}
	if err := b.relay.command(cmdStats, &st); err != nil {
		return nil, err
	}
	if st.Extra.Streams < int64(len(conns)) {
		return nil, fmt.Errorf("reloads that deny nothing cut streams: %d live, want %d", st.Extra.Streams, len(conns))
	}

	failures := make([]time.Time, len(conns))
	var fwg sync.WaitGroup
	ferrs := make(chan error, len(conns))
	for i, c := range conns {
		fwg.Go(func() {
			at, err := failedAt(c)
			failures[i] = at
			if err != nil {
				ferrs <- err
			}
		})
	}
	time.Sleep(100 * time.Millisecond) // every reader is in Read
	allFailed := make(chan struct{})
	go func() { fwg.Wait(); close(allFailed) }()
	cutStart := time.Now()
	openDone := make(chan error, 1)
	go func() {
		for {
			select {
			case <-allFailed:
				openDone <- nil
				return
			default:
			}
			d, err := openOnce()
			if err != nil {
				openDone <- err
				return
			}
			if b.o.verbose {
				fmt.Fprintf(b.log, "revoke: open during the cut: %v (dial %v), at +%v\n", d, lastDial, time.Since(cutStart))
			}
			res.during = append(res.during, d)
		}
	}()
	if b.o.profile != "" {
		if err := b.relay.command(cmdProfile+" "+b.o.profile, &reply{}); err != nil {
			return nil, err
		}
	}
	t0, err := b.command("policy deny")
	if err != nil {
		return nil, err
	}
	<-allFailed
	if b.o.profile != "" {
		if err := b.relay.command(cmdStopProfile, &reply{}); err != nil {
			return nil, err
		}
	}
	if err := <-openDone; err != nil {
		return nil, fmt.Errorf("an open during the re-decision failed: %w", err)
	}
	close(ferrs)
	for err := range ferrs {
		return nil, err
	}
	for _, at := range failures {
		d := at.Sub(t0)
		res.cuts = append(res.cuts, d)
		res.last = max(res.last, d)
	}
	if _, err := b.command("policy allow"); err != nil {
		return nil, err
	}
	return res, nil
}
