// Package tcpserve runs a handler for each connection a TCP listener
// accepts, and stops cleanly: the listener closed, every open connection
// closed, every handler returned. The test harness (internal/meshtest)
// and the bench (internal/bench) serve their upstreams with it.
package tcpserve
