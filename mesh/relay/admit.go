package relay

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/postern/postern/internal/quicnet"
	"github.com/postern/postern/internal/wire"
)

// Before its Hello is verified a peer has shown nothing but that it can
// finish a QUIC or TLS handshake, or, before that, send one UDP datagram
// from an address it may not own, or complete a TCP handshake. What the
// relay spends on such peers is bounded here, for both transports in one
// count: how many connections may wait for their Hello at once, in all
// and per source address, and from how many waiting connections on a new
// QUIC client must first prove its address with a Retry, which costs the
// relay no state (a spoofed source never receives it). A TCP connection
// takes its place when it is accepted, before its TLS handshake; its
// address is proven by then, so it counts as validated.

// errRefused is what the admission hooks return to have a connection
// refused: with CONNECTION_REFUSED over QUIC, a reset over TCP.
var errRefused = errors.New("relay: connection refused before its handshake")

// Transports, as the gate counts refusals.
const (
	viaQUIC = iota
	viaTCP
)

// gate counts the connections that have not yet had a Hello verified.
type gate struct {
	max, perSource, retryAbove int
	penalized                  func(netip.Addr) bool // a source refused too often: refuse it at once

	// While flooded, connections from sources not familiar take a place
	// in budget, or are refused (flood.go). budget is nil when
	// Limits.HandshakeBudget is negative.
	flooded  func() bool
	familiar *familiar
	budget   *budget
	trusted  []netip.Prefix // Limits.ConnectorNetworks: never held to the budget

	mu       sync.Mutex
	pending  int
	bySource map[netip.Addr]*sourceCount

	refused [2]refusals   // by transport (viaQUIC, viaTCP)
	retried atomic.Uint64 // Initials answered with a Retry
}

// reasonPenalized labels the refusals of a source past
// Limits.RejectsPerSource in the metrics, reasonBudget those of an
// unfamiliar source while the relay is flooded and its
// Limits.HandshakeBudget is spent.
const (
	reasonPenalized = "rejects_per_source"
	reasonBudget    = "handshake_budget"
)

// refusals counts the connections refused before their handshake: at
// MaxUnverified or MaxUnverifiedPerSource, from a source past
// RejectsPerSource, or for the handshake budget.
type refusals struct{ capped, penalized, budget atomic.Uint64 }

func (g *gate) refusedTotal(via int) uint64 {
	return g.refused[via].capped.Load() + g.refused[via].penalized.Load() + g.refused[via].budget.Load()
}

func (g *gate) budgetRefused() uint64 {
	return g.refused[viaQUIC].budget.Load() + g.refused[viaTCP].budget.Load()
}

// isFlooded reports whether the relay is flooded now (Limits.FloodRejects).
func (g *gate) isFlooded() bool { return g.flooded != nil && g.flooded() }

// budgeted reports whether a new connection from src must take a place in
// the handshake budget: the relay is flooded, and src is neither familiar
// nor in Limits.ConnectorNetworks.
func (g *gate) budgeted(src netip.Addr) bool {
	if g.budget == nil || !g.isFlooded() {
		return false
	}
	for _, p := range g.trusted {
		if p.Contains(src) {
			return false
		}
	}
	return !g.familiar.has(src)
}

// sourceCount is one source address's unverified connections: all of them,
// and those whose address was validated (by a Retry, or by a TCP
// handshake). The per-source cap counts validated ones for a validated
// client, so that Initials spoofed from a victim's address can push the
// victim into a Retry, never out.
type sourceCount struct{ all, validated int }

func newGate(l Limits) *gate {
	g := &gate{max: l.MaxUnverified, perSource: l.MaxUnverifiedPerSource, retryAbove: l.RetryAbove, bySource: make(map[netip.Addr]*sourceCount),
		familiar: newFamiliar(time.Now), trusted: l.ConnectorNetworks}
	if l.HandshakeBudget > 0 {
		g.budget = newBudget(l.HandshakeBudget, time.Now)
	}
	return g
}

func sourceOf(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.UDPAddr:
		return a.AddrPort().Addr().Unmap()
	case *net.TCPAddr:
		return a.AddrPort().Addr().Unmap()
	}
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

