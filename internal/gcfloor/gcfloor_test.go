package gcfloor

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

var keep [][]byte

func collect(t *testing.T, tu *Tuner) (percent int) {
	t.Helper()
	runtime.GC()
	tu.adjust() // what the ticker would do within its poll
	p, _ := tu.Percent()
	if got := debug.SetGCPercent(p); got != p {
		t.Fatalf("runtime's GC percent is %d, the tuner says %d", got, p)
	}
	return p
}

// TestFollowsLiveHeap: a small live heap gets a high percent, capped so
// that the runtime's scaled minimum heap does not pass the headroom; as
// the live heap grows the percent falls, to GOGC's default once the live
// heap is past the headroom; and Stop puts the default back.
func TestFollowsLiveHeap(t *testing.T) {
	t.Setenv("GOGC", "")
	const headroom = 32 << 20
	tu := Start(headroom)
	if tu == nil {
		t.Fatal("Start returned nil with GOGC unset")
	}
	defer func() { keep = nil }()
	p := collect(t, tu)
	if want := int(headroom * 100 / minHeap); p != want {
		t.Errorf("nearly empty heap: percent %d, want the cap %d", p, want)
	}
	last := p
	for len(keep) < 48 {
		keep = append(keep, make([]byte, 1<<20))
		if len(keep)%8 != 0 {
			continue
		}
		p := collect(t, tu)
		live := uint64(len(keep)) << 20
		if p > last {
			t.Errorf("live %d MiB: percent rose from %d to %d", len(keep), last, p)
		}
		// The target it gives: at least the headroom (allowing for the
		// hysteresis of one eighth), and no more than the headroom or
		// the default, whichever is more.
		grow := live * uint64(p) / 100
		if p != 100 && grow < headroom*7/8 {
			t.Errorf("live %d MiB: percent %d gives %d MiB of headroom, want about %d", len(keep), p, grow>>20, headroom>>20)
		}
		if grow > max(live, headroom)*9/8 {
			t.Errorf("live %d MiB: percent %d gives %d MiB of headroom, want at most %d", len(keep), p, grow>>20, max(live, headroom)>>20)
		}
		last = p
	}
	if last != 100 {
		t.Errorf("live heap 48 MiB, headroom 32 MiB: percent %d, want GOGC's default 100", last)
	}
	clear(keep[1:])
	keep = keep[:1]
	if p := collect(t, tu); p <= 100 {
		t.Errorf("live heap shrank to 1 MiB: percent %d, want it raised again", p)
	}
	tu.Stop()
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("after Stop the percent is %d, want 100", got)
	}
	tu.Stop() // twice is fine
}

// TestTickerAdjusts: without a hand-driven adjust, the tuner's own
// goroutine notices a cycle and sets the percent.
func TestTickerAdjusts(t *testing.T) {
	t.Setenv("GOGC", "")
	tu := Start(64 << 20)
	defer tu.Stop()
	runtime.GC()
	for range 200 {
		if p, c := tu.Percent(); p > 100 && c > 0 {
			return
		}
		runtime.Gosched()
		time.Sleep(poll / 2)
	}
	p, c := tu.Percent()
	t.Fatalf("after a collection and 2s: percent %d, cycles seen %d", p, c)
}

// TestGOGCStands: with GOGC set the tuner does nothing.
func TestGOGCStands(t *testing.T) {
	t.Setenv("GOGC", "100")
	if tu := Start(64 << 20); tu != nil {
		tu.Stop()
		t.Fatal("Start returned a tuner with GOGC set")
	}
	if tu := Start(0); tu != nil {
		t.Fatal("Start(0) returned a tuner")
	}
	var tu *Tuner
	tu.Stop()
	if p, c := tu.Percent(); p != 0 || c != 0 {
		t.Fatalf("nil tuner: Percent = %d, %d", p, c)
	}
}

// TestIdleBacksOff: while no collection happens the tuner looks less and
// less often, rather than every poll.
func TestIdleBacksOff(t *testing.T) {
	t.Setenv("GOGC", "")
	const minPoll, maxPoll = time.Millisecond, 64 * time.Millisecond
	tu := start(64<<20, minPoll, maxPoll)
	defer tu.Stop()
	runtime.GC()
	time.Sleep(50 * time.Millisecond) // let it see that one
	before, cycles := tu.looks.Load(), tu.sample[0].Value.Uint64()
	const idle = 600 * time.Millisecond
	time.Sleep(idle)
	looks := tu.looks.Load() - before
	// Doubling from 1 ms to 64 ms takes 7 looks and 127 ms, then one per
	// 64 ms: about 15 in all. At a fixed poll it would be 600.
	if limit := int64(idle/maxPoll) + 12; looks > limit {
		var now [1]metrics.Sample
		now[0].Name = "/gc/cycles/total:gc-cycles"
		metrics.Read(now[:])
		t.Fatalf("idle %v: the timer woke the tuner %d times, want at most %d (collections during it: %d)",
			idle, looks, limit, now[0].Value.Uint64()-cycles)
	}
	if looks < 3 {
		t.Fatalf("idle %v: the timer woke the tuner %d times; it should still look now and then", idle, looks)
	}
}

// TestCleanupWakes: a tuner whose timer is far off still notices a
// collection at once, through its sentinel's cleanup.
func TestCleanupWakes(t *testing.T) {
	t.Setenv("GOGC", "")
	tu := start(64<<20, time.Hour, time.Hour)
	defer tu.Stop()
	_, seen := tu.Percent()
	runtime.GC()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if _, c := tu.Percent(); c > seen {
			if tu.looks.Load() != 0 {
				t.Fatal("the hour-long timer fired")
			}
			if tu.wakes.Load() == 0 {
				t.Fatal("the collection was seen without a wake")
			}
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("a collection was not seen within 10s with the timer an hour away (wakes %d)", tu.wakes.Load())
}
