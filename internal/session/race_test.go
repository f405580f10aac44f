package session

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"testing"
	"time"
)

// silentRelay is a UDP socket that records which source addresses sent it
// datagrams, and when each first did, and never answers: a relay that is
// down, as QUIC's client sees it.
type silentRelay struct {
	pc    net.PacketConn
	mu    sync.Mutex
	first map[string]time.Time
	done  chan struct{}
}

func newSilentRelay(t *testing.T) *silentRelay {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &silentRelay{pc: pc, first: map[string]time.Time{}, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		buf := make([]byte, 2048)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			r.mu.Lock()
			if _, ok := r.first[from.String()]; !ok {
				r.first[from.String()] = time.Now()
			}
			r.mu.Unlock()
		}
	}()
	t.Cleanup(func() { pc.Close(); <-r.done })
	return r
}

// attempts returns when each handshake (each client socket) began.
func (r *silentRelay) attempts() []time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ts []time.Time
	for _, at := range r.first {
		ts = append(ts, at)
	}
	return ts
}

func testConfig() Config {
	return Config{
		TLS:   &tls.Config{ServerName: "relay.invalid"},
		Token: func(context.Context) (string, error) { return "t", nil },
	}
}

// TestDialAnyRedials: a relay that does not answer gets a fresh handshake
// (a new socket, whose first packet leaves at once) every Redial, rather
// than only the backed-off retransmissions of the first; the second
// address gets its first a Stagger after the first address.
func TestDialAnyRedials(t *testing.T) {
	a, b := newSilentRelay(t), newSilentRelay(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := DialAny(ctx, []string{a.pc.LocalAddr().String(), b.pc.LocalAddr().String()}, testConfig(), Pace{})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the context's deadline", err)
	}
	// 500ms apart with up to a fifth less of jitter: 0, ~0.5, ~1, ~1.5, ~2s.
	// Three at least, on a loaded machine.
	for name, r := range map[string]*silentRelay{"first": a, "second": b} {
		if n := len(r.attempts()); n < 3 {
			t.Errorf("the %s address got %d handshakes in 2.2s, want one every 500ms", name, n)
		}
	}
	firstB := time.Now()
	for _, at := range b.attempts() {
		if at.Before(firstB) {
			firstB = at
		}
	}
	if d := firstB.Sub(start); d < 200*time.Millisecond {
		t.Errorf("the second address was dialed %s after the start, want its 250ms stagger", d)
	}
}

// TestDialAnyTokenOnce: the token source is asked once for all attempts,
// and its failure ends DialAny at once.
func TestDialAnyTokenOnce(t *testing.T) {
	r := newSilentRelay(t)
	var calls int
	var mu sync.Mutex
	cfg := testConfig()
	cfg.Token = func(context.Context) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		return "t", nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 1200*time.Millisecond)
	defer cancel()
	DialAny(ctx, []string{r.pc.LocalAddr().String()}, cfg, Pace{})
	if calls != 1 {
		t.Fatalf("the token source was called %d times, want once", calls)
	}
	cfg.Token = func(context.Context) (string, error) { return "", errors.New("no token today") }
	if _, err := DialAny(context.Background(), []string{r.pc.LocalAddr().String()}, cfg, Pace{}); !errors.Is(err, ErrTokenSource) {
		t.Fatalf("err = %v, want ErrTokenSource", err)
	}
	if _, err := DialAny(context.Background(), nil, cfg, Pace{}); err == nil {
		t.Fatal("DialAny with no address: no error")
	}
}

// TestDialAnyNoSuchHost: a relay name that does not exist is an answer:
// DialAny gives up on it at once rather than at the deadline.
func TestDialAnyNoSuchHost(t *testing.T) {
	const host = "relay.nonexistent.invalid"
	var dns *net.DNSError
	if _, err := net.DefaultResolver.LookupHost(context.Background(), host); !errors.As(err, &dns) || !dns.IsNotFound {
		t.Skipf("this machine's resolver does not say %s does not exist: %v", host, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	_, err := DialAny(ctx, []string{host + ":7443"}, testConfig(), Pace{})
	if !errors.As(err, &dns) || !dns.IsNotFound {
		t.Fatalf("err = %v, want no such host", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("DialAny took %s to give up on a name that does not exist", took)
	}
}
