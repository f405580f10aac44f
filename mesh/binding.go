package mesh

import (
	"slices"

	"github.com/postern/postern/internal/wire"
)

// Kinds of binding. The kind says what handle the binding package gives
// agent code, and how the connector serves the stream.
const (
	KindTCP      = "tcp"      // raw bytes: a net.Conn
	KindHTTP     = "http"     // an HTTP/1.1 server: an *http.Client
	KindPostgres = "postgres" // a PostgreSQL server: a *sql.DB
)

// Binding is one entry of an agent's catalog: a private service that
// policy lets the agent open, as the connector serving it describes it.
type Binding struct {
	Name        string
	Kind        string
	Environment string
	Labels      []string
	Description string
}

// HasLabel reports whether the binding carries label l.
func (b Binding) HasLabel(l string) bool { return slices.Contains(b.Labels, l) }

func bindingFromWire(w *wire.Binding) Binding {
	return Binding{Name: w.Name, Kind: w.Kind, Environment: w.Environment, Labels: w.Labels, Description: w.Description}
}

// Identity is who the relay says this client is, from its verified token.
type Identity struct {
	Subject string
	Role    string
	Groups  []string
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
