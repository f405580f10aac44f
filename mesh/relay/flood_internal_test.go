package relay

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
)

// TestFamiliar: a source stays familiar for at least half of familiarFor
// after its last verified Hello and is forgotten after familiarFor; each
// generation is bounded.
func TestFamiliar(t *testing.T) {
	now := time.Unix(1e9, 0)
	f := newFamiliar(func() time.Time { return now })
	a, b := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	f.add(a)
	f.add(netip.Addr{}) // no address: nothing
	if !f.has(a) || f.has(b) {
		t.Fatalf("after adding a: has(a) %v, has(b) %v", f.has(a), f.has(b))
	}
	now = now.Add(familiarFor/2 + time.Second) // rotated: a in the previous generation
	if !f.has(a) {
		t.Fatal("a forgotten half an hour after its Hello")
	}
	f.add(b)
	now = now.Add(familiarFor/2 + time.Second) // rotated again: a dropped, b kept
	if f.has(a) {
		t.Fatal("a still familiar more than familiarFor after its Hello")
	}
	if !f.has(b) {
		t.Fatal("b forgotten half an hour after its Hello")
	}
	now = now.Add(2 * familiarFor) // nothing for a long time
	if f.has(b) {
		t.Fatal("b still familiar two hours after its Hello")
	}
	for i := range familiarMax + 10 {
		f.add(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}))
	}
	if n := len(f.cur) + len(f.prev); n > 2*familiarMax || len(f.cur) > familiarMax {
		t.Fatalf("%d sources kept (%d current), bound %d per generation", n, len(f.cur), familiarMax)
	}
}

// TestBudget: the bucket gives a quarter second's worth at once and then
// what accrues, never more than its burst.
func TestBudget(t *testing.T) {
	now := time.Unix(1e9, 0)
	b := newBudget(8, func() time.Time { return now })
	for i := range 2 {
		if !b.take() {
			t.Fatalf("place %d of a burst of 2 refused", i)
		}
	}
	if b.available() || b.take() {
		t.Fatal("a third place at once")
	}
	now = now.Add(125 * time.Millisecond) // one accrues at 8 a second
	if !b.available() || !b.take() || b.take() {
		t.Fatal("after 125 ms: want exactly one place")
	}
	now = now.Add(time.Hour)
	n := 0
	for b.take() {
		n++
	}
	if n != 2 {
		t.Fatalf("after an hour idle, %d places at once, want the burst of 2", n)
	}
	if b := newBudget(1, func() time.Time { return now }); !b.take() || b.take() {
		t.Fatal("a budget of 1 a second gives one place at once")
	}
}

