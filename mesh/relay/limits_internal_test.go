package relay

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/postern/postern/internal/quicnet"
	"github.com/postern/postern/internal/wire"
	"github.com/postern/postern/transport"
)

// TestRelayWindows: a relay grants small stream windows at the handshake
// and keeps the large maximums that auto-tuning grows into; the
// connection window is whole from the start unless ConnectorNetworks
// says which sources connectors come from, and then small for the
// others; what a configuration sets itself is kept.
func TestRelayWindows(t *testing.T) {
	var l Limits
	l.fill()
	tc, outside := relayTransport(nil, l)
	q := quicnet.QUICConfig(&tc)
	if q.InitialStreamReceiveWindow != 32<<10 || q.InitialConnectionReceiveWindow != 64<<20 || outside != nil {
		t.Errorf("default initial windows %d/%d (outside: %v), want 32 KiB/64 MiB for every source", q.InitialStreamReceiveWindow, q.InitialConnectionReceiveWindow, outside)
	}
	if q.MaxStreamReceiveWindow != 2<<20 || q.MaxConnectionReceiveWindow != 64<<20 {
		t.Errorf("maximum windows %d/%d, want 2 MiB/64 MiB for auto-tuning to grow into", q.MaxStreamReceiveWindow, q.MaxConnectionReceiveWindow)
	}
	if q.HandshakeIdleTimeout > 5*time.Second {
		t.Errorf("handshake idle timeout %s, want at most the 5s Hello deadline", q.HandshakeIdleTimeout)
	}

	for _, tt := range []struct {
		name                 string
		limits               Limits
		transport            *transport.Config
		stream, conn, others uint64 // others 0: no separate configuration
	}{
		{name: "configured for all", limits: Limits{InitialStreamWindow: 16 << 10, InitialConnWindow: 128 << 10}, stream: 16 << 10, conn: 128 << 10},
		{name: "connector networks", limits: Limits{ConnectorNetworks: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}},
			stream: 32 << 10, conn: 64 << 20, others: 128 << 10},
		{name: "connector networks and a window", limits: Limits{InitialConnWindow: 256 << 10, ConnectorNetworks: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}},
			stream: 32 << 10, conn: 64 << 20, others: 256 << 10},
		{name: "transport decides", limits: Limits{InitialConnWindow: 128 << 10, ConnectorNetworks: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}},
			transport: &transport.Config{StreamWindow: 1 << 20, ConnWindow: 4 << 20}, stream: 1 << 20, conn: 4 << 20},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.limits.fill()
			tc, outside := relayTransport(tt.transport, tt.limits)
			q := quicnet.QUICConfig(&tc)
			if q.InitialStreamReceiveWindow != tt.stream || q.InitialConnectionReceiveWindow != tt.conn {
				t.Errorf("windows %d/%d, want %d/%d", q.InitialStreamReceiveWindow, q.InitialConnectionReceiveWindow, tt.stream, tt.conn)
			}
			switch {
			case tt.others == 0 && outside != nil:
				t.Errorf("a configuration for other sources, with connection window %d; want none", outside.ConnWindow)
			case tt.others != 0 && outside == nil:
				t.Errorf("no configuration for other sources, want one with connection window %d", tt.others)
			case tt.others != 0:
				o := quicnet.QUICConfig(outside)
				if o.InitialConnectionReceiveWindow != tt.others || o.InitialStreamReceiveWindow != tt.stream || o.MaxConnectionReceiveWindow != 64<<20 {
					t.Errorf("other sources: windows %d/%d max %d, want %d/%d max 64 MiB", o.InitialStreamReceiveWindow, o.InitialConnectionReceiveWindow, o.MaxConnectionReceiveWindow, tt.stream, tt.others)
				}
				if o.MaxIncomingStreams != q.MaxIncomingStreams || o.KeepAlivePeriod != q.KeepAlivePeriod || o.HandshakeIdleTimeout != q.HandshakeIdleTimeout || o.MaxStreamReceiveWindow != q.MaxStreamReceiveWindow {
					t.Error("other sources differ from connector networks in more than the connection window")
				}
			}
		})
	}
	l = Limits{ConnectorNetworks: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("2001:db8::/32")}}
	for _, tt := range []struct {
		addr string
		want bool
	}{{"10.1.2.3", true}, {"10.2.0.1", false}, {"2001:db8::1", true}, {"2001:db9::1", false}, {"127.0.0.1", false}} {
		if got := l.connectorSource(sourceOf(udp(net.JoinHostPort(tt.addr, "7443")))); got != tt.want {
			t.Errorf("%s from the connector networks: %v, want %v", tt.addr, got, tt.want)
		}
	}
	if got := l.connectorSource(sourceOf(udp("[::ffff:10.1.2.3]:7443"))); !got {
		t.Error("an IPv4-mapped address of a connector network is not in it")
	}
}

