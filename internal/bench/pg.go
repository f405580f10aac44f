package bench

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/postern/postern/binding"
	"github.com/postern/postern/internal/pgserver"
)

// The binding tests: PostgreSQL and HTTP, direct and through a Postern
// binding (the connector logs in to PostgreSQL with its own credentials
// and proxies HTTP), against the same servers.

const (
	pgUser = "bench"
	pgDB   = "bench"
	// pgScale is the size of the TPC-B-like tables, as pgbench's scale:
	// one branch, ten tellers and 100,000 accounts per unit. One branch
	// per client keeps the test about the path, not lock waits.
	pgScale = 8
)

// postgres starts the PostgreSQL server of the binding tests and returns
// the connector service for it, or nil when the test does not run.
func (r *runner) postgres() *service {
	if !r.has(phasePG) && !r.has(phaseForward) || !slices.Contains(r.o.paths, pathPostern) && !slices.Contains(r.o.paths, pathUngated) && !slices.Contains(r.o.paths, pathDirect) {
		return nil
	}
	if r.pg == nil && r.pgErr == nil {
		r.pg, r.pgErr = r.startPostgres()
		if r.pgErr != nil {
			for _, ph := range []string{phasePG, phaseForward} {
				if r.has(ph) {
					r.skipped[ph] = r.pgErr.Error()
				}
			}
			r.logf("PostgreSQL: skipped: %v", r.pgErr)
		}
	}
	if r.pg == nil {
		return nil
	}
	return &service{Name: bindPG, Kind: "postgres", Upstream: r.pg.srv.Addr, PGUser: pgUser, PGPass: r.pg.password, PGDB: pgDB}
}

type pgServer struct {
	srv      *pgserver.Server
	password string
	proc     *proc
}

