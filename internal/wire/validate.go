package wire

import (
	"errors"
	"fmt"
	"strings"
)

// ErrMalformed is wrapped by every decoding error: a payload that is not a
// valid protobuf encoding of its message, or one that breaks a rule of
// wire.proto (a required field missing, a bad name, a cap exceeded).
var ErrMalformed = errors.New("wire: malformed frame")

func malformed(msg string, args ...any) error {
	return fmt.Errorf("%w: "+msg, append([]any{ErrMalformed}, args...)...)
}

// protoError is a protobuf decoding error as a malformed-frame error,
// without the runtime's "proto:" prefix (which it spells with a space or a
// no-break space at random, to keep programs from matching it).
func protoError(err error) error {
	s := strings.TrimPrefix(err.Error(), "proto:")
	s = strings.TrimLeft(s, " \u00a0")
	return malformed("%s", s)
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

// The checks below are what a protobuf decoder does not do: it accepts any
// length, any number of entries, and a message without a field the
// protocol requires. They run on every decoded frame, before any caller
// sees it. UTF-8 is the decoder's: proto3 strings must be valid.

func checkName(what, s string) error {
	if s == "" {
		return malformed("%s missing", what)
	}
	if err := ValidName(s); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrMalformed, what, err)
	}
	return nil
}

func checkLen(what, s string, max int) error {
	if len(s) > max {
		return malformed("%s is %d bytes, limit %d", what, len(s), max)
	}
	return nil
}

func checkStrings(what string, ss []string, max int) error {
	if len(ss) > MaxRepeated {
		return malformed("more than %d %s", MaxRepeated, what)
	}
	for _, s := range ss {
		if err := checkLen(what, s, max); err != nil {
			return err
		}
	}
	return nil
}

func checkCode(c Code) error {
	// A code this version does not know is kept, not refused: a newer
	// peer may send one, and Code.Text says "unknown code".
	if c < 0 || c > maxCode {
		return malformed("code %d out of range", int32(c))
	}
	return nil
}

func checkTime(what string, ms uint64) error {
	if ms > maxUnixMs {
		return malformed("%s %d out of range", what, ms)
	}
	return nil
}

// errs returns the first non-nil error.
func errs(es ...error) error {
	for _, e := range es {
		if e != nil {
			return e
		}
	}
	return nil
}

func (m *Identity) check() error {
	if m.Subject == "" {
		return malformed("identity without subject")
	}
	return errs(
		checkLen("identity subject", m.Subject, MaxStringLen),
		checkLen("identity role", m.Role, MaxNameLen),
		checkStrings("identity groups", m.Groups, MaxNameLen),
	)
}

func (m *Binding) check() error {
	return errs(
		checkName("binding name", m.Name),
		checkLen("binding kind", m.Kind, MaxNameLen),
		checkLen("binding environment", m.Environment, MaxNameLen),
		checkStrings("binding labels", m.Labels, MaxNameLen),
		checkLen("binding description", m.Description, maxTextLen),
	)
}

func checkBindings(what string, bs []*Binding) error {
	if len(bs) > MaxRepeated {
		return malformed("too many %s", what)
	}
	for _, b := range bs {
		if err := b.check(); err != nil {
			return err
		}
	}
	return nil
}

func checkDetails(ds []*Detail) error {
	if len(ds) > MaxDetails {
		return malformed("more than %d details", MaxDetails)
	}
	for _, d := range ds {
		if err := errs(checkName("detail key", d.Key), checkLen("detail value", d.Value, maxTextLen)); err != nil {
			return err
		}
	}
	return nil
}

func (m *Hello) validate() error {
	if m.Version == 0 {
		return malformed("hello without version")
	}
	if m.Role == "" {
		return malformed("hello without role")
	}
	return errs(
		checkLen("role", m.Role, MaxNameLen),
		checkLen("token", m.Token, MaxStringLen),
		checkBindings("services", m.Services),
		checkLen("client", m.Client, maxAddrLen),
		checkFeatures(m.Features),
	)
}

func checkFeatures(fs []string) error {
	if len(fs) > maxFeatures {
		return malformed("more than %d features", maxFeatures)
	}
	for _, f := range fs {
		if err := checkName("feature", f); err != nil {
			return err
		}
	}
	return nil
}

func (m *Policy) validate() error {
	if m.Version == 0 {
		return malformed("policy without version")
	}
	if len(m.Hash) != 64 {
		return malformed("policy hash is %d bytes, want 64", len(m.Hash))
	}
	if len(m.Sources) > MaxRepeated {
		return malformed("more than %d policy sources", MaxRepeated)
	}
	for _, src := range m.Sources {
		if src.Filename == "" {
			return malformed("policy source without filename")
		}
		if err := checkLen("policy filename", src.Filename, maxTextLen); err != nil {
			return err
		}
	}
	if d := m.Declarations; d != nil {
		if len(d.PrincipalAttributes) > MaxRepeated {
			return malformed("more than %d principal attributes", MaxRepeated)
		}
		for k, v := range d.PrincipalAttributes {
			if err := errs(checkLen("principal attribute", k, MaxNameLen), checkLen("principal attribute type", v, maxTextLen)); err != nil {
				return err
			}
		}
		if err := errs(checkStrings("detail keys", d.DetailKeys, MaxNameLen), checkStrings("actions", d.Actions, MaxNameLen)); err != nil {
			return err
		}
	}
	return checkLen("withheld", m.Withheld, maxTextLen)
}

