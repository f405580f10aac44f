package main

// These tests build the postern binary and run it as a person would: each
// relay, connector and agent its own process, over real QUIC on loopback,
// configured by files written here.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/postern/postern"
	"github.com/postern/postern/internal/meshtest"
	"github.com/postern/postern/internal/pgtest"
	"github.com/postern/postern/mesh"
)

// bin holds the binaries built once for all tests.
var bin struct {
	dir     string
	postern string
	agent   string            // testdata/agent: catalog, and any TCP binding named
	example map[string]string // examples/<name>: the agents the README runs
}

const testVersion = "v0.0.0-test"

func TestMain(m *testing.M) {
	code := func() int {
		dir, err := os.MkdirTemp("", "postern-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		bin.dir = dir
		bin.postern = filepath.Join(dir, "postern")
		bin.agent = filepath.Join(dir, "agent")
		bin.example = map[string]string{}
		pkgs := []string{".", "./testdata/agent"}
		for _, name := range []string{"tcp-agent", "http-agent", "coding-agent"} {
			bin.example[name] = filepath.Join(dir, name)
			pkgs = append(pkgs, "github.com/postern/postern/examples/"+name)
		}
		// One go build for all, so that they compile and link in parallel;
		// each binary is named after its package's directory. Not -race:
		// a race-enabled binary takes about a second to start here, and
		// these tests start dozens. The command's own concurrency (policy
		// reloads, signals, the dev mesh) is tested in process, under
		// -race, in internal/cli.
		args := append([]string{"build", "-o", dir + "/", "-ldflags", "-X github.com/postern/postern/internal/cli.Version=" + testVersion}, pkgs...)
		if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "go %s: %v\n%s", strings.Join(args, " "), err, out)
			return 1
		}
		return m.Run()
	}()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// proc is a running postern process.
type proc struct {
	t              *testing.T
	name           string
	cmd            *exec.Cmd
	stdout, stderr meshtest.Log // what the process has written so far
	done           chan struct{}
	err            error
}

// start runs the binary with args in dir. At cleanup, a process the test
// has not stopped gets SIGTERM, so that it removes what it made (postern
// dev: its PostgreSQL data directory), and is killed if it has not exited
// after 5s.
func start(t *testing.T, dir string, env []string, args ...string) *proc {
	t.Helper()
	return startIn(t, dir, "", env, args...)
}

// startIn is start in the network namespace netns ("" for this one's),
// through ip netns exec, which execs the binary: the process is the one
// that gets the signals.
func startIn(t *testing.T, dir, netns string, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, name: args[0], done: make(chan struct{})}
	p.cmd = exec.Command(bin.postern, args...)
	if netns != "" {
		p.cmd = exec.Command("ip", append([]string{"netns", "exec", netns, bin.postern}, args...)...)
	}
	p.cmd.Dir = dir
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
			return
		default:
		}
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
		}
		t.Logf("%s was still running; stopped. stderr:\n%s", p.name, p.stderr.String())
	})
	return p
}

