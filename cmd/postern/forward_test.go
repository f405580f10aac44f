package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// forwardProc is a running postern forward and the local address of each
// binding it forwards.
type forwardProc struct {
	*proc
	addr map[string]string
}

// forward runs postern forward as the deployment's agent.
func (d *deployment) forward(t *testing.T, args ...string) *forwardProc {
	t.Helper()
	env := []string{"POSTERN_RELAY=" + d.addr, "POSTERN_RELAY_PIN=" + d.pin, "POSTERN_TOKEN_FILE=" + d.agentToken}
	p := &forwardProc{proc: start(t, d.dir, env, append([]string{"forward"}, args...)...), addr: map[string]string{}}
	for _, a := range args {
		name, _, ok := strings.Cut(a, "=")
		if !ok || strings.HasPrefix(a, "-") {
			continue
		}
		m := p.waitLine(&p.stderr, `msg="postern forward ready" binding=`+regexp.QuoteMeta(name)+` listen=(\S+)`)
		p.addr[name] = m[1]
	}
	return p
}

// TestBinaryForward: postern forward carries a TCP client (with its
// half-close) and an HTTP client (whose Authorization header the
// connector injects) unchanged, resets a client of a denied binding and
// logs the deciding policy, refuses a non-loopback listen address without
// --allow-remote, and on SIGTERM stops accepting, lets the connection in
// flight finish and exits 0.
func TestBinaryForward(t *testing.T) {
	api := ordersAPI(t, "Bearer orders-api-secret")
	apiYAML := fmt.Sprintf(`  - name: staging-api
    kind: http
    upstream: %s
    environment: staging
    http:
      headers:
        Authorization: {file: api.secret}
`, api)
	d := deployWith(t, "5s", "1h", []service{{"staging-api:http:staging", apiYAML, map[string]string{"api.secret": "Bearer orders-api-secret\n"}}})

	t.Run("loopback only", func(t *testing.T) {
		for _, addr := range []string{"0.0.0.0:0", ":0", "192.0.2.1:5432"} {
			code, _, stderr := runPostern(t, d.dir, "forward", "staging-echo="+addr)
			if code != 2 || !strings.Contains(stderr, "is not a loopback address") || !strings.Contains(stderr, "--allow-remote") {
				t.Errorf("forward staging-echo=%s: exit %d, %q", addr, code, stderr)
			}
		}
	})

	f := d.forward(t, "--drain", "20s", "staging-echo=127.0.0.1:0", "staging-api=127.0.0.1:0", "prod-ledger=127.0.0.1:0")

	t.Run("tcp echo", func(t *testing.T) {
		c, err := net.Dial("tcp", f.addr["staging-echo"])
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, "hello through forward\n")
		c.(*net.TCPConn).CloseWrite()
		if got, err := io.ReadAll(c); err != nil || string(got) != "hello through forward\n" {
			t.Fatalf("echo: %q, %v", got, err)
		}
		f.waitLine(&f.stderr, `msg="forward: connection closed" binding=staging-echo kind=tcp peer=127\.0\.0\.1:\d+ bytes_up=22 bytes_down=22 duration=\S+ outcome=ok`)
	})

	t.Run("http", func(t *testing.T) {
		hc := &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}
		defer hc.CloseIdleConnections()
		resp, err := hc.Get("http://" + f.addr["staging-api"] + "/orders")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), `"item":"keyboard"`) {
			t.Fatalf("GET /orders: %s %q", resp.Status, b)
		}
	})

	t.Run("denied", func(t *testing.T) {
		c, err := net.Dial("tcp", f.addr["prod-ledger"])
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, "hello\n")
		if b, err := io.ReadAll(c); err == nil || len(b) > 0 {
			t.Errorf("a denied tcp binding answered %q, %v; want a reset", b, err)
		}
		f.waitLine(&f.stderr, `msg="forward: open refused" binding=prod-ledger .*outcome=refused err=".*denied by policy \(policy forbid-financial\).*policies=\[forbid-financial\]`)
	})

	t.Run("drain on SIGTERM", func(t *testing.T) {
		c, err := net.Dial("tcp", f.addr["staging-echo"])
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(15 * time.Second))
		io.WriteString(c, "before ")
		buf := make([]byte, len("before "))
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatal(err)
		}
		if err := f.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		f.waitLine(&f.stderr, `msg="forward: draining" reason=terminated connections=1`)
		if c2, err := net.DialTimeout("tcp", f.addr["staging-echo"], time.Second); err == nil {
			c2.Close()
			t.Error("forward still accepts while draining")
		}
		io.WriteString(c, "after")
		c.(*net.TCPConn).CloseWrite()
		if rest, err := io.ReadAll(c); err != nil || string(rest) != "after" {
			t.Fatalf("the connection in flight after SIGTERM: %q, %v", rest, err)
		}
		if code := f.wait(15 * time.Second); code != 0 {
			t.Fatalf("forward exit %d after SIGTERM:\n%s", code, f.stderr.String())
		}
		f.waitLine(&f.stderr, `msg="forward: connection closed" binding=staging-echo .*bytes_up=12 bytes_down=12 .*outcome=ok`)
		f.waitLine(&f.stderr, `msg="forward: stopped"`)
	})

	t.Run("allow-remote", func(t *testing.T) {
		p := d.forward(t, "--allow-remote", "staging-echo=0.0.0.0:0")
		_, port, _ := net.SplitHostPort(p.addr["staging-echo"])
		c, err := net.Dial("tcp", "127.0.0.1:"+port)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		if code := p.stop(syscall.SIGINT); code != 0 {
			t.Errorf("exit %d after SIGINT", code)
		}
	})
	d.stop(t)
}