func (m *Welcome) validate() error {
	if m.Session == "" || m.Identity == nil {
		return malformed("welcome without session or identity")
	}
	return errs(
		checkLen("session", m.Session, MaxNameLen),
		m.Identity.check(),
		checkBindings("bindings", m.Catalog),
		checkTime("expiry", m.ExpiresUnixMs),
	)
}

func checkReject(code Code, reason, message string) error {
	return errs(
		checkCode(code),
		checkLen("reason", reason, MaxNameLen),
		checkLen("message", message, maxTextLen),
	)
}

func (m *Reject) validate() error {
	if err := checkReject(m.Code, m.Reason, m.Message); err != nil {
		return err
	}
	if m.Code == CodeOK {
		return malformed("reject with code ok")
	}
	return nil
}

func (m *Goaway) validate() error { return checkReject(m.Code, m.Reason, m.Message) }

func (m *Catalog) validate() error { return checkBindings("bindings", m.Bindings) }

func (m *Refresh) validate() error {
	if m.Token == "" {
		return malformed("refresh without token")
	}
	return checkLen("token", m.Token, MaxStringLen)
}

func (m *Refreshed) validate() error { return checkTime("expiry", m.ExpiresUnixMs) }

func (m *Open) validate() error {
	if err := checkName("binding name", m.Binding); err != nil {
		return err
	}
	if m.Action != "" {
		if err := checkName("action", m.Action); err != nil {
			return err
		}
	}
	return errs(checkDetails(m.Details), m.Trace.check())
}

// Caps of a TraceContext's fields (wire.proto).
const (
	maxTraceparentLen = 128
	maxTracestateLen  = 512
)

// check enforces a TraceContext's caps. Its syntax is the tracer's to
// judge: a trace context that does not parse is ignored, not refused.
func (m *TraceContext) check() error {
	if m == nil {
		return nil
	}
	return errs(checkASCII("traceparent", m.Traceparent, maxTraceparentLen), checkASCII("tracestate", m.Tracestate, maxTracestateLen))
}

// checkASCII refuses a string longer than max bytes or with a byte outside
// printable ASCII: what an HTTP header value may carry as is.
func checkASCII(what, s string, max int) error {
	if len(s) > max {
		return malformed("%s is %d bytes, the limit is %d", what, len(s), max)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return malformed("%s has a byte that is not printable ASCII", what)
		}
	}
	return nil
}

// A DialAck has no fields: any that a later version adds are dropped.
func (m *DialAck) validate() error { return nil }

func (m *Dial) validate() error {
	if m.Identity == nil {
		return malformed("dial without identity")
	}
	return errs(
		checkName("binding name", m.Binding),
		checkLen("session", m.Session, MaxNameLen),
		m.Identity.check(),
		checkLen("action", m.Action, MaxNameLen),
		checkDetails(m.Details),
		checkLen("source", m.Source, maxAddrLen),
		m.Trace.check(),
	)
}

func (m *Revoke) validate() error {
	if m.Stream%4 != 0 {
		return malformed("revoke: stream %d is not a client-initiated bidirectional stream", m.Stream)
	}
	return errs(
		checkName("binding name", m.Binding),
		checkLen("reason", m.Reason, MaxNameLen),
		checkLen("message", m.Message, maxTextLen),
		checkStrings("policies", m.Policies, maxPolicyLen),
	)
}

func (m *Result) validate() error {
	return errs(
		checkCode(m.Code),
		checkLen("reason", m.Reason, MaxNameLen),
		checkLen("message", m.Message, maxTextLen),
		checkStrings("policies", m.Policies, maxPolicyLen),
		checkLen("connector", m.Connector, MaxNameLen),
	)
}

// MaxMuxFrame caps frames on the mux control stream of a TLS-over-TCP
// connection.
const MaxMuxFrame = 4096

// maxStreamCode is the largest code a QUIC varint carries.
const maxStreamCode = 1<<62 - 1

func (m *MuxSettings) validate() error {
	if m.MaxStreams == 0 || m.MaxStreams > 1<<60 {
		return malformed("mux settings: max_streams %d, want 1 to 2^60", m.MaxStreams)
	}
	return nil
}

func checkStreamFrame(id uint32, code uint64) error {
	if id < 2 {
		return malformed("stream id %d: not a binding or control stream", id)
	}
	if code > maxStreamCode {
		return malformed("stream error code %d does not fit in 62 bits", code)
	}
	return nil
}

func (m *StreamReset) validate() error { return checkStreamFrame(m.StreamId, m.Code) }
func (m *StopSending) validate() error { return checkStreamFrame(m.StreamId, m.Code) }
func (m *ResetAck) validate() error    { return checkStreamFrame(m.StreamId, 0) }

func (m *Close) validate() error {
	if m.Code > 255 {
		return malformed("close code %d above 255", m.Code)
	}
	return checkLen("close reason", m.Reason, 1024)
}
