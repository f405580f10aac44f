// Package session is the client side of a Postern session with a relay,
// shared by agents (package mesh) and connectors: dial, Hello/Welcome,
// the control stream (catalog updates, goaway) and token refresh.
package session

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/postern/postern/internal/quicnet"

	"github.com/quic-go/quic-go"

	"github.com/postern/postern/internal/wire"
	"github.com/postern/postern/transport"
)

// MaxControlFrame caps frames from the relay on the control stream: a
// catalog of a few thousand bindings fits.
const MaxControlFrame = 4 << 20

// Config says how to reach a relay and who to be.
type Config struct {
	Addr string
	TLS  *tls.Config
	// TLSFor, for DialAny, gives the TLS configuration of each address
	// (its own server name); nil means TLS for all.
	TLSFor    func(addr string) *tls.Config
	Transport *transport.Config
	Role      string          // wire.RoleAgent or wire.RoleConnector
	Services  []*wire.Binding // what a connector advertises
	Client    string          // software name, for the relay's logs
	// Token returns the token to present. With Refresh set, it is called
	// again before the token in use expires, and the new one is presented
	// on the live session.
	Token   func(ctx context.Context) (string, error)
	Refresh bool
	Log     *slog.Logger
	// OnCatalog is called with each catalog the relay pushes.
	OnCatalog func([]*wire.Binding)
	// Features go in the Hello (wire.FeaturePolicy).
	Features []string
	// OnPolicy is called with each Policy frame the relay sends, in order,
	// from the goroutine that reads the control stream.
	OnPolicy func(*wire.Policy)
	// SuspectAfter, when positive, closes Suspect once nothing at all has
	// come from the relay for that long: with keep-alives well under it,
	// a silent relay is gone or unreachable, long before the idle timeout
	// says so. Zero turns the watch off; so does a transport session that
	// is not a Hearing.
	SuspectAfter time.Duration
	// OnRevoke is called with each Revoke frame the relay sends (agents
	// that list wire.FeatureRevoke), from the same goroutine.
	OnRevoke func(*wire.Revoke)
}

// RejectError is a refusal from the relay: a Reject answering the Hello,
// or the reason in the relay's CONNECTION_CLOSE when the Reject frame was
// lost.
type RejectError struct {
	Code    wire.Code
	Reason  string
	Message string
}

func rejectError(code wire.Code, reason, msg string) *RejectError {
	return &RejectError{Code: code, Reason: reason, Message: msg}
}

func (e *RejectError) Error() string {
	return fmt.Sprintf("relay refused: %s (%s): %s", e.Code.Text(), e.Reason, e.Message)
}

// ErrTokenSource wraps an error of Config.Token.
var ErrTokenSource = errors.New("token source")

// Session is a live session. Its goroutines stop when the connection ends
// or Close is called.
type Session struct {
	Conn    quicnet.Session
	Welcome *wire.Welcome

	cfg       Config
	ctrl      quicnet.Stream
	ctrlMu    sync.Mutex
	refreshed chan wire.Message
	expires   atomic.Int64 // unix ms of the token in use; 0 unknown

	suspect       context.Context // done once watch finds the relay silent, or the session ends
	suspectCancel context.CancelFunc

	wg      sync.WaitGroup
	endOnce sync.Once
	done    chan struct{}
	err     error
}

// Dial connects to the relay and completes the handshake within ctx.
func Dial(ctx context.Context, cfg Config) (*Session, error) {
	tok, err := cfg.Token(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTokenSource, err)
	}
	if tok == "" {
		return nil, fmt.Errorf("%w: empty token", ErrTokenSource)
	}
	return dial(ctx, cfg, tok)
}

// dial is Dial with the token in hand.
func dial(ctx context.Context, cfg Config, tok string) (*Session, error) {
	conn, err := quicnet.Dial(ctx, cfg.Addr, cfg.TLS, cfg.Transport)
	if err != nil {
		return nil, err
	}
	s := &Session{Conn: conn, cfg: cfg, refreshed: make(chan wire.Message, 1), done: make(chan struct{})}
	s.suspect, s.suspectCancel = context.WithCancel(context.Background())
	if s.cfg.Log == nil {
		s.cfg.Log = slog.New(slog.DiscardHandler)
	}
	if err := s.handshake(ctx, tok); err != nil {
		s.suspectCancel()
		conn.CloseWithError(quic.ApplicationErrorCode(wire.CodeOK), "")
		return nil, err
	}
	s.expires.Store(int64(s.Welcome.ExpiresUnixMs))
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.readControl()
	}()
	if h := hearing(conn); cfg.SuspectAfter > 0 && h != nil {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.watch(h, cfg.SuspectAfter)
		}()
	}
	if cfg.Refresh && s.Welcome.ExpiresUnixMs != 0 {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.refreshLoop()
		}()
	}
	return s, nil
}