// waitLine waits for a line of w matching re and returns its submatches.
func (p *proc) waitLine(w *meshtest.Log, re string) []string {
	p.t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(15 * time.Second)
	for {
		if m := rx.FindStringSubmatch(w.String()); m != nil {
			return m
		}
		select {
		case <-p.done:
			p.t.Fatalf("%s exited (%v) before printing %q:\nstdout:\n%s\nstderr:\n%s", p.name, p.err, re, p.stdout.String(), p.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s did not print %q in time:\nstdout:\n%s\nstderr:\n%s", p.name, re, p.stdout.String(), p.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stop sends sig and returns the exit code.
func (p *proc) stop(sig os.Signal) int {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatal(err)
	}
	return p.wait(15 * time.Second)
}

func (p *proc) wait(d time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(d):
		p.t.Fatalf("%s did not exit within %s:\n%s", p.name, d, p.stderr.String())
	}
	return p.cmd.ProcessState.ExitCode()
}

// postern runs the binary to completion.
func runPostern(t *testing.T, dir string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(bin.postern, args...)
	cmd.Dir = dir
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), out.String(), errOut.String()
}

func mustPostern(t *testing.T, dir string, args ...string) string {
	t.Helper()
	code, out, errOut := runPostern(t, dir, args...)
	if code != 0 {
		t.Fatalf("postern %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// ordersAPI is a private HTTP API that answers only requests carrying
// the Authorization header auth, which the connector injects.
func ordersAPI(t *testing.T, auth string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != auth {
			http.Error(w, "wrong or missing Authorization", http.StatusUnauthorized)
			return
		}
		if r.URL.Path != "/orders" {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, `{"orders":[{"id":1,"item":"keyboard","status":"shipped"},{"id":2,"item":"monitor","status":"processing"}]}`)
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

func copyPolicies(t *testing.T, dst string) {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	src := filepath.Join(filepath.Dir(file), "..", "..", "examples", "policies")
	files, err := filepath.Glob(filepath.Join(src, "*.cedar"))
	if err != nil || len(files) == 0 {
		t.Fatalf("example policies: %v", err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dst, filepath.Base(f)), string(b))
	}
}

// deployment is a relay and a connector started from files, as the
// README's walkthrough does.
type deployment struct {
	dir        string
	relay      *proc
	connector  *proc
	addr, pin  string
	agentToken string // path
	// relayMetrics and connectorMetrics are the base URLs of their
	// metrics listeners (metrics.listen: 127.0.0.1:0).
	relayMetrics, connectorMetrics string
}

func deploy(t *testing.T, drain string) *deployment {
	t.Helper()
	return deployWith(t, drain, "1h", nil)
}

// service is one entry of the connector's services: as the connector's
// token describes it (--service NAME:KIND:ENVIRONMENT[:LABELS]), as YAML,
// and the files (relative to the deployment's directory) that it names.
type service struct {
	grant, yaml string
	files       map[string]string
}

// relayExtra adds to the relay's configuration: lines under tokens:
// (indented), and files written before the relay starts.
type relayExtra struct {
	tokens string
	files  map[string]string
}

// deployWith deploys with a connector token valid for connectorTTL,
// serving staging-echo and prod-ledger (TCP, financial) and extra.
func deployWith(t *testing.T, drain, connectorTTL string, extra []service, relay ...relayExtra) *deployment {
	t.Helper()
	dir := t.TempDir()
	d := &deployment{dir: dir}
	var tokensExtra string
	for _, r := range relay {
		tokensExtra += r.tokens
		for name, content := range r.files {
			writeFile(t, filepath.Join(dir, name), content)
		}
	}
	mustPostern(t, dir, "keygen")
	mustPostern(t, dir, "token", "issue", "--sub", "coding-agent", "--group", "coding-agents", "--ttl", "1h", "--out", "agent.token")
	d.agentToken = filepath.Join(dir, "agent.token")
	copyPolicies(t, filepath.Join(dir, "policies"))

	writeFile(t, filepath.Join(dir, "relay.yaml"), `# written by TestBinaryMesh
listen: 127.0.0.1:0
tls:
  cert_file: relay.crt
  key_file: relay.key
  self_signed: true
tokens:
  audience: postern
  jwks_file: jwks.json
`+tokensExtra+`policy:
  dir: policies
  poll: 100ms
drain_timeout: `+drain+`
audit: stdout
metrics: {listen: "127.0.0.1:0"}
`)
	d.relay = start(t, dir, nil, "relay", "--config", "relay.yaml")
	m := d.relay.waitLine(&d.relay.stderr, `msg="postern relay ready" addr=(\S+) pin=(sha256:[0-9a-f]{64})`)
	d.addr, d.pin = m[1], m[2]
	d.relayMetrics = strings.TrimSuffix(d.relay.waitLine(&d.relay.stderr, `msg="postern relay ready" .* metrics=(\S+)`)[1], "/metrics")
	if pin := strings.TrimSpace(mustPostern(t, dir, "pin", "relay.crt")); pin != d.pin {
		t.Errorf("postern pin relay.crt = %s, the relay printed %s", pin, d.pin)
	}

	// Issued just before the connector starts: a short-lived token must
	// still be valid when it connects.
	args := []string{"token", "issue", "--role", "connector", "--sub", "office-connector",
		"--service", "staging-echo:tcp:staging", "--service", "prod-ledger:tcp:prod:financial", "--ttl", connectorTTL, "--out", "connector.token"}
	var extraYAML string
	for _, e := range extra {
		args = append(args, "--service", e.grant)
		extraYAML += e.yaml
		for name, content := range e.files {
			writeFile(t, filepath.Join(dir, name), content)
		}
	}
	mustPostern(t, dir, args...)
	echo := meshtest.EchoServer(t)
	writeFile(t, filepath.Join(dir, "connector.yaml"), fmt.Sprintf(`relays: [%s]
token_file: connector.token
trust:
  pin: %s
services:
  - name: staging-echo
    kind: tcp
    upstream: %s
    environment: staging
    description: a private echo service
  - name: prod-ledger
    upstream: %s
    environment: prod
    labels: [financial]
%sbackoff: {min: 50ms, max: 1s}
metrics: {listen: "127.0.0.1:0"}
`, d.addr, d.pin, echo, echo, extraYAML))
	d.connector = start(t, dir, nil, "connector", "--config", "connector.yaml")
	d.connector.waitLine(&d.connector.stderr, `postern connector ready`)
	d.connectorMetrics = strings.TrimSuffix(d.connector.waitLine(&d.connector.stderr, `postern connector starting.* metrics=(\S+)`)[1], "/metrics")
	return d
}

// agent runs the test agent against the deployment.
func (d *deployment) agent(t *testing.T, bindings ...string) string {
	t.Helper()
	return d.run(t, bin.agent, bindings...)
}

// client returns an agent client in process, with the deployment's agent
// token; it is closed at cleanup.
func (d *deployment) client(t *testing.T) *mesh.Client {
	t.Helper()
	tok, err := os.ReadFile(d.agentToken)
	if err != nil {
		t.Fatal(err)
	}
	c, err := mesh.NewClient(mesh.Config{Relay: d.addr, Pin: d.pin, Token: strings.TrimSpace(string(tok))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// run runs an agent program with the environment binding.Open reads.
func (d *deployment) run(t *testing.T, program string, args ...string) string {
	t.Helper()
	cmd := exec.Command(program, args...)
	cmd.Env = append(os.Environ(), "POSTERN_RELAY="+d.addr, "POSTERN_RELAY_PIN="+d.pin, "POSTERN_TOKEN_FILE="+d.agentToken)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", filepath.Base(program), err, out)
	}
	return string(out)
}

// auditEvents decodes the relay's audit lines whose msg is event.
func auditEvents(t *testing.T, out, event string) []map[string]any {
	t.Helper()
	var evs []map[string]any
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var ev map[string]any
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Errorf("audit line is not JSON: %q", sc.Text())
			continue
		}
		if ev["msg"] == event {
			evs = append(evs, ev)
		}
	}
	return evs
}

func find(evs []map[string]any, key, value string) map[string]any {
	for _, ev := range evs {
		if ev[key] == value {
			return ev
		}
	}
	return nil
}

// TestBinaryMesh: keygen, tokens, a relay and a connector from config
// files, the example agents allowed through a TCP and an HTTP binding
// (whose Authorization header the connector injects from a file), an agent
// denied the financial binding, the audit lines, and a clean exit on
// SIGTERM.
func TestBinaryMesh(t *testing.T) {
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
	out := d.run(t, bin.example["tcp-agent"])
	if out != "staging-echo answered: hello through the mesh\n" {
		t.Errorf("tcp-agent: %q", out)
	}
	out = d.run(t, bin.example["http-agent"])
	if !strings.Contains(out, "staging-api orders:\n  1  keyboard   shipped\n  2  monitor    processing\n") {
		t.Errorf("http-agent: %q", out)
	}
	out = d.agent(t, "staging-echo", "prod-ledger")
	for _, want := range []string{
		"catalog: staging-api,staging-echo\n",
		"staging-echo: allowed: hello staging-echo\n",
		"prod-ledger: denied by forbid-financial\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("agent output lacks %q:\n%s", want, out)
		}
	}

	// The relay has written these lines before the agents heard back, but
	// they reach this process through a pipe and a copying goroutine: wait
	// for each before reading them.
	for _, line := range []string{
		`"msg":"open.deny".*"binding":"prod-ledger"`,
		`"msg":"open.allow".*"binding":"staging-api"`,
		`"msg":"stream.close".*"binding":"staging-echo".*"bytes_up":23,`,
	} {
		d.relay.waitLine(&d.relay.stdout, line)
	}
	audit := d.relay.stdout.String()
	if ev := find(auditEvents(t, audit, "session.start"), "subject", "office-connector"); ev == nil || ev["role"] != "connector" {
		t.Errorf("no session.start for the connector:\n%s", audit)
	}
	allow := find(auditEvents(t, audit, "open.allow"), "binding", "staging-echo")
	if allow == nil || allow["subject"] != "coding-agent" || fmt.Sprint(allow["policies"]) != "[coding-agents-read-staging]" || allow["connector"] != "office-connector" {
		t.Errorf("open.allow for staging-echo: %v\n%s", allow, audit)
	}
	deny := find(auditEvents(t, audit, "open.deny"), "binding", "prod-ledger")
	if deny == nil || deny["subject"] != "coding-agent" || fmt.Sprint(deny["policies"]) != "[forbid-financial]" || deny["code"] != "denied" {
		t.Errorf("open.deny for prod-ledger: %v\n%s", deny, audit)
	}
	closed := false
	for _, ev := range auditEvents(t, audit, "stream.close") {
		if ev["binding"] == "staging-echo" && ev["bytes_up"] == float64(len("hello through the mesh\n")) {
			closed = true
		}
	}
	if !closed {
		t.Errorf("no stream.close for the tcp-agent's staging-echo stream:\n%s", audit)
	}
	if allow := find(auditEvents(t, audit, "open.allow"), "binding", "staging-api"); allow == nil {
		t.Errorf("no open.allow for staging-api:\n%s", audit)
	}

	if code := d.connector.stop(syscall.SIGTERM); code != 0 {
		t.Errorf("connector exit %d after SIGTERM:\n%s", code, d.connector.stderr.String())
	}
	if code := d.relay.stop(syscall.SIGTERM); code != 0 {
		t.Errorf("relay exit %d after SIGTERM:\n%s", code, d.relay.stderr.String())
	}
	d.relay.waitLine(&d.relay.stderr, `msg="relay: stopped"`)

	// No token in any output.
	secrets := []string{"orders-api-secret"}
	for _, f := range []string{"agent.token", "connector.token"} {
		tok, err := os.ReadFile(filepath.Join(d.dir, f))
		if err != nil {
			t.Fatal(err)
		}
		s := strings.TrimSpace(string(tok))
		secrets = append(secrets, s[strings.LastIndex(s, ".")+1:])
	}
	for name, o := range map[string]string{"relay stdout": audit, "relay stderr": d.relay.stderr.String(), "connector stderr": d.connector.stderr.String(), "agent": out} {
		for _, secret := range secrets {
			if strings.Contains(o, secret) {
				t.Errorf("%s shows a secret (%.8s...)", name, secret)
			}
		}
	}
}

// TestBinaryCodingAgent: the product's sentence with real processes and a
// real PostgreSQL. The coding agent reads the staging database holding no
// password (the connector logs in with the one in its password file) and
// is refused the production financial records by forbid-financial.
func TestBinaryCodingAgent(t *testing.T) {
	d, _ := deployPostgres(t)
	out := d.run(t, bin.example["coding-agent"])
	for _, want := range []string{
		"staging-db orders:\n  1  keyboard   shipped\n  2  monitor    processing\n",
		"prod-finance: refused, as it should be: denied by policy [forbid-financial]\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("coding-agent output lacks %q:\n%s", want, out)
		}
	}
	d.relay.waitLine(&d.relay.stdout, `"msg":"open.deny".*"binding":"prod-finance"`)
	audit := d.relay.stdout.String()
	if ev := find(auditEvents(t, audit, "open.allow"), "binding", "staging-db"); ev == nil || fmt.Sprint(ev["policies"]) != "[coding-agents-read-staging]" {
		t.Errorf("open.allow for staging-db: %v", ev)
	}
	if ev := find(auditEvents(t, audit, "open.deny"), "binding", "prod-finance"); ev == nil || fmt.Sprint(ev["policies"]) != "[forbid-financial]" {
		t.Errorf("open.deny for prod-finance: %v", ev)
	}
	for name, o := range map[string]string{"agent": out, "audit": audit, "relay": d.relay.stderr.String(), "connector": d.connector.stderr.String()} {
		if strings.Contains(o, pgPassword) {
			t.Errorf("%s shows the database password", name)
		}
	}
	if code := d.connector.stop(syscall.SIGTERM); code != 0 {
		t.Errorf("connector exit %d", code)
	}
	if code := d.relay.stop(syscall.SIGTERM); code != 0 {
		t.Errorf("relay exit %d", code)
	}
}

// TestBinaryDrain: on SIGTERM the relay refuses new opens, lets an open
// stream finish, and exits 0 once it has; a stream that outlives
// drain_timeout is cut and the relay still exits 0.
func TestBinaryDrain(t *testing.T) {
	d := deploy(t, "1500ms")
	c := d.client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := c.Dial(ctx, "tcp", "staging-echo")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	echo := func(s string) error {
		if _, err := io.WriteString(conn, s); err != nil {
			return err
		}
		buf := make([]byte, len(s))
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(conn, buf); err != nil {
			return err
		}
		if string(buf) != s {
			return fmt.Errorf("echo %q, got %q", s, buf)
		}
		return nil
	}
	if err := echo("before\n"); err != nil {
		t.Fatal(err)
	}
	sent := time.Now()
	d.relay.cmd.Process.Signal(syscall.SIGTERM)
	d.relay.waitLine(&d.relay.stderr, `msg="relay: draining"`)

	// The open stream still works while the relay drains; a new open is
	// refused.
	if err := echo("during the drain\n"); err != nil {
		t.Errorf("open stream during the drain: %v", err)
	}
	if _, err := c.Dial(ctx, "tcp", "staging-echo"); !errors.Is(err, postern.ErrUnavailable) {
		t.Errorf("new open during the drain: %v, want ErrUnavailable", err)
	}
	// The stream stays open: the drain is cut at drain_timeout.
	code := d.relay.wait(10 * time.Second)
	if waited := time.Since(sent); waited < 1400*time.Millisecond {
		t.Errorf("the relay exited %s after SIGTERM with a stream open, before its 1.5s drain", waited)
	}
	if code != 0 {
		t.Errorf("relay exit %d:\n%s", code, d.relay.stderr.String())
	}
	if !strings.Contains(d.relay.stderr.String(), "drain ended with streams still open") {
		t.Errorf("the relay did not say it cut streams:\n%s", d.relay.stderr.String())
	}
	if code := d.connector.stop(syscall.SIGINT); code != 0 {
		t.Errorf("connector exit %d", code)
	}
}

// TestBinaryDrainFinishes: a drain ends as soon as the last stream closes.
func TestBinaryDrainFinishes(t *testing.T) {
	d := deploy(t, "30s")
	c := d.client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := c.Dial(ctx, "tcp", "staging-echo")
	if err != nil {
		t.Fatal(err)
	}
	d.relay.cmd.Process.Signal(syscall.SIGTERM)
	d.relay.waitLine(&d.relay.stderr, `msg="relay: draining"`)
	time.Sleep(200 * time.Millisecond)
	select {
	case <-d.relay.done:
		t.Fatal("the relay exited with a stream open")
	default:
	}
	conn.Close()
	if code := d.relay.wait(10 * time.Second); code != 0 {
		t.Errorf("relay exit %d", code)
	}
	if strings.Contains(d.relay.stderr.String(), "streams still open") {
		t.Errorf("the drain timed out instead of finishing:\n%s", d.relay.stderr.String())
	}
	d.connector.stop(syscall.SIGTERM)
}

// TestBinaryPolicyReload: a policy file edited under a running relay
// changes the next decision; SIGHUP reloads too.
func TestBinaryPolicyReload(t *testing.T) {
	d := deploy(t, "5s")
	if out := d.agent(t, "staging-echo"); !strings.Contains(out, "staging-echo: allowed") {
		t.Fatalf("before: %s", out)
	}
	staging := filepath.Join(d.dir, "policies", "staging.cedar")
	old, _ := os.ReadFile(staging)
	writeFile(t, staging, `@id("staging-closed") forbid (principal, action, resource in Environment::"staging");`+"\n"+string(old))
	d.relay.waitLine(&d.relay.stderr, `msg="relay: policies reloaded" trigger="files changed"`)
	if out := d.agent(t, "staging-echo"); !strings.Contains(out, "staging-echo: denied by staging-closed") {
		t.Errorf("after the edit: %s", out)
	}

	// A broken edit is refused; the policies in force stay.
	writeFile(t, staging, `@id("broken") permit (`)
	d.relay.waitLine(&d.relay.stderr, `policy reload failed; keeping the policies in force.*staging.cedar:1`)
	if out := d.agent(t, "staging-echo"); !strings.Contains(out, "denied by staging-closed") {
		t.Errorf("after a broken edit: %s", out)
	}

	writeFile(t, staging, string(old))
	d.relay.waitLine(&d.relay.stderr, `(?s)policy reload failed.*msg="relay: policies reloaded" trigger="files changed"`)
	d.relay.cmd.Process.Signal(syscall.SIGHUP)
	d.relay.waitLine(&d.relay.stderr, `msg="relay: policies reloaded" trigger=SIGHUP`)
	if out := d.agent(t, "staging-echo"); !strings.Contains(out, "staging-echo: allowed") {
		t.Errorf("after restoring: %s", out)
	}
	d.connector.stop(syscall.SIGTERM)
	d.relay.stop(syscall.SIGTERM)
}

// TestBinaryKeyRotation: a signing key merged into tokens.jwks_file is
// accepted after SIGHUP, without a restart.
func TestBinaryKeyRotation(t *testing.T) {
	d := deploy(t, "5s")
	mustPostern(t, d.dir, "keygen", "--key", "key2.jwk", "--jwks", "jwks.json", "--merge")
	mustPostern(t, d.dir, "token", "issue", "--key", "key2.jwk", "--sub", "coding-agent", "--group", "coding-agents", "--ttl", "1h", "--out", "agent2.token")
	d.agentToken = filepath.Join(d.dir, "agent2.token")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var me *postern.Error
	if err := d.client(t).Connect(ctx); !errors.As(err, &me) || me.Reason != "bad_signature" {
		t.Fatalf("a token of the new key before SIGHUP: %v, want bad_signature", err)
	}
	d.relay.cmd.Process.Signal(syscall.SIGHUP)
	d.relay.waitLine(&d.relay.stderr, `msg="relay: key set reloaded"`)
	if err := d.client(t).Connect(ctx); err != nil {
		t.Fatalf("a token of the new key after SIGHUP: %v", err)
	}
	d.connector.stop(syscall.SIGTERM)
	d.relay.stop(syscall.SIGTERM)
}

// TestBinaryTokenFileRefresh: the connector reads its token file again
// before the token in use expires, so a token renewed on disk is what it
// presents next, without a restart.
func TestBinaryTokenFileRefresh(t *testing.T) {
	d := deployWith(t, "5s", "5s", nil)
	// Renew the token on disk, as a job would.
	mustPostern(t, d.dir, "token", "issue", "--role", "connector", "--sub", "office-connector",
		"--service", "staging-echo:tcp:staging", "--service", "prod-ledger:tcp:prod:financial", "--ttl", "2h", "--out", "connector.token")
	m := d.connector.waitLine(&d.connector.stderr, `msg="token refreshed".* expires=(\S+)`)
	exp, err := time.Parse(time.RFC3339, m[1])
	if err != nil {
		t.Fatalf("expires %q: %v", m[1], err)
	}
	if until := time.Until(exp); until < 100*time.Minute {
		t.Errorf("the refreshed token expires in %s: the connector did not present the renewed file", until)
	}
	if out := d.agent(t, "staging-echo"); !strings.Contains(out, "staging-echo: allowed") {
		t.Errorf("after the refresh: %s", out)
	}
	d.connector.stop(syscall.SIGTERM)
	d.relay.stop(syscall.SIGTERM)
}

// TestBinaryQuietRelay: with log.level error the relay still prints its
// ready line, with the address and the pin, and nothing else; the audit
// goes to a file.
func TestBinaryQuietRelay(t *testing.T) {
	dir := t.TempDir()
	mustPostern(t, dir, "keygen")
	copyPolicies(t, filepath.Join(dir, "policies"))
	writeFile(t, filepath.Join(dir, "relay.yaml"), "listen: 127.0.0.1:0\ntokens: {audience: postern, jwks_file: jwks.json}\npolicy: {dir: policies}\naudit: audit.log\nlog: {level: error, format: json}\n")
	p := start(t, dir, nil, "relay", "--config", "relay.yaml")
	p.waitLine(&p.stderr, `"msg":"postern relay ready","addr":"127\.0\.0\.1:\d+","pin":"sha256:[0-9a-f]{64}"`)
	if code := p.stop(syscall.SIGTERM); code != 0 {
		t.Errorf("exit %d", code)
	}
	if lines := strings.Count(p.stderr.String(), "\n"); lines != 1 {
		t.Errorf("a relay at level error printed %d lines:\n%s", lines, p.stderr.String())
	}
	if p.stdout.String() != "" {
		t.Errorf("stdout is not empty with audit in a file: %q", p.stdout.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "audit.log")); err != nil {
		t.Error(err)
	}
}

// TestBinaryConnectorRefused: a connector whose token the relay refuses
// for good (another mesh's audience) exits 1 and says why.
func TestBinaryConnectorRefused(t *testing.T) {
	d := deploy(t, "5s")
	mustPostern(t, d.dir, "token", "issue", "--role", "connector", "--sub", "stranger",
		"--service", "staging-echo:tcp:staging", "--service", "prod-ledger:tcp:prod:financial", "--audience", "another-mesh", "--out", "stranger.token")
	cfg, err := os.ReadFile(filepath.Join(d.dir, "connector.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(d.dir, "stranger.yaml"), strings.Replace(string(cfg), "token_file: connector.token", "token_file: stranger.token", 1))
	p := start(t, d.dir, nil, "connector", "--config", "stranger.yaml")
	if code := p.wait(15 * time.Second); code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	if !strings.Contains(p.stderr.String(), "wrong_audience") {
		t.Errorf("the connector does not say why it was refused:\n%s", p.stderr.String())
	}
	d.relay.waitLine(&d.relay.stdout, `"msg":"session.reject".*"reason":"wrong_audience"`)
	d.connector.stop(syscall.SIGTERM)
	d.relay.stop(syscall.SIGTERM)
}

// TestBinaryConfigErrors: a bad configuration file stops the command with
// exit 2 and an error naming the file, the line and the field.
func TestBinaryConfigErrors(t *testing.T) {
	dir := t.TempDir()
	mustPostern(t, dir, "keygen")
	mustPostern(t, dir, "token", "issue", "--role", "connector", "--sub", "c", "--service", "db", "--out", "connector.token")
	copyPolicies(t, filepath.Join(dir, "policies"))
	const pin = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
	relayOK := "tokens:\n  audience: postern\n  jwks_file: jwks.json\npolicy:\n  dir: policies\n"
	tests := []struct {
		name, cmd, yaml string
		want            []string
	}{
		{"relay missing field", "relay", "tokens:\n  jwks_file: jwks.json\npolicy:\n  dir: policies\n", []string{"bad.yaml:1:1: tokens.audience: required"}},
		{"relay wrong type", "relay", relayOK + "limits:\n  streams_per_agent: lots\n", []string{"bad.yaml:7:22: limits.streams_per_agent: want a whole number"}},
		{"relay unknown key", "relay", relayOK + "polcy_dir: x\n", []string{"bad.yaml:6:1: polcy_dir: unknown field"}},
		{"relay unreadable key set", "relay", "tokens:\n  audience: postern\n  jwks_file: missing.json\npolicy:\n  dir: policies\n", []string{"bad.yaml:3:3: tokens.jwks_file: cannot read missing.json"}},
		{"relay unreadable tls key", "relay", relayOK + "tls:\n  cert_file: jwks.json\n  key_file: policies\n", []string{"bad.yaml:8:3: tls.key_file: cannot read policies"}},
		{"relay bad duration", "relay", relayOK + "drain_timeout: forever\n", []string{"bad.yaml:6:16: drain_timeout: want a duration"}},
		{"connector missing field", "connector", "relays: [127.0.0.1:7443]\ntrust: {pin: " + pin + "}\nservices: [{name: db, upstream: '127.0.0.1:5432'}]\n", []string{"bad.yaml:1:1: token_file: required"}},
		{"connector wrong type", "connector", "relays: 127.0.0.1:7443\ntoken_file: connector.token\ntrust: {pin: " + pin + "}\nservices: [{name: db, upstream: '127.0.0.1:5432'}]\n", []string{"bad.yaml:1:9: relays: want a list"}},
		{"connector unknown key", "connector", "relays: [127.0.0.1:7443]\ntoken_file: connector.token\ntrust: {pin: " + pin + "}\nservices:\n  - name: db\n    upstream: 127.0.0.1:5432\n    enviroment: staging\n", []string{"bad.yaml:7:5: services[0].enviroment: unknown field", `did you mean "environment"`}},
		{"connector unreadable token file", "connector", "relays: [127.0.0.1:7443]\ntoken_file: nothing.token\ntrust: {pin: " + pin + "}\nservices: [{name: db, upstream: '127.0.0.1:5432'}]\n", []string{"bad.yaml:2:1: token_file: cannot read token file", "nothing.token"}},
		{"connector unreadable password file", "connector", "relays: [127.0.0.1:7443]\ntoken_file: connector.token\ntrust: {pin: " + pin + "}\nservices:\n  - name: db\n    kind: postgres\n    upstream: 127.0.0.1:5432\n    postgres:\n      user: app\n      password_file: pw.txt\n", []string{"bad.yaml:10:7: services[0].postgres.password_file: cannot read pw.txt"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			writeFile(t, filepath.Join(dir, "bad.yaml"), tt.yaml)
			code, out, errOut := runPostern(t, dir, tt.cmd, "--config", "bad.yaml")
			if code != 2 {
				t.Errorf("exit %d, want 2\n%s%s", code, out, errOut)
			}
			for _, w := range tt.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errOut)
				}
			}
		})
	}
}

// TestBinaryPolicyCommands: the answers, IDs and exit codes of policy
// validate and policy check on the example policies.
func TestBinaryPolicyCommands(t *testing.T) {
	dir := t.TempDir()
	copyPolicies(t, filepath.Join(dir, "policies"))
	if code, out, _ := runPostern(t, dir, "policy", "validate", "policies"); code != 0 || !strings.Contains(out, "policies: 5 policies valid: coding-agents-read-staging, forbid-financial, no-ddl-anywhere, oncall-reads-prod, oncall-writes-prod-status") {
		t.Errorf("validate: exit %d %q", code, out)
	}
	tests := []struct {
		name string
		args []string
		code int
		out  string
	}{
		{"allowed", []string{"--principal", "coding-agent", "--group", "coding-agents", "--resource", "staging-db", "--kind", "postgres", "--env", "staging"}, 0, "allow (coding-agents-read-staging)\n"},
		{"forbidden", []string{"--principal", "coding-agent", "--group", "coding-agents", "--resource", "prod-finance", "--env", "prod", "--label", "financial"}, 3, "deny (forbid-financial)\n"},
		{"default deny", []string{"--principal", "coding-agent", "--group", "coding-agents", "--resource", "prod-api", "--env", "prod"}, 3, "deny (no policy permits)\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runPostern(t, dir, append(append([]string{"policy", "check"}, tt.args...), "policies")...)
			if code != tt.code || out != tt.out {
				t.Errorf("exit %d %q, want %d %q\n%s", code, out, tt.code, tt.out, errOut)
			}
		})
	}
	writeFile(t, filepath.Join(dir, "typo", "p.cedar"), "@id(\"typo\")\nforbid (principal, action, resource) when { resource.label.contains(\"financial\") };\n")
	if code, out, _ := runPostern(t, dir, "policy", "validate", "typo"); code != 1 || !strings.Contains(out, "p.cedar:1:") || !strings.Contains(out, `"typo"`) || !strings.Contains(out, "label") {
		t.Errorf("validate a typo: exit %d %q", code, out)
	}
	writeFile(t, filepath.Join(dir, "typo2", "p.cedar"), "@id(\"type-typo\")\npermit (principal in Grop::\"coding-agents\", action, resource);\n")
	if code, out, _ := runPostern(t, dir, "policy", "validate", "typo2"); code != 1 || !strings.Contains(out, "Grop") {
		t.Errorf("validate an unknown entity type: exit %d %q", code, out)
	}
}

