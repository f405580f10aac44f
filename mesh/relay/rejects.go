package relay

import (
	"log/slog"
	"net/netip"
	"sync"
	"time"
)

// Refused handshakes are audited per source address, not one event each:
// a peer that sends hundreds of bad Hellos a second must not turn the
// trail into a flood that hides everything else, nor cost the relay a
// write per attempt. The first refusal from a source in an interval is
// written at once, in full; the ones after it are counted, and when the
// interval ends one event says how many there were and why.

// maxRejectSources bounds the sources tracked in one interval; refusals
// from sources beyond it are counted under the source "other".
const maxRejectSources = 4096

type rejectCount struct {
	count   int
	role    string
	reasons map[string]int // bounded: reasons are the relay's own words
	first   time.Time
	last    time.Time
}

type rejectLog struct {
	audit    *slog.Logger
	interval time.Duration
	penalty  int // refusals in an interval after which a source is refused at once

	now func() time.Time // time.Now; tests move it

	mu      sync.Mutex
	sources map[string]*rejectCount // refusals counted but not yet written
	seen    map[string]bool         // sources that had one written in full this interval
	// hits and prevHits count every refusal per source address in this
	// interval (since start) and the one before it, for the penalty.
	hits, prevHits map[netip.Addr]int
	start          time.Time

	// floodAt is Limits.FloodRejects (0: never flooded); total and
	// prevTotal count every refusal, from all sources, in this interval
	// and the one before it. flooding says that a relay.flood event
	// started a flood that no event has ended yet; budgetRefused reads
	// the connections refused for Limits.HandshakeBudget so far, and
	// budgetMark is what it read at the last relay.flood event.
	floodAt, total, prevTotal int
	budgetRate                int
	flooding                  bool
	budgetRefused             func() uint64
	budgetMark                uint64
}

func newRejectLog(audit *slog.Logger, interval time.Duration, penalty int) *rejectLog {
	return &rejectLog{audit: audit, interval: interval, penalty: penalty, now: time.Now,
		sources: make(map[string]*rejectCount), seen: make(map[string]bool),
		hits: make(map[netip.Addr]int), prevHits: make(map[netip.Addr]int), start: time.Now()}
}

// slide is the sliding estimate of refusals in the last interval, from
// cur in this interval and prev in the one before it. l.mu is held.
func (l *rejectLog) slide(cur, prev int) float64 {
	if prev == 0 {
		return float64(cur)
	}
	left := l.interval - l.now().Sub(l.start)
	if left <= 0 {
		return float64(cur)
	}
	return float64(cur) + float64(prev)*float64(left)/float64(l.interval)
}

// flooded reports whether the relay's refusals from all sources in the
// last interval reach Limits.FloodRejects (see flood.go).
func (l *rejectLog) flooded() bool {
	if l.floodAt <= 0 {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.slide(l.total, l.prevTotal) >= float64(l.floodAt)
}

// floodEvent writes a relay.flood event; l.mu is not held.
func (l *rejectLog) floodEvent(state string, refused int, budgetRefused uint64) {
	emit(l.audit, slog.LevelWarn, EventRelayFlood,
		slog.String("state", state),
		slog.Int("refused", refused),
		slog.Uint64("budget_refused", budgetRefused),
		slog.Int("flood_rejects", l.floodAt),
		slog.Int("handshake_budget", l.budgetRate),
		slog.Int64("interval_ms", l.interval.Milliseconds()))
}

// budgetSince reads the budget's refusals since the last relay.flood
// event and marks them read. l.mu is held.
func (l *rejectLog) budgetSince() uint64 {
	if l.budgetRefused == nil {
		return 0
	}
	n := l.budgetRefused()
	d := n - l.budgetMark
	l.budgetMark = n
	return d
}

// penalized reports whether src has had Limits.RejectsPerSource Hellos
// refused in the last interval: its new connections are then refused
// before their handshake, which is most of what a refused Hello costs.
// Only a peer that completed handshakes from src can get it there, so
// spoofed Initials cannot shut a victim out.
//
// "The last interval" slides: the previous interval's refusals count in
// proportion to how much of it is still within one interval of now (the
// usual two-window estimate). Counted per interval of the audit's clock
// instead, a source refused at 2.5 a second (25 in 10 s) against a
// penalty of 16 could be refused none at all, its Hellos split 10 and 15
// across a boundary.
func (l *rejectLog) penalized(src netip.Addr) bool {
	if l.penalty <= 0 {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.slide(l.hits[src], l.prevHits[src]) >= float64(l.penalty)
}

// reject records one refused handshake. attrs are the full event's.
func (l *rejectLog) reject(src netip.Addr, role, reason string, attrs []slog.Attr) {
	key := "other"
	if src.IsValid() {
		key = src.String()
	}
	l.mu.Lock()
	if src.IsValid() && l.penalty > 0 {
		if _, ok := l.hits[src]; ok || len(l.hits) < maxRejectSources {
			l.hits[src]++
		}
	}
	l.total++
	if l.floodAt > 0 && !l.flooding {
		if n := l.slide(l.total, l.prevTotal); n >= float64(l.floodAt) {
			l.flooding = true
			b := l.budgetSince()
			l.mu.Unlock()
			l.floodEvent("on", int(n), b)
			l.mu.Lock()
		}
	}
	if !l.seen[key] && len(l.seen) < maxRejectSources {
		l.seen[key] = true
		l.mu.Unlock()
		emit(l.audit, slog.LevelWarn, EventSessionReject, append(attrs, slog.Int("count", 1))...)
		return
	}
	if _, ok := l.sources[key]; !ok && len(l.sources) >= maxRejectSources {
		key = "other"
	}
	now := l.now()
	c := l.sources[key]
	if c == nil {
		c = &rejectCount{role: role, reasons: make(map[string]int), first: now}
		l.sources[key] = c
	}
	c.count++
	c.reasons[reason]++
	c.last = now
	if c.role != role {
		c.role = "mixed"
	}
	l.mu.Unlock()
}

// flush writes one event per source with refusals counted since the last
// flush, and starts a new interval.
func (l *rejectLog) flush() {
	l.mu.Lock()
	sources := l.sources
	l.sources = make(map[string]*rejectCount)
	l.seen = make(map[string]bool)
	l.prevHits, l.hits = l.hits, make(map[netip.Addr]int)
	last := l.total
	l.prevTotal, l.total = l.total, 0
	l.start = l.now()
	// A flood is summed up once an interval while it lasts, and ends
	// when a whole interval stays below Limits.FloodRejects.
	state := ""
	var budgetRefused uint64
	if l.flooding {
		state = "continues"
		if last < l.floodAt {
			state = "off"
			l.flooding = false
		}
		budgetRefused = l.budgetSince()
	}
	l.mu.Unlock()
	if state != "" {
		l.floodEvent(state, last, budgetRefused)
	}
	for src, c := range sources {
		reasons := make([]slog.Attr, 0, len(c.reasons))
		for r, n := range c.reasons {
			reasons = append(reasons, slog.Int(r, n))
		}
		emit(l.audit, slog.LevelWarn, EventSessionReject,
			slog.String("remote", src),
			slog.String("role", c.role),
			slog.Int("count", c.count),
			slog.Attr{Key: "reasons", Value: slog.GroupValue(reasons...)},
			slog.Time("first", c.first),
			slog.Time("last", c.last),
			slog.Int64("interval_ms", l.interval.Milliseconds()))
	}
}

func (l *rejectLog) run(stop <-chan struct{}) {
	t := time.NewTicker(l.interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			l.flush()
		case <-stop:
			l.flush()
			return
		}
	}
}
