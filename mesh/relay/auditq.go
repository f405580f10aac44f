package relay

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// AuditQueue says how audit events reach Config.Audit. The relay never
// writes an event on the path of an open or a handshake: it queues the
// event, and one goroutine hands queued events to the handler in batches.
// A collector that stops reading the relay's output therefore holds the
// queue, not the relay, until the queue is full; then Full decides.
type AuditQueue struct {
	// Size is how many events may wait to be written. Zero means 8192.
	Size int
	// Drop, when the queue is full, drops the event instead of making
	// the open or handshake that emits it wait for room. Dropped events
	// are counted, and once the queue has drained the trail itself says
	// how many were lost (EventAuditDropped). False (the default) blocks:
	// no event is ever lost, and a stalled collector stalls opens.
	Drop bool
	// Flush, when set, is called after each batch has been handed to
	// the handler: a handler that writes into a buffer (bufio.Writer)
	// writes the batch there, in one write. Nil means nothing is called.
	Flush func() error
}

// EventAuditDropped reports events the audit queue dropped because it
// was full (AuditQueue.Drop). Attributes: count (since the last such
// event), total.
const EventAuditDropped = "audit.dropped"

const auditBatch = 512

type auditEntry struct {
	h    slog.Handler
	rec  slog.Record
	sync chan struct{} // not an event: closed once everything before it is written
}

// auditQueue is a slog.Handler that queues records for a writer goroutine.
type auditQueue struct {
	cfg   AuditQueue
	inner slog.Handler
	ch    chan auditEntry
	done  chan struct{}

	dropped  atomic.Uint64 // since the last EventAuditDropped
	total    atomic.Uint64
	closeMu  sync.RWMutex // held for reading while queueing; for writing by close
	closed   bool
	directMu sync.Mutex // serializes writes after close
}

func newAuditQueue(inner slog.Handler, cfg AuditQueue) *auditQueue {
	if cfg.Size <= 0 {
		cfg.Size = 8192
	}
	q := &auditQueue{cfg: cfg, inner: inner, ch: make(chan auditEntry, cfg.Size), done: make(chan struct{})}
	go q.run()
	return q
}

// handler is a slog.Handler bound to one inner handler (with its attrs).
type queuedHandler struct {
	q *auditQueue
	h slog.Handler
}

func (q *auditQueue) logger() *slog.Logger { return slog.New(queuedHandler{q: q, h: q.inner}) }

func (h queuedHandler) Enabled(ctx context.Context, l slog.Level) bool { return h.h.Enabled(ctx, l) }

func (h queuedHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return queuedHandler{q: h.q, h: h.h.WithAttrs(as)}
}

func (h queuedHandler) WithGroup(name string) slog.Handler {
	return queuedHandler{q: h.q, h: h.h.WithGroup(name)}
}

func (h queuedHandler) Handle(ctx context.Context, rec slog.Record) error {
	h.q.put(auditEntry{h: h.h, rec: rec})
	return nil
}

func (q *auditQueue) put(e auditEntry) {
	q.closeMu.RLock()
	if q.closed {
		q.closeMu.RUnlock()
		// After close (a late event): written at once, in order.
		q.directMu.Lock()
		e.h.Handle(context.Background(), e.rec)
		q.flush()
		q.directMu.Unlock()
		return
	}
	defer q.closeMu.RUnlock()
	if !q.cfg.Drop {
		q.ch <- e
		return
	}
	select {
	case q.ch <- e:
	default:
		q.dropped.Add(1)
		q.total.Add(1)
	}
}

func (q *auditQueue) run() {
	defer close(q.done)
	ctx := context.Background()
	for {
		e, ok := <-q.ch
		if !ok {
			q.reportDropped()
			q.flush()
			return
		}
		q.handle(ctx, e)
		n := 1
	batch:
		for n < auditBatch {
			select {
			case e, ok = <-q.ch:
				if !ok {
					break batch
				}
				q.handle(ctx, e)
				n++
			default:
				break batch
			}
		}
		if len(q.ch) == 0 {
			q.reportDropped()
		}
		q.flush()
		if !ok {
			return
		}
	}
}

func (q *auditQueue) handle(ctx context.Context, e auditEntry) {
	if e.sync != nil {
		q.reportDropped()
		q.flush()
		close(e.sync)
		return
	}
	e.h.Handle(ctx, e.rec)
}

// wait returns once every event queued before it was called is written
// (and Flush called).
func (q *auditQueue) wait() {
	q.closeMu.RLock()
	if q.closed {
		q.closeMu.RUnlock()
		return
	}
	done := make(chan struct{})
	q.ch <- auditEntry{sync: done}
	q.closeMu.RUnlock()
	<-done
}

// reportDropped writes EventAuditDropped when events were dropped since
// the last report.
func (q *auditQueue) reportDropped() {
	n := q.dropped.Swap(0)
	if n == 0 {
		return
	}
	rec := slog.NewRecord(time.Now(), slog.LevelError, EventAuditDropped, 0)
	rec.AddAttrs(slog.Uint64("count", n), slog.Uint64("total", q.total.Load()))
	q.inner.Handle(context.Background(), rec)
}

func (q *auditQueue) flush() {
	if q.cfg.Flush != nil {
		q.cfg.Flush()
	}
}

// close writes every queued event, then returns. Events emitted later
// are written at once.
func (q *auditQueue) close() {
	q.closeMu.Lock()
	if q.closed {
		q.closeMu.Unlock()
		return
	}
	q.closed = true
	close(q.ch)
	q.closeMu.Unlock()
	<-q.done
}
