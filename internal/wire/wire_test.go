package wire

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// samples returns one valid, fully populated message of every type. They
// are the round-trip table and the fuzzers' seed corpus.
func samples() []Message {
	exp := time.UnixMilli(1_900_000_000_123)
	id := Identity{Subject: "coding-agent", Role: RoleAgent, Group: []string{"coding-agents", "staff"}, Attributes: []byte(`{"team":"infra"}`)}
	return []Message{
		&Hello{Version: Version, Role: RoleAgent, Token: "eyJhbGciOiJFZERTQSJ9.e30.c2ln", Client: "postern-go/0.1"},
		&Hello{Version: Version, Role: RoleConnector, Token: "t", Services: []Service{
			{Name: "staging-db", Kind: "postgres", Environment: "staging", Label: []string{"pii"}},
			{Name: "billing-api", Kind: "http", Environment: "prod", Label: []string{"financial", "billing"}, Description: "billing"},
		}},
		&Welcome{Session: "s-1", Identity: id, Catalog: []Binding{{Name: "staging-db", Kind: "postgres", Environment: "staging"}}, Limits: Limits{MaxStreams: 256, MaxFrameSize: 65536}, ExpiresAt: exp},
		&Reject{Code: CodeUnauthenticated, Reason: "token_expired", Message: "identity: token expired 3m ago"},
		&Catalog{Bindings: []Binding{{Name: "a", Kind: "tcp"}, {Name: "b", Kind: "http", Label: []string{"x"}}}},
		&Refresh{Token: "eyJ.e30.sig"},
		&Refreshed{ExpiresAt: exp},
		&Goaway{Code: CodeShutdown, Reason: "relay_shutdown", Message: "relay is shutting down"},
		&Open{Binding: "staging-db", Action: "connect", Details: []KV{{Key: "method", Value: "GET"}}},
		&Dial{Binding: "staging-db", Session: "s-1", Identity: id, Action: "connect", Details: []KV{{Key: "k", Value: "v"}}, Source: "127.0.0.1:5555"},
		&Result{Code: CodeDenied, Reason: "policy", Message: "denied", Policies: []string{"forbid-financial", "other"}, Connector: "office-1"},
		&Result{},
	}
}

func TestRoundTrip(t *testing.T) {
	for _, m := range samples() {
		t.Run(fmt.Sprintf("%s", m.FrameType()), func(t *testing.T) {
			var buf bytes.Buffer
			if err := WriteFrame(&buf, m); err != nil {
				t.Fatal(err)
			}
			got, err := ReadFrame(&buf, 0)
			if err != nil {
				t.Fatalf("ReadFrame: %v", err)
			}
			if !reflect.DeepEqual(normalize(got), normalize(m)) {
				t.Fatalf("round trip changed the message:\n got %#v\nwant %#v", got, m)
			}
			if buf.Len() != 0 {
				t.Fatalf("%d bytes left after the frame", buf.Len())
			}
		})
	}
}

