package idle

import (
	"context"
	"os"
	"runtime"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

var (
	once sync.Once
	rc   syscall.RawConn // the eventfd; nil when there is none

	mu      sync.Mutex
	waiters []chan struct{}
	serving bool // a goroutine runs serve
)

// open makes the eventfd, non-blocking so that os.NewFile registers it
// with the runtime's network poller. It stays open for the life of the
// process.
func open() {
	fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return
	}
	f := os.NewFile(uintptr(fd), "idle-eventfd")
	c, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return
	}
	rc = c
}

// serve lets the waiters go one at a time, each after a poll of the
// network, and ends when none is left.
func serve() {
	one := []byte{1, 0, 0, 0, 0, 0, 0, 0}
	var buf [8]byte
	for {
		mu.Lock()
		if len(waiters) == 0 {
			serving = false
			mu.Unlock()
			return
		}
		w := waiters[0]
		waiters[0] = nil
		waiters = waiters[1:]
		mu.Unlock()
		armed := false
		// The first call makes the eventfd readable and reports "not
		// ready", so that this goroutine parks in the poller; the
		// second, after the poll that saw it, drains the counter.
		rc.Read(func(fd uintptr) bool {
			if !armed {
				armed = true
				unix.Write(int(fd), one)
				return false
			}
			unix.Read(int(fd), buf[:])
			return true
		})
		// The poll that woke us may have made other goroutines ready (a
		// verified session's packets): they go first.
		runtime.Gosched()
		close(w)
	}
}

func wait(ctx context.Context) {
	once.Do(open)
	if rc == nil {
		return
	}
	w := make(chan struct{})
	mu.Lock()
	if len(waiters) >= queueLen {
		mu.Unlock()
		return
	}
	waiters = append(waiters, w)
	if !serving {
		serving = true
		go serve()
	}
	mu.Unlock()
	select {
	case <-w:
	case <-ctx.Done():
	}
}
