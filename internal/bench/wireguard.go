package bench

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"
)

// The WireGuard path is what a VPN costs: userspace wireguard-go, the
// engine Tailscale builds on, with its TUN and UDP offloads. The bench
// makes two network namespaces joined by a veth pair, which carries the
// encrypted UDP; in each runs a wireguard-go endpoint (a child of this
// binary started under ip netns exec, which makes the TUN device in its
// namespace). The upstream runs in one namespace, and the agent side of
// the tests in a measuring child in the other, so that the same tests
// run through the tunnel as through the other paths. Every address is
// from the benchmarking range 198.18.0.0/15 (RFC 2544), and nothing
// leaves the two namespaces.
const (
	wgVethUp    = "198.18.0.1" // the veth end in the upstream's namespace
	wgVethAgent = "198.18.0.2"
	wgTunUp     = "198.19.0.1" // the tunnel addresses
	wgTunAgent  = "198.19.0.2"
	wgPort      = 51820
	wgTun       = "wg0"
	// nsPrefix starts the name of every namespace the bench makes,
	// followed by the driver's pid, so that a later run can tell a stale
	// one of ours.
	nsPrefix = "postern-bench-"
)

// wireguardMissing says why the WireGuard path cannot run here, or "".
func wireguardMissing() string {
	if os.Geteuid() != 0 {
		return "needs root, to make network namespaces and TUN devices"
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		return "no /dev/net/tun"
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return "ip (iproute2) is not installed"
	}
	return ""
}

func ipCmd(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// wgNet is the two namespaces and the veth pair between them.
type wgNet struct {
	up, agent string // namespace names
}

// newWGNet makes the namespaces for the driver with pid and joins them.
// Whatever it made is removed again if it fails.
func newWGNet(pid int) (n *wgNet, err error) {
	n = &wgNet{up: fmt.Sprintf("%s%d-up", nsPrefix, pid), agent: fmt.Sprintf("%s%d-agent", nsPrefix, pid)}
	defer func() {
		if err != nil {
			n.remove()
		}
	}()
	for _, ns := range []string{n.up, n.agent} {
		if err := ipCmd("netns", "add", ns); err != nil {
			return nil, err
		}
	}
	// Both ends are made inside their namespaces in one step, so that no
	// veth is ever left in the host's namespace; each goes with its
	// namespace. Interface names have at most 15 bytes.
	vu, va := fmt.Sprintf("pb%d-u", pid), fmt.Sprintf("pb%d-a", pid)
	if err := ipCmd("link", "add", vu, "netns", n.up, "type", "veth", "peer", "name", va, "netns", n.agent); err != nil {
		return nil, err
	}
	for _, s := range []struct{ ns, dev, addr string }{{n.up, vu, wgVethUp}, {n.agent, va, wgVethAgent}} {
		for _, args := range [][]string{
			{"-n", s.ns, "addr", "add", s.addr + "/30", "dev", s.dev},
			{"-n", s.ns, "link", "set", s.dev, "up"},
			{"-n", s.ns, "link", "set", "lo", "up"},
		} {
			if err := ipCmd(args...); err != nil {
				return nil, err
			}
		}
	}
	return n, nil
}

// remove deletes the namespaces; the veth pair and the TUN devices go
// with them (a TUN device also goes when its process ends).
func (n *wgNet) remove() {
	for _, ns := range []string{n.up, n.agent} {
		exec.Command("ip", "netns", "del", ns).Run()
	}
}

// sweepNamespaces removes the namespaces of earlier runs whose driver is
// gone (killed before it could clean up).
func sweepNamespaces() {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) == 0 {
			continue
		}
		rest, ok := strings.CutPrefix(f[0], nsPrefix)
		if !ok {
			continue
		}
		pidStr, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil && pid != os.Getpid() {
			continue // a live run's
		}
		exec.Command("ip", "netns", "del", f[0]).Run()
	}
}

// wgKey is a WireGuard key pair, hex-encoded as the UAPI wants it.
type wgKey struct{ private, public string }

func newWGKey() (wgKey, error) {
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return wgKey{}, err
	}
	return wgKey{private: hex.EncodeToString(k.Bytes()), public: hex.EncodeToString(k.PublicKey().Bytes())}, nil
}

