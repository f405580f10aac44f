package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/postern/postern/internal/meshtest"
)

// TestBinaryBoundTokens: the README's sender-constrained setup, each part
// its own process. agent-key makes the keys; token issue --bind-key binds
// the agent's and the connector's tokens to them; a relay with
// tokens.require_bound serves the connector (its key in key_file) and the
// tcp-agent example with POSTERN_KEY_FILE; the same token without the key
// file, or a bearer token, is refused with the reason, and the audit says
// which sessions were bound.
func TestBinaryBoundTokens(t *testing.T) {
	dir := t.TempDir()
	mustPostern(t, dir, "keygen")
	mustPostern(t, dir, "agent-key", "--key", "agent.key", "--pub", "agent.pub")
	mustPostern(t, dir, "agent-key", "--key", "connector.key", "--pub", "connector.pub")
	mustPostern(t, dir, "token", "issue", "--sub", "coding-agent", "--group", "coding-agents", "--bind-key", "agent.pub", "--out", "agent.token")
	mustPostern(t, dir, "token", "issue", "--sub", "coding-agent", "--group", "coding-agents", "--out", "bearer.token")
	copyPolicies(t, filepath.Join(dir, "policies"))
	writeFile(t, filepath.Join(dir, "relay.yaml"), `listen: 127.0.0.1:0
tokens:
  audience: postern
  jwks_file: jwks.json
  require_bound: true
policy:
  dir: policies
audit: stdout
`)
	relay := start(t, dir, nil, "relay", "--config", "relay.yaml")
	m := relay.waitLine(&relay.stderr, `msg="postern relay ready" addr=(\S+) pin=(sha256:[0-9a-f]{64})`)
	addr, pin := m[1], m[2]

	mustPostern(t, dir, "token", "issue", "--role", "connector", "--sub", "office-connector",
		"--service", "staging-echo:tcp:staging", "--bind-key", "connector.pub", "--out", "connector.token")
	connectorYAML := fmt.Sprintf(`relays: [%s]
token_file: connector.token
trust: {pin: %s}
services:
  - name: staging-echo
    upstream: %s
    environment: staging
backoff: {min: 50ms, max: 1s}
`, addr, pin, meshtest.EchoServer(t))
	// Without its key, the connector's bound token is refused at load.
	writeFile(t, filepath.Join(dir, "keyless.yaml"), connectorYAML)
	if code, _, errOut := runPostern(t, dir, "connector", "--config", "keyless.yaml"); code == 0 || !strings.Contains(errOut, "key_file: required") {
		t.Fatalf("connector without key_file: exit %d\n%s", code, errOut)
	}
	writeFile(t, filepath.Join(dir, "connector.yaml"), connectorYAML+"key_file: connector.key\n")
	conn := start(t, dir, nil, "connector", "--config", "connector.yaml")
	conn.waitLine(&conn.stderr, `postern connector ready`)

	agent := func(token string, keyFile bool) (string, error) {
		cmd := exec.Command(bin.example["tcp-agent"])
		cmd.Env = append(os.Environ(), "POSTERN_RELAY="+addr, "POSTERN_RELAY_PIN="+pin, "POSTERN_TOKEN_FILE="+filepath.Join(dir, token), "POSTERN_KEY_FILE=")
		if keyFile {
			cmd.Env = append(cmd.Env, "POSTERN_KEY_FILE="+filepath.Join(dir, "agent.key"))
		}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := agent("agent.token", true); err != nil || !strings.Contains(out, "staging-echo answered: hello through the mesh") {
		t.Fatalf("bound token with its key: %v\n%s", err, out)
	}
	for _, tt := range []struct {
		token string
		key   bool
		says  string
	}{
		{token: "agent.token", key: false, says: "is bound to a key and the connection presented no client certificate for it"},
		{token: "bearer.token", key: true, says: "accepts only agent tokens bound to a key"},
	} {
		out, err := agent(tt.token, tt.key)
		if err == nil || !strings.Contains(out, "token key not proven") || !strings.Contains(out, tt.says) {
			t.Errorf("%s (key file %v): %v, want a refusal saying %q:\n%s", tt.token, tt.key, err, tt.says, out)
		}
	}
	conn.stop(syscall.SIGTERM)
	relay.stop(syscall.SIGTERM)
	audit := relay.stdout.String()
	starts := auditEvents(t, audit, "session.start")
	if ev := find(starts, "role", "connector"); ev == nil || ev["key_bound"] != true {
		t.Errorf("connector session.start %v, want key_bound", ev)
	}
	if ev := find(starts, "role", "agent"); ev == nil || ev["key_bound"] != true {
		t.Errorf("agent session.start %v, want key_bound", ev)
	}
	for _, reason := range []string{"key_not_proven", "token_not_bound"} {
		if find(auditEvents(t, audit, "session.reject"), "reason", reason) == nil {
			t.Errorf("no session.reject with reason %s:\n%s", reason, audit)
		}
	}
	for _, f := range []string{"agent.token", "bearer.token", "agent.key"} {
		b, _ := os.ReadFile(filepath.Join(dir, f))
		if secret := strings.TrimSpace(string(b)); strings.Contains(audit, secret) || strings.Contains(relay.stderr.String(), secret) {
			t.Errorf("the relay's output holds %s", f)
		}
	}
}
