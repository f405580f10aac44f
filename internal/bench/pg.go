package bench

import "context"

// postgres starts the PostgreSQL server of the binding tests and returns
// the connector service for it, or nil when those tests do not run.
func (r *runner) postgres() *service { return nil }

// bindingPhases runs the PostgreSQL and HTTP tests, direct and through
// bindings.
func (r *runner) bindingPhases(ctx context.Context) {
	for _, ph := range []string{phasePG, phaseHTTP} {
		if r.has(ph) {
			r.skipped[ph] = "the binding package is not there yet"
			r.logf("%s: skipped: the binding package is not there yet", ph)
		}
	}
}
