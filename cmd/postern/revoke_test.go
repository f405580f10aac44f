package main

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/postern/postern"
	"github.com/postern/postern/binding"
	"github.com/postern/postern/mesh"
	"github.com/postern/postern/mesh/identity"
)

// cutBound is how long a binary test lets a revocation take to reach a
// live stream: the file poll (100ms here) plus the cut, which
// postern-bench revoke measures in microseconds; generous for a loaded
// machine.
const cutBound = 5 * time.Second

// liveEcho opens staging-echo and checks one round trip.
func liveEcho(t *testing.T, c *mesh.Client) net.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	conn, err := c.Dial(ctx, "tcp", "staging-echo")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, "live"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "live" {
		t.Fatalf("echo = %q, %v", buf, err)
	}
	conn.SetDeadline(time.Time{})
	return conn
}

// cutErr waits in Read for conn to fail and returns the error and when.
func cutErr(t *testing.T, conn net.Conn) (error, time.Time) {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(cutBound + 10*time.Second))
	buf := make([]byte, 16)
	for {
		if _, err := conn.Read(buf); err != nil {
			return err, time.Now()
		}
	}
}

// TestBinaryPolicyReloadCutsLiveSessions: a policy file that forbids
// staging, dropped into a running relay's policy.dir, cuts a live TCP
// stream and a live PostgreSQL session opened before it, each with an
// error matching postern.ErrRevoked that names the new policy, and the
// audit trail says so.
func TestBinaryPolicyReloadCutsLiveSessions(t *testing.T) {
	d, _ := deployPostgres(t)
	agent := d.client(t)
	echo := liveEcho(t, agent)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := binding.OpenWith(agent, "staging-db")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := db.PgxConfig()
	if err != nil {
		t.Fatal(err)
	}
	pg, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close(context.Background())
	var n int
	if err := pg.QueryRow(ctx, "SELECT count(*) FROM orders").Scan(&n); err != nil || n != 2 {
		t.Fatalf("before the reload: %d orders, %v", n, err)
	}

	written := time.Now()
	writeFile(t, filepath.Join(d.dir, "policies", "freeze.cedar"), `@id("staging-frozen") forbid (principal, action, resource in Environment::"staging");`+"\n")
	err, at := cutErr(t, echo)
	t.Logf("policy file written -> live stream reset: %v (includes the relay's 100ms poll)", at.Sub(written))
	var pe *postern.Error
	if !errors.Is(err, postern.ErrRevoked) || !errors.As(err, &pe) || !slices.Equal(pe.Policies, []string{"staging-frozen"}) {
		t.Fatalf("the live stream's Read = %v, want postern.ErrRevoked naming staging-frozen", err)
	}
	if at.Sub(written) > cutBound {
		t.Errorf("cut %v after the file was written", at.Sub(written))
	}

	// The PostgreSQL session is cut too: its next query fails, with the
	// revocation as the cause.
	qctx, qcancel := context.WithTimeout(context.Background(), cutBound)
	defer qcancel()
	err = pg.QueryRow(qctx, "SELECT count(*) FROM orders").Scan(&n)
	if err == nil {
		t.Fatal("a query on the PostgreSQL session succeeded after the reload")
	}
	if !errors.Is(err, postern.ErrRevoked) {
		t.Errorf("the PostgreSQL session's error = %v, want it to wrap postern.ErrRevoked", err)
	}
	if !pg.IsClosed() {
		t.Error("pgx still holds the session open")
	}

	d.relay.waitLine(&d.relay.stdout, `"msg":"stream.revoked".*"binding":"staging-db"`)
	evs := auditEvents(t, d.relay.stdout.String(), "stream.revoked")
	for _, b := range []string{"staging-echo", "staging-db"} {
		ev := find(evs, "binding", b)
		if ev == nil || ev["trigger"] != "policy_reload" || ev["subject"] != "coding-agent" || !strings.Contains(jsonString(ev["policies"]), "staging-frozen") {
			t.Errorf("stream.revoked of %s = %v", b, ev)
		}
	}
	if _, err := agent.Dial(ctx, "tcp", "staging-echo"); !errors.Is(err, postern.ErrDenied) {
		t.Errorf("a new open = %v, want postern.ErrDenied", err)
	}
	d.stop(t)
}

func jsonString(v any) string {
	if l, ok := v.([]any); ok {
		var s []string
		for _, x := range l {
			s = append(s, x.(string))
		}
		return strings.Join(s, ",")
	}
	return ""
}

