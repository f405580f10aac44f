// Package wire is the Postern wire protocol, version 1: the frames that
// agents, connectors and relays exchange over QUIC streams.
//
// # Overview
//
// The protocol is documented in one file, wire.proto, beside this one: the
// flow, the ordering rules, the frame layout, the limits, every code and
// the version history. The message types ([Hello], [Welcome], [Open],
// [Dial], [Result], ...) are generated from it into wire.pb.go, which is
// committed; after a change of wire.proto, go generate ./internal/wire
// rewrites it (protoc from Debian's protobuf-compiler, protoc-gen-go as
// pinned by go.mod's tool directive), and a test fails until it has.
//
// What this package adds by hand is small: the 5-byte frame header with
// its size cap, checked before anything is allocated ([ReadFrame],
// [ReadExpected], [ErrFrameTooLarge]); the checks a protobuf decoder does
// not make, such as required fields, names ([ValidName]) and caps on
// strings and repeated fields ([ErrMalformed]); short Go names for the
// codes ([CodeDenied], [FrameOpen], [StreamRefused]); and pooled buffers,
// so that [WriteFrame] marshals a message in place behind its header and
// writes the frame with one Write.
//
// # Usage
//
// An agent starts a binding stream with an Open and reads the relay's
// Result:
//
//	if err := wire.WriteFrame(st, &wire.Open{Binding: "staging-db"}); err != nil {
//		return err
//	}
//	var res wire.Result
//	if err := wire.ReadExpected(st, 0, &res); err != nil {
//		return err // wraps ErrMalformed, ErrFrameTooLarge or the stream's error
//	}
//	if res.Code != wire.CodeOK {
//		return fmt.Errorf("open refused: %s (%s): %s", res.Code.Text(), res.Reason, res.Message)
//	}
//
// To look at a captured frame, strip its header and decode the payload:
//
//	tail -c +6 frame.bin | protoc --decode_raw
//
// testdata/v1 holds one version-1 frame of every type; a test decodes
// them, so that a change of wire.proto that would break version-1 peers
// fails.
package wire
