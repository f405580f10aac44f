// Package measure holds the switches this module's benchmark
// (internal/bench) sets on a mesh endpoint to measure what one part of it
// costs. Being internal, it cannot be imported outside this module, so no
// deployment can set them: a [connector.Config] from another module can
// only leave its Measure field nil.
package measure

// Connector switches parts of a connector off, for measurement.
type Connector struct {
	// Ungated relays the SQL statements and HTTP requests of every
	// binding without deciding them: a postgres session is spliced
	// between agent and upstream once the connector has logged in (no
	// parse, no decision, no audit event, the main login always), and an
	// HTTP request goes upstream once its target is normalized, without a
	// policy decision. Opens are still decided by the relay.
	Ungated bool
}