func ptr[T any](v T) *T { return &v }

func udp(s string) net.Addr { return net.UDPAddrFromAddrPort(netip.MustParseAddrPort(s)) }

// TestGate: the caps on unverified connections, in all and per source,
// the Retry threshold, and the separate budget of validated clients.
func TestGate(t *testing.T) {
	g := newGate(Limits{MaxUnverified: 6, MaxUnverifiedPerSource: 2, RetryAbove: 4})
	var cancels []context.CancelFunc
	admit := func(addr string, validated bool) error {
		ctx, cancel := context.WithCancel(context.Background())
		ctx, err := g.connContext(ctx, &quic.ClientInfo{RemoteAddr: udp(addr), AddrVerified: validated})
		if err != nil {
			cancel()
			return err
		}
		if _, ok := ctx.Value(ticketKey{}).(*ticket); !ok {
			t.Fatal("admitted connection's context carries no ticket")
		}
		cancels = append(cancels, cancel)
		return nil
	}
	for _, a := range []string{"10.0.0.1:1", "10.0.0.1:2"} {
		if g.verifySource(udp(a)) {
			t.Fatalf("%s asked for a Retry below every threshold", a)
		}
		if err := admit(a, false); err != nil {
			t.Fatal(err)
		}
	}
	if !g.verifySource(udp("10.0.0.1:3")) {
		t.Fatal("a source with its share waiting was not asked for a Retry")
	}
	if err := admit("10.0.0.1:3", false); !errors.Is(err, errRefused) {
		t.Fatalf("third unvalidated connection from one source: %v, want refused", err)
	}
	// Spoofed Initials filled 10.0.0.1's share; the real client, validated
	// by the Retry, has its own.
	for _, p := range []string{"4", "5"} {
		if err := admit("10.0.0.1:"+p, true); err != nil {
			t.Fatalf("validated connection %s: %v", p, err)
		}
	}
	if err := admit("10.0.0.1:6", true); !errors.Is(err, errRefused) {
		t.Fatalf("third validated connection from one source: %v, want refused", err)
	}
	if !g.verifySource(udp("10.0.0.2:1")) {
		t.Fatal("a new source was not asked for a Retry with RetryAbove connections waiting")
	}
	for _, a := range []string{"10.0.0.2:1", "10.0.0.3:1"} {
		if err := admit(a, true); err != nil {
			t.Fatal(err)
		}
	}
	if err := admit("10.0.0.4:1", true); !errors.Is(err, errRefused) {
		t.Fatalf("connection over MaxUnverified: %v, want refused", err)
	}
	if n := g.unverified(); n != 6 {
		t.Fatalf("unverified = %d, want 6", n)
	}
	if g.refusedTotal(viaQUIC) != 3 || g.retried.Load() != 2 {
		t.Fatalf("refused %d, retried %d; want 3 and 2", g.refusedTotal(viaQUIC), g.retried.Load())
	}
	// A connection's end gives its place back.
	for _, c := range cancels {
		c()
	}
	deadline := time.Now().Add(5 * time.Second)
	for g.unverified() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("unverified = %d after every connection ended, want 0", g.unverified())
		}
		time.Sleep(time.Millisecond)
	}
	if len(g.bySource) != 0 {
		t.Fatalf("%d sources still tracked", len(g.bySource))
	}
	if g := newGate(Limits{MaxUnverified: 6, MaxUnverifiedPerSource: 2, RetryAbove: -1}); !g.verifySource(udp("10.0.0.9:1")) {
		t.Fatal("RetryAbove < 0 does not ask every client")
	}
}

