package postern

import "slices"

// Kinds of binding. The kind says what handle package binding gives agent
// code, and how the connector serves the stream.
const (
	KindTCP      = "tcp"      // raw bytes: a net.Conn
	KindHTTP     = "http"     // an HTTP/1.1 server: an *http.Client
	KindPostgres = "postgres" // a PostgreSQL server: a *sql.DB
)

// ValidKind reports whether k is one of the kinds above.
func ValidKind(k string) bool {
	return k == KindTCP || k == KindHTTP || k == KindPostgres
}

// Binding describes a private service by the name agents open it by: an
// entry of an agent's catalog, a binding declared in a relay's
// configuration, a service a connector advertises. What policy reads of
// it (Kind, Environment, Labels) comes from the relay's configuration or
// a connector's signed token, never from what a peer merely claims.
type Binding struct {
	Name        string
	Kind        string // KindTCP, KindHTTP or KindPostgres
	Environment string // "staging", "prod", ...; may be empty
	Labels      []string
	Description string // for people, and for the tools that show them

	// ReadOnly is set only in an agent's catalog, by the relay: this
	// agent's policy permits it no write (and no unclassified statement
	// or request) through the binding, so a tool may say it only reads.
	// It is a hint, never a permission: the connector decides every
	// statement and request from its own parse either way. Always false
	// for tcp bindings.
	ReadOnly bool
}

// HasLabel reports whether the binding carries label l.
func (b Binding) HasLabel(l string) bool { return slices.Contains(b.Labels, l) }

// Identity is who a verified token says a peer is: an agent or a
// connector, its subject, and its groups.
type Identity struct {
	Subject string
	Role    string // "agent" or "connector"
	Groups  []string
}
