package quicnet

import (
	"sync"
	"testing"
	"time"
)

// TestFIFOOrderAndBound: items come out in the order they went in, no
// more than max are held, and a drained fifo lets a large array go.
func TestFIFOOrderAndBound(t *testing.T) {
	q := newFIFO[int](100)
	for round := range 3 {
		for i := range 100 {
			if !q.tryPush(i) {
				t.Fatalf("round %d: push %d refused below the bound", round, i)
			}
		}
		if q.tryPush(100) {
			t.Fatalf("round %d: a 101st item queued past the bound of 100", round)
		}
		if q.len() != 100 {
			t.Fatalf("round %d: len %d, want 100", round, q.len())
		}
		for i := range 100 {
			v, ok := q.tryPop()
			if !ok || v != i {
				t.Fatalf("round %d: pop %d gave %d, %v", round, i, v, ok)
			}
		}
		if _, ok := q.tryPop(); ok {
			t.Fatalf("round %d: a pop from an empty fifo gave an item", round)
		}
		if cap(q.items) > fifoKeep {
			t.Fatalf("round %d: drained, it keeps an array of %d", round, cap(q.items))
		}
	}
}

// TestFIFOStaysWithinTwiceMax: a fifo that is never drained, only kept
// near full, does not grow its array past twice its bound.
func TestFIFOStaysWithinTwiceMax(t *testing.T) {
	q := newFIFO[int](64)
	next, want := 0, 0
	for range 10000 {
		for q.tryPush(next) {
			next++
		}
		for range 10 {
			v, _ := q.tryPop()
			if v != want {
				t.Fatalf("popped %d, want %d", v, want)
			}
			want++
		}
	}
	if c := cap(q.items); c > 2*64 {
		t.Fatalf("array of %d for a bound of 64", c)
	}
}

// TestFIFOWaiters: pushers that wait for space and poppers that wait for
// items, several of each, pass every item exactly once and none of them
// is left waiting.
func TestFIFOWaiters(t *testing.T) {
	const pushers, per = 4, 5000
	q := newFIFO[int](8)
	var wg sync.WaitGroup
	for p := range pushers {
		wg.Go(func() {
			for i := range per {
				for !q.tryPush(p*per + i) {
					<-q.space
				}
			}
		})
	}
	seen := make([]bool, pushers*per)
	var mu sync.Mutex
	got := 0
	done := make(chan struct{})
	var pop sync.WaitGroup
	for range 3 {
		pop.Go(func() {
			for {
				v, ok := q.tryPop()
				if !ok {
					select {
					case <-q.ready:
						continue
					case <-done:
						return
					}
				}
				mu.Lock()
				if seen[v] {
					t.Errorf("item %d popped twice", v)
				}
				seen[v] = true
				got++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := got
		mu.Unlock()
		if n == pushers*per {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d items popped: a waiter missed a change", n, pushers*per)
		}
		time.Sleep(time.Millisecond)
	}
	close(done)
	pop.Wait()
}