// verifySource is quic.Transport.VerifySourceAddress: a Retry once the
// relay is under load (RetryAbove connections wait for a Hello), or once
// this source address has its share waiting; never for a source past
// Limits.RejectsPerSource, which admit refuses.
func (g *gate) verifySource(a net.Addr) bool {
	src := sourceOf(a)
	if g.penalized != nil && g.penalized(src) {
		// A source refused too often is refused at once (admit): a Retry
		// first would cost the relay a token, another Initial to open
		// and the same refusal after it, for nothing. A spoofed Initial
		// from such a source gets one refusal, no larger than itself,
		// sent to an address that is refused anyway; it cannot make a
		// source penalized, which takes verified handshakes.
		return false
	}
	if g.budgeted(src) {
		// Flooded, and src unfamiliar: with no place in the budget it
		// is refused at once (admit), as a penalized source is; with
		// one, it proves its address before it may take it, so that
		// spoofed Initials cannot spend the budget.
		if !g.budget.available() {
			return false
		}
		g.retried.Add(1)
		return true
	}
	if g.retryAbove < 0 {
		g.retried.Add(1)
		return true
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	retry := g.pending >= g.retryAbove
	if sc := g.bySource[src]; sc != nil && sc.all >= g.perSource {
		retry = true
	}
	if retry {
		g.retried.Add(1)
	}
	return retry
}

// ticket is one admitted connection's place in the gate, given back once,
// when its Hello is verified or the connection ends, whichever is first.
type ticket struct {
	g         *gate
	src       netip.Addr
	validated bool
	once      sync.Once
}

type ticketKey struct{}

// connContext is quic.Transport.ConnContext: it admits a connection within
// the caps, or refuses it before quic-go keeps any state for it.
func (g *gate) connContext(ctx context.Context, info *quic.ClientInfo) (context.Context, error) {
	return g.admit(ctx, sourceOf(info.RemoteAddr), info.AddrVerified, viaQUIC)
}

// tcpConnContext is quicnet.Admission.TCPConnContext: the same gate for a
// TCP connection just accepted, before its TLS handshake. The TCP
// handshake proved its address.
func (g *gate) tcpConnContext(ctx context.Context, remote net.Addr) (context.Context, error) {
	return g.admit(ctx, sourceOf(remote), true, viaTCP)
}

// admit gives a connection from src a place in the gate, held by a ticket
// in the returned context until its Hello is verified (admitted) or ctx
// ends. A source past Limits.RejectsPerSource is refused whether or not
// its address was validated (verifySource).
func (g *gate) admit(ctx context.Context, src netip.Addr, validated bool, via int) (context.Context, error) {
	if g.penalized != nil && g.penalized(src) {
		g.refused[via].penalized.Add(1)
		return nil, errRefused
	}
	// An unvalidated client here while budgeted was refused a Retry
	// for want of a place (verifySource).
	budgeted := g.budgeted(src)
	if budgeted && !validated {
		g.refused[via].budget.Add(1)
		return nil, errRefused
	}
	g.mu.Lock()
	sc := g.bySource[src]
	if sc == nil {
		sc = new(sourceCount)
	}
	n := sc.all
	if validated {
		n = sc.validated
	}
	if g.pending >= g.max || n >= g.perSource {
		g.mu.Unlock()
		g.refused[via].capped.Add(1)
		return nil, errRefused
	}
	// The place is taken only once the caps let the connection in, so
	// that a connection the caps refuse does not spend it.
	if budgeted && !g.budget.take() {
		g.mu.Unlock()
		g.refused[via].budget.Add(1)
		return nil, errRefused
	}
	g.pending++
	sc.all++
	if validated {
		sc.validated++
	}
	g.bySource[src] = sc
	g.mu.Unlock()
	t := &ticket{g: g, src: src, validated: validated}
	context.AfterFunc(ctx, t.release)
	return context.WithValue(ctx, ticketKey{}, t), nil
}

func (t *ticket) release() {
	t.once.Do(func() {
		g := t.g
		g.mu.Lock()
		defer g.mu.Unlock()
		g.pending--
		sc := g.bySource[t.src]
		sc.all--
		if t.validated {
			sc.validated--
		}
		if sc.all == 0 {
			delete(g.bySource, t.src)
		}
	})
}

// admitted gives back conn's place in the gate: its Hello is verified.
func admitted(conn quicnet.Session) {
	if t, ok := conn.Context().Value(ticketKey{}).(*ticket); ok {
		t.release()
	}
}

// unverified returns how many connections wait for their Hello now.
func (g *gate) unverified() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.pending
}

// readHello reads the Hello frame into a buffer that grows with what
// arrives, rather than one of the size its header announces: a peer that
// announces a large Hello and sends nothing holds no more than it sent,
// which the stream's flow-control window bounds.
func readHello(r io.Reader, max int) (*wire.Hello, error) {
	var hdr [wire.FrameHeaderLen]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	typ := wire.FrameType(hdr[0])
	n := binary.BigEndian.Uint32(hdr[1:])
	if uint64(n) > uint64(max) {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", wire.ErrFrameTooLarge, n, max)
	}
	if typ != wire.FrameHello {
		return nil, fmt.Errorf("%w: got a %s frame where a hello frame was expected", wire.ErrMalformed, typ.Name())
	}
	var buf bytes.Buffer
	if _, err := io.CopyN(&buf, r, int64(n)); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	m, err := wire.Decode(typ, buf.Bytes())
	if err != nil {
		return nil, err
	}
	return m.(*wire.Hello), nil
}

// watchEarlyStreams refuses a connection that opens a stream besides the
// control stream before its Hello is verified: nothing else is read before
// then, and a peer that piles data on streams the relay has not accepted
// is closed rather than buffered. A stream that arrives after the Hello
// was verified (a client that raced its Welcome) is handed back by the
// returned function.
func watchEarlyStreams(ctx context.Context, conn quicnet.Session, verified *atomic.Bool) (stop func() quicnet.Stream) {
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan quicnet.Stream, 1)
	go func() {
		st, err := conn.AcceptStream(wctx)
		if err != nil {
			done <- nil
			return
		}
		if !verified.Load() {
			st.CancelRead(0)
			closeConn(conn, wire.CodeProtocol, "stream_before_hello", "a stream was opened before the hello was verified")
			done <- nil
			return
		}
		done <- st
	}()
	return func() quicnet.Stream {
		cancel()
		return <-done
	}
}