// stop stops the connector and the relay with SIGTERM, and checks that
// both exit 0.
func (d *deployment) stop(t *testing.T) {
	t.Helper()
	if code := d.connector.stop(syscall.SIGTERM); code != 0 {
		t.Errorf("connector exit %d after SIGTERM", code)
	}
	if code := d.relay.stop(syscall.SIGTERM); code != 0 {
		t.Errorf("relay exit %d after SIGTERM", code)
	}
}

// pgClient returns the path of a PostgreSQL client program, skipping the
// test without it unless under CI.
func pgClient(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "" {
			t.Skipf("%s is not installed (Debian's postgresql-client; set CI=1 to make this a failure)", name)
		}
		t.Fatalf("%s is not installed: %v", name, err)
	}
	return p
}

// runPG runs a PostgreSQL client program and returns its exit code and
// combined output.
func runPG(t *testing.T, program string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, program, args...)
	cmd.Env = append(os.Environ(), "PGCONNECT_TIMEOUT=10", "PGPASSWORD=not-the-password", "PSQLRC=/dev/null")
	out, err := cmd.CombinedOutput()
	if err != nil && cmd.ProcessState == nil {
		t.Fatalf("%s: %v", program, err)
	}
	return cmd.ProcessState.ExitCode(), string(out)
}

