package relay

import "errors"

// CheckReady reports whether the relay can serve opens now, for a
// readiness probe: nil when it listens and is not shutting down, holds a
// policy set with at least one policy, and its Verifier holds at least
// one key; otherwise an error saying which is missing.
func (r *Relay) CheckReady() error {
	switch {
	case r.closed.Load() || r.ctx.Err() != nil:
		return errors.New("relay: closed")
	case r.draining.Load():
		return errors.New("relay: shutting down")
	case r.policy.Set().Len() == 0:
		return errors.New("relay: no policies loaded: every open would be denied")
	case r.cfg.Verifier.Keys() == 0:
		return errors.New("relay: no token verification keys")
	}
	return nil
}
