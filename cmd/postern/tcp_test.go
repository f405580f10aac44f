package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/postern/postern/internal/meshtest"
)

// udpBlocked is a deployment where UDP does not get through: the relay,
// the connector and the agents are separate processes that can only reach
// each other over TLS/TCP.
type udpBlocked struct {
	dir, netns string
	relay      *proc
	connector  *proc
	addr, pin  string
}

// deployUDPBlocked starts a relay (with relayTransport in its
// configuration) and a connector (with none: it falls back by itself)
// serving staging-echo, prod-ledger (financial) and staging-dead (an
// upstream nobody listens on). With netns set, every process runs in that
// network namespace, as does the echo upstream.
func deployUDPBlocked(t *testing.T, relayTransport, netns string) *udpBlocked {
	t.Helper()
	dir := t.TempDir()
	d := &udpBlocked{dir: dir, netns: netns}
	mustPostern(t, dir, "keygen")
	mustPostern(t, dir, "token", "issue", "--sub", "coding-agent", "--group", "coding-agents", "--ttl", "1h", "--out", "agent.token")
	mustPostern(t, dir, "token", "issue", "--role", "connector", "--sub", "office-connector",
		"--service", "staging-echo:tcp:staging", "--service", "prod-ledger:tcp:prod:financial", "--service", "staging-dead:tcp:staging",
		"--ttl", "1h", "--out", "connector.token")
	copyPolicies(t, filepath.Join(dir, "policies"))
	transportLine := ""
	if relayTransport != "" {
		transportLine = "transport: " + relayTransport + "\n"
	}
	writeFile(t, filepath.Join(dir, "relay.yaml"), `listen: 127.0.0.1:0
`+transportLine+`tls:
  cert_file: relay.crt
  key_file: relay.key
  self_signed: true
tokens:
  audience: postern
  jwks_file: jwks.json
policy:
  dir: policies
audit: stdout
`)
	d.relay = d.start(t, "relay", "--config", "relay.yaml")
	m := d.relay.waitLine(&d.relay.stderr, `msg="postern relay ready" addr=(\S+) pin=(sha256:[0-9a-f]{64})`)
	d.addr, d.pin = m[1], m[2]

	var echo string
	if netns != "" {
		inNetns(t, netns, func() error {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return err
			}
			echo = meshtest.ServeEcho(t, ln)
			return nil
		})
	} else {
		echo = meshtest.EchoServer(t)
	}
	writeFile(t, filepath.Join(dir, "connector.yaml"), fmt.Sprintf(`relays: [%s]
token_file: connector.token
trust:
  pin: %s
services:
  - name: staging-echo
    upstream: %s
    environment: staging
  - name: prod-ledger
    upstream: %s
    environment: prod
    labels: [financial]
  - name: staging-dead
    upstream: 127.0.0.1:1
    environment: staging
    dial_timeout: 2s
backoff: {min: 50ms, max: 1s}
`, d.addr, d.pin, echo, echo))
	d.connector = d.start(t, "connector", "--config", "connector.yaml")
	d.connector.waitLine(&d.connector.stderr, `postern connector ready`)
	return d
}

// start runs the postern binary, in the deployment's network namespace
// if it has one.
func (d *udpBlocked) start(t *testing.T, args ...string) *proc {
	t.Helper()
	return startIn(t, d.dir, d.netns, nil, args...)
}

// agent runs the test agent (in the namespace, if any) with the
// environment binding.Open reads and no POSTERN_TRANSPORT: it must find
// TCP by itself. It returns the output and how long the run took.
func (d *udpBlocked) agent(t *testing.T, bindings ...string) (string, time.Duration) {
	t.Helper()
	name, args := bin.agent, bindings
	if d.netns != "" {
		name, args = "ip", append([]string{"netns", "exec", d.netns, bin.agent}, bindings...)
	}
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "POSTERN_RELAY="+d.addr, "POSTERN_RELAY_PIN="+d.pin, "POSTERN_TOKEN_FILE="+filepath.Join(d.dir, "agent.token"))
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("agent: %v\n%s", err, out)
	}
	return string(out), time.Since(start)
}

