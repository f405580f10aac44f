package bench

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

func needWireGuard(t *testing.T) {
	t.Helper()
	if why := wireguardMissing(); why != "" {
		t.Skip("the WireGuard path cannot run here: " + why)
	}
	if err := exec.Command("ip", "netns", "list").Run(); err != nil {
		t.Skip("no network namespaces here: ", err)
	}
}

func namespaces(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// TestWireGuardRun runs the byte-moving tests through wireguard-go
// between two namespaces, and checks that it measured every test and
// left no namespace behind.
func TestWireGuardRun(t *testing.T) {
	needWireGuard(t)
	t.Parallel() // a run of processes of its own
	rep, _ := runMain(t, "-quick", "-paths", "direct,wireguard", "-phases", "bulk,rtt,open",
		"-bytes", "1", "-rtt", "200", "-opens", "30")
	if why, ok := rep.Skipped[pathWireGuard]; ok {
		t.Fatalf("wireguard skipped as root with a TUN device: %s", why)
	}
	want := map[string]bool{"bulk-down-8": true, "rtt-1k.p50": true, "open.p50": true, "cpu-per-gb.relay": true, "cpu-per-gb.connector": true}
	for _, m := range rep.Metrics {
		if want[m.Key] {
			delete(want, m.Key)
			if _, ok := m.Values[pathWireGuard]; !ok {
				t.Errorf("metric %s has no value for wireguard", m.Key)
			}
		}
	}
	for k := range want {
		t.Errorf("no metric %s", k)
	}
	if ns := namespaces(t); strings.Contains(ns, fmt.Sprintf("%s%d-", nsPrefix, os.Getpid())) {
		t.Errorf("namespaces left behind:\n%s", ns)
	}
}

// TestSweepNamespaces: a namespace of a run whose driver is gone is
// removed; one of a live run is not.
func TestSweepNamespaces(t *testing.T) {
	needWireGuard(t)
	stale := nsPrefix + "2147483646-up" // no such pid
	live := fmt.Sprintf("%s%d-test", nsPrefix, os.Getppid())
	for _, ns := range []string{stale, live} {
		if err := ipCmd("netns", "add", ns); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	}
	sweepNamespaces()
	ns := namespaces(t)
	if strings.Contains(ns, stale) {
		t.Errorf("stale namespace %s not removed", stale)
	}
	if !strings.Contains(ns, live) {
		t.Errorf("live run's namespace %s removed", live)
	}
}
