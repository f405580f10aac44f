package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/postern/postern/internal/forward"
	"github.com/postern/postern/mesh"
)

// The forward test: what the extra local hop of postern forward costs a
// program without the Go SDK. The same PostgreSQL server, direct and
// through a forward child (its own process, as `postern forward` is)
// whose local port carries each connection over a binding stream: a
// SELECT 1 loop on one warm connection with pgx, and pgbench -S (when
// pgbench is installed) with one client. Both are reported on the
// postern path, next to direct measured in the same phase. The same loop
// through the Go SDK (pgx dialing with mesh.Client.DialEarly, in this
// process) is measured in the same phase too, so that the postern column
// shows the hop: fwd-select1 against fwd-sdk-select1.

// forwardConfig starts a forward child for one binding.
type forwardConfig struct {
	Relay   string `json:"relay"`
	Pin     string `json:"pin"`
	Token   string `json:"token"`
	Binding string `json:"binding"`
}

type forwardReady struct {
	Addr string `json:"addr"`
}

func startForward(b []byte) (any, func(), error) {
	var cfg forwardConfig
	if err := decodeConfig(b, &cfg); err != nil {
		return nil, nil, err
	}
	c, err := mesh.NewClient(mesh.Config{Relay: cfg.Relay, Token: cfg.Token, Pin: cfg.Pin})
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Connect(ctx); err != nil {
		c.Close()
		return nil, nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	f := &forward.Forwarder{Client: c}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.Serve(ln, cfg.Binding)
	}()
	stop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		f.Shutdown(ctx)
		<-done
		c.Close()
	}
	return forwardReady{Addr: ln.Addr().String()}, stop, nil
}

// forwardPhases runs the forward test.
func (r *runner) forwardPhases(ctx context.Context, direct, postern *path) {
	if direct == nil || postern == nil {
		r.skipped[phaseForward] = "needs the direct and postern paths"
		r.logf("forward: skipped: needs the direct and postern paths")
		return
	}
	var fr forwardReady
	fp, err := startChild(r.dir, "forward", "forward", forwardConfig{Relay: r.relayInfo.Addr, Pin: r.relayInfo.Pin, Token: r.keys.agent, Binding: bindPG}, &fr)
	if err != nil {
		r.errors = append(r.errors, "forward: "+err.Error())
		return
	}
	defer fp.stop()
	host, port, _ := net.SplitHostPort(fr.Addr)
	// Any user and password: the connector logs in with its own.
	viaForward := fmt.Sprintf("host=%s port=%s user=anyone password=anything dbname=whatever sslmode=disable", host, port)
	directConn := r.pg.srv.ConnString(pgUser, r.pg.password, pgDB)
	// The same driver through the SDK's dial, for the hop's cost: the
	// forward port's row against this one, on the postern path.
	sdk, err := pgx.ParseConfig("host=" + bindPG + " user=anyone dbname=whatever sslmode=disable")
	if err != nil {
		r.errors = append(r.errors, "forward: "+err.Error())
		return
	}
	sdk.LookupFunc = func(_ context.Context, host string) ([]string, error) { return []string{host}, nil }
	sdk.DialFunc = func(ctx context.Context, _, _ string) (net.Conn, error) {
		return postern.client.DialEarly(ctx, "tcp", bindPG)
	}
	type target struct {
		test  string
		p     *path
		conn  string
		cfg   *pgx.ConnConfig
		procs []*proc
	}
	targets := []target{
		{"fwd-select1", direct, directConn, nil, pgProcs(direct, r.pg.proc)},
		{"fwd-select1", postern, viaForward, nil, append(pgProcs(postern, r.pg.proc), fp)},
		{"fwd-sdk-select1", postern, "", sdk, pgProcs(postern, r.pg.proc)},
	}
	n := max(200, r.o.rttN/4)
	for _, t := range targets {
		r.measureOn(t.test, t.p.name, t.procs, func(a *acc, m *meter) error {
			cfg := t.cfg
			if cfg == nil {
				var err error
				if cfg, err = pgx.ParseConfig(t.conn); err != nil {
					return err
				}
			}
			c, err := pgx.ConnectConfig(ctx, cfg)
			if err != nil {
				return err
			}
			defer c.Close(ctx)
			return r.timed(a, m, t.test, t.p.name, n, func() error {
				var one int
				if err := c.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
					return err
				}
				if one != 1 {
					return errors.New("SELECT 1 did not return 1")
				}
				return nil
			})
		})
	}

	pgbench, err := exec.LookPath("pgbench")
	if err != nil {
		r.skipped["fwd-pgbench"] = "pgbench is not installed"
		r.logf("forward: pgbench -S skipped: pgbench is not installed")
		return
	}
	// pgbench's own tables, at scale 1, made directly.
	if out, err := r.pgbench(ctx, pgbench, directConn, "-i", "-q", "-s", "1"); err != nil {
		r.errors = append(r.errors, fmt.Sprintf("forward: pgbench -i: %v\n%s", err, out))
		return
	}
	secs := strconv.Itoa(max(1, int(r.o.loadSecs+0.5)))
	tpsRE := regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)
	latRE := regexp.MustCompile(`latency average = ([0-9.]+) ms`)
	for _, t := range targets[:2] {
		r.measureOn("fwd-pgbench", t.p.name, t.procs, func(a *acc, m *meter) error {
			m.start()
			out, err := r.pgbench(ctx, pgbench, t.conn, "-S", "-n", "-c", "1", "-T", secs)
			m.stop()
			if err != nil {
				return fmt.Errorf("pgbench -S: %v\n%s", err, out)
			}
			tm, lm := tpsRE.FindSubmatch(out), latRE.FindSubmatch(out)
			if tm == nil || lm == nil {
				return fmt.Errorf("pgbench -S: no tps or latency in its output:\n%s", out)
			}
			tps, _ := strconv.ParseFloat(string(tm[1]), 64)
			latMs, _ := strconv.ParseFloat(string(lm[1]), 64)
			s, _ := strconv.ParseFloat(secs, 64)
			res := loadResult{Achieved: tps, Ops: int(tps * s), Workers: 1, Seconds: s, Latency: &summary{Mean: latMs * 1000}}
			a.load = &res
			a.ops += res.Ops
			a.secs += s
			if r.o.verbose {
				r.logf("%-12s %-10s %.0f tx/s, latency average %.3f ms", "fwd-pgbench", t.p.name, tps, latMs)
			}
			return nil
		})
	}
}

// pgbench runs pgbench with a connection string (its last argument is
// the database name, which may be a conninfo string).
func (r *runner) pgbench(ctx context.Context, bin, conn string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append(args, conn)...)
	cmd.Env = append(os.Environ(), "PGCONNECT_TIMEOUT=30")
	return cmd.CombinedOutput()
}