func TestBinaryVersionAndHelp(t *testing.T) {
	if out := mustPostern(t, "", "version"); !strings.HasPrefix(out, "postern "+testVersion+" ") || !strings.Contains(out, runtime.Version()) {
		t.Errorf("version: %q", out)
	}
	for _, cmd := range [][]string{{"--help"}, {"relay", "--help"}, {"connector", "--help"}, {"keygen", "--help"}, {"token", "issue", "--help"}, {"policy", "check", "--help"}, {"policy", "validate", "--help"}, {"dev", "--help"}, {"version", "--help"}, {"pin", "--help"}} {
		if code, out, _ := runPostern(t, "", cmd...); code != 0 || !strings.Contains(out, "Usage: postern") {
			t.Errorf("%v: exit %d %q", cmd, code, out)
		}
	}
	if code, _, _ := runPostern(t, "", "frobnicate"); code != 2 {
		t.Errorf("unknown command: exit %d", code)
	}
}

// pgPassword is the password of the role app in deployPostgres's server,
// which only the connector holds.
const pgPassword = "correct horse battery staple"

// deployPostgres starts a real PostgreSQL (it skips without one, and fails
// under CI) with a staging database holding two orders and a finance
// database, both owned by the role app, and a mesh of processes whose
// connector serves them as staging-db and prod-finance (labelled
// financial), logging in as app with the password in its password file.
func deployPostgres(t *testing.T, relay ...relayExtra) (*deployment, *pgtest.Server) {
	t.Helper()
	pg := pgtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := pg.CreateRole(ctx, "app", pgPassword); err != nil {
		t.Fatal(err)
	}
	for _, db := range []struct{ name, sql string }{
		{"staging", "CREATE TABLE orders (id int PRIMARY KEY, item text, status text); INSERT INTO orders VALUES (1, 'keyboard', 'shipped'), (2, 'monitor', 'processing'); ALTER TABLE orders OWNER TO app;"},
		{"finance", "CREATE TABLE ledger (account text, balance bigint); ALTER TABLE ledger OWNER TO app;"},
	} {
		if err := pg.CreateDatabase(ctx, db.name, "app"); err != nil {
			t.Fatal(err)
		}
		if err := pg.Exec(ctx, db.name, db.sql); err != nil {
			t.Fatal(err)
		}
	}
	svc := func(name, env, labels, database string) string {
		return fmt.Sprintf(`  - name: %s
    kind: postgres
    upstream: %s
    environment: %s
    labels: [%s]
    postgres:
      user: app
      database: %s
      password_file: pg.password
      sslmode: disable
`, name, pg.Addr, env, labels, database)
	}
	d := deployWith(t, "5s", "1h", []service{
		{"staging-db:postgres:staging", svc("staging-db", "staging", "", "staging"), map[string]string{"pg.password": pgPassword + "\n"}},
		{"prod-finance:postgres:prod:financial", svc("prod-finance", "prod", "financial", "finance"), nil},
	}, relay...)
	return d, pg
}
