// Package gcfloor gives the garbage collector a floor of headroom: it
// waits for at least a set number of bytes of new heap between cycles,
// where GOGC's default waits for as much again as the live heap.
//
// A relay's live heap is small (a few MiB with hundreds of sessions) while
// what it allocates is not: under a flood of handshakes crypto/tls and
// quic-go allocate some 60 MB/s. With GOGC's default that is several
// collections a second, each with a mark phase of milliseconds that, on a
// relay with one CPU, stands in the way of the packets of the sessions
// already running. With a floor of 48 MiB (the relay's default) the
// collections are a fraction as many, and a large live heap (thousands of connections) still gets
// GOGC's proportional target: the floor adds at most that much to the
// process's peak, not a multiple of it.
//
// The runtime has no such setting: GOMEMLIMIT only ever makes collections
// come sooner. So the tuner reads the live heap after each cycle
// (runtime/metrics) and sets the GC percent (runtime/debug) that gives
// the headroom. It stands aside when GOGC is set in the environment.
package gcfloor
