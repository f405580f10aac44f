package wire

import (
	"bytes"
	"testing"
)

// The frames on every binding open's path: the agent's Open, the relay's
// Dial to the connector, and the two Results back. Hello and Welcome are
// once per session.
func hotFrames() []struct {
	name string
	m    Message
} {
	id := &Identity{Subject: "coding-agent-7", Role: RoleAgent, Groups: []string{"coding-agents"}, Attributes: []byte(`{"team":"infra"}`)}
	return []struct {
		name string
		m    Message
	}{
		{"open", &Open{Binding: "staging-db"}},
		{"dial", &Dial{Binding: "staging-db", Session: "s-4f2a9c", Identity: id, Action: "connect", Source: "192.0.2.7:51234"}},
		{"result-ok", &Result{Connector: "office-1"}},
		{"result-denied", &Result{Code: CodeDenied, Reason: "policy", Message: "denied by forbid-financial", Policies: []string{"forbid-financial"}}},
		{"hello", &Hello{Version: Version, Role: RoleAgent, Token: string(bytes.Repeat([]byte("t"), 600)), Client: "postern-go"}},
		{"welcome", &Welcome{Session: "s-4f2a9c", Identity: id, Catalog: []*Binding{
			{Name: "staging-db", Kind: "postgres", Environment: "staging"},
			{Name: "staging-api", Kind: "http", Environment: "staging", Labels: []string{"internal"}},
		}, Limits: &Limits{MaxStreams: 1024, MaxFrameSize: 65536}}},
	}
}

func BenchmarkAppendFrame(b *testing.B) {
	for _, f := range hotFrames() {
		b.Run(f.name, func(b *testing.B) {
			buf := make([]byte, 0, 4096)
			b.SetBytes(int64(len(frame(b, f.m))))
			b.ReportAllocs()
			for b.Loop() {
				buf, _ = AppendFrame(buf[:0], f.m)
			}
		})
	}
}

// BenchmarkWriteFrame is the encode as the relay does it: a pooled buffer,
// one Write.
func BenchmarkWriteFrame(b *testing.B) {
	for _, f := range hotFrames() {
		b.Run(f.name, func(b *testing.B) {
			b.SetBytes(int64(len(frame(b, f.m))))
			b.ReportAllocs()
			for b.Loop() {
				if err := WriteFrame(discard{}, f.m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkReadExpected is the decode as the relay and connector do it:
// read a header and payload from a stream, decode into a message.
func BenchmarkReadExpected(b *testing.B) {
	for _, f := range hotFrames() {
		b.Run(f.name, func(b *testing.B) {
			fr := frame(b, f.m)
			r := bytes.NewReader(fr)
			b.SetBytes(int64(len(fr)))
			b.ReportAllocs()
			for b.Loop() {
				r.Reset(fr)
				if err := ReadExpected(r, 0, newMessage(f.m.FrameType())); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecode is the payload decode alone.
func BenchmarkDecode(b *testing.B) {
	for _, f := range hotFrames() {
		b.Run(f.name, func(b *testing.B) {
			payload := frame(b, f.m)[FrameHeaderLen:]
			b.SetBytes(int64(len(payload)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Decode(f.m.FrameType(), payload); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