// normalize makes times comparable with DeepEqual (monotonic clock and
// location differ after a round trip).
func normalize(m Message) Message {
	switch v := m.(type) {
	case *Welcome:
		c := *v
		c.ExpiresAt = c.ExpiresAt.UTC()
		return &c
	case *Refreshed:
		c := *v
		c.ExpiresAt = c.ExpiresAt.UTC()
		return &c
	}
	return m
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

func TestMalformed(t *testing.T) {
	valid := func(m Message) []byte { return AppendFrame(nil, m) }
	tests := []struct {
		name  string
		frame []byte
		max   int
		want  error
	}{
		{name: "empty stream", frame: nil, want: io.EOF},
		{name: "short header", frame: []byte{byte(FrameOpen), 0, 0}, want: io.ErrUnexpectedEOF},
		{name: "short payload", frame: valid(&Open{Binding: "abc"})[:8], want: io.ErrUnexpectedEOF},
		{name: "over the cap", frame: valid(&Hello{Version: 1, Role: "agent", Token: strings.Repeat("x", 200)}), max: 100, want: ErrFrameTooLarge},
		{name: "huge announced length", frame: []byte{byte(FrameHello), 0xff, 0xff, 0xff, 0xff}, want: ErrFrameTooLarge},
		{name: "unknown frame type", frame: rawFrame(0x7f, nil), want: ErrMalformed},
		{name: "open without binding", frame: valid(&Open{Action: "connect"}), want: ErrMalformed},
		{name: "open with bad binding name", frame: valid(&Open{Binding: "a b"}), want: ErrMalformed},
		{name: "open with long name", frame: valid(&Open{Binding: strings.Repeat("a", MaxNameLen+1)}), want: ErrMalformed},
		{name: "open with bad action", frame: valid(&Open{Binding: "db", Action: "drop table"}), want: ErrMalformed},
		{name: "hello without version", frame: valid(&Hello{Role: "agent", Token: "t"}), want: ErrMalformed},
		{name: "hello without role", frame: valid(&Hello{Version: 1, Token: "t"}), want: ErrMalformed},
		{name: "welcome without identity", frame: rawFrame((FrameWelcome), appendString(nil, 1, "s")), want: ErrMalformed},
		{name: "reject with code ok", frame: valid(&Reject{Reason: "x"}), want: ErrMalformed},
		{name: "refresh without token", frame: valid(&Refresh{}), want: ErrMalformed},
		{name: "dial without identity", frame: rawFrame((FrameDial), appendString(nil, 1, "db")), want: ErrMalformed},
		{name: "field past the end", frame: rawFrame((FrameOpen), []byte{1, 10, 'a'}), want: ErrMalformed},
		{name: "bad varint tag", frame: rawFrame((FrameOpen), bytes.Repeat([]byte{0xff}, 11)), want: ErrMalformed},
		{name: "repeated single field", frame: rawFrame((FrameOpen), appendString(appendString(nil, 1, "a"), 1, "b")), want: ErrMalformed},
		{name: "not utf-8", frame: rawFrame((FrameOpen), appendField(nil, 1, []byte{0xff, 0xfe})), want: ErrMalformed},
		{name: "bad integer", frame: rawFrame((FrameResult), appendField(nil, 1, []byte{0x80})), want: ErrMalformed},
		{name: "integer with trailing bytes", frame: rawFrame((FrameResult), appendField(nil, 1, []byte{1, 2})), want: ErrMalformed},
		{name: "code out of range", frame: rawFrame((FrameResult), appendUint(nil, 1, 300)), want: ErrMalformed},
		{name: "too many details", frame: valid(&Open{Binding: "a", Details: make65()}), want: ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadFrame(bytes.NewReader(tt.frame), tt.max)
			if !errors.Is(err, tt.want) {
				t.Fatalf("ReadFrame error = %v, want %v", err, tt.want)
			}
		})
	}
}

// rawFrame is a frame of type typ around payload, which need not be valid.
func rawFrame(typ FrameType, payload []byte) []byte {
	b, start := beginFrame(nil, typ)
	b = append(b, payload...)
	endFrame(b, start)
	return b
}

func TestFrameLimits(t *testing.T) {
	frame := rawFrame(7, []byte("payload"))
	typ, p, err := readFrame(bytes.NewReader(frame), 7, nil)
	if err != nil || typ != 7 || string(p) != "payload" {
		t.Fatalf("readFrame = %d %q %v", typ, p, err)
	}
	if _, _, err := readFrame(bytes.NewReader(frame), 6, nil); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("over the cap: %v", err)
	}
	if _, _, err := readFrame(bytes.NewReader(frame[:6]), 0, nil); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated: %v", err)
	}
}

func make65() []KV {
	kvs := make([]KV, 65)
	for i := range kvs {
		kvs[i] = KV{Key: fmt.Sprintf("k%d", i), Value: "v"}
	}
	return kvs
}

func TestUnknownFieldsAreSkipped(t *testing.T) {
	// A newer peer adds field 99 to Open: version 1 must still decode it.
	p := (&Open{Binding: "staging-db"}).AppendPayload(nil)
	p = appendString(p, 99, "from the future")
	m, err := Decode(FrameOpen, p)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.(*Open).Binding; got != "staging-db" {
		t.Fatalf("binding = %q", got)
	}
}

func TestReadExpectedWrongType(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteFrame(&buf, &Result{}); err != nil {
		t.Fatal(err)
	}
	var h Hello
	err := ReadExpected(&buf, 0, &h)
	if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "expected") {
		t.Fatalf("err = %v, want a malformed error naming the expected frame", err)
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
// testdata/fuzz from samples(). Run with POSTERN_WRITE_CORPUS=1 after a
// protocol change.
func TestWriteSeedCorpus(t *testing.T) {
	if os.Getenv("POSTERN_WRITE_CORPUS") == "" {
		t.Skip("set POSTERN_WRITE_CORPUS=1 to regenerate testdata/fuzz")
	}
	for i, m := range samples() {
		frame := AppendFrame(nil, m)
		writeSeed(t, "FuzzReadFrame", fmt.Sprintf("valid-%02d-%s", i, m.FrameType()), frame)
		writeSeed(t, "FuzzDecode"+fuzzName(m.FrameType()), fmt.Sprintf("valid-%02d", i), frame[FrameHeaderLen:])
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
	s := t.String()
	return strings.ToUpper(s[:1]) + s[1:]
}
