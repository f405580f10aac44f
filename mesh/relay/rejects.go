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
}

func newRejectLog(audit *slog.Logger, interval time.Duration, penalty int) *rejectLog {
	return &rejectLog{audit: audit, interval: interval, penalty: penalty, now: time.Now,
		sources: make(map[string]*rejectCount), seen: make(map[string]bool),
		hits: make(map[netip.Addr]int), prevHits: make(map[netip.Addr]int), start: time.Now()}
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
	cur, prev := l.hits[src], l.prevHits[src]
	if cur >= l.penalty {
		return true
	}
	if prev == 0 {
		return false
	}
	left := l.interval - l.now().Sub(l.start)
	if left <= 0 {
		return false
	}
	return float64(cur)+float64(prev)*float64(left)/float64(l.interval) >= float64(l.penalty)
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
	l.start = l.now()
	l.mu.Unlock()
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
