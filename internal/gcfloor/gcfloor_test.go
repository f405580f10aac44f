package gcfloor

import (
	"runtime"
	"runtime/debug"
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
