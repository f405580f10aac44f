package mesh_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postern/postern/internal/meshtest"
	"github.com/postern/postern/mesh"
	"github.com/postern/postern/mesh/connector"
	"github.com/postern/postern/mesh/relay"
	"github.com/postern/postern/transport"
)

// TestSmallWindowsGrow: on a relay that grants every connection small
// windows (32 KiB per stream, 128 KiB per connection: ConnectorNetworks
// names none of this host's addresses), verified flows still grow to full
// speed. Over a path with a 50 ms round trip, 64 MiB down and 64 MiB up
// through the relay each take seconds (10 s with -race); windows stuck at
// 32 KiB would take 100 s. The connector, outside the connector networks, is
// served, with a warning.
func TestSmallWindowsGrow(t *testing.T) {
	logs := &meshtest.Log{}
	m := meshtest.New(t, meshtest.Options{Network: transport.NetworkQUIC,
		Limits:    relay.Limits{ConnectorNetworks: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}},
		Configure: func(c *relay.Config) { c.Logger = slog.New(slog.NewJSONHandler(logs, nil)) }})
	const size = 64 << 20
	addr := delayProxy(t, m.Addr(), 25*time.Millisecond)
	bulk := connector.Service{Name: "staging-bulk", Upstream: bulkServer(t, size), Environment: "staging"}
	sink := connector.Service{Name: "staging-sink", Upstream: sinkServer(t, size), Environment: "staging"}
	m.ConnectorWith(connector.Config{Relays: []string{addr}, Token: m.ConnectorToken("office", meshtest.Describe(bulk, sink)...),
		Services: []connector.Service{bulk, sink}})
	agent, err := mesh.NewClient(mesh.Config{Relay: addr, Token: m.AgentToken("coding-agent", "coding-agents"), Pin: m.Pin,
		Transport: &transport.Config{Network: transport.NetworkQUIC}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { agent.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const bound = time.Minute // 1.1 MiB/s; a 32 KiB window per 50 ms round trip is 0.6

	down, err := agent.Dial(ctx, "tcp", "staging-bulk")
	if err != nil {
		t.Fatal(err)
	}
	defer down.Close()
	start := time.Now()
	down.SetDeadline(start.Add(bound))
	if _, err := down.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, down)
	if err != nil || n != size {
		t.Fatalf("download: %d bytes in %s, %v; want %d within %s", n, time.Since(start).Round(time.Millisecond), err, size, bound)
	}
	t.Logf("64 MiB down in %s", time.Since(start).Round(time.Millisecond))

	up, err := agent.Dial(ctx, "tcp", "staging-sink")
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	start = time.Now()
	up.SetDeadline(start.Add(bound))
	if _, err := io.CopyN(up, zeros{}, size); err != nil {
		t.Fatalf("upload: %v after %s", err, time.Since(start).Round(time.Millisecond))
	}
	if _, err := io.ReadFull(up, make([]byte, 1)); err != nil {
		t.Fatalf("upload: no answer from the upstream after %s: %v", time.Since(start).Round(time.Millisecond), err)
	}
	t.Logf("64 MiB up in %s", time.Since(start).Round(time.Millisecond))

	if !strings.Contains(logs.String(), "outside limits.connector_networks") {
		t.Errorf("no warning for the connector outside the connector networks; log:\n%s", logs.String())
	}
}

// sinkServer reads size bytes of each connection and answers one byte.
func sinkServer(t testing.TB, size int64) string {
	return meshtest.Server(t, func(c net.Conn) {
		if _, err := io.CopyN(io.Discard, c, size); err != nil {
			return
		}
		c.Write([]byte{1})
	})
}

// delayProxy forwards UDP datagrams between its clients and target, each
// one delay late in each direction, and returns its address.
func delayProxy(t testing.TB, target string, delay time.Duration) string {
	t.Helper()
	ln, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	raddr, err := net.ResolveUDPAddr("udp", target)
	if err != nil {
		t.Fatal(err)
	}
	type datagram struct {
		b   []byte
		due time.Time
	}
	// later sends each datagram at its time, in order; a full queue drops
	// (as a router's would).
	done := make(chan struct{})
	later := func(send func([]byte)) chan<- datagram {
		ch := make(chan datagram, 1<<16)
		go func() {
			for {
				select {
				case d := <-ch:
					time.Sleep(time.Until(d.due))
					send(d.b)
				case <-done:
					return
				}
			}
		}()
		return ch
	}
	var mu sync.Mutex
	peers := map[string]chan<- datagram{}
	var conns []*net.UDPConn
	t.Cleanup(func() {
		close(done)
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, from, err := ln.ReadFromUDP(buf)
			if err != nil {
				return
			}
			mu.Lock()
			up, ok := peers[from.String()]
			if !ok {
				c, err := net.DialUDP("udp", nil, raddr)
				if err != nil {
					mu.Unlock()
					continue
				}
				conns = append(conns, c)
				up = later(func(b []byte) { c.Write(b) })
				peers[from.String()] = up
				down := later(func(b []byte) { ln.WriteToUDP(b, from) })
				go func() {
					buf := make([]byte, 64<<10)
					for {
						n, err := c.Read(buf)
						if err != nil {
							return
						}
						select {
						case down <- datagram{bytes.Clone(buf[:n]), time.Now().Add(delay)}:
						default:
						}
					}
				}()
			}
			mu.Unlock()
			select {
			case up <- datagram{bytes.Clone(buf[:n]), time.Now().Add(delay)}:
			default:
			}
		}
	}()
	return ln.LocalAddr().String()
}
