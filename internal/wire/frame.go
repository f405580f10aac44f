package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
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
