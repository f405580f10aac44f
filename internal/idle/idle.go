package idle

import "context"

// queueLen bounds the waiters: past it, Wait returns at once rather than
// let a flood of them hold memory (the relay's admission caps keep the
// unverified connections, and so the waiters, far below it).
const queueLen = 4096

// Wait returns once the runtime has polled the network since the call
// and the goroutines ready to run then have had their turn, or when ctx
// is done, whichever comes first.
func Wait(ctx context.Context) {
	wait(ctx)
}