// TestGatePenalizedQUIC: a QUIC client from a source past
// RejectsPerSource is refused without a Retry first, validated or not,
// even while every other new client is asked for one; the refusal is
// counted as a penalty, not at a cap.
func TestGatePenalizedQUIC(t *testing.T) {
	for _, retryAbove := range []int{4, 0, -1} {
		g := newGate(Limits{MaxUnverified: 6, MaxUnverifiedPerSource: 2, RetryAbove: retryAbove})
		bad := netip.MustParseAddr("10.0.0.9")
		g.penalized = func(a netip.Addr) bool { return a == bad }
		if g.verifySource(udp("10.0.0.9:1")) {
			t.Fatalf("RetryAbove %d: a penalized source was asked for a Retry", retryAbove)
		}
		if retryAbove <= 0 && !g.verifySource(udp("10.0.0.1:1")) {
			t.Fatalf("RetryAbove %d: a new source was not asked for a Retry", retryAbove)
		}
		for _, validated := range []bool{false, true} {
			_, err := g.connContext(context.Background(), &quic.ClientInfo{RemoteAddr: udp("10.0.0.9:2"), AddrVerified: validated})
			if !errors.Is(err, errRefused) {
				t.Fatalf("RetryAbove %d, validated %v: penalized source admitted (%v)", retryAbove, validated, err)
			}
		}
		if p, c := g.refused[viaQUIC].penalized.Load(), g.refused[viaQUIC].capped.Load(); p != 2 || c != 0 {
			t.Fatalf("RetryAbove %d: %d penalized and %d capped refusals, want 2 and 0", retryAbove, p, c)
		}
		if g.unverified() != 0 {
			t.Fatalf("RetryAbove %d: refused connections hold %d places", retryAbove, g.unverified())
		}
	}
}

func tcp(s string) net.Addr { return net.TCPAddrFromAddrPort(netip.MustParseAddrPort(s)) }