// TestGateBudget: while flooded, an unfamiliar source's QUIC client must
// prove its address with a Retry, then takes a place in the budget, and
// is refused at once (no Retry) when there is none; TCP takes places
// too; familiar sources, and every source when not flooded, are not
// touched; budget refusals are counted apart and hold no place.
func TestGateBudget(t *testing.T) {
	now := time.Unix(1e9, 0)
	clock := func() time.Time { return now }
	g := newGate(Limits{MaxUnverified: 100, MaxUnverifiedPerSource: 10, RetryAbove: 50, HandshakeBudget: 4})
	g.budget = newBudget(4, clock) // a burst of 1
	g.familiar = newFamiliar(clock)
	flooded := false
	g.flooded = func() bool { return flooded }
	admit := func(addr string, validated bool) error {
		_, err := g.connContext(context.Background(), &quic.ClientInfo{RemoteAddr: udp(addr), AddrVerified: validated})
		return err
	}
	// Not flooded: as before.
	if g.verifySource(udp("10.0.0.1:1")) {
		t.Fatal("not flooded: a Retry below every threshold")
	}
	for i := range 3 {
		if err := admit("10.0.0.1:1", false); err != nil {
			t.Fatalf("not flooded, connection %d: %v", i, err)
		}
	}
	g.familiar.add(netip.MustParseAddr("10.0.0.9"))
	flooded = true
	// Unfamiliar, a place left: a Retry first; unvalidated, refused.
	if !g.verifySource(udp("10.0.0.2:1")) {
		t.Fatal("flooded, unfamiliar source with a place left: no Retry")
	}
	if err := admit("10.0.0.2:1", false); !errors.Is(err, errRefused) {
		t.Fatalf("flooded, unfamiliar and unvalidated: %v, want refused", err)
	}
	if err := admit("10.0.0.2:2", true); err != nil {
		t.Fatalf("flooded, unfamiliar, validated, a place left: %v", err)
	}
	// The place is spent: refused at once, validated or not, no Retry.
	if g.verifySource(udp("10.0.0.3:1")) {
		t.Fatal("flooded, no place left: asked for a Retry rather than refused")
	}
	if err := admit("10.0.0.3:1", true); !errors.Is(err, errRefused) {
		t.Fatalf("flooded, no place left, validated: %v, want refused", err)
	}
	if _, err := g.tcpConnContext(context.Background(), tcp("10.0.0.4:1")); !errors.Is(err, errRefused) {
		t.Fatalf("flooded, no place left, TCP: %v, want refused", err)
	}
	// A familiar source is not held to the budget.
	if g.verifySource(udp("10.0.0.9:1")) {
		t.Fatal("flooded, familiar source: asked for a Retry below every threshold")
	}
	for i := range 3 {
		if err := admit("10.0.0.9:1", false); err != nil {
			t.Fatalf("flooded, familiar source, connection %d: %v", i, err)
		}
	}
	// Nor is one from the connectors' networks.
	g.trusted = []netip.Prefix{netip.MustParsePrefix("10.8.0.0/16")}
	if g.verifySource(udp("10.8.1.1:1")) || admitErr(g, "10.8.1.1:1") != nil {
		t.Fatal("flooded, no place left: a source in ConnectorNetworks held to the budget")
	}
	// A place accrues.
	now = now.Add(250 * time.Millisecond)
	if _, err := g.tcpConnContext(context.Background(), tcp("10.0.0.4:2")); err != nil {
		t.Fatalf("flooded, a place accrued, TCP: %v", err)
	}
	if q, c, p := g.refused[viaQUIC].budget.Load(), g.refused[viaQUIC].capped.Load(), g.refused[viaQUIC].penalized.Load(); q != 2 || c != 0 || p != 0 {
		t.Fatalf("QUIC refusals: %d budget, %d capped, %d penalized; want 2, 0, 0", q, c, p)
	}
	if n := g.refused[viaTCP].budget.Load(); n != 1 || g.budgetRefused() != 3 {
		t.Fatalf("TCP budget refusals %d, all %d; want 1 and 3", n, g.budgetRefused())
	}
	if n := g.unverified(); n != 3+1+3+1+1 {
		t.Fatalf("unverified = %d, want 9 (refused connections hold no place)", n)
	}
	// Over: as before.
	flooded = false
	if err := admit("10.0.0.5:1", false); err != nil {
		t.Fatalf("flood over: %v", err)
	}
	// No budget (negative): never held.
	g = newGate(Limits{MaxUnverified: 100, MaxUnverifiedPerSource: 10, RetryAbove: 50, HandshakeBudget: -1})
	g.flooded = func() bool { return true }
	if g.verifySource(udp("10.0.0.2:1")) || admitErr(g, "10.0.0.2:1") != nil {
		t.Fatal("no budget: a flooded relay held a new source")
	}
}

func admitErr(g *gate, addr string) error {
	_, err := g.connContext(context.Background(), &quic.ClientInfo{RemoteAddr: udp(addr)})
	return err
}

