package main

import (
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// TestBinaryDev: postern dev prints what an agent exports; an agent using
// exactly that reaches a staging service and is refused the financial
// one; SIGINT stops it with exit 0.
func TestBinaryDev(t *testing.T) {
	dir := t.TempDir()
	p := start(t, dir, nil, "dev", "--listen", "127.0.0.1:0", "--dir", "state")
	p.waitLine(&p.stdout, `Audit events follow`)
	env := []string{}
	for _, line := range strings.Split(p.stdout.String(), "\n") {
		if rest, ok := strings.CutPrefix(line, "export "); ok {
			env = append(env, rest)
		}
	}
	if len(env) != 3 {
		t.Fatalf("want 3 exports, got %v:\n%s", env, p.stdout.String())
	}
	if !strings.Contains(p.stdout.String(), "PostgreSQL: ") {
		t.Errorf("dev does not say what became of PostgreSQL:\n%s", p.stdout.String())
	}
	cmd := exec.Command(bin.agent, "staging-echo", "prod-finance")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("agent: %v\n%s", err, out)
	}
	for _, want := range []string{"staging-echo: allowed: hello staging-echo", "prod-finance: denied by forbid-financial"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("agent output lacks %q:\n%s", want, out)
		}
	}
	p.waitLine(&p.stdout, `"msg":"open.deny".*"binding":"prod-finance"`)
	if code := p.stop(syscall.SIGINT); code != 0 {
		t.Errorf("dev exit %d:\n%s", code, p.stderr.String())
	}
}