// TestGateTCP: TCP connections take places in the same gate as QUIC ones,
// in all and per source, counted as validated (the TCP handshake proved
// the address); a penalized source is refused over TCP at once; refusals
// are counted per transport and cause.
func TestGateTCP(t *testing.T) {
	g := newGate(Limits{MaxUnverified: 6, MaxUnverifiedPerSource: 2, RetryAbove: 4})
	bad := netip.MustParseAddr("10.0.0.9")
	g.penalized = func(a netip.Addr) bool { return a == bad }
	var cancels []context.CancelFunc
	t.Cleanup(func() {
		for _, c := range cancels {
			c()
		}
	})
	admitTCP := func(addr string) error {
		ctx, cancel := context.WithCancel(context.Background())
		ctx, err := g.tcpConnContext(ctx, tcp(addr))
		if err != nil {
			cancel()
			return err
		}
		if _, ok := ctx.Value(ticketKey{}).(*ticket); !ok {
			t.Fatal("admitted connection's context carries no ticket")
		}
		cancels = append(cancels, cancel)
		return nil
	}
	admitQUIC := func(addr string, validated bool) error {
		ctx, cancel := context.WithCancel(context.Background())
		_, err := g.connContext(ctx, &quic.ClientInfo{RemoteAddr: udp(addr), AddrVerified: validated})
		if err != nil {
			cancel()
			return err
		}
		cancels = append(cancels, cancel)
		return nil
	}
	// Spoofed Initials fill 10.0.0.1's unvalidated share; its TCP
	// connections are validated and have the other.
	for _, p := range []string{"1", "2"} {
		if err := admitQUIC("10.0.0.1:"+p, false); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{"3", "4"} {
		if err := admitTCP("10.0.0.1:" + p); err != nil {
			t.Fatalf("tcp connection %s beside spoofed quic ones: %v", p, err)
		}
	}
	if err := admitTCP("10.0.0.1:5"); !errors.Is(err, errRefused) {
		t.Fatalf("third tcp connection from one source: %v, want refused", err)
	}
	// A Retry-validated QUIC client shares the validated count with TCP.
	if err := admitQUIC("10.0.0.1:6", true); !errors.Is(err, errRefused) {
		t.Fatalf("validated quic connection beside two tcp ones: %v, want refused", err)
	}
	if err := admitTCP("10.0.0.9:1"); !errors.Is(err, errRefused) {
		t.Fatalf("tcp connection from a penalized source: %v, want refused", err)
	}
	// 4 wait; the global cap of 6 counts both transports.
	for _, a := range []string{"10.0.0.2:1", "10.0.0.3:1"} {
		if err := admitTCP(a); err != nil {
			t.Fatal(err)
		}
	}
	if err := admitTCP("10.0.0.4:1"); !errors.Is(err, errRefused) {
		t.Fatalf("tcp connection over MaxUnverified: %v, want refused", err)
	}
	if err := admitQUIC("10.0.0.5:1", true); !errors.Is(err, errRefused) {
		t.Fatalf("quic connection over MaxUnverified with tcp ones waiting: %v, want refused", err)
	}
	if n := g.unverified(); n != 6 {
		t.Fatalf("unverified = %d, want 6", n)
	}
	if c, p := g.refused[viaTCP].capped.Load(), g.refused[viaTCP].penalized.Load(); c != 2 || p != 1 {
		t.Fatalf("tcp refusals: %d at a cap, %d penalized; want 2 and 1", c, p)
	}
	if n := g.refusedTotal(viaQUIC); n != 2 {
		t.Fatalf("quic refusals %d, want 2", n)
	}
	// A tcp connection's end gives its place back.
	cancels[2]()
	deadline := time.Now().Add(5 * time.Second)
	for g.unverified() != 5 { // the ticket is given back on its own goroutine
		if time.Now().After(deadline) {
			t.Fatalf("unverified = %d after a tcp connection ended, want 5", g.unverified())
		}
		time.Sleep(time.Millisecond)
	}
	if err := admitTCP("10.0.0.1:7"); err != nil {
		t.Fatalf("after a tcp connection from the source ended: %v", err)
	}
	for _, c := range cancels {
		c()
	}
	for g.unverified() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("unverified = %d after every connection ended, want 0", g.unverified())
		}
		time.Sleep(time.Millisecond)
	}
	if len(g.bySource) != 0 {
		t.Fatalf("%d sources still tracked", len(g.bySource))
	}
}

