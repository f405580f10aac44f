package bench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// A proc is one process the driver accounts for: a child it started (a
// re-execution of its own binary in a role, or sshd and ssh), or the
// driver itself.
type proc struct {
	name string // role in the table: agent, relay, connector, upstream, ...
	pid  int
	tree bool // account for its descendants too (sshd forks per connection)

	cmd    *exec.Cmd
	stdin  io.WriteCloser
	out    *bufio.Reader
	logf   string // where its stderr goes
	mu     sync.Mutex
	exited chan struct{}
}

// self is the driver, the agent of every path.
func self() *proc { return &proc{name: "agent", pid: os.Getpid()} }

// startChild re-executes this binary as role, sends it cfg and decodes its
// ready line into ready. Its stderr goes to a log file in dir.
func startChild(dir, name, roleName string, cfg, ready any) (*proc, error) {
	return startChildWait(dir, name, roleName, cfg, ready, time.Minute)
}

// startChildNS is startChild in the network namespace ns, under ip netns
// exec, which execs the child in place: the pid is the child's.
func startChildNS(ns, dir, name, roleName string, cfg, ready any) (*proc, error) {
	return startChildIn(ns, dir, name, roleName, cfg, ready, time.Minute)
}

// startChildWait is startChild for a child that may take up to wait to
// announce itself.
func startChildWait(dir, name, roleName string, cfg, ready any, wait time.Duration) (*proc, error) {
	return startChildIn("", dir, name, roleName, cfg, ready, wait)
}

func startChildIn(ns, dir, name, roleName string, cfg, ready any, wait time.Duration) (*proc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	line, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	logf := filepath.Join(dir, name+".log")
	lf, err := os.OpenFile(logf, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer lf.Close()
	cmd := exec.Command(exe, roleArg, roleName)
	if ns != "" {
		cmd = exec.Command("ip", "netns", "exec", ns, exe, roleArg, roleName)
	}
	cmd.Stderr = lf
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, pid: cmd.Process.Pid, cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout), logf: logf, exited: make(chan struct{})}
	go func() { cmd.Wait(); close(p.exited) }()
	if _, err := stdin.Write(append(line, '\n')); err != nil {
		p.stop()
		return nil, fmt.Errorf("configure %s: %w", name, err)
	}
	if err := p.readLine(ready, wait); err != nil {
		p.stop()
		return nil, fmt.Errorf("%s did not start: %w%s", name, err, p.logTail())
	}
	return p, nil
}

// readLine decodes the child's next stdout line into v.
func (p *proc) readLine(v any, timeout time.Duration) error {
	type res struct {
		line []byte
		err  error
	}
	ch := make(chan res, 1)
	go func() {
		l, err := p.out.ReadBytes('\n')
		ch <- res{l, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return r.err
		}
		if err := json.Unmarshal(r.line, v); err != nil {
			return fmt.Errorf("bad line %q: %w", bytes.TrimSpace(r.line), err)
		}
		return nil
	case <-time.After(timeout):
		return errors.New("timed out")
	}
}

// command sends a command line to the child and decodes its answer.
func (p *proc) command(cmd string, answer any) error {
	return p.commandWait(cmd, answer, 30*time.Second)
}

// commandWait is command for an answer that may take up to timeout.
func (p *proc) commandWait(cmd string, answer any, timeout time.Duration) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stdin == nil {
		return fmt.Errorf("%s: not a bench child", p.name)
	}
	if _, err := io.WriteString(p.stdin, cmd+"\n"); err != nil {
		return fmt.Errorf("%s: %w", p.name, err)
	}
	if err := p.readLine(answer, timeout); err != nil {
		cmd, _, _ = strings.Cut(cmd, " ")
		return fmt.Errorf("%s: %s: %w", p.name, cmd, err)
	}
	if r, ok := answer.(*reply); ok && !r.OK {
		return fmt.Errorf("%s: %s: %s", p.name, cmd, r.Error)
	}
	return nil
}

func (p *proc) logTail() string {
	if p.logf == "" {
		return ""
	}
	b, _ := os.ReadFile(p.logf)
	b = bytes.TrimSpace(b)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	if len(b) == 0 {
		return ""
	}
	return "\n" + p.name + " log (" + p.logf + "):\n" + string(b)
}

