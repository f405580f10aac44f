package bench

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestAttackRun runs the bad-token phase of the attack test with its quick
// sizes and checks what the instrument measured: the attacker's Hellos all
// answered with a Reject, the relay's audit trail summing exactly those
// refusals in fewer events than there were refusals, and the memory and
// latency figures present, with the control run against a decoy relay
// (-attack-control). Its verdicts on the numbers are not asserted:
// on a loaded machine the p99 bound may fail, which the bench reports as
// an error of the run.
func TestAttackRun(t *testing.T) {
	t.Parallel()
	out := filepath.Join(t.TempDir(), "bench.json")
	var stdout, stderr bytes.Buffer
	Main([]string{"-quick", "-phases", "none", "-attack", "badtokens", "-attack-pin=false", "-attack-control", "-json", out}, &stdout, &stderr)
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("%v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	var rep Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	for _, e := range rep.Errors {
		if !strings.Contains(e, "agent p99") && !strings.Contains(e, "peak RSS") {
			t.Errorf("error of the run: %s", e)
		}
	}
	a := rep.Attack
	if a == nil || len(a.Phases) != 1 || a.Phases[0].Name != "badtokens" {
		t.Fatalf("attack report %+v, want the badtokens phase", a)
	}
	p := a.Phases[0]
	if p.Attacker.Sent == 0 || p.Attacker.Rejected == 0 || p.Attacker.Rejected+p.Attacker.Refused > p.Attacker.Sent {
		t.Errorf("attacker %+v: want Hellos sent and rejected", p.Attacker)
	}
	// Every Hello the attacker saw rejected is in the trail, summed in
	// events per source: at least one fewer event than refusals once a
	// source is refused twice in an interval.
	if p.RejectCount < p.Attacker.Rejected {
		t.Errorf("the audit trail sums %d refusals in %d events; the attacker saw %d rejected", p.RejectCount, p.Rejects, p.Attacker.Rejected)
	}
	if p.Attacker.Rejected > 2*attackSources && p.Rejects >= p.RejectCount {
		t.Errorf("%d session.reject events for %d refusals: not aggregated per source", p.Rejects, p.RejectCount)
	}
	if p.PeakRSS == 0 || p.IdleRSS == 0 || p.Agent == nil || p.Unloaded == nil || p.Control == nil || len(p.Verdict) == 0 {
		t.Errorf("phase figures missing: %+v", p)
	}
	// The decoy took the control run's attack, the agent's relay none of
	// it: its trail has no more refusals than the attacker's real phase.
	if p.RejectCount > p.Attacker.Sent {
		t.Errorf("the relay's trail sums %d refusals, more than the %d Hellos of its own phase: the decoy's attack reached it", p.RejectCount, p.Attacker.Sent)
	}
	if !strings.Contains(stdout.String(), "### Under attack") {
		t.Errorf("no attack table in the report:\n%s", stdout.String())
	}
}

// TestPlacement: the attack test's placement puts a process's threads on
// the CPUs it says, the attacker's under SCHED_IDLE, and puts back the
// masks it saved.
func TestPlacement(t *testing.T) {
	pl := newPlacement()
	if pl == nil {
		t.Skip("one CPU: nothing to place")
	}
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	pid := cmd.Process.Pid
	var before unix.CPUSet
	if err := unix.SchedGetaffinity(pid, &before); err != nil {
		t.Fatal(err)
	}
	if err := pl.put(pid, true, false, true); err != nil {
		t.Fatal(err)
	}
	var got unix.CPUSet
	unix.SchedGetaffinity(pid, &got)
	if got.Count() != 1 || !got.IsSet(pl.relayCPU) {
		t.Fatalf("relay placement: %d CPUs, want only CPU %d", got.Count(), pl.relayCPU)
	}
	if err := pl.put(pid, false, true, false); err != nil {
		t.Fatal(err)
	}
	unix.SchedGetaffinity(pid, &got)
	if got.IsSet(pl.relayCPU) || got.Count() != len(pl.others) {
		t.Fatalf("other placement: %d CPUs (relay's set: %v), want the %d others", got.Count(), got.IsSet(pl.relayCPU), len(pl.others))
	}
	if attr, err := unix.SchedGetAttr(pid, 0); err != nil {
		t.Fatal(err)
	} else if attr.Policy != unix.SCHED_IDLE {
		if prio, err := unix.Getpriority(unix.PRIO_PROCESS, pid); err != nil || 20-prio != 19 {
			t.Fatalf("attacker: policy %d, getpriority %d %v; want SCHED_IDLE, or nice 19 where it is refused", attr.Policy, prio, err)
		}
		t.Logf("SCHED_IDLE refused here; the attacker runs at nice 19")
	}
	pl.undo()
	unix.SchedGetaffinity(pid, &got)
	if got != before {
		t.Fatalf("undo: %d CPUs, want the %d it had", got.Count(), before.Count())
	}
}

// TestBurner: the burner, placed everywhere, has its threads on every CPU
// under SCHED_IDLE, spends CPU, and ends when stopped.
func TestBurner(t *testing.T) {
	pl := newPlacement()
	if pl == nil {
		t.Skip("one CPU: nothing to place")
	}
	burn, err := startChild(t.TempDir(), "burner", "burner", burnerConfig{Threads: 2}, &struct{}{})
	if err != nil {
		t.Fatal(err)
	}
	defer burn.stop()
	if err := pl.putIdleEverywhere(burn.pid); err != nil {
		t.Fatal(err)
	}
	var got unix.CPUSet
	unix.SchedGetaffinity(burn.pid, &got)
	if got.Count() != len(pl.others)+1 {
		t.Errorf("burner on %d CPUs, want all %d", got.Count(), len(pl.others)+1)
	}
	tids, _ := filepath.Glob(filepath.Join("/proc", strconv.Itoa(burn.pid), "task", "*"))
	for _, d := range tids {
		tid, _ := strconv.Atoi(filepath.Base(d))
		if attr, err := unix.SchedGetAttr(tid, 0); err == nil && attr.Policy != unix.SCHED_IDLE {
			if prio, err := unix.Getpriority(unix.PRIO_PROCESS, tid); err != nil || 20-prio != 19 {
				t.Errorf("burner thread %d: policy %d, nice %d; want SCHED_IDLE or nice 19", tid, attr.Policy, 20-prio)
			}
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for burn.cpuTime() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the burner spent no CPU in 10s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	burn.stop()
	select {
	case <-burn.exited:
	case <-time.After(5 * time.Second):
		t.Fatal("the burner did not end when stopped")
	}
}
