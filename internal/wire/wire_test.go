package wire

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

var update = flag.Bool("update", false, "rewrite testdata/v1 and the fuzz seed corpora under testdata/fuzz")

// samples returns valid, fully populated messages of every type. They are
// the round-trip table and the fuzzers' seed corpus.
func samples() []Message {
	exp := uint64(1_900_000_000_123)
	id := func() *Identity {
		return &Identity{Subject: "coding-agent", Role: RoleAgent, Groups: []string{"coding-agents", "staff"}, Attributes: []byte(`{"team":"infra"}`)}
	}
	return []Message{
		&Hello{Version: Version, Role: RoleAgent, Token: "eyJhbGciOiJFZERTQSJ9.e30.c2ln", Client: "postern-go/0.1"},
		&Hello{Version: Version, Role: RoleConnector, Token: "t", Services: []*Binding{
			{Name: "staging-db", Kind: "postgres", Environment: "staging", Labels: []string{"pii"}},
			{Name: "billing-api", Kind: "http", Environment: "prod", Labels: []string{"financial", "billing"}, Description: "billing"},
		}, Client: "postern-connector"},
		&Welcome{Session: "s-1", Identity: id(), Catalog: []*Binding{{Name: "staging-db", Kind: "postgres", Environment: "staging"}}, Limits: &Limits{MaxStreams: 256, MaxFrameSize: 65536}, ExpiresUnixMs: exp},
		&Reject{Code: CodeUnauthenticated, Reason: "token_expired", Message: "identity: token expired 3m ago"},
		&Catalog{Bindings: []*Binding{{Name: "a", Kind: "tcp"}, {Name: "b", Kind: "http", Labels: []string{"x"}, ReadOnly: true}}},
		&Refresh{Token: "eyJ.e30.sig"},
		&Refreshed{ExpiresUnixMs: exp},
		&Goaway{Code: CodeShutdown, Reason: "relay_shutdown", Message: "relay is shutting down"},
		&Open{Binding: "staging-db", Action: "connect", Details: []*Detail{{Key: "method", Value: "GET"}}},
		&Dial{Binding: "staging-db", Session: "s-1", Identity: id(), Action: "connect", Details: []*Detail{{Key: "k", Value: "v"}}, Source: "127.0.0.1:5555"},
		&Result{Code: CodeDenied, Reason: "policy", Message: "denied", Policies: []string{"forbid-financial", "other"}, Connector: "office-1"},
		&Result{},
		&DialAck{},
		&Dial{Binding: "staging-db", Session: "s-2", Identity: id(), Source: "127.0.0.1:5556", Ack: true},
		&Hello{Version: Version, Role: RoleConnector, Token: "t", Services: []*Binding{{Name: "staging-db", Kind: "postgres"}}, Features: []string{FeaturePolicy, FeatureDialAck}},
		&Hello{Version: Version, Role: RoleConnector, Token: "t", Services: []*Binding{{Name: "staging-api", Kind: "http"}}, Features: []string{FeaturePolicy}},
		&Policy{Version: 3, Hash: strings.Repeat("ab", 32), Sources: []*PolicySource{
			{Filename: "staging.cedar", Text: `@id("read-staging") permit (principal, action in Action::"read", resource);`},
			{Filename: "empty.cedar"},
		}, Declarations: &PolicyDeclarations{PrincipalAttributes: map[string]string{"team": "String"}, DetailKeys: []string{"database"}, Actions: []string{"read"}}},
		&Policy{Version: 4, Hash: strings.Repeat("0", 64), Withheld: "the policy set is larger than a frame"},
		&Revoke{Stream: 12, Binding: "staging-db", Reason: "policy", Message: "denied by staging-frozen", Policies: []string{"staging-frozen"}},
		&Revoke{Stream: 0, Binding: "a"},
		&Open{Binding: "staging-api", Trace: &TraceContext{Traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", Tracestate: "congo=t61rcWkgMzE"}},
		&Dial{Binding: "staging-api", Session: "s-2", Identity: id(), Trace: &TraceContext{Traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-b7ad6b7169203331-01"}},
		&MuxSettings{MaxStreams: 1024},
		&StreamReset{StreamId: 3, Code: uint64(StreamAborted)},
		&StopSending{StreamId: 5, Code: uint64(StreamRefused)},
		&ResetAck{StreamId: 3},
		&Close{Code: uint32(CodeShutdown), Reason: "relay_shutdown: the relay is shutting down"},
		&Close{},
	}
}

// frame encodes m as a frame, failing the test if it cannot.
func frame(t testing.TB, m Message) []byte {
	t.Helper()
	b, err := AppendFrame(nil, m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRoundTrip(t *testing.T) {
	for i, m := range samples() {
		t.Run(fmt.Sprintf("%02d-%s", i, m.FrameType().Name()), func(t *testing.T) {
			var buf bytes.Buffer
			if err := WriteFrame(&buf, m); err != nil {
				t.Fatal(err)
			}
			got, err := ReadFrame(&buf, 0)
			if err != nil {
				t.Fatalf("ReadFrame: %v", err)
			}
			if !proto.Equal(got, m) {
				t.Fatalf("round trip changed the message:\n got %v\nwant %v", got, m)
			}
			if buf.Len() != 0 {
				t.Fatalf("%d bytes left after the frame", buf.Len())
			}
		})
	}
}

// TestFramesDoNotOverread checks that a frame reader consumes exactly one
// frame: raw bytes that follow an Open or a Result belong to the splice.
func TestFramesDoNotOverread(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteFrame(&buf, &Open{Binding: "x"}); err != nil {
		t.Fatal(err)
	}
	buf.WriteString("early payload")
	var o Open
	if err := ReadExpected(&buf, 0, &o); err != nil {
		t.Fatal(err)
	}
	if rest := buf.String(); rest != "early payload" {
		t.Fatalf("bytes after the frame = %q, want the early payload intact", rest)
	}
}

// rawFrame is a frame of type typ around payload, which need not be valid.
func rawFrame(typ FrameType, payload []byte) []byte {
	b, start := beginFrame(nil, typ)
	b = append(b, payload...)
	endFrame(b, start)
	return b
}

// Raw protobuf fields, for payloads no valid message encodes to.
func pbString(b []byte, num protowire.Number, s string) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func pbBytes(b []byte, num protowire.Number, v []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

func pbVarint(b []byte, num protowire.Number, v uint64) []byte {
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func TestFrameLimits(t *testing.T) {
	f := rawFrame(7, []byte("payload"))
	typ, p, err := readFrame(bytes.NewReader(f), 7, nil)
	if err != nil || typ != 7 || string(p) != "payload" {
		t.Fatalf("readFrame = %d %q %v", typ, p, err)
	}
	if _, _, err := readFrame(bytes.NewReader(f), 6, nil); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("over the cap: %v", err)
	}
	if _, _, err := readFrame(bytes.NewReader(f[:6]), 0, nil); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated: %v", err)
	}
}

func TestMalformed(t *testing.T) {
	valid := func(m Message) []byte { return frame(t, m) }
	tests := []struct {
		name  string
		frame []byte
		max   int
		want  error
		text  string // in the error, when set
	}{
		{name: "empty stream", frame: nil, want: io.EOF},
		{name: "short header", frame: []byte{byte(FrameOpen), 0, 0}, want: io.ErrUnexpectedEOF},
		{name: "short payload", frame: valid(&Open{Binding: "abc"})[:8], want: io.ErrUnexpectedEOF},
		{name: "over the cap", frame: valid(&Hello{Version: 1, Role: "agent", Token: strings.Repeat("x", 200)}), max: 100, want: ErrFrameTooLarge},
		{name: "huge announced length", frame: []byte{byte(FrameHello), 0xff, 0xff, 0xff, 0xff}, want: ErrFrameTooLarge},
		{name: "unknown frame type", frame: rawFrame(0x7f, nil), want: ErrMalformed, text: "unknown frame type 0x7f"},
		{name: "frame type zero", frame: rawFrame(0, nil), want: ErrMalformed, text: "unknown frame type 0x00"},
		{name: "open without binding", frame: valid(&Open{Action: "connect"}), want: ErrMalformed, text: "open frame: wire: malformed frame: binding name missing"},
		{name: "open with bad binding name", frame: valid(&Open{Binding: "a b"}), want: ErrMalformed, text: "use only letters"},
		{name: "open with long name", frame: valid(&Open{Binding: strings.Repeat("a", MaxNameLen+1)}), want: ErrMalformed},
		{name: "open with bad action", frame: valid(&Open{Binding: "db", Action: "drop table"}), want: ErrMalformed, text: "action"},
		{name: "open with bad detail key", frame: valid(&Open{Binding: "db", Details: []*Detail{{Key: "a b"}}}), want: ErrMalformed, text: "detail key"},
		{name: "too many details", frame: valid(&Open{Binding: "a", Details: make65()}), want: ErrMalformed, text: "more than 64 details"},
		{name: "open with long traceparent", frame: valid(&Open{Binding: "db", Trace: &TraceContext{Traceparent: strings.Repeat("0", 129)}}), want: ErrMalformed, text: "traceparent is 129 bytes, the limit is 128"},
		{name: "open with long tracestate", frame: valid(&Open{Binding: "db", Trace: &TraceContext{Tracestate: strings.Repeat("a", 513)}}), want: ErrMalformed, text: "tracestate is 513 bytes, the limit is 512"},
		{name: "open with a newline in traceparent", frame: valid(&Open{Binding: "db", Trace: &TraceContext{Traceparent: "00-ab\r\nX-Evil: 1"}}), want: ErrMalformed, text: "traceparent has a byte that is not printable ASCII"},
		{name: "dial with long tracestate", frame: valid(&Dial{Binding: "db", Identity: &Identity{Subject: "a"}, Trace: &TraceContext{Tracestate: strings.Repeat("a", 513)}}), want: ErrMalformed, text: "tracestate is 513 bytes"},
		{name: "hello without version", frame: valid(&Hello{Role: "agent", Token: "t"}), want: ErrMalformed, text: "hello without version"},
		{name: "hello without role", frame: valid(&Hello{Version: 1, Token: "t"}), want: ErrMalformed, text: "hello without role"},
		{name: "hello with long role", frame: valid(&Hello{Version: 1, Role: strings.Repeat("r", MaxNameLen+1)}), want: ErrMalformed, text: "role is 129 bytes, limit 128"},
		{name: "hello with bad service name", frame: valid(&Hello{Version: 1, Role: "connector", Services: []*Binding{{Name: "a:1"}}}), want: ErrMalformed, text: "binding name"},
		{name: "welcome without identity", frame: rawFrame(FrameWelcome, pbString(nil, 1, "s")), want: ErrMalformed, text: "welcome without session or identity"},
		{name: "welcome identity without subject", frame: valid(&Welcome{Session: "s", Identity: &Identity{Role: "agent"}}), want: ErrMalformed, text: "identity without subject"},
		{name: "reject with code ok", frame: valid(&Reject{Reason: "x"}), want: ErrMalformed, text: "reject with code ok"},
		{name: "refresh without token", frame: valid(&Refresh{}), want: ErrMalformed, text: "refresh without token"},
		{name: "refreshed far in the future", frame: valid(&Refreshed{ExpiresUnixMs: 1 << 60}), want: ErrMalformed, text: "out of range"},
		{name: "dial without identity", frame: rawFrame(FrameDial, pbString(nil, 1, "db")), want: ErrMalformed, text: "dial without identity"},
		{name: "catalog with too many labels", frame: valid(&Catalog{Bindings: []*Binding{{Name: "a", Labels: make([]string, MaxRepeated+1)}}}), want: ErrMalformed, text: "more than 4096 binding labels"},
		{name: "result message too long", frame: valid(&Result{Code: CodeDenied, Message: strings.Repeat("m", 4097)}), want: ErrMalformed, text: "message is 4097 bytes, limit 4096"},
		{name: "revoke without binding", frame: valid(&Revoke{Stream: 4}), want: ErrMalformed, text: "binding name missing"},
		{name: "revoke of a server stream", frame: valid(&Revoke{Stream: 5, Binding: "db"}), want: ErrMalformed, text: "not a client-initiated bidirectional stream"},
		{name: "revoke policy too long", frame: valid(&Revoke{Binding: "db", Policies: []string{strings.Repeat("p", 1025)}}), want: ErrMalformed, text: "limit 1024"},
		{name: "field past the end", frame: rawFrame(FrameOpen, []byte{0x0a, 10, 'a'}), want: ErrMalformed},
		{name: "bad varint", frame: rawFrame(FrameOpen, bytes.Repeat([]byte{0xff}, 11)), want: ErrMalformed},
		{name: "not utf-8", frame: rawFrame(FrameOpen, pbBytes(nil, 1, []byte{0xff, 0xfe})), want: ErrMalformed, text: "UTF-8"},
		{name: "wrong wire type", frame: rawFrame(FrameOpen, pbVarint(nil, 1, 7)), want: ErrMalformed, text: "binding name missing"},
		{name: "code out of range", frame: rawFrame(FrameResult, pbVarint(nil, 1, 300)), want: ErrMalformed, text: "code 300 out of range"},
		{name: "negative code", frame: rawFrame(FrameResult, pbVarint(nil, 1, ^uint64(0))), want: ErrMalformed, text: "code -1 out of range"},
		{name: "mux settings without max_streams", frame: valid(&MuxSettings{}), want: ErrMalformed, text: "max_streams 0"},
		{name: "stream reset of the mux control stream", frame: valid(&StreamReset{StreamId: 1}), want: ErrMalformed, text: "stream id 1"},
		{name: "stop sending with a code past 62 bits", frame: valid(&StopSending{StreamId: 3, Code: 1 << 62}), want: ErrMalformed, text: "62 bits"},
		{name: "reset ack without stream", frame: valid(&ResetAck{}), want: ErrMalformed, text: "stream id 0"},
		{name: "close code above 255", frame: valid(&Close{Code: 256}), want: ErrMalformed, text: "close code 256"},
		{name: "close reason too long", frame: valid(&Close{Reason: strings.Repeat("r", 1025)}), want: ErrMalformed, text: "close reason is 1025 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadFrame(bytes.NewReader(tt.frame), tt.max)
			if !errors.Is(err, tt.want) {
				t.Fatalf("ReadFrame error = %v, want %v", err, tt.want)
			}
			if tt.text != "" && !strings.Contains(err.Error(), tt.text) {
				t.Fatalf("ReadFrame error = %q, want it to say %q", err, tt.text)
			}
		})
	}
}

func make65() []*Detail {
	ds := make([]*Detail, MaxDetails+1)
	for i := range ds {
		ds[i] = &Detail{Key: fmt.Sprintf("k%d", i), Value: "v"}
	}
	return ds
}

func TestUnknownFieldsAreDropped(t *testing.T) {
	// A newer peer adds field 99 to Open: version 1 must still decode it,
	// and must not pass the field on.
	p := frame(t, &Open{Binding: "staging-db"})[FrameHeaderLen:]
	p = pbString(p, 99, "from the future")
	m, err := Decode(FrameOpen, p)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.(*Open).Binding; got != "staging-db" {
		t.Fatalf("binding = %q", got)
	}
	if u := m.ProtoReflect().GetUnknown(); len(u) != 0 {
		t.Fatalf("unknown field kept: %x", u)
	}
}

func TestUnknownCodeIsKept(t *testing.T) {
	m, err := Decode(FrameResult, pbVarint(nil, 1, 200))
	if err != nil {
		t.Fatal(err)
	}
	if c := m.(*Result).Code; c != 200 || c.Text() != "unknown code" {
		t.Fatalf("code = %d (%s), want 200, unknown", c, c.Text())
	}
}

// TestRepeatedSingularField documents proto3's rule, which version 1
// follows: of a singular field sent twice, the last wins. The relay checks
// and forwards that one.
func TestRepeatedSingularField(t *testing.T) {
	m, err := Decode(FrameOpen, pbString(pbString(nil, 1, "a"), 1, "b"))
	if err != nil {
		t.Fatal(err)
	}
	if got := m.(*Open).Binding; got != "b" {
		t.Fatalf("binding = %q, want the last one, b", got)
	}
}

func TestReadExpectedWrongType(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteFrame(&buf, &Result{}); err != nil {
		t.Fatal(err)
	}
	var h Hello
	err := ReadExpected(&buf, 0, &h)
	if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "got a result frame where a hello frame was expected") {
		t.Fatalf("err = %v, want a malformed error naming the expected frame", err)
	}
}

func TestWriteFrameRefusesBadUTF8(t *testing.T) {
	var buf bytes.Buffer
	err := WriteFrame(&buf, &Result{Code: CodeUpstream, Message: "\xff"})
	if err == nil || buf.Len() != 0 {
		t.Fatalf("WriteFrame = %v with %d bytes written, want an error and nothing written", err, buf.Len())
	}
}

func TestNames(t *testing.T) {
	if got := CodeUnknownBinding.Text(); got != "unknown binding" {
		t.Errorf("CodeUnknownBinding.Text() = %q", got)
	}
	if got := FrameRefreshed.Name(); got != "refreshed" {
		t.Errorf("FrameRefreshed.Name() = %q", got)
	}
	if StreamClosed != 0x100 || StreamAborted != 0x101 || StreamRefused != 0x102 {
		t.Errorf("stream error codes %#x %#x %#x, want 0x100 0x101 0x102", StreamClosed, StreamAborted, StreamRefused)
	}
	for typ := range 256 {
		if m := newMessage(FrameType(typ)); m != nil && m.FrameType() != FrameType(typ) {
			t.Errorf("frame type %#x makes a %s", typ, m.FrameType().Name())
		}
	}
}

func TestValidName(t *testing.T) {
	for _, tt := range []struct {
		name string
		ok   bool
	}{
		{"staging-db", true}, {"team/api.v2", true}, {"api:8080", false}, {"A_b", true},
		{"", false}, {"a b", false}, {"db\n", false}, {"é", false}, {strings.Repeat("x", MaxNameLen+1), false},
	} {
		err := ValidName(tt.name)
		if (err == nil) != tt.ok {
			t.Errorf("ValidName(%q) = %v, want ok=%v", tt.name, err, tt.ok)
		}
		// A name in a configuration is not a frame: its error must not
		// say "malformed frame".
		if err != nil && (errors.Is(err, ErrMalformed) || strings.Contains(err.Error(), "frame")) {
			t.Errorf("ValidName(%q) = %q, an error about frames", tt.name, err)
		}
	}
}

// TestWriteSeedCorpus regenerates the checked-in seed corpora under
// testdata/fuzz from samples(). Run with -update (or
// POSTERN_WRITE_CORPUS=1) after a protocol change.
func TestWriteSeedCorpus(t *testing.T) {
	if !*update && os.Getenv("POSTERN_WRITE_CORPUS") == "" {
		t.Skip("run with -update to regenerate testdata/fuzz")
	}
	for i, m := range samples() {
		f := frame(t, m)
		writeSeed(t, "FuzzReadFrame", fmt.Sprintf("valid-%02d-%s", i, m.FrameType().Name()), f)
		writeSeed(t, "FuzzDecode"+fuzzName(m.FrameType()), fmt.Sprintf("valid-%02d", i), f[FrameHeaderLen:])
	}
}

func writeSeed(t *testing.T, fuzz, name string, data []byte) {
	t.Helper()
	dir := filepath.Join("testdata", "fuzz", fuzz)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", data)
	if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func fuzzName(t FrameType) string {
	var b strings.Builder
	for w := range strings.SplitSeq(t.Name(), "_") { // mux_settings: MuxSettings
		b.WriteString(strings.ToUpper(w[:1]) + w[1:])
	}
	return b.String()
}