func (r *runner) startPostgres() (*pgServer, error) {
	// The server runs as the postgres OS user when we are root, so its
	// directory is under the system's temporary directory, not ours.
	srv, err := pgserver.Start("")
	if err != nil {
		if errors.Is(err, pgserver.ErrNotInstalled) {
			return nil, errors.New("PostgreSQL is not installed")
		}
		return nil, err
	}
	r.onStop(func() { srv.Stop() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	pg := &pgServer{srv: srv, password: fmt.Sprintf("bench-%x", rand.Uint64())}
	if err := srv.CreateRole(ctx, pgUser, pg.password); err != nil {
		return nil, err
	}
	if err := srv.CreateDatabase(ctx, pgDB, pgUser); err != nil {
		return nil, err
	}
	setup := fmt.Sprintf(`
CREATE TABLE pgb_branches (bid int PRIMARY KEY, bbalance int NOT NULL, filler char(88));
CREATE TABLE pgb_tellers (tid int PRIMARY KEY, bid int NOT NULL, tbalance int NOT NULL, filler char(84));
CREATE TABLE pgb_accounts (aid int PRIMARY KEY, bid int NOT NULL, abalance int NOT NULL, filler char(84));
CREATE TABLE pgb_history (tid int, bid int, aid int, delta int, mtime timestamp, filler char(22));
INSERT INTO pgb_branches SELECT b, 0 FROM generate_series(1, %[1]d) b;
INSERT INTO pgb_tellers SELECT t, (t-1)/10+1, 0 FROM generate_series(1, %[1]d*10) t;
INSERT INTO pgb_accounts SELECT a, (a-1)/100000+1, 0 FROM generate_series(1, %[1]d*100000) a;
ALTER TABLE pgb_branches OWNER TO %[2]s; ALTER TABLE pgb_tellers OWNER TO %[2]s;
ALTER TABLE pgb_accounts OWNER TO %[2]s; ALTER TABLE pgb_history OWNER TO %[2]s;`, pgScale, pgUser)
	// Only the pg test uses the tables (the forward test makes pgbench's
	// own, smaller).
	if r.has(phasePG) {
		if err := srv.Exec(ctx, pgDB, setup); err != nil {
			return nil, err
		}
		// VACUUM refuses to run in the transaction a multi-statement Exec is.
		if err := srv.Exec(ctx, pgDB, "VACUUM ANALYZE"); err != nil {
			return nil, err
		}
	}
	// The postmaster's pid is the first line of postmaster.pid; its
	// backends are its children.
	if b, err := os.ReadFile(filepath.Join(srv.Dir, "data", "postmaster.pid")); err == nil {
		if pid, err := strconv.Atoi(strings.SplitN(string(b), "\n", 2)[0]); err == nil {
			pg.proc = &proc{name: "upstream", pid: pid, tree: true}
		}
	}
	if c, err := pgx.Connect(ctx, srv.ConnString(pgUser, pg.password, pgDB)); err == nil {
		r.pgInfo = c.PgConn().ParameterStatus("server_version")
		c.Close(ctx)
	}
	return pg, nil
}

// bindingPaths are the paths the binding tests compare: direct, and
// through a Postern binding with the connector's gate on (postern) and
// off (postern-nogate).
func (r *runner) bindingPaths() (direct, postern, ungated *path) {
	for _, p := range r.paths {
		switch p.name {
		case pathDirect:
			direct = p
		case pathPostern:
			postern = p
		case pathUngated:
			ungated = p
		}
	}
	return direct, postern, ungated
}

// bindingPhases runs the PostgreSQL and HTTP tests, direct and through
// bindings.
func (r *runner) bindingPhases(ctx context.Context) {
	direct, postern, ungated := r.bindingPaths()
	var meshes []*path
	for _, p := range []*path{postern, ungated} {
		if p != nil {
			meshes = append(meshes, p)
		}
	}
	if r.has(phasePG) && r.pg != nil {
		r.pgPhases(ctx, direct, meshes)
	}
	if r.has(phaseHTTP) {
		r.httpPhases(ctx, direct, meshes)
	}
	if r.has(phaseForward) && r.pg != nil {
		r.forwardPhases(ctx, direct, postern)
	}
}

func (r *runner) pgPhases(ctx context.Context, direct *path, meshes []*path) {
	type target struct {
		p  *path
		db *sql.DB
	}
	var targets []target
	if direct != nil {
		cfg, err := pgx.ParseConfig(r.pg.srv.ConnString(pgUser, r.pg.password, pgDB))
		if err != nil {
			r.errors = append(r.errors, "pg: "+err.Error())
			return
		}
		db := stdlib.OpenDB(*cfg)
		defer db.Close()
		targets = append(targets, target{direct, db})
	}
	for _, mp := range meshes {
		b, err := binding.OpenWith(mp.client, bindPG)
		if err != nil {
			r.errors = append(r.errors, "pg: "+mp.name+": "+err.Error())
			return
		}
		defer b.Close()
		db, err := b.SQL()
		if err != nil {
			r.errors = append(r.errors, "pg: "+mp.name+": "+err.Error())
			return
		}
		targets = append(targets, target{mp, db})
	}
	n := max(200, r.o.rttN/4)
	for _, t := range targets {
		procs := pgProcs(t.p, r.pg.proc)
		t.db.SetMaxOpenConns(8)
		t.db.SetMaxIdleConns(8)
		r.measureOn("pg-select1", t.p.name, procs, func(a *acc, m *meter) error {
			conn, err := t.db.Conn(ctx)
			if err != nil {
				return err
			}
			defer conn.Close()
			return r.timed(a, m, "pg-select1", t.p.name, n, func() error {
				var one int
				if err := conn.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
					return err
				}
				if one != 1 {
					return errors.New("SELECT 1 did not return 1")
				}
				return nil
			})
		})
	}
	for _, t := range targets {
		procs := pgProcs(t.p, r.pg.proc)
		r.measureOn("pg-tx8", t.p.name, procs, func(a *acc, m *meter) error {
			// Open the 8 connections first: the rate is of transactions,
			// not logins.
			var conns []*sql.Conn
			for range 8 {
				c, err := t.db.Conn(ctx)
				if err != nil {
					return err
				}
				conns = append(conns, c)
			}
			for _, c := range conns {
				c.Close()
			}
			m.start()
			res := load(ctx, time.Duration(r.o.loadSecs*float64(time.Second)), 0, 8, func(ctx context.Context) error {
				return tpcb(ctx, t.db)
			})
			m.stop()
			a.load = &res
			a.ops += res.Ops
			a.secs += res.Seconds
			if res.Errors > 0 {
				return fmt.Errorf("%d of %d transactions failed: %s", res.Errors, res.Ops+res.Errors, res.Error)
			}
			if r.o.verbose {
				r.logf("%-12s %-10s %.0f tx/s, %s", "pg-tx8", t.p.name, res.Achieved, latLine(res.Latency))
			}
			return nil
		})
	}
}

func pgProcs(p *path, pg *proc) []*proc {
	var ps []*proc
	for _, pr := range p.procs {
		if pr.name != "upstream" {
			ps = append(ps, pr)
		}
	}
	if pg != nil {
		ps = append(ps, pg)
	}
	return ps
}

// tpcb is one transaction of pgbench's default script (TPC-B-like).
func tpcb(ctx context.Context, db *sql.DB) error {
	aid := rand.IntN(pgScale*100000) + 1
	tid := rand.IntN(pgScale*10) + 1
	bid := rand.IntN(pgScale) + 1
	delta := rand.IntN(10001) - 5000
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, "UPDATE pgb_accounts SET abalance = abalance + $1 WHERE aid = $2", delta, aid); err != nil {
		return err
	}
	var bal int
	if err := tx.QueryRowContext(ctx, "SELECT abalance FROM pgb_accounts WHERE aid = $1", aid).Scan(&bal); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, "UPDATE pgb_tellers SET tbalance = tbalance + $1 WHERE tid = $2", delta, tid); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, "UPDATE pgb_branches SET bbalance = bbalance + $1 WHERE bid = $2", delta, bid); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO pgb_history (tid, bid, aid, delta, mtime) VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP)", tid, bid, aid, delta); err != nil {
		return err
	}
	return tx.Commit()
}

