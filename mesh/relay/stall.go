package relay

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/postern/postern/internal/quicnet"
	"github.com/postern/postern/internal/wire"
)

// ackWatch counts a connector's dials awaiting a DialAck, so that the
// relay stops choosing a connector that has stopped answering before the
// first of those dials times out: with opens arriving every few
// milliseconds, waiting for AckTimeout to pass over a dead connector
// would send it an AckTimeout's worth of opens, each to move a second
// later.
type ackWatch struct {
	mu      sync.Mutex
	pending int
	quiet   time.Time // since when no DialAck came while some were pending
}

func (w *ackWatch) sent() {
	w.mu.Lock()
	if w.pending == 0 {
		w.quiet = time.Now()
	}
	w.pending++
	w.mu.Unlock()
}

// done ends a wait: acked says whether the DialAck came.
func (w *ackWatch) done(acked bool) {
	w.mu.Lock()
	w.pending--
	if acked {
		w.quiet = time.Now()
	}
	w.mu.Unlock()
}

// silent reports whether dials have waited for d with no DialAck.
func (w *ackWatch) silent(d time.Duration) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pending > 0 && time.Since(w.quiet) > d
}

// Isolation between agents.
//
// All agents' streams to one connector share one QUIC connection, and
// bytes that a stream's reader leaves unread hold that connection's
// flow-control credit: enough of them, and the connector can send no
// Result to anyone (downloads an agent stopped reading hold the relay's
// receive credit; uploads to an upstream that stopped reading hold the
// connector's, which its next Dials need). Three things keep one agent
// from doing that to the others:
//
//   - Windows: a stream's receive window starts at 32 KiB and grows to at
//     most 2 MiB, and the connection's is 64 MiB from the start
//     (WindowedTransport, and connector.RelaySessionTransport on the
//     other end; with Limits.ConnectorNetworks set, only connections from
//     those networks get it whole), so that one stream holds a small
//     share of it.
//   - A share per agent: a stream is stalled when a write to its agent,
//     or to its connector, has waited for stallGrace; at most
//     Limits.StalledStreamsPerAgent of one agent's streams may be stalled
//     at once, and the relay resets any beyond them (the most recently
//     stalled first) with STREAM_ERROR_STALLED. One agent then holds at
//     most that many windows of any connection's credit, however many
//     streams it opens and stops reading, and an agent that died without
//     closing its session is one of them.
//   - A stall timeout: a stream stalled for Limits.StallTimeout is reset
//     the same way, so that what it held goes back.

// stallGrace is how long a write must wait before its stream counts as
// stalled: far above the round trips of a reader that keeps up, short
// enough that an agent that stops reading many streams at once holds
// their credit for about a second.
const stallGrace = time.Second

// stallStream is a binding stream past its Result, as the stall watch sees
// it (a liveStream is the same stream as revocation sees it).
type stallStream struct {
	down *quicnet.Conn // to the agent
	up   *upstream     // to the connector
}

// stalledSince returns when the stream's older blocked write began, and
// false when neither direction is blocked.
func (l *stallStream) stalledSince() (time.Time, bool) {
	d, dok := l.down.WriteBlockedSince()
	u, uok := l.up.conn().WriteBlockedSince()
	switch {
	case dok && uok && u.Before(d):
		return u, true
	case dok:
		return d, true
	case uok:
		return u, true
	}
	return time.Time{}, false
}

// reset cuts both legs with STREAM_ERROR_STALLED, the agent's first: a
// cancel wakes the splice, which aborts what is left with
// STREAM_ERROR_ABORTED, and the agent must read why (the first Abort of
// a Conn decides its code).
func (l *stallStream) reset() {
	l.down.Abort(quicnet.StreamStalled)
	l.up.Abort(quicnet.StreamStalled)
}

func (a *agentSession) track(down *quicnet.Conn, up *upstream) *stallStream {
	l := &stallStream{down: down, up: up}
	a.stallMu.Lock()
	if a.stalling == nil {
		a.stalling = make(map[*stallStream]struct{})
	}
	a.stalling[l] = struct{}{}
	a.stallMu.Unlock()
	return l
}

func (a *agentSession) untrack(l *stallStream) {
	a.stallMu.Lock()
	delete(a.stalling, l)
	a.stallMu.Unlock()
}

// watchInterval is how often the relay looks for stalled streams and
// silent connectors.
const watchInterval = 250 * time.Millisecond

// watch resets the streams that hold credit for longer, or in greater
// number, than an agent may, and ends the sessions of connectors that
// promised keep-alives and went silent.
func (r *Relay) watch() {
	defer r.wg.Done()
	t := time.NewTicker(watchInterval)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case now := <-t.C:
			// A tick this late means this process did not run for a
			// while: what it did not hear meanwhile may be waiting in
			// its socket, so silence is not judged on this tick.
			late := now.Sub(last) > 3*watchInterval
			last = now
			r.mu.RLock()
			agents := make([]*agentSession, 0, len(r.agents))
			for a := range r.agents {
				agents = append(agents, a)
			}
			conns := make([]*connectorSession, 0, len(r.connectors))
			for c := range r.connectors {
				conns = append(conns, c)
			}
			r.mu.RUnlock()
			for _, a := range agents {
				r.checkStalls(a, now)
			}
			for _, c := range conns {
				r.checkSilence(c, now, late)
			}
		case <-r.ctx.Done():
			return
		}
	}
}

// checkSilence ends c's session when it promised keep-alives and nothing
// came from it for ConnectorSilence.
func (r *Relay) checkSilence(c *connectorSession, now time.Time, late bool) {
	rc, ok := c.conn.(quicnet.Received)
	if !c.keepsAlive || !ok {
		return
	}
	n := rc.Received()
	if n != c.heardN || c.heardAt.IsZero() || late {
		c.heardN, c.heardAt = n, now
		return
	}
	if silent := now.Sub(c.heardAt); silent >= r.limits.ConnectorSilence {
		r.log.Warn("relay: connector went silent; ending its session", "connector", c.name(), "session", c.id, "silent_for", silent.Round(time.Millisecond))
		reason := "connector_silent"
		c.endReason.CompareAndSwap(nil, &reason)
		closeConn(c.conn, wire.CodeTimeout, reason, fmt.Sprintf("nothing from the connector for %s", silent.Round(time.Millisecond)))
	}
}

type stalled struct {
	l     *stallStream
	since time.Time
}

func (r *Relay) checkStalls(a *agentSession, now time.Time) {
	var st []stalled
	a.stallMu.Lock()
	for l := range a.stalling {
		if since, ok := l.stalledSince(); ok && now.Sub(since) >= stallGrace {
			st = append(st, stalled{l, since})
		}
	}
	a.stallMu.Unlock()
	if len(st) == 0 {
		return
	}
	slices.SortFunc(st, func(x, y stalled) int { return x.since.Compare(y.since) })
	for i, s := range st {
		var why string
		switch {
		case now.Sub(s.since) >= r.limits.StallTimeout:
			why = "stall_timeout"
		case i >= r.limits.StalledStreamsPerAgent:
			why = "stalled_streams_per_agent"
		default:
			continue
		}
		r.log.Warn("relay: resetting a stream whose reader stopped", "session", a.id, "subject", a.principal.Load().ID,
			"reason", why, "stalled_for", now.Sub(s.since).Round(time.Millisecond))
		a.untrack(s.l)
		s.l.reset()
	}
}
