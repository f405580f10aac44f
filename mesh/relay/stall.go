package relay

import (
	"slices"
	"time"

	"github.com/postern/postern/internal/quicnet"
)

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
//   - Windows: a stream's receive window grows to at most 2 MiB, and the
//     connection's is 64 MiB from the start (relayTransport, and
//     connector.RelaySessionTransport on the other end), so that one
//     stream holds a small share of it.
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

// liveStream is a binding stream past its Result, as the stall watch sees
// it.
type liveStream struct {
	down *quicnet.Conn // to the agent
	up   *upstream     // to the connector
}

// stalledSince returns when the stream's older blocked write began, and
// false when neither direction is blocked.
func (l *liveStream) stalledSince() (time.Time, bool) {
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

func (l *liveStream) reset() {
	l.down.Abort(quicnet.StreamStalled)
	l.up.Abort(quicnet.StreamStalled)
}

func (a *agentSession) track(down *quicnet.Conn, up *upstream) *liveStream {
	l := &liveStream{down: down, up: up}
	a.liveMu.Lock()
	if a.live == nil {
		a.live = make(map[*liveStream]struct{})
	}
	a.live[l] = struct{}{}
	a.liveMu.Unlock()
	return l
}

func (a *agentSession) untrack(l *liveStream) {
	a.liveMu.Lock()
	delete(a.live, l)
	a.liveMu.Unlock()
}

// watchStalls resets the streams that hold credit for longer, or in
// greater number, than an agent may.
func (r *Relay) watchStalls() {
	defer r.wg.Done()
	t := time.NewTicker(stallGrace / 4)
	defer t.Stop()
	for {
		select {
		case now := <-t.C:
			r.mu.RLock()
			agents := make([]*agentSession, 0, len(r.agents))
			for a := range r.agents {
				agents = append(agents, a)
			}
			r.mu.RUnlock()
			for _, a := range agents {
				r.checkStalls(a, now)
			}
		case <-r.ctx.Done():
			return
		}
	}
}

type stalled struct {
	l     *liveStream
	since time.Time
}

func (r *Relay) checkStalls(a *agentSession, now time.Time) {
	var st []stalled
	a.liveMu.Lock()
	for l := range a.live {
		if since, ok := l.stalledSince(); ok && now.Sub(since) >= stallGrace {
			st = append(st, stalled{l, since})
		}
	}
	a.liveMu.Unlock()
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