// TestBinaryRevocationFile: an entry appended to tokens.revocation_file
// of a running relay cuts the listed agent's live stream and refuses its
// reconnects; a token revoked by ID is refused while another token of the
// same subject is not; removing the entries lets the agent back.
func TestBinaryRevocationFile(t *testing.T) {
	d := deployWith(t, "5s", "1h", nil, relayExtra{tokens: "  revocation_file: revoked.txt\n", files: map[string]string{"revoked.txt": "# revoked tokens and subjects\n"}})
	revoked := filepath.Join(d.dir, "revoked.txt")
	agent := d.client(t)
	conn := liveEcho(t, agent)

	written := time.Now()
	writeFile(t, revoked, "# revoked tokens and subjects\nsubject coding-agent\n")
	err, at := cutErr(t, conn)
	t.Logf("revocation file written -> live stream reset: %v (includes the relay's 100ms poll)", at.Sub(written))
	var pe *postern.Error
	if !errors.Is(err, postern.ErrRevoked) || !errors.As(err, &pe) || pe.Reason != "subject_revoked" {
		t.Fatalf("Read after the entry = %v, want postern.ErrRevoked, subject_revoked", err)
	}
	if at.Sub(written) > cutBound {
		t.Errorf("cut %v after the file was written", at.Sub(written))
	}
	d.relay.waitLine(&d.relay.stderr, `msg="relay: revocation list reloaded" trigger="file changed" tokens=0 subjects=1`)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := agent.Dial(ctx, "tcp", "staging-echo"); !errors.Is(err, postern.ErrRevoked) {
		t.Fatalf("reconnecting = %v, want postern.ErrRevoked", err)
	}
	// The separate agent program is refused too.
	if out, code := runAgent(d, "staging-echo"); code == 0 || !strings.Contains(out, "access revoked: the relay's revocation list names this token's subject") {
		t.Errorf("the agent program: exit %d:\n%s", code, out)
	}

	// By token ID: the revoked token is refused, a new one of the same
	// subject is not.
	out := mustPostern(t, d.dir, "token", "issue", "--sub", "coding-agent", "--group", "coding-agents", "--out", "second.token")
	m := regexp.MustCompile(`; id (\S+)\) to`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("token issue printed no ID: %s", out)
	}
	first, err := os.ReadFile(d.agentToken)
	if err != nil {
		t.Fatal(err)
	}
	firstID := tokenID(t, strings.TrimSpace(string(first)))
	writeFile(t, revoked, "token "+firstID+"\n")
	d.relay.waitLine(&d.relay.stderr, `msg="relay: revocation list reloaded" trigger="file changed" tokens=1 subjects=0`)
	if _, err := agent.Dial(ctx, "tcp", "staging-echo"); !errors.As(err, &pe) || pe.Reason != "token_revoked" {
		t.Fatalf("the revoked token = %v, want token_revoked", err)
	}
	second, err := os.ReadFile(filepath.Join(d.dir, "second.token"))
	if err != nil {
		t.Fatal(err)
	}
	other, err := mesh.NewClient(mesh.Config{Relay: d.addr, Pin: d.pin, Token: strings.TrimSpace(string(second))})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	liveEcho(t, other)

	// A broken file keeps the list in force.
	writeFile(t, revoked, "token "+firstID+"\nbogus line\n")
	d.relay.waitLine(&d.relay.stderr, `revocation list reload failed; keeping the list in force.*line 2`)
	if _, err := agent.Dial(ctx, "tcp", "staging-echo"); !errors.Is(err, postern.ErrRevoked) {
		t.Fatalf("after a broken edit: %v, want still revoked", err)
	}
	writeFile(t, revoked, "")
	d.relay.waitLine(&d.relay.stderr, `msg="relay: revocation list reloaded" trigger="file changed" tokens=0 subjects=0`)
	liveEcho(t, agent)

	rejects := auditEvents(t, d.relay.stdout.String(), "session.reject")
	if find(rejects, "reason", "subject_revoked") == nil || find(rejects, "reason", "token_revoked") == nil {
		t.Errorf("session.reject events: %v", rejects)
	}
	d.stop(t)
}

// runAgent runs the test agent program, returning its output and exit
// code.
func runAgent(d *deployment, args ...string) (string, int) {
	cmd := execAgent(d, args...)
	out, _ := cmd.CombinedOutput()
	return string(out), cmd.ProcessState.ExitCode()
}

// TestBinaryTokenMaxLifetime: a token living longer than the relay's
// tokens.max_ttl (24h by default) is refused with its own reason, and
// token issue refuses to make one unless told the relay allows it.
func TestBinaryTokenMaxLifetime(t *testing.T) {
	d := deploy(t, "5s")
	code, _, errOut := runPostern(t, d.dir, "token", "issue", "--sub", "eternal", "--group", "coding-agents", "--ttl", "8760h")
	if code != 2 || !strings.Contains(errOut, "tokens.max_ttl") {
		t.Errorf("token issue --ttl 8760h: exit %d:\n%s", code, errOut)
	}
	mustPostern(t, d.dir, "token", "issue", "--sub", "eternal", "--group", "coding-agents", "--ttl", "48h", "--max-ttl", "48h", "--out", "long.token")
	tok, err := os.ReadFile(filepath.Join(d.dir, "long.token"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := mesh.NewClient(mesh.Config{Relay: d.addr, Pin: d.pin, Token: strings.TrimSpace(string(tok))})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = c.Connect(ctx)
	var pe *postern.Error
	if !errors.Is(err, postern.ErrUnauthenticated) || !errors.As(err, &pe) || pe.Reason != "token_lifetime_exceeded" || !strings.Contains(err.Error(), "more than the 24h") {
		t.Fatalf("a 48h token = %v, want unauthenticated, token_lifetime_exceeded", err)
	}
	d.relay.waitLine(&d.relay.stdout, `"msg":"session.reject".*"reason":"token_lifetime_exceeded"`)
	if out := d.agent(t, "staging-echo"); !strings.Contains(out, "staging-echo: allowed") {
		t.Errorf("a 1h token: %s", out)
	}
	d.connector.stop(syscall.SIGTERM)
	d.relay.stop(syscall.SIGTERM)
}

func execAgent(d *deployment, args ...string) *exec.Cmd {
	cmd := exec.Command(bin.agent, args...)
	cmd.Env = append(os.Environ(), "POSTERN_RELAY="+d.addr, "POSTERN_RELAY_PIN="+d.pin, "POSTERN_TOKEN_FILE="+d.agentToken)
	return cmd
}

func tokenID(t *testing.T, tok string) string {
	t.Helper()
	c, err := identity.ParseUnverified(tok)
	if err != nil || c.ID == "" {
		t.Fatalf("token ID: %v", err)
	}
	return c.ID
}
