package gcfloor

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"time"
)

// minHeap is the runtime's smallest heap target at GOGC=100 (its
// defaultHeapMinimum). The runtime scales it with the percent, so a
// percent above headroom/minHeap*100 would raise the target of a small
// heap past the headroom asked for: that is where the tuner stops.
const minHeap = 4 << 20

// poll is how often the tuner looks for a finished collection while
// collections are happening. A cleanup attached to a sentinel object, the
// usual hook, runs only once the sentinel's span is swept, which under
// load can be most of a cycle late: long enough, with a high percent set
// for a small heap that has since grown, for the heap to pass several
// times what it should.
//
// While no collection happens the tuner has nothing to do, so each look
// that finds none doubles the wait, up to maxPoll: an idle process is not
// woken 50 times a second. The sentinel's cleanup then serves as the
// wake-up: the first collection after a quiet spell brings the tuner back
// to poll at once, late by at most a sweep.
const (
	poll    = 20 * time.Millisecond
	maxPoll = 2 * time.Second
)

// Tuner keeps the collector's headroom at least at a floor; see Start.
type Tuner struct {
	headroom   uint64
	base       int // the percent the runtime started with: GOGC's default
	maxPercent uint64
	sample     []metrics.Sample // the cycle count first, then the roots
	stop, done chan struct{}
	wake       chan struct{} // a collection freed the sentinel

	minPoll, maxPoll time.Duration
	looks, wakes     atomic.Int64 // for tests: adjust calls by the timer, by a cleanup

	mu      sync.Mutex
	stopped bool
	percent int    // in force
	cycles  uint64 // collections when percent was decided
}

// Start makes the collector wait for at least headroom bytes of new heap
// after the live heap that its last cycle found, where GOGC's default
// would wait for as much again as the live heap: for a heap of 8 MiB and
// a headroom of 64 MiB, a cycle every 64 MiB allocated rather than every
// 8. Once the live heap passes the headroom, the runtime's own target
// (GOGC=100) gives more, and stands.
//
// It does nothing, and returns nil, when headroom is 0 or the GOGC
// environment variable is set: an operator's choice stands. GOMEMLIMIT,
// when set, still applies over it: the collector runs early rather than
// let the process pass its limit.
//
// Stop undoes it. A nil *Tuner's methods do nothing.
func Start(headroom uint64) *Tuner {
	return start(headroom, poll, maxPoll)
}

func start(headroom uint64, minPoll, maxPoll time.Duration) *Tuner {
	if headroom == 0 || os.Getenv("GOGC") != "" {
		return nil
	}
	t := &Tuner{
		headroom:   headroom,
		base:       100,
		maxPercent: max(100, headroom*100/minHeap),
		sample: []metrics.Sample{
			{Name: "/gc/cycles/total:gc-cycles"},
			// What the runtime's target is proportional to.
			{Name: "/gc/heap/live:bytes"},
			{Name: "/gc/scan/globals:bytes"},
			{Name: "/gc/scan/stack:bytes"},
		},
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
		wake:    make(chan struct{}, 1),
		minPoll: minPoll,
		maxPoll: maxPoll,
		percent: 100,
	}
	t.arm()
	t.adjust()
	go t.run()
	return t
}

func (t *Tuner) run() {
	defer close(t.done)
	wait := t.minPoll
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		select {
		case <-t.stop:
			return
		case <-t.wake:
			t.arm()
			t.wakes.Add(1)
		case <-timer.C:
			t.looks.Add(1)
		}
		if t.adjust() {
			wait = t.minPoll
		} else {
			wait = min(wait*2, t.maxPoll)
		}
		timer.Reset(wait)
	}
}

// arm makes the next collection signal wake.
func (t *Tuner) arm() {
	// Larger than the tiny allocator's 16 bytes, whose objects share a
	// block and may never be cleaned up.
	s := new([32]byte)
	runtime.AddCleanup(s, func(ch chan struct{}) {
		select {
		case ch <- struct{}{}:
		default:
		}
	}, t.wake)
}

// adjust sets the percent for the live heap that the last cycle found. It
// reports whether a collection had finished since it last looked.
func (t *Tuner) adjust() (cycled bool) {
	metrics.Read(t.sample)
	cycles := t.sample[0].Value.Uint64()
	var roots uint64
	for _, s := range t.sample[1:] {
		if s.Value.Kind() == metrics.KindUint64 {
			roots += s.Value.Uint64()
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped || cycles == t.cycles {
		return false // nothing new measured (at 0: nothing measured yet)
	}
	t.cycles = cycles
	p := t.base
	if roots > 0 {
		p = max(p, int(min(t.headroom*100/roots, t.maxPercent)))
	}
	// Small changes are not worth a call: the target moves with the live
	// heap anyway.
	if p == t.percent || (p != t.base && p > t.percent*7/8 && p < t.percent*9/8) {
		return true
	}
	debug.SetGCPercent(p)
	t.percent = p
	return true
}

// Percent is the GC percent in force and the number of collections the
// process had made when it was decided.
func (t *Tuner) Percent() (percent int, cycles uint64) {
	if t == nil {
		return 0, 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.percent, t.cycles
}

// Stop puts the percent back to GOGC's default and ends the tuner's
// goroutine.
func (t *Tuner) Stop() {
	if t == nil {
		return
	}
	t.mu.Lock()
	if t.stopped {
		t.mu.Unlock()
		return
	}
	t.stopped = true
	debug.SetGCPercent(t.base)
	t.mu.Unlock()
	close(t.stop)
	<-t.done
}
