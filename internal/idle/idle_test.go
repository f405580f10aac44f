//go:build linux

package idle

import (
	"context"
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// TestWaitGoesAfterThePoll: with one P, a datagram that arrives while
// other goroutines keep the scheduler busy is read before Wait returns,
// although the scheduler polls the network only once they are done. A
// Wait that merely yielded would return first.
func TestWaitGoesAfterThePoll(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	r, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	w, err := net.DialUDP("udp", nil, r.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	var seq atomic.Int32
	var readAt, waitedAt int32
	read := make(chan struct{})
	go func() {
		defer close(read)
		buf := make([]byte, 16)
		if _, _, err := r.ReadFrom(buf); err == nil {
			readAt = seq.Add(1)
		}
	}()
	time.Sleep(20 * time.Millisecond) // the reader parks in the poller
	go func() {
		w.Write([]byte("ping")) // ready in the kernel, unseen by the runtime
		for end := time.Now().Add(3 * time.Millisecond); time.Now().Before(end); {
		}
	}()
	Wait(context.Background())
	waitedAt = seq.Add(1)
	<-read
	if readAt == 0 || readAt > waitedAt {
		t.Fatalf("Wait returned before the datagram that arrived during it was read (read %d, wait %d)", readAt, waitedAt)
	}
}

// TestWaitDoesNotStarve: goroutines that are always runnable delay Wait
// (the runtime's monitor still polls every 10 ms) but do not block it.
func TestWaitDoesNotStarve(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	var stop atomic.Bool
	defer stop.Store(true)
	for range 4 {
		go func() {
			for !stop.Load() {
				runtime.Gosched()
			}
		}()
	}
	done := make(chan struct{})
	go func() {
		for range 20 {
			Wait(context.Background())
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("20 Waits did not return in 30 s beside busy goroutines")
	}
}
