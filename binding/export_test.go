package binding

// ResetDefaultClient closes and forgets the default client, so that a
// test leaves no session behind.
func ResetDefaultClient() {
	defaultClient.mu.Lock()
	c := defaultClient.c
	defaultClient.c = nil
	defaultClient.mu.Unlock()
	if c != nil {
		c.Close()
	}
}
