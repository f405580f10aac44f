package session

import (
	"context"
	"sync"
	"testing"
	"time"
)

// deadlines records the deadlines set on a stream.
type deadlines struct {
	mu   sync.Mutex
	last time.Time
	n    int
}

func (d *deadlines) SetDeadline(t time.Time) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.last, d.n = t, d.n+1
	return nil
}

func (d *deadlines) get() (time.Time, int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.last, d.n
}

// TestDeadlineFromContextStopUndoes: once stop has returned, the stream
// has no deadline, even when the context ended just before stop: the
// deadline its end sets must not land after stop on a stream that the
// caller now hands on (a dialed connection, a session's control stream).
func TestDeadlineFromContextStopUndoes(t *testing.T) {
	tests := []struct {
		name     string
		ended    bool // the context ends before stop
		deadline bool // the context has a deadline
	}{
		{name: "context still live"},
		{name: "context with a deadline", deadline: true},
		{name: "context ended before stop", ended: true},
		{name: "context with a deadline ended before stop", ended: true, deadline: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tt.deadline {
				var cancelTimeout context.CancelFunc
				ctx, cancelTimeout = context.WithTimeout(ctx, time.Hour)
				defer cancelTimeout()
			}
			var st deadlines
			stop := DeadlineFromContext(ctx, &st)
			if tt.ended {
				cancel()
			}
			stop()
			// Give a late deadline from the context's end time to land.
			time.Sleep(20 * time.Millisecond)
			if last, n := st.get(); n > 0 && !last.IsZero() {
				t.Fatalf("after stop the stream's deadline is %v, want none", last)
			}
		})
	}
}
