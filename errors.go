package postern

import (
	"errors"
	"fmt"
	"net"
	"strings"
)

// Sentinel errors. Every error the client returns for a refused session or
// open is an *Error that matches exactly one of these with errors.Is
// (ErrKeyNotProven, which refines ErrUnauthenticated, matches both).
var (
	// ErrUnauthenticated: the relay refused the token (see Error.Reason for
	// which check failed: "token_expired", "bad_signature", ...).
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrKeyNotProven: the token is bound to a key (sender-constrained)
	// and the client did not prove it holds that key, or the relay
	// requires bound tokens and this one is a bearer token (Error.Reason:
	// "key_not_proven", "key_mismatch", "token_not_bound",
	// "binding_changed"). It wraps ErrUnauthenticated, so a check for
	// that matches it too.
	ErrKeyNotProven = fmt.Errorf("token key not proven: %w", ErrUnauthenticated)
	// ErrDenied: policy does not let this identity open the binding.
	// Error.Policies names the policies that decided.
	ErrDenied = errors.New("denied by policy")
	// ErrUnknownBinding: no binding has this name.
	ErrUnknownBinding = errors.New("unknown binding")
	// ErrNoConnector: the binding exists but no connector serving it is
	// connected to the relay now. Retrying later may succeed.
	ErrNoConnector = errors.New("no connector available")
	// ErrUpstream: the connector could not reach the private service, or
	// the service refused the connector's credentials.
	ErrUpstream = errors.New("upstream failure")
	// ErrTimeout: a step of the open or the handshake took too long.
	ErrTimeout = errors.New("timeout")
	// ErrLimitExceeded: a configured limit was reached (streams open at
	// once, frame size, token size).
	ErrLimitExceeded = errors.New("limit exceeded")
	// ErrProtocol: a peer sent something this version does not accept.
	ErrProtocol = errors.New("protocol error")
	// ErrClosed: the client, or the session, was closed. It wraps
	// net.ErrClosed.
	ErrClosed = fmt.Errorf("closed: %w", net.ErrClosed)
	// ErrUnavailable: the relay is shutting down or failed internally.
	ErrUnavailable = errors.New("relay unavailable")
	// ErrRevoked: access that was granted has been taken away. A live
	// stream's Read or Write returns it when the relay cut the stream
	// because policy no longer allows it (after a policy reload or a
	// token refresh; Error.Policies names the deciding policies), and
	// every call returns it once the token or its subject is on the
	// relay's revocation list (Error.Reason "token_revoked" or
	// "subject_revoked"). Reconnecting with the same token does not help.
	ErrRevoked = errors.New("access revoked")
)

// Error is the error of a refused session or open. It names the binding
// (empty for a session) and carries what the relay said.
type Error struct {
	Op       string   // "connect", "open", "refresh", "read", "write"
	Binding  string   // the binding being opened, if any
	Reason   string   // stable snake_case detail, e.g. "token_expired"
	Message  string   // what the relay or connector said, for people
	Policies []string // for ErrDenied: the IDs of the deciding policies
	Err      error    // one of the sentinels above, or a lower-level cause
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("postern: ")
	b.WriteString(e.Op)
	if e.Binding != "" {
		fmt.Fprintf(&b, " %q", e.Binding)
	}
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	if len(e.Policies) > 0 {
		fmt.Fprintf(&b, " (policy %s)", strings.Join(e.Policies, ", "))
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Timeout reports whether the error is a timeout, so that an *Error
// behaves like a net.Error where callers check for one.
func (e *Error) Timeout() bool { return errors.Is(e.Err, ErrTimeout) }

// Temporary is for net.Error; it reports whether retrying may help.
func (e *Error) Temporary() bool {
	return errors.Is(e.Err, ErrNoConnector) || errors.Is(e.Err, ErrTimeout) || errors.Is(e.Err, ErrUnavailable)
}