func (s *Session) handshake(ctx context.Context, tok string) error {
	ctrl, err := s.Conn.OpenStreamSync(ctx)
	if err != nil {
		return err
	}
	s.ctrl = ctrl
	stop := DeadlineFromContext(ctx, ctrl)
	defer stop()
	hello := &wire.Hello{Version: wire.Version, Role: s.cfg.Role, Token: tok, Services: s.cfg.Services, Client: s.cfg.Client, Features: s.cfg.Features}
	if err := wire.WriteFrame(ctrl, hello); err != nil {
		return s.connErr(err)
	}
	m, err := wire.ReadFrame(ctrl, MaxControlFrame)
	if err != nil {
		return s.connErr(err)
	}
	switch m := m.(type) {
	case *wire.Welcome:
		s.Welcome = m
		return nil
	case *wire.Reject:
		return rejectError(m.Code, m.Reason, m.Message)
	}
	return fmt.Errorf("%w: relay answered hello with a %s frame", wire.ErrMalformed, m.FrameType().Name())
}

// connErr prefers the relay's stated reason, carried in its
// CONNECTION_CLOSE, over the bare stream error.
func (s *Session) connErr(err error) error {
	if rej := CloseReason(err); rej != nil {
		return rej
	}
	if rej := CloseReason(context.Cause(s.Conn.Context())); rej != nil {
		return rej
	}
	return err
}

// CloseReason decodes the reason a relay put in its CONNECTION_CLOSE
// ("reason: message" under a wire code); nil when err is not one.
func CloseReason(err error) *RejectError {
	var ae *quic.ApplicationError
	if !errors.As(err, &ae) || !ae.Remote || ae.ErrorCode == 0 || ae.ErrorCode > 255 {
		return nil
	}
	reason, msg, _ := strings.Cut(ae.ErrorMessage, ": ")
	return rejectError(wire.Code(ae.ErrorCode), reason, msg)
}

// DeadlineFromContext makes reads and writes on st fail when ctx ends. The
// returned function undoes it: once it returns, st has no deadline, even
// when ctx ended meanwhile.
func DeadlineFromContext(ctx context.Context, st interface{ SetDeadline(time.Time) error }) (stop func()) {
	if d, ok := ctx.Deadline(); ok {
		st.SetDeadline(d)
	}
	ended := make(chan struct{})
	cancel := context.AfterFunc(ctx, func() {
		defer close(ended)
		st.SetDeadline(time.Now())
	})
	return func() {
		if !cancel() {
			// ctx ended and its deadline is being set: let that land
			// first, or it would cut a stream the caller goes on using.
			<-ended
		}
		st.SetDeadline(time.Time{})
	}
}

// Addr is the relay's address, as dialed.
func (s *Session) Addr() string { return s.cfg.Addr }

// Done is closed when the session has ended.
func (s *Session) Done() <-chan struct{} { return s.done }

// Suspect is closed when the relay has been silent for
// Config.SuspectAfter, or the session has ended: either way, new opens
// belong elsewhere. Streams already open go on until the connection's
// idle timeout ends them, or the relay is heard from again.
func (s *Session) Suspect() <-chan struct{} { return s.suspect.Done() }

// AfterSuspect calls f in its own goroutine once Suspect is closed, as
// context.AfterFunc does; stop undoes it.
func (s *Session) AfterSuspect(f func()) (stop func() bool) { return context.AfterFunc(s.suspect, f) }

// Hearing is what a transport's session tells of its peer, for the
// silence watch (Config.SuspectAfter): a count that grows with every
// packet or frame received, and the smoothed round-trip time. A QUIC
// session has it through quic-go's ConnectionStats; a session of another
// transport that lacks it is not watched, and relies on its own idle
// timeout.
type Hearing interface {
	Heard() (received uint64, rtt time.Duration)
}

// hearing returns c's Hearing, or nil.
func hearing(c quicnet.Session) Hearing {
	switch c := c.(type) {
	case Hearing:
		return c
	case interface{ ConnectionStats() quic.ConnectionStats }:
		return quicStats{c}
	}
	return nil
}

type quicStats struct {
	c interface{ ConnectionStats() quic.ConnectionStats }
}

func (q quicStats) Heard() (uint64, time.Duration) {
	st := q.c.ConnectionStats()
	return st.PacketsReceived, st.SmoothedRTT
}

