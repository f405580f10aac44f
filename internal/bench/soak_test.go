package bench

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSoakRun runs the soak test for its shortest duration: a connector
// and a relay killed and restarted under 20 agents' opens, and every
// process's goroutines, fds and RSS back where they started.
func TestSoakRun(t *testing.T) {
	if testing.Short() {
		t.Skip("a 10 s soak")
	}
	// Not parallel: the driver's goroutines and fds are this process's,
	// which the other tests would move.
	//
	// The relays and connectors must be flat. The driver's are judged
	// too but not asserted here: in a test binary it is the test
	// process, whose file descriptors the earlier tests' leftovers move
	// (its fds have stepped up by 20 in a full package run, never in a
	// run of this test alone nor in the bench's own binary).
	out := filepath.Join(t.TempDir(), "bench.json")
	var so, se bytes.Buffer
	code := Main([]string{"-phases", "none", "-soak", "10s", "-json", out}, &so, &se)
	stdout := so.String()
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("exit code %d, %v\nstdout:\n%s\nstderr:\n%s", code, err, stdout, se.String())
	}
	var rep Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	s := rep.Soak
	if s == nil {
		t.Fatalf("no soak report; stdout:\n%s\nstderr:\n%s", stdout, se.String())
	}
	for _, v := range s.Verdict {
		if strings.HasPrefix(v, "driver ") {
			t.Log(v)
		} else if !strings.HasSuffix(v, ": flat") {
			t.Errorf("not flat: %s", v)
		}
	}
	for _, e := range rep.Errors {
		if !strings.HasPrefix(e, "soak: not flat: ") {
			t.Errorf("error: %s", e)
		}
	}
	for i, row := range s.Samples {
		if len(row) != 5 {
			t.Fatalf("sample %d has %d processes, want 5", i, len(row))
		}
		for j, p := range row {
			if p.Goroutines <= 0 || p.RSS <= 0 || p.FDs <= 0 {
				t.Errorf("sample %d, %s: %+v", i, s.Procs[j], p)
			}
		}
	}
	for i, p := range s.Phases {
		if p.OK == 0 {
			t.Errorf("third %d of the run: no open succeeded (%+v)", i+1, p)
		}
	}
	if !strings.Contains(stdout, "| relay-1 |") || !strings.Contains(stdout, "- verdict: ") {
		t.Errorf("no soak table in the output:\n%s", stdout)
	}
}

func TestSoakFlag(t *testing.T) {
	for _, v := range []string{"5s", "-1s"} {
		if _, err := parseFlags([]string{"-soak", v}, io.Discard); err == nil {
			t.Errorf("-soak %s accepted", v)
		}
	}
	o, err := parseFlags([]string{"-soak", "3m"}, io.Discard)
	if err != nil || o.soak.Minutes() != 3 {
		t.Errorf("-soak 3m: %v, %v", o, err)
	}
}

// TestSoakJudge checks the tolerances on each role's total.
func TestSoakJudge(t *testing.T) {
	row := func(g int, fds int, rss int64) []soakSample {
		return []soakSample{{Goroutines: g, FDs: fds, RSS: rss}, {Goroutines: 50, FDs: 10, RSS: 40 << 20}, {Goroutines: 50, FDs: 10, RSS: 40 << 20}}
	}
	for _, c := range []struct {
		name string
		end  []soakSample
		flat bool
	}{
		{"same", row(100, 20, 100<<20), true},
		{"goroutines +20%", row(120, 20, 100<<20), true},
		{"goroutines +21%", row(121, 20, 100<<20), false},
		{"fds +10", row(100, 30, 100<<20), true},
		{"fds +11", row(100, 31, 100<<20), false},
		{"RSS +50%", row(100, 20, 150<<20), true},
		{"RSS +51%", row(100, 20, 151<<20), false},
		{"sessions moved between relays", []soakSample{{Goroutines: 100, FDs: 20, RSS: 100 << 20}, {Goroutines: 90, FDs: 12, RSS: 50 << 20}, {Goroutines: 10, FDs: 8, RSS: 30 << 20}}, true},
	} {
		rep := &soakReport{Roles: []string{"driver", "relays", "relays"}}
		rep.Samples[0] = row(100, 20, 100<<20)
		rep.Samples[2] = c.end
		rep.judge()
		if rep.Flat != c.flat {
			t.Errorf("%s: flat %v, want %v (%q)", c.name, rep.Flat, c.flat, rep.Verdict)
		}
	}
	// The relays' RSS may also grow by the collector's floor of headroom,
	// per relay: two of 40 MiB, +50% and 2 x 48 MiB.
	for _, c := range []struct {
		end  int64 // each relay's RSS at the end
		flat bool
	}{{108 << 20, true}, {109 << 20, false}} {
		rep := &soakReport{Roles: []string{"driver", "relays", "relays"}}
		rep.Samples[0] = row(100, 20, 100<<20)
		rep.Samples[2] = []soakSample{{Goroutines: 100, FDs: 20, RSS: 100 << 20}, {Goroutines: 50, FDs: 10, RSS: c.end}, {Goroutines: 50, FDs: 10, RSS: c.end}}
		rep.judge()
		if rep.Flat != c.flat {
			t.Errorf("relays at %d MiB each from 40: flat %v, want %v (%q)", c.end>>20, rep.Flat, c.flat, rep.Verdict)
		}
	}
}