// stop closes the child's stdin, which tells it to exit, and kills it if
// it has not within a few seconds.
func (p *proc) stop() {
	if p.cmd == nil {
		return
	}
	if p.stdin != nil {
		p.stdin.Close()
	} else {
		p.cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
	}
}

// clkTck is the unit of utime and stime in /proc/<pid>/stat. It is 100 on
// every Linux the Go toolchain targets (USER_HZ), and reading it properly
// needs sysconf, that is cgo.
const clkTck = 100

// cpuTime returns the user+system CPU time the process has used, from the
// kernel's own accounting in /proc/<pid>/stat; with tree, that of its live
// descendants and its reaped children too.
func (p *proc) cpuTime() time.Duration {
	if !p.tree {
		t, _ := statTicks(p.pid, false)
		return ticks(t)
	}
	all := procTable()
	total, _ := statTicks(p.pid, true)
	var walk func(pid int)
	walk = func(pid int) {
		for _, c := range all[pid] {
			t, _ := statTicks(c, true)
			total += t
			walk(c)
		}
	}
	walk(p.pid)
	return ticks(total)
}

func ticks(t int64) time.Duration { return time.Duration(t) * time.Second / clkTck }

// statTicks reads utime+stime (and cutime+cstime with children) of pid.
func statTicks(pid int, children bool) (int64, error) {
	f, err := statFields(pid)
	if err != nil {
		return 0, err
	}
	// Fields after the command: [0] is state (field 3); utime is field 14.
	n := 2
	if children {
		n = 4
	}
	var t int64
	for i := 0; i < n; i++ {
		v, err := strconv.ParseInt(f[11+i], 10, 64)
		if err != nil {
			return 0, err
		}
		t += v
	}
	return t, nil
}

// statFields returns the fields of /proc/<pid>/stat after the command name,
// which may itself hold spaces and parentheses.
func statFields(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, errors.New("malformed stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return nil, errors.New("malformed stat")
	}
	return f, nil
}

// procTable maps each live process to its children.
func procTable() map[int][]int {
	m := make(map[int][]int)
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		f, err := statFields(pid)
		if err != nil {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		m[ppid] = append(m[ppid], pid)
	}
	return m
}

// rss returns the process's resident set size (VmRSS), in bytes.
func (p *proc) rss() (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmRSS")
}

// cpuSample is the CPU time of each process of a path at one instant.
type cpuSample map[*proc]time.Duration

func sampleCPU(ps []*proc) cpuSample {
	s := make(cpuSample, len(ps))
	for _, p := range ps {
		s[p] = p.cpuTime()
	}
	return s
}

// since returns the CPU each process used between s0 and now, by name.
func (s0 cpuSample) since(ps []*proc) map[string]time.Duration {
	d := make(map[string]time.Duration, len(ps))
	for _, p := range ps {
		d[p.name] += p.cpuTime() - s0[p]
	}
	return d
}

// A meter samples the CPU of a path's processes right before and right
// after the operations a test measures, so that neither the warm-up nor
// the dials before the clock starts count. A nil *meter measures nothing.
type meter struct {
	procs   []*proc
	s0      cpuSample
	used    map[string]time.Duration
	started bool
}

func newMeter(procs []*proc) *meter { return &meter{procs: procs} }

func (m *meter) start() {
	if m == nil {
		return
	}
	m.s0 = sampleCPU(m.procs)
	m.started = true
}

func (m *meter) stop() {
	if m == nil || !m.started || m.used != nil {
		return
	}
	m.used = m.s0.since(m.procs)
}

// set records CPU measured elsewhere (by a measuring child).
func (m *meter) set(used map[string]time.Duration) { m.used = used; m.started = true }

// procRef names a process for a measuring child, which samples its CPU
// itself: the same PID namespace, another network namespace.
type procRef struct {
	Name string `json:"name"`
	PID  int    `json:"pid"`
	Tree bool   `json:"tree,omitempty"`
}

func refs(ps []*proc) []procRef {
	out := make([]procRef, len(ps))
	for i, p := range ps {
		out[i] = procRef{Name: p.name, PID: p.pid, Tree: p.tree}
	}
	return out
}

func fromRefs(rs []procRef) []*proc {
	out := make([]*proc, len(rs))
	for i, r := range rs {
		out[i] = &proc{name: r.Name, pid: r.PID, tree: r.Tree}
	}
	return out
}
