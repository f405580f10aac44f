package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoBenchCode keeps the benchmark instrument out of the shipped
// binary: it lives in cmd/postern-bench.
func TestNoBenchCode(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to list the dependencies with")
	}
	out, err := exec.Command(gobin, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if strings.Contains(pkg, "bench") {
			t.Errorf("cmd/postern depends on %s", pkg)
		}
	}
}
