package mesh_test

import (
	"context"
	"crypto"
	"io"
	"testing"

	"github.com/postern/postern/internal/meshtest"
	"github.com/postern/postern/mesh"
	"github.com/postern/postern/mesh/connector"
	"github.com/postern/postern/mesh/identity"
	"github.com/postern/postern/transport"
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

// BenchmarkConnect is a new session: QUIC and TLS handshakes, Hello,
// token verification, Welcome. The bound variant adds the client
// certificate (an Ed25519 signature each way) and the key's thumbprint:
// the cost of a sender-constrained token.
func BenchmarkConnect(b *testing.B) {
	for _, bound := range []bool{false, true} {
		name := "bearer"
		if bound {
			name = "bound"
		}
		b.Run(name, func(b *testing.B) {
			m := meshtest.New(b, meshtest.Options{RequireBoundTokens: bound})
			claims := identity.Claims{Subject: "coding-agent", Role: identity.RoleAgent, Groups: []string{"coding-agents"}}
			var key crypto.Signer
			if bound {
				k, err := transport.GenerateClientKey()
				if err != nil {
					b.Fatal(err)
				}
				key = k
				if claims.BoundKey, err = identity.KeyThumbprint(k.Public()); err != nil {
					b.Fatal(err)
				}
			}
			tok := m.Token(claims)
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				c, err := mesh.NewClient(mesh.Config{Relay: m.Addr(), Pin: m.Pin, Token: tok, Key: key})
				if err != nil {
					b.Fatal(err)
				}
				if err := c.Connect(ctx); err != nil {
					b.Fatal(err)
				}
				c.Close()
			}
		})
	}
}