func (r *runner) httpPhases(ctx context.Context, direct *path, meshes []*path) {
	type target struct {
		p      *path
		client *http.Client
		url    string
	}
	var targets []target
	if direct != nil {
		tr := &http.Transport{MaxIdleConnsPerHost: 16}
		defer tr.CloseIdleConnections()
		targets = append(targets, target{direct, &http.Client{Transport: tr}, "http://" + r.up.HTTP + "/small"})
	}
	for _, mp := range meshes {
		b, err := binding.OpenWith(mp.client, bindHTTP)
		if err != nil {
			r.errors = append(r.errors, "http: "+mp.name+": "+err.Error())
			return
		}
		defer b.Close()
		c, err := b.HTTPClient()
		if err != nil {
			r.errors = append(r.errors, "http: "+mp.name+": "+err.Error())
			return
		}
		targets = append(targets, target{mp, c, "/small"})
	}
	get := func(ctx context.Context, c *http.Client, url string) error {
		req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
		if err != nil {
			return err
		}
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		if resp.StatusCode != 200 || string(body) != string(httpBody) {
			return fmt.Errorf("GET %s: %s, %d bytes: not the upstream's answer", url, resp.Status, len(body))
		}
		return nil
	}
	n := max(200, r.o.rttN/4)
	for _, t := range targets {
		r.measureOn("http-get", t.p.name, t.p.procs, func(a *acc, m *meter) error {
			return r.timed(a, m, "http-get", t.p.name, n, func() error { return get(ctx, t.client, t.url) })
		})
	}
	for _, t := range targets {
		r.measureOn("http-get8", t.p.name, t.p.procs, func(a *acc, m *meter) error {
			m.start()
			res := load(ctx, time.Duration(r.o.loadSecs*float64(time.Second)), 0, 8, func(ctx context.Context) error {
				return get(ctx, t.client, t.url)
			})
			m.stop()
			a.load = &res
			a.ops += res.Ops
			a.secs += res.Seconds
			if res.Errors > 0 {
				return fmt.Errorf("%d of %d GETs failed: %s", res.Errors, res.Ops+res.Errors, res.Error)
			}
			if r.o.verbose {
				r.logf("%-12s %-10s %.0f GET/s, %s", "http-get8", t.p.name, res.Achieved, latLine(res.Latency))
			}
			return nil
		})
	}
}

// timed runs op n times after n/10 warm-up runs, one at a time, adds
// the latency of each timed run to a, and has m sample the CPU over the
// timed runs.
func (r *runner) timed(a *acc, m *meter, test, path string, n int, op func() error) error {
	t0 := time.Now()
	for i := range n + n/10 {
		if i == n/10 {
			m.start()
		}
		s := time.Now()
		if err := op(); err != nil {
			return err
		}
		if i >= n/10 {
			a.lat = append(a.lat, time.Since(s))
		}
	}
	m.stop()
	a.ops += n
	a.secs += time.Since(t0).Seconds()
	if r.o.verbose {
		r.logf("%-12s %-10s %s", test, path, latLine(a.lat.summary()))
	}
	return nil
}