// TestSubjectCaps: sessions and streams per subject, and the refresh
// budget, each refused with its own reason and given back.
func TestSubjectCaps(t *testing.T) {
	s := newSubjects(Limits{SessionsPerSubject: 2, StreamsPerSubject: 3, RefreshesPerMinute: 2})
	for range 2 {
		if rej := s.startSession("alice"); rej != nil {
			t.Fatal(rej)
		}
	}
	rej := s.startSession("alice")
	if rej == nil || rej.Code != wire.CodeLimit || rej.Reason != ReasonSessionsPerSubject {
		t.Fatalf("third session: %v, want CODE_LIMIT %s", rej, ReasonSessionsPerSubject)
	}
	if rej := s.startSession("bob"); rej != nil {
		t.Fatalf("another subject: %v", rej)
	}
	s.endSession("alice")
	if rej := s.startSession("alice"); rej != nil {
		t.Fatalf("after one ended: %v", rej)
	}
	for range 3 {
		if res := s.startStream("alice"); res != nil {
			t.Fatal(res)
		}
	}
	if res := s.startStream("alice"); res == nil || res.Reason != ReasonStreamsPerSubject {
		t.Fatalf("fourth stream: %v, want %s", res, ReasonStreamsPerSubject)
	}
	s.endStream("alice")
	if res := s.startStream("alice"); res != nil {
		t.Fatalf("after one ended: %v", res)
	}
	for range 2 {
		if rej := s.refresh("alice"); rej != nil {
			t.Fatal(rej)
		}
	}
	if rej := s.refresh("alice"); rej == nil || rej.Reason != ReasonRefreshRate {
		t.Fatalf("third refresh in a minute: %v, want %s", rej, ReasonRefreshRate)
	}
	if rej := s.refresh("bob"); rej != nil {
		t.Fatalf("another subject's refresh: %v", rej)
	}
	// The budget refills: half a minute later, one more.
	s.mu.Lock()
	s.m["alice"].refreshAt = s.m["alice"].refreshAt.Add(-31 * time.Second)
	s.mu.Unlock()
	if rej := s.refresh("alice"); rej != nil {
		t.Fatalf("refresh after 31s: %v", rej)
	}
	long := strings.Repeat("x", 10<<10)
	s2 := newSubjects(Limits{SessionsPerSubject: 1})
	s2.startSession(long)
	if rej := s2.startSession(long); rej == nil || len(rej.Message) > 400 {
		t.Fatalf("refusal of a 10 KB subject: %d-byte message, want it bounded", len(rej.Message))
	}
}

// gatedWriter blocks every Write until open is closed, and counts writes.
type gatedWriter struct {
	open   chan struct{}
	mu     sync.Mutex
	buf    strings.Builder
	writes int
}

func (w *gatedWriter) Write(p []byte) (int, error) {
	<-w.open
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writes++
	return w.buf.Write(p)
}

func (w *gatedWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

func countEvents(s, msg string) int { return strings.Count(s, `"msg":"`+msg+`"`) }

// TestAuditQueueDrop: with a stalled collector and the drop policy,
// emitting never waits; the events dropped are counted and reported in
// the trail once it drains.
func TestAuditQueueDrop(t *testing.T) {
	w := &gatedWriter{open: make(chan struct{})}
	q := newAuditQueue(slog.NewJSONHandler(w, nil).WithAttrs(nil), AuditQueue{Size: 4, Drop: true})
	l := q.logger()
	done := make(chan struct{})
	go func() {
		for i := range 100 {
			emit(l, slog.LevelInfo, EventOpenAllow, slog.Int("i", i))
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("emitting blocked on a stalled collector with the drop policy")
	}
	close(w.open)
	q.close()
	out := w.String()
	written := countEvents(out, EventOpenAllow)
	if written < 4 || written > 6 {
		t.Fatalf("%d events written, want the queue's 4 (and at most the ones in flight)", written)
	}
	var dropped struct{ n, total int }
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, EventAuditDropped) {
			fmt.Sscanf(line[strings.Index(line, `"count":`):], `"count":%d,"total":%d`, &dropped.n, &dropped.total)
		}
	}
	if dropped.total != 100-written || dropped.n != dropped.total {
		t.Fatalf("audit.dropped says %d (total %d), want %d:\n%s", dropped.n, dropped.total, 100-written, out)
	}
}

// TestAuditQueueBlock: with the block policy nothing is lost, however
// small the queue, and close writes everything accepted.
func TestAuditQueueBlock(t *testing.T) {
	w := &gatedWriter{open: make(chan struct{})}
	q := newAuditQueue(slog.NewJSONHandler(w, nil), AuditQueue{Size: 2})
	l := q.logger().With("session", "s1")
	var wg sync.WaitGroup
	var emitted atomic.Int32
	for g := range 5 {
		wg.Go(func() {
			for i := range 20 {
				emit(l, slog.LevelInfo, EventOpenAllow, slog.Int("g", g), slog.Int("i", i))
				emitted.Add(1)
			}
		})
	}
	time.Sleep(50 * time.Millisecond)
	if n := emitted.Load(); n > 5 {
		t.Fatalf("%d events emitted past a stalled collector and a 2-event queue, want the emitters held", n)
	}
	close(w.open)
	wg.Wait()
	q.close()
	if n := countEvents(w.String(), EventOpenAllow); n != 100 {
		t.Fatalf("%d events written, want all 100", n)
	}
	if strings.Contains(w.String(), EventAuditDropped) || strings.Count(w.String(), `"session":"s1"`) != 100 {
		t.Fatalf("trail:\n%s", w.String())
	}
	// After close, an event is written at once.
	emit(l, slog.LevelInfo, EventSessionEnd)
	if countEvents(w.String(), EventSessionEnd) != 1 {
		t.Fatal("an event emitted after close was not written")
	}
}

