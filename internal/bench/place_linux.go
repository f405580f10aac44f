package bench

import (
	"os"
	"path/filepath"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"
)

// placement puts processes on CPUs, for the attack test: on one machine the
// attacker's own handshakes would otherwise take the cores the agent, its
// connector and its upstream need, and what the test means to measure is
// what the attack costs the relay. With two CPUs or more, the relay gets
// the last CPU to itself, and a GOMAXPROCS of 1 to match (as a relay
// started on one CPU would have); the agent (the driver), the connector, the
// upstream and the attacker share the others, the attacker under
// SCHED_IDLE so that it runs only on what they leave idle, as if it were
// another machine. Nice 19 is not enough for that: with the attacker
// turned on a relay of its own on those CPUs (so that the agent's relay
// saw none of it) the agent's p99 still rose 7 times; under SCHED_IDLE,
// 1.4 times. Where SCHED_IDLE is refused the attacker falls back to
// nice 19. The attacker's achieved rate is reported, so that a throttled
// attack shows.
type placement struct {
	relayCPU int
	others   []int
	saved    map[int]unix.CPUSet // pid: its mask before, to put back
}

func newPlacement() *placement {
	n := runtime.NumCPU()
	if n < 2 {
		return nil
	}
	p := &placement{relayCPU: n - 1, saved: map[int]unix.CPUSet{}}
	for c := range n - 1 {
		p.others = append(p.others, c)
	}
	return p
}

// describe says where the processes run.
func (p *placement) describe() string {
	if p == nil {
		return "unpinned (one CPU)"
	}
	return "relay on CPU " + strconv.Itoa(p.relayCPU) + "; agent, connector, upstream and attacker (SCHED_IDLE) on the others"
}

// put sets pid's CPUs (and, with low, the idle scheduling policy) on every thread
// it has; threads it starts later inherit them from the thread that starts
// them. It runs twice, for threads started while it ran.
func (p *placement) put(pid int, relay, low, restore bool) error {
	if p == nil {
		return nil
	}
	var set unix.CPUSet
	if relay {
		set.Set(p.relayCPU)
	} else {
		for _, c := range p.others {
			set.Set(c)
		}
	}
	return p.apply(pid, &set, low, restore)
}

// putIdleEverywhere puts pid on every CPU, the relay's too, under
// SCHED_IDLE: for the burner.
func (p *placement) putIdleEverywhere(pid int) error {
	if p == nil {
		return nil
	}
	var set unix.CPUSet
	set.Set(p.relayCPU)
	for _, c := range p.others {
		set.Set(c)
	}
	return p.apply(pid, &set, true, false)
}

func (p *placement) apply(pid int, set *unix.CPUSet, low, restore bool) error {
	if restore {
		var old unix.CPUSet
		if err := unix.SchedGetaffinity(pid, &old); err == nil {
			p.saved[pid] = old
		}
	}
	var err error
	for range 2 {
		tids, _ := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*")
		for _, t := range tids {
			tid, perr := strconv.Atoi(filepath.Base(t))
			if perr != nil {
				continue
			}
			if e := unix.SchedSetaffinity(tid, set); e != nil && !os.IsNotExist(e) && e != unix.ESRCH {
				err = e
			}
			if low {
				unix.Setpriority(unix.PRIO_PROCESS, tid, 19)
				idle := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_IDLE, Nice: 19}
				unix.SchedSetAttr(tid, &idle, 0)
			}
		}
	}
	return err
}

// undo puts back the masks saved by put.
func (p *placement) undo() {
	if p == nil {
		return
	}
	for pid, set := range p.saved {
		tids, _ := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*")
		for _, t := range tids {
			if tid, err := strconv.Atoi(filepath.Base(t)); err == nil {
				unix.SchedSetaffinity(tid, &set)
			}
		}
	}
}
