package quicnet

import "sync"

// fifo is a first-in, first-out queue of at most max items whose memory
// grows with what it holds, where a buffered channel of the same bound
// would allocate it all at once: a TLS/TCP session has two such queues,
// and a relay holds a thousand sessions that have not yet said who they
// are. Waiters select on ready (an item may be there) and space (there
// may be room) and try again; each is a token of one, given on every
// change and passed on while the condition still holds, so that no
// waiter misses a change.
type fifo[T any] struct {
	ready chan struct{}
	space chan struct{}

	mu    sync.Mutex
	items []T // items[head:] are queued
	head  int
	max   int
}

// fifoKeep is the capacity an empty fifo keeps for the next items; a
// larger one is let go.
const fifoKeep = 16

func newFIFO[T any](max int) *fifo[T] {
	return &fifo[T]{ready: make(chan struct{}, 1), space: make(chan struct{}, 1), max: max}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// tryPush queues v unless the fifo holds max items.
func (q *fifo[T]) tryPush(v T) bool {
	q.mu.Lock()
	n := len(q.items) - q.head
	if n >= q.max {
		q.mu.Unlock()
		return false
	}
	if len(q.items) == cap(q.items) && q.head > 0 {
		// Move the queued items to the front rather than grow: the
		// backing array stays within twice max.
		copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items = q.items[:n]
		q.head = 0
	}
	q.items = append(q.items, v)
	room := n+1 < q.max
	q.mu.Unlock()
	signal(q.ready)
	if room {
		signal(q.space) // for another pusher woken with this one
	}
	return true
}

// tryPop takes the oldest item, if there is one.
func (q *fifo[T]) tryPop() (v T, ok bool) {
	q.mu.Lock()
	if q.head == len(q.items) {
		q.mu.Unlock()
		return v, false
	}
	v = q.items[q.head]
	var zero T
	q.items[q.head] = zero
	q.head++
	more := q.head < len(q.items)
	if !more {
		q.head = 0
		if cap(q.items) > fifoKeep {
			q.items = nil
		} else {
			q.items = q.items[:0]
		}
	}
	q.mu.Unlock()
	signal(q.space)
	if more {
		signal(q.ready) // for another waiter
	}
	return v, true
}

// len is how many items are queued.
func (q *fifo[T]) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items) - q.head
}
