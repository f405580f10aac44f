package mesh_test

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/postern/postern/internal/meshtest"
	"github.com/postern/postern/mesh"
	"github.com/postern/postern/mesh/connector"
	"github.com/postern/postern/mesh/relay"
	"github.com/postern/postern/transport"
)

// BenchmarkWindowFirstMiB is the cost of the relay's initial stream
// window to a fresh stream of a warm session: the time to the first MiB
// of a download (the connector's stream to the relay starts at the
// window) and of an upload (the agent's does), and a 64 MiB download,
// for the relay's default window and for the 512 KiB it granted before,
// on loopback and with round trips added by a UDP proxy that delays
// every datagram (this kernel has no tc netem).
func BenchmarkWindowFirstMiB(b *testing.B) {
	for _, rtt := range []time.Duration{0, 20 * time.Millisecond} {
		for _, win := range []uint64{32 << 10, 512 << 10} {
			b.Run(fmt.Sprintf("rtt=%s/window=%dKiB", rtt, win>>10), func(b *testing.B) {
				benchmarkWindow(b, rtt, win)
			})
		}
	}
}

func benchmarkWindow(b *testing.B, rtt time.Duration, win uint64) {
	m := meshtest.New(b, meshtest.Options{Network: transport.NetworkQUIC, Limits: relay.Limits{InitialStreamWindow: win}})
	addr := m.Addr()
	if rtt > 0 {
		addr = delayProxy(b, addr, rtt/2)
	}
	m.ConnectorWith(connector.Config{Relays: []string{addr}, Token: m.ConnectorToken("office", meshtest.Describe(
		connector.Service{Name: "staging-bulk", Environment: "staging"}, connector.Service{Name: "staging-sink", Environment: "staging"})...),
		Services: []connector.Service{{Name: "staging-bulk", Upstream: bulkServer(b, 64<<20), Environment: "staging"},
			{Name: "staging-sink", Upstream: sinkServer(b, 1<<20), Environment: "staging"}}})
	agent, err := mesh.NewClient(mesh.Config{Relay: addr, Token: m.AgentToken("coding-agent", "coding-agents"), Pin: m.Pin,
		Transport: &transport.Config{Network: transport.NetworkQUIC}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { agent.Close() })
	{
		{
			ctx := context.Background()
			buf := make([]byte, 1<<20)
			var down, up, bulk time.Duration
			for i := 0; i < b.N; i++ {
				c, err := agent.Dial(ctx, "tcp", "staging-bulk")
				if err != nil {
					b.Fatal(err)
				}
				start := time.Now()
				if _, err := c.Write([]byte{1}); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, buf); err != nil {
					b.Fatal(err)
				}
				down += time.Since(start)
				if _, err := io.Copy(io.Discard, c); err != nil {
					b.Fatal(err)
				}
				bulk += time.Since(start)
				c.Close()

				c, err = agent.Dial(ctx, "tcp", "staging-sink")
				if err != nil {
					b.Fatal(err)
				}
				start = time.Now()
				if _, err := c.Write(buf); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, buf[:1]); err != nil {
					b.Fatal(err)
				}
				up += time.Since(start)
				c.Close()
			}
			n := float64(b.N)
			b.ReportMetric(float64(down.Microseconds())/n/1000, "ms-first-MiB-down")
			b.ReportMetric(float64(up.Microseconds())/n/1000, "ms-first-MiB-up")
			b.ReportMetric(64/(bulk.Seconds()/n)*1.048576, "MB/s-64MiB-down")
		}
	}
}
