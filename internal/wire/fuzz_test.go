package wire

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/postern/postern/transport"
)

// Every decoder has a fuzz target. Each one checks more than "no panic": a
// payload that decodes must encode to a payload that decodes to the same
// message, so that no input can make the relay forward something other
// than what it checked. Seeds: samples(), plus testdata/fuzz.

func FuzzReadFrame(f *testing.F) {
	for _, m := range samples() {
		f.Add(AppendFrame(nil, m))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ReadFrame(bytes.NewReader(data), 4096)
		if err != nil {
			return
		}
		checkStable(t, m)
	})
}

func fuzzDecode(f *testing.F, typ FrameType) {
	for _, m := range samples() {
		if m.FrameType() == typ {
			f.Add(m.AppendPayload(nil))
		}
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		m, err := Decode(typ, payload)
		if err != nil {
			return
		}
		if m.FrameType() != typ {
			t.Fatalf("decoded a %s as %s", typ, m.FrameType())
		}
		checkStable(t, m)
	})
}

func checkStable(t *testing.T, m Message) {
	t.Helper()
	frame := AppendFrame(nil, m)
	again, err := ReadFrame(bytes.NewReader(frame), len(frame))
	if err != nil {
		t.Fatalf("re-encoded %s does not decode: %v", m.FrameType(), err)
	}
	if !reflect.DeepEqual(normalize(again), normalize(m)) {
		t.Fatalf("%s changed across a round trip:\n first %#v\nsecond %#v", m.FrameType(), m, again)
	}
	if len(frame) < transport.FrameHeaderLen {
		t.Fatal("frame shorter than its header")
	}
}

func FuzzDecodeHello(f *testing.F)     { fuzzDecode(f, FrameHello) }
func FuzzDecodeWelcome(f *testing.F)   { fuzzDecode(f, FrameWelcome) }
func FuzzDecodeReject(f *testing.F)    { fuzzDecode(f, FrameReject) }
func FuzzDecodeCatalog(f *testing.F)   { fuzzDecode(f, FrameCatalog) }
func FuzzDecodeRefresh(f *testing.F)   { fuzzDecode(f, FrameRefresh) }
func FuzzDecodeRefreshed(f *testing.F) { fuzzDecode(f, FrameRefreshed) }
func FuzzDecodeGoaway(f *testing.F)    { fuzzDecode(f, FrameGoaway) }
func FuzzDecodeOpen(f *testing.F)      { fuzzDecode(f, FrameOpen) }
func FuzzDecodeDial(f *testing.F)      { fuzzDecode(f, FrameDial) }
func FuzzDecodeResult(f *testing.F)    { fuzzDecode(f, FrameResult) }