// TestAuditQueueBatches: with a buffering writer and Flush, a burst of
// events reaches the destination in a few writes, not one per event.
func TestAuditQueueBatches(t *testing.T) {
	w := &gatedWriter{open: make(chan struct{})}
	bw := bufio.NewWriterSize(w, 1<<20)
	first := make(chan struct{})
	var once sync.Once
	h := slog.NewJSONHandler(bw, nil)
	q := newAuditQueue(stallFirst{Handler: h, first: first, once: &once}, AuditQueue{Size: 1024, Flush: bw.Flush})
	l := q.logger()
	for i := range 300 {
		emit(l, slog.LevelInfo, EventOpenAllow, slog.Int("i", i))
	}
	close(first)
	close(w.open)
	q.close()
	if n := countEvents(w.String(), EventOpenAllow); n != 300 {
		t.Fatalf("%d events, want 300", n)
	}
	if w.writes > 3 {
		t.Fatalf("%d writes for 300 events queued at once, want one per batch", w.writes)
	}
}

// stallFirst holds its first Handle until first is closed, so that what
// follows piles up in the queue.
type stallFirst struct {
	slog.Handler
	first chan struct{}
	once  *sync.Once
}

func (h stallFirst) Handle(ctx context.Context, r slog.Record) error {
	h.once.Do(func() { <-h.first })
	return h.Handler.Handle(ctx, r)
}

// TestRejectLog: the first refusal per source is written at once, the
// rest as one event per source with a count when the interval ends.
func TestRejectLog(t *testing.T) {
	var buf strings.Builder
	var mu sync.Mutex
	l := newRejectLog(slog.New(slog.NewJSONHandler(lockedWriter{&mu, &buf}, nil)), time.Hour, 0)
	a, b := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	for range 500 {
		l.reject(a, "agent", "bad_signature", []slog.Attr{slog.String("remote", "10.0.0.1:1234")})
	}
	l.reject(a, "agent", "token_expired", nil)
	l.reject(b, "agent", "malformed_token", []slog.Attr{slog.String("remote", "10.0.0.2:1")})
	mu.Lock()
	if n := countEvents(buf.String(), EventSessionReject); n != 2 {
		t.Fatalf("%d events before the interval ended, want 2 (one per source)", n)
	}
	mu.Unlock()
	l.flush()
	mu.Lock()
	defer mu.Unlock()
	out := buf.String()
	if n := countEvents(out, EventSessionReject); n != 3 {
		t.Fatalf("%d events after the interval, want 3:\n%s", n, out)
	}
	if !strings.Contains(out, `"remote":"10.0.0.1","role":"agent","count":500,"reasons":{`) ||
		!strings.Contains(out, `"bad_signature":499`) || !strings.Contains(out, `"token_expired":1`) {
		t.Fatalf("summary event:\n%s", out)
	}
}