// check runs the agent through every kind of outcome and checks each,
// and the relay's audit of them.
func (d *udpBlocked) check(t *testing.T) {
	t.Helper()
	out, took := d.agent(t, "staging-echo", "early:staging-echo", "prod-ledger", "early:prod-ledger", "staging-dead", "no-such-binding")
	t.Logf("agent run (connect with fallback, six opens) took %v", took)
	for _, want := range []string{
		"catalog: staging-dead,staging-echo\n",
		"staging-echo: allowed: hello staging-echo\n",
		"early:staging-echo: allowed: hello staging-echo\n",
		// A denial is a Result naming the policy; with early data the
		// relay also stops the stream with STREAM_ERROR_REFUSED.
		"prod-ledger: denied by forbid-financial\n",
		"early:prod-ledger: denied by forbid-financial\n",
		"staging-dead: error: ",
		"no-such-binding: error: ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("agent output lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(out, "upstream") {
		t.Errorf("the dead upstream's error does not say upstream:\n%s", out)
	}
	for _, line := range []string{
		`"msg":"open.deny".*"binding":"prod-ledger".*"policies":\["forbid-financial"\]`,
		`"msg":"stream.close".*"binding":"staging-echo"`,
	} {
		d.relay.waitLine(&d.relay.stdout, line)
	}
	if code := d.connector.stop(syscall.SIGTERM); code != 0 {
		t.Errorf("connector exit %d:\n%s", code, d.connector.stderr.String())
	}
	if code := d.relay.stop(syscall.SIGTERM); code != 0 {
		t.Errorf("relay exit %d:\n%s", code, d.relay.stderr.String())
	}
}

// TestBinaryTCPOnlyRelay: a relay listening on TCP only (transport: tcp,
// no UDP socket at all); a connector and agents configured for nothing in
// particular reach it, and each other, over TLS/TCP: allowed and denied
// opens, pipelined bytes refused with their Result, an upstream failure
// and an unknown binding, audited as over QUIC.
func TestBinaryTCPOnlyRelay(t *testing.T) {
	d := deployUDPBlocked(t, "tcp", "")
	d.check(t)
}

var netnsSeq atomic.Int32

// TestBinaryUDPDropped: relay, connector and agents in a network
// namespace (made by the test, removed after) whose routing blackholes
// every UDP packet, so that QUIC cannot get through: the relay listens on
// both as it does by default, and everyone falls back to TLS/TCP by
// themselves.
func TestBinaryUDPDropped(t *testing.T) {
	ns := fmt.Sprintf("postern-test-%d-%d", os.Getpid(), netnsSeq.Add(1))
	for _, args := range [][]string{
		{"netns", "add", ns},
		{"-n", ns, "link", "set", "lo", "up"},
		// Before the local table, so that loopback traffic is caught too.
		{"-n", ns, "rule", "add", "pref", "10", "ipproto", "udp", "blackhole"},
		{"-n", ns, "rule", "add", "pref", "100", "lookup", "local"},
		{"-n", ns, "rule", "del", "pref", "0"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			if args[0] == "netns" {
				t.Skipf("cannot make a network namespace (needs root and iproute2): %v: %s", err, out)
			}
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
		if args[0] == "netns" {
			t.Cleanup(func() {
				if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
					t.Errorf("ip netns del %s: %v: %s", ns, err, out)
				}
			})
		}
	}
	// The namespace really drops UDP: a datagram to a socket in it fails.
	inNetns(t, ns, func() error {
		c, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
		if err != nil {
			return err
		}
		defer unix.Close(c)
		if err := unix.Sendto(c, []byte("x"), 0, &unix.SockaddrInet4{Port: 9, Addr: [4]byte{127, 0, 0, 1}}); err == nil {
			return errors.New("UDP goes through in the namespace")
		}
		return nil
	})
	d := deployUDPBlocked(t, "", ns)
	d.check(t)
}

// inNetns runs f on an OS thread in the network namespace ns: sockets f
// makes belong to it, whichever thread uses them later. The thread is
// thrown away afterwards.
func inNetns(t *testing.T, ns string, f func() error) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		fd, err := unix.Open(filepath.Join("/var/run/netns", ns), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		errc <- f()
	}()
	if err := <-errc; err != nil {
		t.Fatalf("in network namespace %s: %v", ns, err)
	}
}