// wgConfig configures a wireguard-go endpoint child.
type wgConfig struct {
	Tun        string `json:"tun"`         // the TUN device to make
	Addr       string `json:"addr"`        // its address, CIDR
	PrivateKey string `json:"private_key"` // hex
	ListenPort int    `json:"listen_port"`
	PeerKey    string `json:"peer_key"`   // the peer's public key, hex
	Endpoint   string `json:"endpoint"`   // the peer's UDP address
	AllowedIP  string `json:"allowed_ip"` // the peer's tunnel address, CIDR
}

// startWireGuard is a wireguard-go endpoint: a TUN device in this
// process's namespace with one peer.
func startWireGuard(b []byte) (any, func(), error) {
	var cfg wgConfig
	if err := decodeConfig(b, &cfg); err != nil {
		return nil, nil, err
	}
	tdev, err := tun.CreateTUN(cfg.Tun, device.DefaultMTU)
	if err != nil {
		return nil, nil, fmt.Errorf("wireguard: tun: %w", err)
	}
	// Stdout carries the child protocol: wireguard-go's errors go to
	// stderr, the child's log.
	logger := &device.Logger{Verbosef: device.DiscardLogf, Errorf: log.New(os.Stderr, "wireguard: ", log.LstdFlags).Printf}
	dev := device.NewDevice(tdev, conn.NewDefaultBind(), logger)
	uapi := fmt.Sprintf("private_key=%s\nlisten_port=%d\npublic_key=%s\nendpoint=%s\nallowed_ip=%s\n",
		cfg.PrivateKey, cfg.ListenPort, cfg.PeerKey, cfg.Endpoint, cfg.AllowedIP)
	if err := dev.IpcSet(uapi); err != nil {
		dev.Close()
		return nil, nil, fmt.Errorf("wireguard: configure: %w", err)
	}
	if err := dev.Up(); err != nil {
		dev.Close()
		return nil, nil, fmt.Errorf("wireguard: up: %w", err)
	}
	for _, args := range [][]string{{"addr", "add", cfg.Addr, "dev", cfg.Tun}, {"link", "set", cfg.Tun, "up"}} {
		if err := ipCmd(args...); err != nil {
			dev.Close()
			return nil, nil, err
		}
	}
	return struct{}{}, dev.Close, nil
}

// setupWireGuard makes the namespaces, starts the two endpoints, an
// upstream behind the tunnel and the measuring agent in front of it.
func (r *runner) setupWireGuard() (*path, error) {
	sweepNamespaces()
	n, err := newWGNet(os.Getpid())
	if err != nil {
		return nil, err
	}
	r.onStop(n.remove)
	upKey, err := newWGKey()
	if err != nil {
		return nil, err
	}
	agentKey, err := newWGKey()
	if err != nil {
		return nil, err
	}
	port := strconv.Itoa(wgPort)
	far, err := startChildNS(n.up, r.dir, "wireguard-up", "wireguard", wgConfig{Tun: wgTun, Addr: wgTunUp + "/24",
		PrivateKey: upKey.private, ListenPort: wgPort, PeerKey: agentKey.public,
		Endpoint: net.JoinHostPort(wgVethAgent, port), AllowedIP: wgTunAgent + "/32"}, &struct{}{})
	if err != nil {
		return nil, err
	}
	r.onStop(far.stop)
	far.name = "connector"
	near, err := startChildNS(n.agent, r.dir, "wireguard-agent", "wireguard", wgConfig{Tun: wgTun, Addr: wgTunAgent + "/24",
		PrivateKey: agentKey.private, ListenPort: wgPort, PeerKey: upKey.public,
		Endpoint: net.JoinHostPort(wgVethUp, port), AllowedIP: wgTunUp + "/32"}, &struct{}{})
	if err != nil {
		return nil, err
	}
	r.onStop(near.stop)
	near.name = "relay"
	var up upstreamReady
	upstream, err := startChildNS(n.up, r.dir, "wireguard-upstream", "upstream", upstreamConfig{Host: wgTunUp}, &up)
	if err != nil {
		return nil, err
	}
	r.onStop(upstream.stop)
	upstream.name = "upstream"
	agent, err := startChildNS(n.agent, r.dir, "wireguard-measure", "measure-agent",
		agentConfig{Addr: up.Addr, Procs: refs([]*proc{near, far, upstream})}, &struct{}{})
	if err != nil {
		return nil, err
	}
	r.onStop(agent.stop)
	agent.name = "agent"
	return &path{name: pathWireGuard, procs: []*proc{agent, near, far, upstream}, remote: agent, close: func() {}}, nil
}