// TestRejectPenaltySlides: Limits.RejectsPerSource counts the refusals
// of the last interval, whatever the audit's interval boundaries: a
// source refused steadily a little under the penalty per interval of the
// clock, but over it across one, is penalized; one that stops is
// forgiven as its refusals age out; the bound on tracked sources holds.
func TestRejectPenaltySlides(t *testing.T) {
	const interval = 10 * time.Second
	now := time.Unix(1e9, 0)
	l := newRejectLog(slog.New(slog.DiscardHandler), interval, 16)
	l.now = func() time.Time { return now }
	l.start = now
	src, other := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	// 2.5 refusals a second; the clock's interval ends after 4 s.
	step := 400 * time.Millisecond
	for i := range 10 {
		l.reject(src, "agent", "bad_signature", nil)
		now = now.Add(step)
		if l.penalized(src) {
			t.Fatalf("penalized after %d refusals in %s", i+1, time.Duration(i+1)*step)
		}
	}
	l.flush() // 10 counted in an interval that ends here
	refusedAt := -1
	for i := range 15 {
		l.reject(src, "agent", "bad_signature", nil)
		now = now.Add(step)
		if l.penalized(src) {
			refusedAt = i + 1
			break
		}
	}
	// 10 before the boundary, weighted by what of their interval is
	// still within 10 s of now, plus those after: 16 is reached after 4
	// seconds of the new interval (10*0.6+10), where counting per
	// interval of the clock waits for 16 after the boundary, 6.4 s.
	if refusedAt != 10 {
		t.Fatalf("penalized after %d refusals past the boundary, want 10", refusedAt)
	}
	if l.penalized(other) {
		t.Fatal("a source never refused is penalized")
	}
	// It stops: it is forgiven as the refusals before the boundary age
	// out, before the clock's interval ends (10 + 10*0.2 at 8 s).
	now = now.Add(4 * time.Second)
	if l.penalized(src) {
		t.Fatal("still penalized 4 s after its last refusal, with 12 in the last 10 s")
	}
	l.flush()
	if l.penalized(src) {
		t.Fatal("penalized after a boundary with 10 refusals in the interval before it")
	}
	// Off.
	off := newRejectLog(slog.New(slog.DiscardHandler), interval, 0)
	for range 100 {
		off.reject(src, "agent", "bad_signature", nil)
	}
	if off.penalized(src) || len(off.hits) != 0 {
		t.Fatalf("penalty off: penalized %v, %d sources tracked", off.penalized(src), len(off.hits))
	}
	// Bounded.
	for i := range maxRejectSources + 10 {
		l.reject(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), "agent", "bad_signature", nil)
	}
	if len(l.hits) > maxRejectSources {
		t.Fatalf("%d sources tracked, bound %d", len(l.hits), maxRejectSources)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *strings.Builder
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}

// BenchmarkAuditEmit is what one open.allow event costs the goroutine that
// emits it, written straight to a file (as before the queue: one write
// per event, on the open's path) and through the queue with a buffered
// writer flushed per batch (the relay's path; Close at the end, so that
// every event is written within the measured time).
func BenchmarkAuditEmit(b *testing.B) {
	attrs := []slog.Attr{slog.String("binding", "staging-db"), slog.String("action", "connect"), slog.String("decision", "allow"),
		slog.Any("policies", []string{"coding-agents-read-staging"}), slog.String("connector", "office-1")}
	open := func(b *testing.B) *os.File {
		f, err := os.Create(filepath.Join(b.TempDir(), "audit.jsonl"))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { f.Close() })
		return f
	}
	b.Run("direct-file", func(b *testing.B) {
		l := slog.New(slog.NewJSONHandler(open(b), nil)).With("session", "0123456789abcdef01234567", "subject", "coding-agent")
		b.ReportAllocs()
		for b.Loop() {
			emit(l, slog.LevelInfo, EventOpenAllow, attrs...)
		}
	})
	b.Run("queued-bufio", func(b *testing.B) {
		bw := bufio.NewWriterSize(open(b), 1<<20)
		q := newAuditQueue(slog.NewJSONHandler(bw, nil), AuditQueue{Flush: bw.Flush})
		l := q.logger().With("session", "0123456789abcdef01234567", "subject", "coding-agent")
		b.ReportAllocs()
		for b.Loop() {
			emit(l, slog.LevelInfo, EventOpenAllow, attrs...)
		}
		q.close()
	})
}
