package mesh

import (
	"github.com/postern/postern"
	"github.com/postern/postern/internal/wire"
)

func bindingFromWire(w *wire.Binding) postern.Binding {
	return postern.Binding{Name: w.Name, Kind: w.Kind, Environment: w.Environment, Labels: w.Labels, Description: w.Description, ReadOnly: w.ReadOnly}
}

// Addr is the address of a binding stream: net.Conn.RemoteAddr of a
// connection returned by Client.Dial.
type Addr struct {
	Binding string
}

// Network returns "postern".
func (a Addr) Network() string { return "postern" }

// String returns the binding name.
func (a Addr) String() string { return a.Binding }

// codeErr maps a wire code to its sentinel.
func codeErr(c wire.Code) error {
	switch c {
	case wire.CodeUnauthenticated:
		return postern.ErrUnauthenticated
	case wire.CodeKeyNotProven:
		return postern.ErrKeyNotProven
	case wire.CodeDenied:
		return postern.ErrDenied
	case wire.CodeUnknownBinding:
		return postern.ErrUnknownBinding
	case wire.CodeNoConnector:
		return postern.ErrNoConnector
	case wire.CodeUpstream:
		return postern.ErrUpstream
	case wire.CodeTimeout:
		return postern.ErrTimeout
	case wire.CodeLimit:
		return postern.ErrLimitExceeded
	case wire.CodeShutdown, wire.CodeInternal:
		return postern.ErrUnavailable
	case wire.CodeRevoked:
		return postern.ErrRevoked
	}
	return postern.ErrProtocol
}
