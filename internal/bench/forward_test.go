package bench

import (
	"os"
	"testing"
)

// TestForwardRun runs the forward test with tiny sizes: SELECT 1 direct,
// through a forward child's port and through the SDK's dial, and pgbench
// -S direct and through the port, every query checked. It asserts
// nothing about the numbers. It skips without PostgreSQL (or pgbench)
// unless CI is set.
func TestForwardRun(t *testing.T) {
	t.Parallel() // a run of processes of its own
	rep, _ := runMain(t, "-quick", "-paths", "direct,postern", "-phases", "forward", "-rtt", "200", "-load-seconds", "0.5")
	if len(rep.Skipped) > 0 && os.Getenv("CI") == "" {
		t.Skipf("skipped by the bench: %q", rep.Skipped)
	}
	if len(rep.Errors) > 0 || len(rep.Skipped) > 0 {
		t.Fatalf("errors: %q; skipped: %q", rep.Errors, rep.Skipped)
	}
	want := map[string][]string{
		"fwd-select1.p50":     {pathDirect, pathPostern},
		"fwd-sdk-select1.p99": {pathPostern},
		"fwd-pgbench":         {pathDirect, pathPostern},
	}
	for _, m := range rep.Metrics {
		paths, ok := want[m.Key]
		if !ok {
			continue
		}
		delete(want, m.Key)
		for _, p := range paths {
			if v, ok := m.Values[p]; !ok || v <= 0 {
				t.Errorf("metric %s on %s: %v", m.Key, p, m.Values)
			}
		}
	}
	for k := range want {
		t.Errorf("no metric %s", k)
	}
}
