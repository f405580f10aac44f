package relay

import (
	"net/netip"
	"sync"
	"time"
)

// A flood of refused handshakes from many sources gets past
// Limits.RejectsPerSource, which each source meets only after its own
// share of refusals: two hundred sources at 2.5 bad Hellos a second each
// cost the relay 500 full handshakes a second, every one a key exchange, a
// signature and a token check, before any of them is refused. While the
// relay's refusals from all sources together pass Limits.FloodRejects in
// the last interval, it is flooded: a new connection from a source that
// has not had a Hello verified lately (an unfamiliar source) waits for a
// place in a budget of Limits.HandshakeBudget handshakes a second, QUIC
// and TLS over TCP together, and is refused before any TLS work when
// there is none. Over QUIC such a client must also prove its address
// with a Retry before it may take a place, so that spoofed Initials
// cannot spend the budget.
//
// A source is familiar for between half an hour and an hour after its
// last verified Hello: agents and connectors that were connected before
// the flood reconnect through it as before, within their own caps. What
// a flood costs is then those budgeted handshakes and, for the rest, one
// refusal each, no larger than the packet that asked: legitimate agents
// new to the relay wait for the flood to pass, or for a place.

// familiarFor is how long a source stays familiar after its last verified
// Hello, at least half of it; familiarMax bounds each of the two
// generations it is kept in.
const (
	familiarFor = time.Hour
	familiarMax = 1 << 15
)

// familiar is the set of sources that had a Hello verified lately, in two
// generations: the current one and the one before it, swapped every
// familiarFor/2 or when the current one is full.
type familiar struct {
	now func() time.Time

	mu        sync.Mutex
	cur, prev map[netip.Addr]struct{}
	since     time.Time
}

func newFamiliar(now func() time.Time) *familiar {
	return &familiar{now: now, cur: make(map[netip.Addr]struct{}), prev: map[netip.Addr]struct{}{}, since: now()}
}

// rotate swaps the generations when the current one is old or full.
// f.mu is held.
func (f *familiar) rotate() {
	now := f.now()
	if now.Sub(f.since) < familiarFor/2 && len(f.cur) < familiarMax {
		return
	}
	if now.Sub(f.since) >= familiarFor {
		f.prev = map[netip.Addr]struct{}{} // nothing verified for a whole generation
	} else {
		f.prev = f.cur
	}
	f.cur = make(map[netip.Addr]struct{})
	f.since = now
}

// add marks src familiar: it just had a Hello verified.
func (f *familiar) add(src netip.Addr) {
	if !src.IsValid() {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rotate()
	f.cur[src] = struct{}{}
}

func (f *familiar) has(src netip.Addr) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rotate()
	if _, ok := f.cur[src]; ok {
		return true
	}
	_, ok := f.prev[src]
	return ok
}

// budget is a token bucket of handshakes: rate a second, at most burst
// at once.
type budget struct {
	rate, burst float64
	now         func() time.Time

	mu     sync.Mutex
	tokens float64
	last   time.Time
}

func newBudget(rate int, now func() time.Time) *budget {
	burst := max(1, float64(rate)/4) // a quarter second's worth: the cost comes in small steps
	return &budget{rate: float64(rate), burst: burst, now: now, tokens: burst, last: now()}
}

// fill adds what accrued since the last call. b.mu is held.
func (b *budget) fill() {
	now := b.now()
	if d := now.Sub(b.last); d > 0 {
		b.tokens = min(b.burst, b.tokens+d.Seconds()*b.rate)
	}
	b.last = now
}

// available reports whether a handshake could take a place now.
func (b *budget) available() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.fill()
	return b.tokens >= 1
}

// take takes a place, if there is one.
func (b *budget) take() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.fill()
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
