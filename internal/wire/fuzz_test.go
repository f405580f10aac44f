package wire

import (
	"bytes"
	"reflect"
	"testing"
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

// FuzzFrameHeader is the frame reader alone: no payload of more than the
// cap passes, and a frame that reads re-encodes to the same bytes.
func FuzzFrameHeader(f *testing.F) {
	f.Add(rawFrame(1, []byte("hello")))
	f.Add(rawFrame(0x12, nil))
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		typ, p, err := readFrame(bytes.NewReader(data), 1024, nil)
		if err != nil {
			return
		}
		if len(p) > 1024 {
			t.Fatalf("payload of %d bytes passed a 1024-byte cap", len(p))
		}
		again := rawFrame(typ, p)
		if !bytes.Equal(again, data[:len(again)]) {
			t.Fatal("re-encoding a decoded frame changed it")
		}
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
	if len(frame) < FrameHeaderLen {
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
