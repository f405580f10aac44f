package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"
	"unicode/utf8"

	"github.com/postern/postern/transport"
)

// ErrMalformed is wrapped by every decoding error.
var ErrMalformed = errors.New("wire: malformed frame")

func malformed(msg string, args ...any) error {
	return fmt.Errorf("%w: "+msg, append([]any{ErrMalformed}, args...)...)
}

// ---- field encoding ----

func appendField(b []byte, tag uint64, v []byte) []byte {
	b = binary.AppendUvarint(b, tag)
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

func appendString(b []byte, tag uint64, s string) []byte {
	if s == "" {
		return b
	}
	b = binary.AppendUvarint(b, tag)
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendStrings(b []byte, tag uint64, ss []string) []byte {
	for _, s := range ss {
		b = binary.AppendUvarint(b, tag)
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	return b
}

func appendUint(b []byte, tag, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = binary.AppendUvarint(b, tag)
	b = append(b, byte(uvarintLen(v)))
	return binary.AppendUvarint(b, v)
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// appendNested encodes a nested message in place: it reserves no length
// prefix up front, so it encodes into a scratch area at the end of b and
// then moves it behind its header. Messages here are small; the move is
// cheaper than a second buffer.
func appendNested(b []byte, tag uint64, enc func([]byte) []byte) []byte {
	start := len(b)
	b = enc(b)
	body := len(b) - start
	var hdr [2 * binary.MaxVarintLen64]byte
	h := binary.PutUvarint(hdr[:], tag)
	h += binary.PutUvarint(hdr[h:], uint64(body))
	b = append(b, hdr[:h]...)
	copy(b[start+h:], b[start:start+body])
	copy(b[start:], hdr[:h])
	return b
}

func appendTime(b []byte, tag uint64, t time.Time) []byte {
	if t.IsZero() {
		return b
	}
	ms := t.UnixMilli()
	if ms <= 0 {
		return b
	}
	return appendUint(b, tag, uint64(ms))
}

// ---- field decoding ----

// fields iterates over the fields of a payload.
type fields struct {
	b   []byte
	tag uint64
	val []byte
	err error
}

func (f *fields) next() bool {
	if f.err != nil || len(f.b) == 0 {
		return false
	}
	tag, n := binary.Uvarint(f.b)
	if n <= 0 {
		f.err = malformed("bad field tag")
		return false
	}
	f.b = f.b[n:]
	l, n := binary.Uvarint(f.b)
	if n <= 0 {
		f.err = malformed("bad length of field %d", tag)
		return false
	}
	f.b = f.b[n:]
	if l > uint64(len(f.b)) {
		f.err = malformed("field %d runs past the end of the frame", tag)
		return false
	}
	f.tag, f.val, f.b = tag, f.b[:l], f.b[l:]
	return true
}

func (f *fields) uint() (uint64, error) {
	v, n := binary.Uvarint(f.val)
	if n <= 0 || n != len(f.val) {
		return 0, malformed("bad integer in field %d", f.tag)
	}
	return v, nil
}

func (f *fields) str(max int) (string, error) {
	if len(f.val) > max {
		return "", malformed("field %d is %d bytes, limit %d", f.tag, len(f.val), max)
	}
	if !utf8.Valid(f.val) {
		return "", malformed("field %d is not UTF-8", f.tag)
	}
	return string(f.val), nil
}

func (f *fields) time() (time.Time, error) {
	v, err := f.uint()
	if err != nil {
		return time.Time{}, err
	}
	if v > 1<<53 {
		return time.Time{}, malformed("time out of range in field %d", f.tag)
	}
	return time.UnixMilli(int64(v)), nil
}

// setString decodes a string field that may appear once.
func setString(dst *string, f *fields, max int) error {
	if *dst != "" {
		return malformed("field %d repeated", f.tag)
	}
	s, err := f.str(max)
	if err != nil {
		return err
	}
	*dst = s
	return nil
}

func addString(dst *[]string, f *fields, max int) error {
	if len(*dst) >= MaxRepeated {
		return malformed("field %d repeated more than %d times", f.tag, MaxRepeated)
	}
	s, err := f.str(max)
	if err != nil {
		return err
	}
	*dst = append(*dst, s)
	return nil
}

func checkName(what, s string) error {
	if s == "" {
		return malformed("%s missing", what)
	}
	if err := ValidName(s); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrMalformed, what, err)
	}
	return nil
}

// ValidName reports whether s may name a binding, service or group: 1 to
// MaxNameLen bytes of letters, digits, '-', '_', '.' and '/'. Restricting
// names keeps them safe in logs, policies and file names, and leaves ':'
// free so that "name:port", as net/http dials, is unambiguous. Its errors
// are about the name, for configurations as well as frames: a decoder
// wraps them in ErrMalformed.
func ValidName(s string) error {
	if len(s) == 0 || len(s) > MaxNameLen {
		return fmt.Errorf("wire: a name is 1 to %d bytes, not %d", MaxNameLen, len(s))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '-' || c == '_' || c == '.' || c == '/':
		default:
			return fmt.Errorf("wire: name %q: use only letters, digits and . _ / -", s)
		}
	}
	return nil
}

// ---- messages ----

func (m *Identity) append(b []byte) []byte {
	b = appendString(b, 1, m.Subject)
	b = appendString(b, 2, m.Role)
	b = appendStrings(b, 3, m.Group)
	if len(m.Attributes) > 0 {
		b = appendField(b, 4, m.Attributes)
	}
	return b
}

func (m *Identity) decode(p []byte) error {
	f := fields{b: p}
	for f.next() {
		var err error
		switch f.tag {
		case 1:
			err = setString(&m.Subject, &f, MaxStringLen)
		case 2:
			err = setString(&m.Role, &f, MaxNameLen)
		case 3:
			err = addString(&m.Group, &f, MaxNameLen)
		case 4:
			m.Attributes = append([]byte(nil), f.val...)
		}
		if err != nil {
			return err
		}
	}
	if f.err != nil {
		return f.err
	}
	if m.Subject == "" {
		return malformed("identity without subject")
	}
	return nil
}

func (m *Binding) append(b []byte) []byte {
	b = appendString(b, 1, m.Name)
	b = appendString(b, 2, m.Kind)
	b = appendString(b, 3, m.Environment)
	b = appendStrings(b, 4, m.Label)
	return appendString(b, 5, m.Description)
}

func (m *Binding) decode(p []byte) error {
	f := fields{b: p}
	for f.next() {
		var err error
		switch f.tag {
		case 1:
			err = setString(&m.Name, &f, MaxNameLen)
		case 2:
			err = setString(&m.Kind, &f, MaxNameLen)
		case 3:
			err = setString(&m.Environment, &f, MaxNameLen)
		case 4:
			err = addString(&m.Label, &f, MaxNameLen)
		case 5:
			err = setString(&m.Description, &f, 4096)
		}
		if err != nil {
			return err
		}
	}
	if f.err != nil {
		return f.err
	}
	return checkName("binding name", m.Name)
}

// Service has the same fields as Binding.
func (m *Service) append(b []byte) []byte { return (*Binding)(m).append(b) }
func (m *Service) decode(p []byte) error  { return (*Binding)(m).decode(p) }

func (m *KV) append(b []byte) []byte {
	b = appendString(b, 1, m.Key)
	return appendString(b, 2, m.Value)
}

func (m *KV) decode(p []byte) error {
	f := fields{b: p}
	for f.next() {
		var err error
		switch f.tag {
		case 1:
			err = setString(&m.Key, &f, MaxNameLen)
		case 2:
			err = setString(&m.Value, &f, 4096)
		}
		if err != nil {
			return err
		}
	}
	if f.err != nil {
		return f.err
	}
	return checkName("detail key", m.Key)
}

func (m *Limits) append(b []byte) []byte {
	b = appendUint(b, 1, m.MaxStreams)
	return appendUint(b, 2, m.MaxFrameSize)
}

func (m *Limits) decode(p []byte) error {
	f := fields{b: p}
	for f.next() {
		var err error
		switch f.tag {
		case 1:
			m.MaxStreams, err = f.uint()
		case 2:
			m.MaxFrameSize, err = f.uint()
		}
		if err != nil {
			return err
		}
	}
	return f.err
}

// Message is any frame this package defines.
type Message interface {
	FrameType() FrameType
	// AppendPayload appends the encoded payload to b.
	AppendPayload(b []byte) []byte
	// DecodePayload decodes a payload into the message, which must be
	// zero. It validates what the message requires.
	DecodePayload(p []byte) error
}

func (*Hello) FrameType() FrameType     { return FrameHello }
func (*Welcome) FrameType() FrameType   { return FrameWelcome }
func (*Reject) FrameType() FrameType    { return FrameReject }
func (*Catalog) FrameType() FrameType   { return FrameCatalog }
func (*Refresh) FrameType() FrameType   { return FrameRefresh }
func (*Refreshed) FrameType() FrameType { return FrameRefreshed }
func (*Open) FrameType() FrameType      { return FrameOpen }
func (*Dial) FrameType() FrameType      { return FrameDial }
func (*Result) FrameType() FrameType    { return FrameResult }

// Goaway is FrameGoaway: the same fields as Reject.
type Goaway Reject

func (*Goaway) FrameType() FrameType { return FrameGoaway }

func (m *Hello) AppendPayload(b []byte) []byte {
	b = appendUint(b, 1, m.Version)
	b = appendString(b, 2, m.Role)
	b = appendString(b, 3, m.Token)
	for i := range m.Services {
		b = appendNested(b, 4, m.Services[i].append)
	}
	return appendString(b, 5, m.Client)
}

func (m *Hello) DecodePayload(p []byte) error {
	f := fields{b: p}
	for f.next() {
		var err error
		switch f.tag {
		case 1:
			m.Version, err = f.uint()
		case 2:
			err = setString(&m.Role, &f, MaxNameLen)
		case 3:
			err = setString(&m.Token, &f, MaxStringLen)
		case 4:
			if len(m.Services) >= MaxRepeated {
				return malformed("too many services")
			}
			var s Service
			if err = s.decode(f.val); err == nil {
				m.Services = append(m.Services, s)
			}
		case 5:
			err = setString(&m.Client, &f, 256)
		}
		if err != nil {
			return err
		}
	}
	if f.err != nil {
		return f.err
	}
	if m.Version == 0 {
		return malformed("hello without version")
	}
	if m.Role == "" {
		return malformed("hello without role")
	}
	return nil
}

func (m *Welcome) AppendPayload(b []byte) []byte {
	b = appendString(b, 1, m.Session)
	b = appendNested(b, 2, m.Identity.append)
	for i := range m.Catalog {
		b = appendNested(b, 3, m.Catalog[i].append)
	}
	b = appendNested(b, 4, m.Limits.append)
	return appendTime(b, 5, m.ExpiresAt)
}

func (m *Welcome) DecodePayload(p []byte) error {
	f := fields{b: p}
	var haveIdentity bool
	for f.next() {
		var err error
		switch f.tag {
		case 1:
			err = setString(&m.Session, &f, MaxNameLen)
		case 2:
			haveIdentity = true
			err = m.Identity.decode(f.val)
		case 3:
			err = decodeBinding(&m.Catalog, f.val)
		case 4:
			err = m.Limits.decode(f.val)
		case 5:
			m.ExpiresAt, err = f.time()
		}
		if err != nil {
			return err
		}
	}
	if f.err != nil {
		return f.err
	}
	if m.Session == "" || !haveIdentity {
		return malformed("welcome without session or identity")
	}
	return nil
}

func decodeBinding(dst *[]Binding, p []byte) error {
	if len(*dst) >= MaxRepeated {
		return malformed("too many bindings")
	}
	var b Binding
	if err := b.decode(p); err != nil {
		return err
	}
	*dst = append(*dst, b)
	return nil
}

func appendReject(b []byte, m *Reject) []byte {
	b = appendUint(b, 1, uint64(m.Code))
	b = appendString(b, 2, m.Reason)
	return appendString(b, 3, m.Message)
}

func decodeReject(m *Reject, p []byte) error {
	f := fields{b: p}
	for f.next() {
		var err error
		switch f.tag {
		case 1:
			err = decodeCode(&m.Code, &f)
		case 2:
			err = setString(&m.Reason, &f, MaxNameLen)
		case 3:
			err = setString(&m.Message, &f, 4096)
		}
		if err != nil {
			return err
		}
	}
	return f.err
}

func decodeCode(dst *Code, f *fields) error {
	v, err := f.uint()
	if err != nil {
		return err
	}
	if v > 255 {
		return malformed("code %d out of range", v)
	}
	// Codes this version does not know are kept: a newer peer may send
	// them, and Code.String says "unknown code".
	*dst = Code(v)
	return nil
}

func (m *Reject) AppendPayload(b []byte) []byte { return appendReject(b, m) }
func (m *Reject) DecodePayload(p []byte) error {
	if err := decodeReject(m, p); err != nil {
		return err
	}
	if m.Code == CodeOK {
		return malformed("reject with code ok")
	}
	return nil
}

func (m *Goaway) AppendPayload(b []byte) []byte { return appendReject(b, (*Reject)(m)) }
func (m *Goaway) DecodePayload(p []byte) error  { return decodeReject((*Reject)(m), p) }

func (m *Catalog) AppendPayload(b []byte) []byte {
	for i := range m.Bindings {
		b = appendNested(b, 3, m.Bindings[i].append)
	}
	return b
}

func (m *Catalog) DecodePayload(p []byte) error {
	f := fields{b: p}
	for f.next() {
		if f.tag == 3 {
			if err := decodeBinding(&m.Bindings, f.val); err != nil {
				return err
			}
		}
	}
	return f.err
}

func (m *Refresh) AppendPayload(b []byte) []byte { return appendString(b, 3, m.Token) }
func (m *Refresh) DecodePayload(p []byte) error {
	f := fields{b: p}
	for f.next() {
		if f.tag == 3 {
			if err := setString(&m.Token, &f, MaxStringLen); err != nil {
				return err
			}
		}
	}
	if f.err != nil {
		return f.err
	}
	if m.Token == "" {
		return malformed("refresh without token")
	}
	return nil
}

func (m *Refreshed) AppendPayload(b []byte) []byte { return appendTime(b, 5, m.ExpiresAt) }
func (m *Refreshed) DecodePayload(p []byte) error {
	f := fields{b: p}
	for f.next() {
		if f.tag == 5 {
			var err error
			if m.ExpiresAt, err = f.time(); err != nil {
				return err
			}
		}
	}
	return f.err
}

func appendDetails(b []byte, tag uint64, kvs []KV) []byte {
	for i := range kvs {
		b = appendNested(b, tag, kvs[i].append)
	}
	return b
}

func addDetail(dst *[]KV, p []byte) error {
	if len(*dst) >= 64 {
		return malformed("more than 64 details")
	}
	var kv KV
	if err := kv.decode(p); err != nil {
		return err
	}
	*dst = append(*dst, kv)
	return nil
}

func (m *Open) AppendPayload(b []byte) []byte {
	b = appendString(b, 1, m.Binding)
	b = appendString(b, 2, m.Action)
	return appendDetails(b, 3, m.Details)
}

func (m *Open) DecodePayload(p []byte) error {
	f := fields{b: p}
	for f.next() {
		var err error
		switch f.tag {
		case 1:
			err = setString(&m.Binding, &f, MaxNameLen)
		case 2:
			err = setString(&m.Action, &f, MaxNameLen)
		case 3:
			err = addDetail(&m.Details, f.val)
		}
		if err != nil {
			return err
		}
	}
	if f.err != nil {
		return f.err
	}
	if err := checkName("binding name", m.Binding); err != nil {
		return err
	}
	if m.Action != "" {
		return checkName("action", m.Action)
	}
	return nil
}

func (m *Dial) AppendPayload(b []byte) []byte {
	b = appendString(b, 1, m.Binding)
	b = appendString(b, 2, m.Session)
	b = appendNested(b, 3, m.Identity.append)
	b = appendString(b, 4, m.Action)
	b = appendDetails(b, 5, m.Details)
	return appendString(b, 6, m.Source)
}

func (m *Dial) DecodePayload(p []byte) error {
	f := fields{b: p}
	var haveIdentity bool
	for f.next() {
		var err error
		switch f.tag {
		case 1:
			err = setString(&m.Binding, &f, MaxNameLen)
		case 2:
			err = setString(&m.Session, &f, MaxNameLen)
		case 3:
			haveIdentity = true
			err = m.Identity.decode(f.val)
		case 4:
			err = setString(&m.Action, &f, MaxNameLen)
		case 5:
			err = addDetail(&m.Details, f.val)
		case 6:
			err = setString(&m.Source, &f, 256)
		}
		if err != nil {
			return err
		}
	}
	if f.err != nil {
		return f.err
	}
	if !haveIdentity {
		return malformed("dial without identity")
	}
	return checkName("binding name", m.Binding)
}

func (m *Result) AppendPayload(b []byte) []byte {
	b = appendUint(b, 1, uint64(m.Code))
	b = appendString(b, 2, m.Reason)
	b = appendString(b, 3, m.Message)
	b = appendStrings(b, 4, m.Policies)
	return appendString(b, 5, m.Connector)
}

func (m *Result) DecodePayload(p []byte) error {
	f := fields{b: p}
	for f.next() {
		var err error
		switch f.tag {
		case 1:
			err = decodeCode(&m.Code, &f)
		case 2:
			err = setString(&m.Reason, &f, MaxNameLen)
		case 3:
			err = setString(&m.Message, &f, 4096)
		case 4:
			err = addString(&m.Policies, &f, 1024)
		case 5:
			err = setString(&m.Connector, &f, MaxNameLen)
		}
		if err != nil {
			return err
		}
	}
	return f.err
}

// ---- frames ----

// AppendFrame appends m as a complete frame to b.
func AppendFrame(b []byte, m Message) []byte {
	b, start := transport.BeginFrame(b, uint8(m.FrameType()))
	b = m.AppendPayload(b)
	transport.EndFrame(b, start)
	return b
}

// WriteFrame writes m as one frame with one Write call, so that a frame is
// never interleaved with other writes and goes out in as few packets as the
// transport allows.
func WriteFrame(w io.Writer, m Message) error {
	buf := getBuf()
	*buf = AppendFrame((*buf)[:0], m)
	_, err := w.Write(*buf)
	putBuf(buf)
	return err
}

// ReadFrame reads one frame of any type from r, capped at max bytes
// (max <= 0 means DefaultMaxLen), and decodes it into the message type it
// names.
func ReadFrame(r io.Reader, max int) (Message, error) {
	if max <= 0 {
		max = DefaultMaxLen
	}
	buf := getBuf()
	defer putBuf(buf)
	typ, payload, err := transport.ReadFrame(r, max, *buf)
	if err != nil {
		return nil, err
	}
	return Decode(FrameType(typ), payload)
}

// Decode decodes a payload of frame type typ. The returned message does
// not alias payload.
func Decode(typ FrameType, payload []byte) (Message, error) {
	var m Message
	switch typ {
	case FrameHello:
		m = new(Hello)
	case FrameWelcome:
		m = new(Welcome)
	case FrameReject:
		m = new(Reject)
	case FrameCatalog:
		m = new(Catalog)
	case FrameRefresh:
		m = new(Refresh)
	case FrameRefreshed:
		m = new(Refreshed)
	case FrameGoaway:
		m = new(Goaway)
	case FrameOpen:
		m = new(Open)
	case FrameDial:
		m = new(Dial)
	case FrameResult:
		m = new(Result)
	default:
		return nil, malformed("unknown frame type 0x%02x", uint8(typ))
	}
	if err := m.DecodePayload(payload); err != nil {
		return nil, fmt.Errorf("%s frame: %w", typ, err)
	}
	return m, nil
}

// ReadExpected reads one frame and decodes it into m, failing when the
// frame has another type.
func ReadExpected(r io.Reader, max int, m Message) error {
	if max <= 0 {
		max = DefaultMaxLen
	}
	buf := getBuf()
	defer putBuf(buf)
	typ, payload, err := transport.ReadFrame(r, max, *buf)
	if err != nil {
		return err
	}
	if FrameType(typ) != m.FrameType() {
		return malformed("got a %s frame where a %s frame was expected", FrameType(typ), m.FrameType())
	}
	if err := m.DecodePayload(payload); err != nil {
		return fmt.Errorf("%s frame: %w", m.FrameType(), err)
	}
	return nil
}
