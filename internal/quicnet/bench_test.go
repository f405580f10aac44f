package quicnet_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/postern/postern/internal/quicnet"
	"github.com/postern/postern/transport"
)

// A relay splices two QUIC streams: the agent's and the connector's. These
// benchmarks put a splice between two loopback stream pairs, all in one
// process,
//
//	writer -> [stream 1] -> splice -> [stream 2] -> reader
//
// and compare quicnet.Splice with a plain io.Copy loop, and with one
// stream and no splice at all (the floor). QUIC's own cost (encryption,
// packets, acknowledgements) dominates all three; what differs is the
// relay's copying.

// plainSplice is the naive relay: io.Copy each way, half-close at EOF.
func plainSplice(a, b *quicnet.Conn) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		io.Copy(b, a)
		b.CloseWrite()
	}()
	io.Copy(a, b)
	a.CloseWrite()
	wg.Wait()
	a.Close()
	b.Close()
}

var spliceModes = []struct {
	name   string
	splice func(a, b *quicnet.Conn) // nil: one stream, no relay
}{
	{"direct", nil},
	{"splice", func(a, b *quicnet.Conn) { quicnet.Splice(a, b) }},
	{"plain-copy", plainSplice},
}

// path returns the two ends the benchmark talks through, and a function
// that ends the relay (if any) and waits for it.
func spliceChain(b *testing.B, splice func(a, b *quicnet.Conn)) (in, out *quicnet.Conn, wait func()) {
	c1, s1 := pair(b)
	if splice == nil {
		return c1, s1, func() {}
	}
	c2, s2 := pair(b)
	done := make(chan struct{})
	go func() {
		defer close(done)
		splice(s1, c2)
	}()
	return c1, s2, func() {
		c1.CloseWrite()
		s2.CloseWrite()
		<-done
	}
}

// BenchmarkSpliceThroughput moves 64 KiB writes one way.
func BenchmarkSpliceThroughput(b *testing.B) {
	for _, m := range spliceModes {
		b.Run(m.name, func(b *testing.B) {
			in, out, wait := spliceChain(b, m.splice)
			const size = 64 << 10
			buf := make([]byte, size)
			b.SetBytes(size)
			b.ReportAllocs()
			read := make(chan int64)
			go func() {
				n, _ := io.Copy(io.Discard, out)
				read <- n
			}()
			for b.Loop() {
				if _, err := in.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
			in.CloseWrite()
			if n := <-read; n != int64(b.N)*size {
				b.Fatalf("read %d bytes, wrote %d", n, int64(b.N)*size)
			}
			b.StopTimer()
			wait()
		})
	}
}

// BenchmarkSpliceRoundTrip is a 1 KiB request answered by a 1 KiB echo.
func BenchmarkSpliceRoundTrip(b *testing.B) {
	for _, m := range spliceModes {
		b.Run(m.name, func(b *testing.B) {
			in, out, wait := spliceChain(b, m.splice)
			echoed := make(chan struct{})
			go func() {
				defer close(echoed)
				buf := make([]byte, 1024)
				for {
					if _, err := io.ReadFull(out, buf); err != nil {
						return
					}
					if _, err := out.Write(buf); err != nil {
						return
					}
				}
			}()
			req := make([]byte, 1024)
			resp := make([]byte, 1024)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := in.Write(req); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(in, resp); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			in.CloseWrite()
			<-echoed
			out.CloseWrite()
			wait()
		})
	}
}

// BenchmarkTCPAdmission is what one TCP connection costs when the
// listener's admission refuses it at accept (a reset before any TLS work)
// and when it is admitted and runs the TLS 1.3 handshake and the mux setup
// to a session. Both ends are in this process: cpu-us/op is the process's
// CPU time per connection, client and listener together.
func BenchmarkTCPAdmission(b *testing.B) {
	cert, err := transport.SelfSigned("127.0.0.1")
	if err != nil {
		b.Fatal(err)
	}
	tlsConf, err := transport.Trust{Pin: transport.Pin(cert)}.ClientTLS("127.0.0.1")
	if err != nil {
		b.Fatal(err)
	}
	cfg := &transport.Config{Network: transport.NetworkTCP}
	for _, bc := range []struct {
		name   string
		refuse bool
	}{{"refused", true}, {"admitted", false}} {
		b.Run(bc.name, func(b *testing.B) {
			adm := quicnet.Admission{TCPConnContext: func(ctx context.Context, _ net.Addr) (context.Context, error) {
				if bc.refuse {
					return nil, errors.New("refused")
				}
				return ctx, nil
			}}
			ln, err := quicnet.ListenAdmit("127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}}, cfg, adm)
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			go func() {
				for {
					// The client closes first, as an agent does: a server
					// that closed at once could end the session before
					// the client's settings write has been confirmed.
					if _, err := ln.Accept(context.Background()); err != nil {
						return
					}
				}
			}()
			addr := ln.Addr().String()
			start := cpuTime()
			for b.Loop() {
				if bc.refuse {
					c, err := net.Dial("tcp", addr)
					if err != nil {
						continue // reset before the dial returned
					}
					if _, err := c.Read(make([]byte, 1)); err == nil {
						b.Fatal("a refused connection read data")
					}
					c.Close()
					continue
				}
				s, err := quicnet.Dial(context.Background(), addr, tlsConf, cfg)
				if err != nil {
					b.Fatal(err)
				}
				s.CloseWithError(0, "")
			}
			b.ReportMetric(float64((cpuTime()-start).Microseconds())/float64(b.N), "cpu-us/op")
		})
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