// TestRejectLogFlood: refusals from all sources together make the relay
// flooded at Limits.FloodRejects in the last interval, as it slides; the
// trail says when a flood starts, once per interval while it lasts, with
// the budget's refusals, and when a whole interval stays below it.
func TestRejectLogFlood(t *testing.T) {
	const interval = 10 * time.Second
	now := time.Unix(1e9, 0)
	var buf strings.Builder
	var mu sync.Mutex
	l := newRejectLog(slog.New(slog.NewJSONHandler(lockedWriter{&mu, &buf}, nil)), interval, 16)
	l.now = func() time.Time { return now }
	l.start = now
	l.floodAt, l.budgetRate = 20, 32
	var budgetRefused uint64
	l.budgetRefused = func() uint64 { return budgetRefused }
	events := func() int {
		mu.Lock()
		defer mu.Unlock()
		return countEvents(buf.String(), EventRelayFlood)
	}
	// 19 sources, one refusal each: below.
	for i := range 19 {
		l.reject(netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), "agent", "bad_signature", nil)
	}
	if l.flooded() || events() != 0 {
		t.Fatalf("19 refusals: flooded %v, %d relay.flood events", l.flooded(), events())
	}
	l.reject(netip.Addr{}, "agent", "bad_signature", nil) // no address counts too
	if !l.flooded() || events() != 1 {
		t.Fatalf("20 refusals: flooded %v, %d relay.flood events, want on and 1", l.flooded(), events())
	}
	for i := range 30 {
		l.reject(netip.AddrFrom4([4]byte{10, 0, 1, byte(i)}), "agent", "bad_signature", nil)
	}
	if events() != 1 {
		t.Fatalf("%d relay.flood events while it lasts within an interval, want 1", events())
	}
	budgetRefused = 7
	now = now.Add(interval)
	l.flush() // 50 in the interval: it continues
	if !l.flooded() || events() != 2 {
		t.Fatalf("after an interval of 50: flooded %v, %d events, want on and 2", l.flooded(), events())
	}
	mu.Lock()
	if out := buf.String(); !strings.Contains(out, `"state":"continues","refused":50,"budget_refused":7,"flood_rejects":20,"handshake_budget":32`) {
		t.Fatalf("continuing event:\n%s", out)
	}
	mu.Unlock()
	// It stops: the previous interval weighs less as it ages.
	now = now.Add(6 * time.Second) // 50*0.4 = 20
	if !l.flooded() {
		t.Fatal("not flooded 6 s into an interval after 50 refusals")
	}
	now = now.Add(time.Second) // 15
	if l.flooded() {
		t.Fatal("flooded 7 s into a quiet interval after 50 refusals")
	}
	l.flush() // a whole interval with none: off
	if l.flooded() || events() != 3 {
		t.Fatalf("after a quiet interval: flooded %v, %d events, want off and 3", l.flooded(), events())
	}
	mu.Lock()
	if out := buf.String(); !strings.Contains(out, `"state":"off","refused":0,"budget_refused":0`) {
		t.Fatalf("closing event:\n%s", out)
	}
	mu.Unlock()
	l.flush()
	if events() != 3 {
		t.Fatalf("%d events after the flood ended, want no more", events())
	}
	// Off.
	off := newRejectLog(slog.New(slog.DiscardHandler), interval, 16)
	for range 1000 {
		off.reject(netip.MustParseAddr("10.0.0.1"), "agent", "bad_signature", nil)
	}
	if off.flooded() {
		t.Fatal("FloodRejects 0: flooded")
	}
}

// TestBudgetNotSpentOnCapped: a flooded relay at its cap of unverified
// connections refuses a budgeted connection for the cap without spending
// the place, which the next connection, once there is room, still gets.
func TestBudgetNotSpentOnCapped(t *testing.T) {
	now := time.Unix(1e9, 0)
	clock := func() time.Time { return now }
	g := newGate(Limits{MaxUnverified: 2, MaxUnverifiedPerSource: 10, RetryAbove: 50, HandshakeBudget: 4})
	g.budget = newBudget(4, clock) // a burst of 1
	g.familiar = newFamiliar(clock)
	g.familiar.add(netip.MustParseAddr("10.0.0.9"))
	g.flooded = func() bool { return true }
	ctx, cancel := context.WithCancel(context.Background())
	for i := range 2 { // the cap, filled by a familiar source
		if _, err := g.connContext(ctx, &quic.ClientInfo{RemoteAddr: udp("10.0.0.9:1"), AddrVerified: true}); err != nil {
			t.Fatalf("familiar connection %d: %v", i, err)
		}
	}
	if _, err := g.connContext(context.Background(), &quic.ClientInfo{RemoteAddr: udp("10.0.0.2:1"), AddrVerified: true}); !errors.Is(err, errRefused) {
		t.Fatalf("at the cap: %v, want refused", err)
	}
	if c, b := g.refused[viaQUIC].capped.Load(), g.refused[viaQUIC].budget.Load(); c != 1 || b != 0 {
		t.Fatalf("refusals at the cap: %d capped, %d budget; want 1, 0", c, b)
	}
	cancel() // the familiar connections end
	deadline := time.Now().Add(5 * time.Second)
	for g.unverified() != 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if _, err := g.connContext(context.Background(), &quic.ClientInfo{RemoteAddr: udp("10.0.0.2:2"), AddrVerified: true}); err != nil {
		t.Fatalf("room again, with the place that the capped connection did not spend: %v", err)
	}
	if _, err := g.connContext(context.Background(), &quic.ClientInfo{RemoteAddr: udp("10.0.0.3:1"), AddrVerified: true}); !errors.Is(err, errRefused) {
		t.Fatalf("the place spent: %v, want refused", err)
	}
}
