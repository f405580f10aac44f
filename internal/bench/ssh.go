package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// sshTunnel is an sshd of our own on a free loopback port, with a fresh
// host key and user key, and an ssh -L forwarding a local port to the
// upstream through it.
type sshTunnel struct {
	addr string // the forwarded local port
	sshd *proc
	ssh  *proc
}

// sshMissing says why ssh -L cannot be measured here, or "".
func sshMissing() string {
	for _, b := range []string{"ssh", "ssh-keygen"} {
		if _, err := exec.LookPath(b); err != nil {
			return b + " is not installed"
		}
	}
	if sshdPath() == "" {
		return "sshd is not installed"
	}
	return ""
}

func sshdPath() string {
	for _, p := range []string{"/usr/sbin/sshd", "/usr/local/sbin/sshd", "/sbin/sshd"} {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p
		}
	}
	if p, err := exec.LookPath("sshd"); err == nil {
		if abs, err := filepath.Abs(p); err == nil {
			return abs // sshd re-executes itself and wants an absolute path
		}
	}
	return ""
}

func freeTCPPort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// startSSH starts sshd and ssh -L forwarding to upstream. cipher, when
// set, is passed to ssh -c.
func startSSH(workdir, upstream, cipher string) (*sshTunnel, error) {
	dir := filepath.Join(workdir, "ssh")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	for _, k := range []string{"host_key", "id"} {
		out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "postern-bench", "-f", filepath.Join(dir, k)).CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("ssh-keygen: %v: %s", err, out)
		}
	}
	pub, err := os.ReadFile(filepath.Join(dir, "id.pub"))
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "authorized_keys"), pub, 0o600); err != nil {
		return nil, err
	}
	u, err := user.Current()
	if err != nil {
		return nil, err
	}
	if os.Geteuid() == 0 {
		// sshd refuses to start without its privilege-separation
		// directory, which the Debian package creates only at boot.
		os.MkdirAll("/run/sshd", 0o755)
	}
	port, err := freeTCPPort()
	if err != nil {
		return nil, err
	}
	conf := strings.Join([]string{
		"Port " + strconv.Itoa(port),
		"ListenAddress 127.0.0.1",
		"HostKey " + filepath.Join(dir, "host_key"),
		"AuthorizedKeysFile " + filepath.Join(dir, "authorized_keys"),
		"PidFile none",
		"UsePAM no",
		"StrictModes no",
		"PermitRootLogin prohibit-password",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"AllowTcpForwarding yes",
		"X11Forwarding no",
		"PrintMotd no",
		"LogLevel ERROR",
		"",
	}, "\n")
	cfgPath := filepath.Join(dir, "sshd_config")
	if err := os.WriteFile(cfgPath, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	t := &sshTunnel{}
	t.sshd, err = startExternal(workdir, "sshd", true, sshdPath(), "-D", "-e", "-f", cfgPath)
	if err != nil {
		return nil, err
	}
	sshdAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if err := waitTCP(sshdAddr, 10*time.Second); err != nil {
		t.stop()
		return nil, fmt.Errorf("sshd: %w%s", err, t.sshd.logTail())
	}
	lport, err := freeTCPPort()
	if err != nil {
		t.stop()
		return nil, err
	}
	t.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(lport))
	args := []string{"-N", "-F", "/dev/null",
		"-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
		"-o", "ExitOnForwardFailure=yes", "-o", "LogLevel=ERROR", "-o", "IdentitiesOnly=yes",
		"-i", filepath.Join(dir, "id"), "-p", strconv.Itoa(port),
		"-L", t.addr + ":" + upstream}
	if cipher != "" {
		args = append(args, "-c", cipher)
	}
	args = append(args, u.Username+"@127.0.0.1")
	t.ssh, err = startExternal(workdir, "ssh", true, "ssh", args...)
	if err != nil {
		t.stop()
		return nil, err
	}
	if err := waitTCP(t.addr, 15*time.Second); err != nil {
		t.stop()
		return nil, fmt.Errorf("ssh -L: %w%s%s", err, t.ssh.logTail(), t.sshd.logTail())
	}
	return t, nil
}

func (t *sshTunnel) stop() {
	if t.ssh != nil {
		t.ssh.stop()
	}
	if t.sshd != nil {
		t.sshd.stop()
	}
}

// startExternal starts a program that is not a bench child: it is stopped
// by a signal instead of by closing its stdin.
func startExternal(workdir, name string, tree bool, bin string, args ...string) (*proc, error) {
	logf := filepath.Join(workdir, name+".log")
	lf, err := os.OpenFile(logf, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer lf.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	// Bench children exit when their stdin closes; these do not, so the
	// kernel ends them if the driver dies without stopping them.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, pid: cmd.Process.Pid, tree: tree, cmd: cmd, logf: logf, exited: make(chan struct{})}
	go func() { cmd.Wait(); close(p.exited) }()
	return p, nil
}

// waitTCP waits until addr accepts a connection, or the time is up.
func waitTCP(addr string, d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for {
		var nd net.Dialer
		c, err := nd.DialContext(ctx, "tcp", addr)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return errors.New("not accepting connections in time")
		case <-time.After(50 * time.Millisecond):
		}
	}
}