// watch closes suspect once nothing has arrived for d. Keep-alives make
// the relay answer at least every keep-alive period, so silence is not
// idleness.
func (s *Session) watch(h Hearing, d time.Duration) {
	tick := time.NewTicker(max(d/10, 10*time.Millisecond))
	defer tick.Stop()
	last, _ := h.Heard()
	heard := time.Now()
	for {
		select {
		case <-s.done:
			return
		case now := <-tick.C:
			n, rtt := h.Heard()
			// A keep-alive's answer takes a round trip: on a long path,
			// silence lasts that much longer before it means anything
			// (up to half as long again, so that a round-trip estimate
			// inflated by a loaded machine cannot put it past the idle
			// timeout).
			if n != last {
				last, heard = n, now
			} else if now.Sub(heard) >= d+min(2*rtt, d/2) {
				s.cfg.Log.Warn("relay silent; new opens go elsewhere", "relay", s.cfg.Addr, "silent", now.Sub(heard).Round(time.Millisecond))
				s.suspectCancel()
				return
			}
		}
	}
}

// Alive reports whether the session is up.
func (s *Session) Alive() bool {
	select {
	case <-s.done:
		return false
	default:
		return s.Conn.Context().Err() == nil
	}
}

// Err says why the session ended; nil while it is up.
func (s *Session) Err() error {
	select {
	case <-s.done:
		return s.err
	default:
		return nil
	}
}

// ExpiresAt is the expiry of the token the relay holds for the session.
func (s *Session) ExpiresAt() time.Time {
	if ms := s.expires.Load(); ms != 0 {
		return time.UnixMilli(ms)
	}
	return time.Time{}
}

// Close ends the session (if it has not ended) and waits for its
// goroutines.
func (s *Session) Close() {
	s.end(net.ErrClosed)
	s.wg.Wait()
}

func (s *Session) end(err error) {
	s.endOnce.Do(func() {
		if rej := CloseReason(err); rej != nil {
			err = rej
		}
		s.err = err
		close(s.done)
		s.suspectCancel()
		s.Conn.CloseWithError(quic.ApplicationErrorCode(wire.CodeOK), "")
	})
}

// End ends the session with err as its reason, without waiting.
func (s *Session) End(err error) { s.end(err) }

func (s *Session) readControl() {
	for {
		m, err := wire.ReadFrame(s.ctrl, MaxControlFrame)
		if err != nil {
			s.end(s.connErr(err))
			return
		}
		switch m := m.(type) {
		case *wire.Catalog:
			if s.cfg.OnCatalog != nil {
				s.cfg.OnCatalog(m.Bindings)
			}
		case *wire.Policy:
			if s.cfg.OnPolicy != nil {
				s.cfg.OnPolicy(m)
			}
		case *wire.Revoke:
			if s.cfg.OnRevoke != nil {
				s.cfg.OnRevoke(m)
			}
		case *wire.Refreshed, *wire.Reject:
			select {
			case s.refreshed <- m:
			default:
			}
		case *wire.Goaway:
			s.cfg.Log.Warn("relay ends the session", "relay", s.cfg.Addr, "code", m.Code.Text(), "reason", m.Reason, "message", m.Message)
			s.end(rejectError(m.Code, m.Reason, m.Message))
			return
		default:
			s.cfg.Log.Warn("unexpected frame on the control stream", "frame", m.FrameType().Name())
		}
	}
}

// refreshLoop presents a fresh token before the one in use expires, for as
// long as the session lives. A refused refresh is logged; the relay ends
// the session when the old token expires.
func (s *Session) refreshLoop() {
	for {
		wait := max(time.Until(s.ExpiresAt())*4/5, time.Second)
		t := time.NewTimer(wait)
		select {
		case <-s.done:
			t.Stop()
			return
		case <-t.C:
		}
		if err := s.RefreshNow(); err != nil {
			s.cfg.Log.Warn("token refresh failed; the session ends when the token expires", "relay", s.cfg.Addr, "err", err)
			if time.Until(s.ExpiresAt()) < time.Second {
				return
			}
		}
	}
}

// RefreshNow presents a token from Config.Token on the live session and
// waits for the relay's answer.
func (s *Session) RefreshNow() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go func() {
		select {
		case <-s.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	tok, err := s.cfg.Token(ctx)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrTokenSource, err)
	}
	s.ctrlMu.Lock()
	// An answer that came after an earlier refresh gave up must not pass
	// for the answer to this one.
	select {
	case <-s.refreshed:
	default:
	}
	s.ctrl.SetWriteDeadline(time.Now().Add(5 * time.Second))
	err = wire.WriteFrame(s.ctrl, &wire.Refresh{Token: tok})
	s.ctrl.SetWriteDeadline(time.Time{})
	s.ctrlMu.Unlock()
	if err != nil {
		return err
	}
	select {
	case m := <-s.refreshed:
		switch m := m.(type) {
		case *wire.Refreshed:
			s.expires.Store(int64(m.ExpiresUnixMs))
			s.cfg.Log.Info("token refreshed", "relay", s.cfg.Addr, "expires", m.ExpiresAt())
			return nil
		case *wire.Reject:
			return rejectError(m.Code, m.Reason, m.Message)
		}
	case <-ctx.Done():
	}
	return errors.New("no answer from the relay to a token refresh")
}
