package wire

import (
	"bytes"
	"testing"

	"google.golang.org/protobuf/proto"
)

// Every decoder has a fuzz target: protobuf decoding plus the checks of
// validate.go, for every frame type, and the frame reader. Each one checks
// more than "no panic": a payload that decodes must encode to a payload
// that decodes to the same message, so that no input can make the relay
// forward something other than what it checked. Seeds: samples(), plus
// testdata/fuzz.

func FuzzReadFrame(f *testing.F) {
	for _, m := range samples() {
		f.Add(frame(f, m))
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
			f.Add(frame(f, m)[FrameHeaderLen:])
		}
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		m, err := Decode(typ, payload)
		if err != nil {
			return
		}
		if m.FrameType() != typ {
			t.Fatalf("decoded a %s as %s", typ.Name(), m.FrameType().Name())
		}
		checkStable(t, m)
	})
}

func checkStable(t *testing.T, m Message) {
	t.Helper()
	f, err := AppendFrame(nil, m)
	if err != nil {
		t.Fatalf("decoded %s does not encode: %v", m.FrameType().Name(), err)
	}
	again, err := ReadFrame(bytes.NewReader(f), len(f))
	if err != nil {
		t.Fatalf("re-encoded %s does not decode: %v", m.FrameType().Name(), err)
	}
	if !proto.Equal(again, m) {
		t.Fatalf("%s changed across a round trip:\n first %v\nsecond %v", m.FrameType().Name(), m, again)
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
func FuzzDecodePolicy(f *testing.F)    { fuzzDecode(f, FramePolicy) }
func FuzzDecodeRevoke(f *testing.F)    { fuzzDecode(f, FrameRevoke) }
func FuzzDecodeDialAck(f *testing.F)   { fuzzDecode(f, FrameDialAck) }

func FuzzDecodeMuxSettings(f *testing.F) { fuzzDecode(f, FrameMuxSettings) }
func FuzzDecodeStreamReset(f *testing.F) { fuzzDecode(f, FrameStreamReset) }
func FuzzDecodeStopSending(f *testing.F) { fuzzDecode(f, FrameStopSending) }
func FuzzDecodeResetAck(f *testing.F)    { fuzzDecode(f, FrameResetAck) }
func FuzzDecodeClose(f *testing.F)       { fuzzDecode(f, FrameClose) }
