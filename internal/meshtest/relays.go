package meshtest

import (
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/postern/postern/mesh/relay"
)

// OtherRelay starts another relay of the same mesh (same certificate,
// verifier, policy and audit log) on 127.0.0.1:0 and returns it; it is
// closed at cleanup.
func (m *Mesh) OtherRelay() *relay.Relay {
	m.t.Helper()
	r, err := relay.Listen(relay.Config{
		Addr:          "127.0.0.1:0",
		Certificate:   m.Cert,
		Verifier:      m.Verifier,
		Policy:        m.Policy,
		PolicyOptions: m.opts.PolicyOptions,
		Bindings:      m.opts.Bindings,
		Limits:        m.opts.Limits,
		Audit:         slog.New(slog.NewJSONHandler(m.Audit, nil)),
	})
	if err != nil {
		m.t.Fatal(err)
	}
	m.t.Cleanup(func() { r.Close() })
	return r
}

// Blackhole forwards UDP datagrams between its clients and a target until
// Cut, after which it drops everything, both ways, without a word: what a
// peer sees of a machine that died or a network that failed.
type Blackhole struct {
	pc     net.PacketConn
	target *net.UDPAddr
	cut    atomic.Bool

	mu      sync.Mutex
	closed  bool
	clients map[string]*net.UDPConn // client address -> socket to the target
	wg      sync.WaitGroup
}

// NewBlackhole forwards to target (a UDP host:port) from a new 127.0.0.1
// address; it stops at cleanup.
func NewBlackhole(t testing.TB, target string) *Blackhole {
	t.Helper()
	ta, err := net.ResolveUDPAddr("udp", target)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &Blackhole{pc: pc, target: ta, clients: make(map[string]*net.UDPConn)}
	b.wg.Add(1)
	go b.run()
	t.Cleanup(b.close)
	return b
}

// Addr is where clients send to reach the target.
func (b *Blackhole) Addr() string { return b.pc.LocalAddr().String() }

// Cut drops every datagram from now on.
func (b *Blackhole) Cut() { b.cut.Store(true) }

func (b *Blackhole) run() {
	defer b.wg.Done()
	buf := make([]byte, 64<<10)
	for {
		n, from, err := b.pc.ReadFrom(buf)
		if err != nil {
			return
		}
		if b.cut.Load() {
			continue
		}
		up := b.upstream(from)
		if up == nil {
			return
		}
		up.Write(buf[:n])
	}
}

// upstream returns the socket that carries from's datagrams to the
// target, making it (and the goroutine carrying the answers back) at the
// first datagram.
func (b *Blackhole) upstream(from net.Addr) *net.UDPConn {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	if up, ok := b.clients[from.String()]; ok {
		return up
	}
	up, err := net.DialUDP("udp", nil, b.target)
	if err != nil {
		return nil
	}
	b.clients[from.String()] = up
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		buf := make([]byte, 64<<10)
		for {
			n, err := up.Read(buf)
			if err != nil {
				return
			}
			if !b.cut.Load() {
				b.pc.WriteTo(buf[:n], from)
			}
		}
	}()
	return up
}

func (b *Blackhole) close() {
	b.pc.Close()
	b.mu.Lock()
	b.closed = true
	for _, up := range b.clients {
		up.Close()
	}
	b.mu.Unlock()
	b.wg.Wait()
}