// TestBinaryForwardPostgres: the real psql and pgbench, which know
// nothing of Postern, through postern forward to a real PostgreSQL: a
// SELECT returns rows with any user and password (the connector logs in),
// a DELETE is denied by the connector with SQLSTATE 42501 and the row
// stays, pgbench runs select-only without an error, and psql
// refused the financial database prints the policy that denied it.
func TestBinaryForwardPostgres(t *testing.T) {
	psql, pgbench := pgClient(t, "psql"), pgClient(t, "pgbench")
	d, pg := deployPostgres(t)

	f := d.forward(t, "staging-db=127.0.0.1:0", "prod-finance=127.0.0.1:0")
	hostPort := func(name string) (string, string) {
		h, p, _ := net.SplitHostPort(f.addr[name])
		return h, p
	}

	h, p := hostPort("staging-db")
	code, out := runPG(t, psql, "-X", "-w", "-At", fmt.Sprintf("host=%s port=%s user=agent dbname=whatever sslmode=disable", h, p), "-c", "SELECT id, item FROM orders ORDER BY id")
	if code != 0 || out != "1|keyboard\n2|monitor\n" {
		t.Errorf("psql SELECT: exit %d:\n%s", code, out)
	}
	// sslmode=prefer (psql's default): forward declines SSL, psql goes on.
	code, out = runPG(t, psql, "-X", "-w", "-At", fmt.Sprintf("host=%s port=%s user=someone", h, p), "-c", "SELECT current_user")
	if code != 0 || out != "app\n" {
		t.Errorf("psql with sslmode=prefer: exit %d:\n%s", code, out)
	}

	// The connector decides every statement: a DELETE is no read, and the
	// coding agent may only read staging.
	code, out = runPG(t, psql, "-X", "-w", fmt.Sprintf("host=%s port=%s user=agent sslmode=disable", h, p), "-c", "DELETE FROM orders WHERE id = 1")
	if want := "ERROR:  postern: denied (no policy permits sql:delete): DELETE FROM orders WHERE id = $1"; code == 0 || !strings.Contains(out, want) {
		t.Errorf("psql DELETE through forward: exit %d, want %q:\n%s", code, want, out)
	}
	if code, out = runPG(t, psql, "-X", "-w", "-At", fmt.Sprintf("host=%s port=%s user=agent sslmode=disable", h, p), "-c", "SELECT count(*) FROM orders"); out != "2\n" {
		t.Errorf("after the denied DELETE: exit %d:\n%s", code, out)
	}

	// pgbench -i runs DDL (DROP, CREATE, TRUNCATE), which the example
	// policies forbid everyone (no-ddl-anywhere): it initializes directly
	// against the server, as app, and only the benchmark goes through.
	ictx, icancel := context.WithTimeout(context.Background(), 60*time.Second)
	init := exec.CommandContext(ictx, pgbench, "-i", "-s", "1", "-q", "-h", pg.Host, "-p", strconv.Itoa(pg.Port), "-U", "app", "staging")
	init.Env = append(os.Environ(), "PGPASSWORD="+pgPassword, "PGSSLMODE=disable")
	iout, err := init.CombinedOutput()
	icancel()
	if err != nil {
		t.Fatalf("pgbench -i against the server: %v:\n%s", err, iout)
	}
	code, out = runPG(t, pgbench, "-S", "-T", "3", "-c", "2", "-n", "-h", h, "-p", p, "-U", "agent", "staging")
	m := regexp.MustCompile(`number of transactions actually processed: (\d+)`).FindStringSubmatch(out)
	if code != 0 || m == nil || m[1] == "0" || !strings.Contains(out, "number of failed transactions: 0 ") || strings.Contains(strings.ToLower(out), "error") {
		t.Errorf("pgbench -S through forward: exit %d:\n%s", code, out)
	} else if n, _ := strconv.Atoi(m[1]); n > 0 {
		t.Logf("pgbench -S -T 3 -c 2 through forward: %d transactions", n)
	}

	h, p = hostPort("prod-finance")
	code, out = runPG(t, psql, "-X", "-w", fmt.Sprintf("host=%s port=%s user=agent sslmode=disable", h, p), "-c", "SELECT 1")
	want := `FATAL:  postern: open "prod-finance": denied by policy (policy forbid-financial)`
	if code != 2 || !strings.Contains(out, want) {
		t.Errorf("psql on the denied binding: exit %d, want 2 and %q:\n%s", code, want, out)
	}
	f.waitLine(&f.stderr, `msg="forward: open refused" binding=prod-finance kind=unknown .*outcome=refused .*policies=\[forbid-financial\]`)

	if strings.Contains(f.stderr.String(), pgPassword) {
		t.Error("forward's log shows the database password")
	}
	if code := f.stop(syscall.SIGTERM); code != 0 {
		t.Errorf("forward exit %d after SIGTERM", code)
	}
	d.stop(t)
}
