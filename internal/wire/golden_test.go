package wire

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/proto"
)

// golden is one frame of every type, with every field set, as version 1
// encodes it. testdata/v1/<type>.bin holds the frames, header included.
// TestGolden decodes them and compares every field: a change of
// wire.proto that version-1 peers would read differently (a renumbered
// field, a changed type) fails it. Rewrite the files only for a new
// version, never to make the test pass:
//
//	go test ./internal/wire -run Golden -update
func golden() []Message {
	id := &Identity{Subject: "coding-agent", Role: RoleAgent, Groups: []string{"coding-agents", "staff"}, Attributes: []byte(`{"team":"infra"}`)}
	return []Message{
		&Hello{Version: 1, Role: RoleConnector, Token: "eyJhbGciOiJFZERTQSJ9.e30.c2ln", Services: []*Binding{
			{Name: "staging-db", Kind: "postgres", Environment: "staging", Labels: []string{"pii"}, Description: "the staging database"},
			{Name: "billing-api", Kind: "http", Environment: "prod", Labels: []string{"financial", "billing"}},
		}, Client: "postern-connector/0.1"},
		&Welcome{Session: "4f2a9c0d1e2b3a4c5d6e7f80", Identity: id, Catalog: []*Binding{
			{Name: "staging-api", Kind: "http", Environment: "staging", Labels: []string{"internal"}, Description: "the staging API"},
			{Name: "staging-db", Kind: "postgres", Environment: "staging", Labels: []string{"pii"}},
		}, Limits: &Limits{MaxStreams: 1024, MaxFrameSize: 65536}, ExpiresUnixMs: 1_900_000_000_123},
		&Reject{Code: CodeUnauthenticated, Reason: "token_expired", Message: "identity: token expired 3m0s ago"},
		&Catalog{Bindings: []*Binding{{Name: "prod-finance", Kind: "postgres", Environment: "prod", Labels: []string{"financial"}}}},
		&Refresh{Token: "eyJhbGciOiJFZERTQSJ9.e30.bmV3"},
		&Refreshed{ExpiresUnixMs: 1_900_000_900_456},
		&Goaway{Code: CodeShutdown, Reason: "relay_shutdown", Message: "the relay is shutting down"},
		&Open{Binding: "staging-db", Action: "connect", Details: []*Detail{{Key: "method", Value: "GET"}, {Key: "path", Value: "/v1/invoices"}}, Early: true,
			Trace: &TraceContext{Traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", Tracestate: "congo=t61rcWkgMzE"}},
		&Dial{Binding: "staging-db", Session: "4f2a9c0d1e2b3a4c5d6e7f80", Identity: id, Action: "connect",
			Details: []*Detail{{Key: "method", Value: "GET"}}, Source: "192.0.2.7:51234", Early: true,
			Trace: &TraceContext{Traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-b7ad6b7169203331-01"}},
		&Revoke{Stream: 8, Binding: "staging-db", Reason: "policy", Message: "denied by staging-frozen", Policies: []string{"staging-frozen"}},
		&Result{Code: CodeDenied, Reason: "policy", Message: "denied by forbid-financial", Policies: []string{"forbid-financial"}, Connector: "office-1"},
		&DialAck{},
		&Policy{Version: 7, Hash: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", Sources: []*PolicySource{
			{Filename: "staging.cedar", Text: "@id(\"coding-agents-read-staging\")\npermit (principal in Group::\"coding-agents\", action in Action::\"read\",\n        resource in Environment::\"staging\");\n"},
			{Filename: "forbid.cedar", Text: "@id(\"no-ddl-anywhere\")\nforbid (principal, action in Action::\"ddl\", resource);\n"},
		}, Declarations: &PolicyDeclarations{PrincipalAttributes: map[string]string{"team": "String"}, DetailKeys: []string{"database"}, Actions: []string{"sql:vacuum_full"}}},
		&MuxSettings{MaxStreams: 1024},
		&StreamReset{StreamId: 7, Code: uint64(StreamRefused)},
		&StopSending{StreamId: 9, Code: uint64(StreamClosed)},
		&ResetAck{StreamId: 7},
		&Close{Code: uint32(CodeUnauthenticated), Reason: "token_expired: identity: token expired 3m0s ago"},
	}
}

func goldenPath(typ FrameType) string { return filepath.Join("testdata", "v1", typ.Name()+".bin") }

func TestGolden(t *testing.T) {
	if *update {
		if err := os.MkdirAll(filepath.Join("testdata", "v1"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[FrameType]bool{}
	for _, want := range golden() {
		typ := want.FrameType()
		seen[typ] = true
		t.Run(typ.Name(), func(t *testing.T) {
			path := goldenPath(typ)
			if *update {
				if err := os.WriteFile(path, frame(t, want), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (write it with -update)", err)
			}
			if len(data) < FrameHeaderLen || FrameType(data[0]) != typ || int(binary.BigEndian.Uint32(data[1:5])) != len(data)-FrameHeaderLen {
				t.Fatalf("%s: the header does not say type %#x and the payload's length", path, int(typ))
			}
			r := bytes.NewReader(data)
			got, err := ReadFrame(r, 0)
			if err != nil {
				t.Fatalf("version 1 %s frame no longer decodes: %v", typ.Name(), err)
			}
			if r.Len() != 0 {
				t.Fatalf("%d bytes left after the frame", r.Len())
			}
			if !proto.Equal(got, want) {
				t.Fatalf("version 1 %s frame decodes differently:\n got %v\nwant %v", typ.Name(), got, want)
			}
			// Fields in field-number order, as every protobuf encoder
			// writes them: the encoder still writes version 1.
			if enc := frame(t, want); !bytes.Equal(enc, data) {
				t.Fatalf("%s encodes differently from version 1:\n got %x\nwant %x", typ.Name(), enc, data)
			}
		})
	}
	for typ := range 256 {
		if m := newMessage(FrameType(typ)); m != nil && !seen[FrameType(typ)] {
			t.Errorf("no golden frame of type %s", m.FrameType().Name())
		}
	}
}

// TestGoldenBeforeTrace reads the Open and Dial frames of version 1 as
// they were before the trace context (Open.trace, Dial.trace): a peer
// that never sends one is read as before, with no trace context.
func TestGoldenBeforeTrace(t *testing.T) {
	for _, want := range golden() {
		var name string
		switch m := want.(type) {
		case *Open:
			m.Trace, name = nil, "open"
		case *Dial:
			m.Trace, name = nil, "dial"
		default:
			continue
		}
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata", "v1", name+"-before-trace.bin"))
			if err != nil {
				t.Fatal(err)
			}
			got, err := ReadFrame(bytes.NewReader(data), 0)
			if err != nil {
				t.Fatalf("a %s frame without a trace context no longer decodes: %v", name, err)
			}
			if !proto.Equal(got, want) {
				t.Fatalf("got %v\nwant %v", got, want)
			}
			if enc := frame(t, want); !bytes.Equal(enc, data) {
				t.Fatalf("without a trace context, %s encodes differently:\n got %x\nwant %x", name, enc, data)
			}
		})
	}
}
