// Package idle lets work of low priority go after the work that is ready
// to run: the relay's cryptographic work for peers it has not yet
// verified (a TLS key exchange, a token's signature) waits in Wait until
// the packets of verified sessions that have arrived meanwhile have been
// read and handled.
//
// Why it is needed. The Go scheduler looks for network readiness only
// when it has nothing else to run (and, failing that, every 10 ms), so on
// a relay with one CPU a flood of handshakes, each a few hundred
// microseconds of key exchange and signature, keeps an agent's packet
// unread in the kernel until the handshakes queued ahead of it are done.
// Wait puts each handshake behind a poll of the network instead, so that
// an agent's packet waits mostly for the one handshake step running when
// it arrives rather than for every one queued ahead of it.
//
// How. One goroutine serves the waiters in turn. For each, it makes an
// eventfd readable and parks on it; the runtime notices that readiness
// in the same poll that notices any socket's, so the goroutine wakes
// only once the scheduler has polled the network, and it then yields
// once more so that the goroutines that poll made ready run before the
// waiter does. On a process that is never idle the runtime's monitor
// still polls every 10 ms, so a waiter is delayed, never starved.
//
// Wait does nothing where eventfd is missing (outside Linux), and when
// more than 4,096 callers wait at once.
package idle
