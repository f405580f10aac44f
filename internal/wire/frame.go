package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"

	"google.golang.org/protobuf/proto"
)

// FrameHeaderLen is the size of a frame header: one byte of frame type and
// four bytes of big-endian payload length.
const FrameHeaderLen = 5

// DefaultMaxFrameSize caps a frame's payload when no other cap is given.
const DefaultMaxFrameSize = 64 << 10

// ErrFrameTooLarge is returned by ReadFrame and ReadExpected for a frame
// whose announced length exceeds the reader's cap. Nothing of the payload
// is read or allocated.
var ErrFrameTooLarge = errors.New("wire: frame too large")

// beginFrame appends a frame header for type typ with a zero length and
// returns the offset at which the payload starts. Append the payload, then
// call endFrame: a message encodes itself straight into the frame buffer,
// with no intermediate copy.
func beginFrame(dst []byte, typ FrameType) ([]byte, int) {
	dst = append(dst, byte(typ), 0, 0, 0, 0)
	return dst, len(dst)
}

// endFrame fills in the length of a frame begun at payload offset start.
func endFrame(b []byte, start int) {
	binary.BigEndian.PutUint32(b[start-4:start], uint32(len(b)-start))
}

// readFrame reads one frame from r. The payload is returned in buf when it
// fits, otherwise in a new slice. A frame whose length exceeds max is
// refused with ErrFrameTooLarge before its payload is read; max <= 0 means
// DefaultMaxFrameSize. A stream that ends cleanly before the first header
// byte gives io.EOF; one that ends inside a frame gives
// io.ErrUnexpectedEOF.
func readFrame(r io.Reader, max int, buf []byte) (typ FrameType, payload []byte, err error) {
	if max <= 0 {
		max = DefaultMaxFrameSize
	}
	var hdr [FrameHeaderLen]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	typ = FrameType(hdr[0])
	n := binary.BigEndian.Uint32(hdr[1:])
	if uint64(n) > uint64(max) {
		return typ, nil, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, n, max)
	}
	if int(n) <= cap(buf) {
		payload = buf[:n]
	} else {
		payload = make([]byte, n)
	}
	if _, err := io.ReadFull(r, payload); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return typ, nil, err
	}
	return typ, payload, nil
}

var (
	sizeOpts = proto.MarshalOptions{}
	// AppendFrame sizes a message before it marshals it, to grow the
	// buffer once; the marshal reuses the sizes computed.
	marshalOpts = proto.MarshalOptions{UseCachedSize: true}
	// Unknown fields are dropped, not kept: a relay that re-sends a
	// message (a connector's Result to the agent) forwards only what it
	// read and checked. Postern's messages nest two deep.
	unmarshalOpts = proto.UnmarshalOptions{DiscardUnknown: true, RecursionLimit: 8}
)

// AppendFrame appends m as a complete frame to b: the header, then m's
// protobuf encoding, marshaled in place behind it. It fails only when m
// cannot be encoded (a string that is not UTF-8); b is then returned as
// it was.
func AppendFrame(b []byte, m Message) ([]byte, error) {
	b = slices.Grow(b, FrameHeaderLen+sizeOpts.Size(m))
	b, start := beginFrame(b, m.FrameType())
	b, err := marshalOpts.MarshalAppend(b, m)
	if err != nil {
		return b[:start-FrameHeaderLen], fmt.Errorf("wire: encoding a %s frame: %w", m.FrameType().Name(), err)
	}
	endFrame(b, start)
	return b, nil
}

// WriteFrame writes m as one frame with one Write call, so that a frame is
// never interleaved with other writes and goes out in as few packets as the
// transport allows.
func WriteFrame(w io.Writer, m Message) error {
	buf := getBuf()
	defer putBuf(buf)
	b, err := AppendFrame((*buf)[:0], m)
	*buf = b
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// ReadFrame reads one frame of any type from r, capped at max bytes
// (max <= 0 means DefaultMaxFrameSize), and decodes it into the message
// type it names.
func ReadFrame(r io.Reader, max int) (Message, error) {
	buf := getBuf()
	defer putBuf(buf)
	typ, payload, err := readFrame(r, max, *buf)
	if err != nil {
		return nil, err
	}
	return Decode(typ, payload)
}

// ReadExpected reads one frame and decodes it into m, failing when the
// frame has another type.
func ReadExpected(r io.Reader, max int, m Message) error {
	buf := getBuf()
	defer putBuf(buf)
	typ, payload, err := readFrame(r, max, *buf)
	if err != nil {
		return err
	}
	if typ != m.FrameType() {
		return malformed("got a %s frame where a %s frame was expected", typ.Name(), m.FrameType().Name())
	}
	return decodeInto(m, payload)
}

// Decode decodes a payload of frame type typ and checks it. The returned
// message does not alias payload.
func Decode(typ FrameType, payload []byte) (Message, error) {
	m := newMessage(typ)
	if m == nil {
		return nil, malformed("unknown frame type 0x%02x", uint8(typ))
	}
	if err := decodeInto(m, payload); err != nil {
		return nil, err
	}
	return m, nil
}

func decodeInto(m Message, payload []byte) error {
	err := unmarshalOpts.Unmarshal(payload, m)
	if err != nil {
		err = protoError(err)
	} else {
		err = m.validate()
	}
	if err != nil {
		return fmt.Errorf("%s frame: %w", m.FrameType().Name(), err)
	}
	return nil
}
