package quicnet

import (
	"context"
	"crypto/tls"
	"runtime"
	"testing"
	"time"

	"github.com/postern/postern/transport"
)

// maxTCPSessionHeap bounds what one idle TLS/TCP session, both its ends,
// keeps on the heap: a relay holds up to Limits.MaxUnverified of them
// before any Hello is verified, so each must be cheap until it is used.
// (With its two queues as buffered channels of their full bounds, a
// session kept 219 KiB; as fifos that grow with use, 56.)
const maxTCPSessionHeap = 96 << 10

// TestTCPSessionHeap: an idle TLS/TCP session, both ends, keeps less than
// maxTCPSessionHeap on the heap.
func TestTCPSessionHeap(t *testing.T) {
	cert, err := transport.SelfSigned("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	cfg := &transport.Config{Network: transport.NetworkTCP}
	ln, err := Listen("127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	tlsConf, err := transport.Trust{Pin: transport.Pin(cert)}.ClientTLS("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	heap := func() (uint64, uint64) {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc, ms.StackInuse
	}
	const n = 64
	var held []Session
	defer func() {
		for _, s := range held {
			s.CloseWithError(0, "")
		}
	}()
	before, stack0 := heap()
	for range n {
		c, err := Dial(ctx, ln.Addr().String(), tlsConf, cfg)
		if err != nil {
			t.Fatal(err)
		}
		s, err := ln.Accept(ctx)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c, s)
	}
	after, stack1 := heap()
	per := (int64(after) - int64(before)) / n
	t.Logf("an idle TLS/TCP session, both ends: %d KiB on the heap, %d KiB of goroutine stacks", per>>10, (int64(stack1)-int64(stack0))/n>>10)
	if per > maxTCPSessionHeap {
		t.Errorf("an idle TLS/TCP session, both ends, keeps %d KiB on the heap; want at most %d", per>>10, maxTCPSessionHeap>>10)
	}
}
