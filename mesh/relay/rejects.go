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

	mu      sync.Mutex
	sources map[string]*rejectCount // refusals counted but not yet written
	seen    map[string]bool         // sources that had one written in full this interval
}

func newRejectLog(audit *slog.Logger, interval time.Duration, penalty int) *rejectLog {
	return &rejectLog{audit: audit, interval: interval, penalty: penalty, sources: make(map[string]*rejectCount), seen: make(map[string]bool)}
}

// penalized reports whether src has had Limits.RejectsPerSource Hellos
// refused in the current interval: its new connections are then refused
// before their handshake, which is most of what a refused Hello costs.
// Only a peer that completed handshakes from src can get it there, so
// spoofed Initials cannot shut a victim out.
func (l *rejectLog) penalized(src netip.Addr) bool {
	if l.penalty <= 0 {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.sources[src.String()]
	return c != nil && c.count+1 >= l.penalty
}

// reject records one refused handshake. attrs are the full event's.
func (l *rejectLog) reject(src netip.Addr, role, reason string, attrs []slog.Attr) {
	key := "other"
	if src.IsValid() {
		key = src.String()
	}
	l.mu.Lock()
	if !l.seen[key] && len(l.seen) < maxRejectSources {
		l.seen[key] = true
		l.mu.Unlock()
		emit(l.audit, slog.LevelWarn, EventSessionReject, append(attrs, slog.Int("count", 1))...)
		return
	}
	if _, ok := l.sources[key]; !ok && len(l.sources) >= maxRejectSources {
		key = "other"
	}
	now := time.Now()
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
