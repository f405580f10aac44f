package mesh_test

import (
	"context"
	"io"
	"testing"

	"github.com/postern/postern/internal/meshtest"
	"github.com/postern/postern/mesh"
	"github.com/postern/postern/mesh/connector"
)

// The whole mesh in one process: these measure the code path and its
// allocations, not what a deployment sees (see internal/bench for that,
// with each endpoint in its own process).

func benchWorld(b *testing.B) *mesh.Client {
	b.Helper()
	m := meshtest.New(b, meshtest.Options{})
	m.Connector("office-1", connector.Service{Name: "staging-db", Upstream: meshtest.EchoServer(b), Environment: "staging"})
	return m.Client(m.AgentToken("coding-agent", "coding-agents"))
}

// BenchmarkOpenFirstByte opens a binding with DialEarly, sends one byte
// and reads it back: the cost of an open through the mesh.
func BenchmarkOpenFirstByte(b *testing.B) {
	agent := benchWorld(b)
	ctx := context.Background()
	buf := []byte{1}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c, err := agent.DialEarly(ctx, "tcp", "staging-db")
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}

// BenchmarkEcho1KiB is a warm 1 KiB request/response on one stream.
func BenchmarkEcho1KiB(b *testing.B) {
	agent := benchWorld(b)
	c, err := agent.Dial(context.Background(), "tcp", "staging-db")
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 1024)
	b.SetBytes(2 * 1024)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpenParallel opens bindings from many goroutines at once, as a
// busy agent does: with every endpoint in this process, ns/op is the CPU
// an open costs the whole path.
func BenchmarkOpenParallel(b *testing.B) {
	agent := benchWorld(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.SetParallelism(32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		buf := []byte{1}
		for pb.Next() {
			c, err := agent.DialEarly(ctx, "tcp", "staging-db")
			if err != nil {
				b.Error(err)
				return
			}
			if _, err := c.Write(buf); err != nil {
				b.Error(err)
			}
			if _, err := io.ReadFull(c, buf); err != nil {
				b.Error(err)
			}
			c.Close()
		}
	})
}
