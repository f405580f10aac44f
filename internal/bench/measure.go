package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sync"
	"time"
)

// latencies is a set of timed operations.
type latencies []time.Duration

// percentile returns the q-quantile (0..1) of sorted latencies, by the
// nearest-rank method.
func (l latencies) percentile(q float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(l)))) - 1
	return l[max(0, min(i, len(l)-1))]
}

// summary is what the report keeps of a set of latencies, in
// microseconds.
type summary struct {
	N    int     `json:"n"`
	Mean float64 `json:"mean_us"`
	P50  float64 `json:"p50_us"`
	P90  float64 `json:"p90_us"`
	P99  float64 `json:"p99_us"`
	P999 float64 `json:"p999_us"`
	Max  float64 `json:"max_us"`
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func (l latencies) summary() *summary {
	if len(l) == 0 {
		return nil
	}
	s := slices.Clone(l)
	slices.Sort(s)
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	return &summary{N: len(s), Mean: us(sum / time.Duration(len(s))), P50: us(s.percentile(0.50)), P90: us(s.percentile(0.90)),
		P99: us(s.percentile(0.99)), P999: us(s.percentile(0.999)), Max: us(s[len(s)-1])}
}

// bulk moves total bytes over streams connections at once, each
// transferring its share, and checks every byte's SHA-256. It returns
// the time from the first byte sent to the last checked; the connections
// are opened before the clock starts, and m samples the CPU over exactly
// the time measured.
func bulk(ctx context.Context, p *path, streams int, total int64, down bool, m *meter) (time.Duration, error) {
	conns := make([]benchConn, streams)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	for i := range conns {
		c, err := p.dial(ctx)
		if err != nil {
			return 0, fmt.Errorf("dial: %w", err)
		}
		conns[i] = c
	}
	share := total / int64(streams)
	patternSum(share) // computed before the clock starts
	errs := make([]error, streams)
	var wg sync.WaitGroup
	m.start()
	start := time.Now()
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stop := context.AfterFunc(ctx, func() { c.Close() })
			defer stop()
			if down {
				errs[i] = download(c, share)
			} else {
				errs[i] = upload(c, share)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	m.stop()
	return elapsed, errors.Join(errs...)
}

// rtt times n request/response round trips of size bytes each on one warm
// connection, after warm unmeasured ones, and checks every answer against
// its request. m samples the CPU over the n measured ones.
func rtt(ctx context.Context, p *path, size, warm, n int, m *meter) (latencies, error) {
	c, err := p.dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	if _, err := c.Write([]byte{opEcho}); err != nil {
		return nil, err
	}
	req := pattern()[:size]
	resp := make([]byte, size)
	lat := make(latencies, 0, n)
	for i := range warm + n {
		if i == warm {
			m.start()
		}
		t0 := time.Now()
		if _, err := c.Write(req); err != nil {
			return nil, err
		}
		if _, err := io.ReadFull(c, resp); err != nil {
			return nil, err
		}
		d := time.Since(t0)
		if !bytes.Equal(resp, req) {
			return nil, fmt.Errorf("integrity: echo %d of %d differs from its request", i+1, warm+n)
		}
		if i >= warm {
			lat = append(lat, d)
		}
	}
	m.stop()
	return lat, nil
}

// opens times n opens of a new connection, each sending its first bytes
// and reading the first byte back, one after the other, after warm
// unmeasured ones. m samples the CPU over the n measured ones.
func opens(ctx context.Context, p *path, warm, n int, m *meter) (latencies, error) {
	lat := make(latencies, 0, n)
	for i := range warm + n {
		if i == warm {
			m.start()
		}
		d, err := openOnce(ctx, p)
		if err != nil {
			return nil, err
		}
		if i >= warm {
			lat = append(lat, d)
		}
	}
	m.stop()
	return lat, nil
}

// openOnce opens a connection on p, sends the echo command and one byte
// in one write, and returns the time until that byte is back.
func openOnce(ctx context.Context, p *path) (time.Duration, error) {
	t0 := time.Now()
	c, err := p.open(ctx)
	if err != nil {
		return 0, fmt.Errorf("open: %w", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte{opEcho, 'x'}); err != nil {
		return 0, fmt.Errorf("open: first write: %w", err)
	}
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return 0, fmt.Errorf("open: first read: %w", err)
	}
	d := time.Since(t0)
	if b[0] != 'x' {
		return 0, errors.New("integrity: wrong first byte")
	}
	return d, nil
}

// loadResult is a run of operations at a pace.
type loadResult struct {
	Offered  float64  `json:"offered_per_s,omitempty"`
	Achieved float64  `json:"achieved_per_s"`
	Ops      int      `json:"ops"`
	Errors   int      `json:"errors"`
	Error    string   `json:"first_error,omitempty"`
	Latency  *summary `json:"latency"`
	Workers  int      `json:"workers"`
	Seconds  float64  `json:"seconds"`
}

// load runs op for d. With rate > 0 it is an open loop: operations are
// scheduled at rate per second and each latency is measured from its
// scheduled start, so that a stall shows in the tail instead of hiding
// (no coordinated omission); workers bounds the operations in flight,
// and an operation that finds none free waits, its wait counted. With
// rate 0 it is a closed loop of workers back-to-back operations.
func load(ctx context.Context, d time.Duration, rate float64, workers int, op func(ctx context.Context) error) loadResult {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu     sync.Mutex
		lat    = make(latencies, 0, 1024)
		errs   int
		first  string
		wg     sync.WaitGroup
		starts = make(chan time.Time, 1<<16)
	)
	record := func(t0 time.Time, err error) {
		el := time.Since(t0)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			errs++
			if first == "" {
				first = err.Error()
			}
			return
		}
		lat = append(lat, el)
	}
	begin := time.Now()
	end := begin.Add(d)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if rate <= 0 {
				for time.Now().Before(end) && ctx.Err() == nil {
					t0 := time.Now()
					record(t0, op(ctx))
				}
				return
			}
			for t0 := range starts {
				record(t0, op(ctx))
			}
		}()
	}
	if rate > 0 {
		interval := time.Duration(float64(time.Second) / rate)
		next := begin
		for next.Before(end) {
			if w := time.Until(next); w > 0 {
				time.Sleep(w)
			}
			// Schedule every operation whose time has come, in one go:
			// sleeps are coarse next to a 200 us interval.
			for now := time.Now(); !next.After(now) && next.Before(end); next = next.Add(interval) {
				starts <- next
			}
		}
		close(starts)
	}
	wg.Wait()
	elapsed := time.Since(begin)
	return loadResult{Offered: rate, Achieved: float64(len(lat)) / elapsed.Seconds(), Ops: len(lat), Errors: errs, Error: first,
		Latency: lat.summary(), Workers: workers, Seconds: elapsed.Seconds()}
}
