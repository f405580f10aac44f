package connector

import "errors"

// CheckReady reports whether the connector can serve streams now, for a
// readiness probe: nil while it has a session with at least one relay.
func (c *Connector) CheckReady() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, up := range c.status {
		if up {
			return nil
		}
	}
	return errors.New("connector: no session with any relay")
}
