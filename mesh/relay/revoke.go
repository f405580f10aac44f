package relay

import (
	"log/slog"
	"sync"
	"time"

	"github.com/postern/postern/internal/quicnet"
	"github.com/postern/postern/internal/wire"
	"github.com/postern/postern/mesh/identity"
	"github.com/postern/postern/policy"
)

// Revocation: access already granted is taken away from live streams and
// sessions, not only from the next open.
//
//   - On every swap of the policy set, and on every token refresh of an
//     agent, the relay decides each live stream's open again, with the
//     current set, the current token and the current time; a stream now
//     denied is reset with STREAM_ERROR_REVOKED on both legs (the agent's
//     and the connector's, which closes the upstream connection), and the
//     agent is told why in a Revoke frame.
//   - A Revocations list (token IDs and subjects) is checked on every
//     Hello and every Refresh; when it changes, every session whose token
//     or subject it lists is ended with CODE_REVOKED, its streams first.
//
// Re-deciding takes no relay-wide lock: each agent's live streams are
// snapshot under the agent's own lock and decided outside it, so opens go
// on while thousands of streams are decided again.

// Revocations says which tokens and subjects the relay no longer accepts,
// whatever their signature and expiry say. It is the seam for a store
// shared by a cluster of relays; [RevocationList] is the one in memory,
// which postern relay loads from tokens.revocation_file.
type Revocations interface {
	// Revoked reports whether the token with ID tokenID (its jti; empty
	// when it has none) or any token of subject is revoked, and why:
	// "token_revoked" or "subject_revoked". It is called on every Hello
	// and Refresh, so it must be fast.
	Revoked(tokenID, subject string) (reason string, revoked bool)
	// Changed returns a channel that is closed at the next change of the
	// list; the relay then checks every live session again.
	Changed() <-chan struct{}
}

// Trigger values of a stream.revoked event: what made the relay decide
// the stream again.
const (
	triggerPolicy      = "policy_reload"
	triggerRefresh     = "token_refresh"
	triggerRevocations = "revocation_list"
)

// liveStream is an agent's binding stream that a connector is serving:
// what its open was decided on, so that it can be decided again, and its
// two legs, so that it can be cut.
type liveStream struct {
	a       *agentSession
	id      uint64 // the agent's QUIC stream ID
	reset   func() // resets both legs with STREAM_ERROR_REVOKED
	rt      *route
	action  string
	details map[string]string
	attrs   []slog.Attr // the open's audit attributes
	start   time.Time

	once sync.Once // cut at most once
}

// liveSet is an agent session's live streams.
type liveSet struct {
	mu sync.Mutex
	m  map[*liveStream]struct{}
}

func (s *liveSet) add(ls *liveStream) {
	s.mu.Lock()
	if s.m == nil {
		s.m = make(map[*liveStream]struct{})
	}
	s.m[ls] = struct{}{}
	s.mu.Unlock()
}

func (s *liveSet) remove(ls *liveStream) {
	s.mu.Lock()
	delete(s.m, ls)
	s.mu.Unlock()
}

func (s *liveSet) snapshot() []*liveStream {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*liveStream, 0, len(s.m))
	for ls := range s.m {
		out = append(out, ls)
	}
	return out
}

func (s *liveSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// track registers a stream that policy allowed, decided with set and
// principal p. A swap or a refresh that came after that decision but
// before the registration found nothing to re-decide: the stream checks
// itself once more, so that no change slips between the two.
func (r *Relay) track(ls *liveStream, set *policy.Set, p *policy.Principal) {
	ls.a.live.add(ls)
	if r.policy.Set() != set {
		r.redecide(ls, triggerPolicy)
	} else if ls.a.principal.Load() != p {
		r.redecide(ls, triggerRefresh)
	}
}

// redecide decides ls's open again and cuts the stream when it is now
// denied. It reports whether it cut.
func (r *Relay) redecide(ls *liveStream, trigger string) bool {
	return r.cutIfDenied(ls, r.decideAgain(ls, *ls.a.principal.Load(), time.Now()), trigger)
}

func (r *Relay) decideAgain(ls *liveStream, p policy.Principal, now time.Time) policy.Decision {
	return decideOpen(r.policy, policy.Request{
		Principal: p,
		Action:    ls.action,
		Resource:  ls.rt.meta.Load().resource,
		Time:      now,
		SourceIP:  ls.a.remoteIP,
		Details:   ls.details,
	})
}

func (r *Relay) cutIfDenied(ls *liveStream, dec policy.Decision, trigger string) bool {
	if dec.Allowed {
		return false
	}
	policies := dec.Policies
	if policies == nil {
		policies = []string{}
	}
	return ls.cut(trigger, "policy", "policy no longer allows this stream: "+dec.String(), policies)
}

// cut resets both legs of the stream with STREAM_ERROR_REVOKED, tells the
// agent why (when it asked to be told), and audits it. The reset comes
// first and at once: a Revoke frame waits behind whatever else is queued
// on the agent's control stream, and a stalled agent must not keep a
// revoked stream alive.
func (ls *liveStream) cut(trigger, reason, msg string, policies []string) bool {
	cut := false
	ls.once.Do(func() {
		cut = true
		ls.reset()
		a := ls.a
		if a.wantsRevoke {
			a.push.notify(&wire.Revoke{Stream: ls.id, Binding: ls.rt.name, Reason: reason, Message: truncate(msg, 4096), Policies: policies})
		}
		attrs := append(ls.attrs[:len(ls.attrs):len(ls.attrs)],
			slog.String("trigger", trigger),
			slog.String("code", wire.CodeRevoked.Text()),
			slog.String("reason", reason),
			slog.Any("policies", policies),
			slog.Int64("duration_ms", time.Since(ls.start).Milliseconds()))
		emit(a.audit, slog.LevelWarn, EventStreamRevoked, attrs...)
	})
	return cut
}

// revokeLegs resets an agent's stream and its connector leg with
// STREAM_ERROR_REVOKED: the agent's Read and Write fail with it, and the
// connector closes the upstream connection.
//
// The agent's send side first: its Read reports the RESET_STREAM's code,
// and the splice, which aborts both legs with STREAM_ERROR_ABORTED as soon
// as either fails, must find that code already set.
func revokeLegs(down quicnet.Stream, up *quicnet.Conn) {
	down.CancelWrite(quicnet.StreamRevoked)
	down.CancelRead(quicnet.StreamRevoked)
	up.Abort(quicnet.StreamRevoked)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// redecideAgent decides every live stream of a again; it returns how many
// it cut.
//
// The streams of one session share its principal, source and, for one
// pass, the time: streams to the same binding with the same action and no
// details get the same decision, which is made once.
func (r *Relay) redecideAgent(a *agentSession, trigger string) int {
	type key struct {
		rt     *route
		action string
	}
	p, now := *a.principal.Load(), time.Now()
	decided := make(map[key]policy.Decision)
	n := 0
	for _, ls := range a.live.snapshot() {
		var dec policy.Decision
		if len(ls.details) > 0 {
			dec = r.decideAgain(ls, p, now)
		} else {
			k := key{ls.rt, ls.action}
			var ok bool
			if dec, ok = decided[k]; !ok {
				dec = r.decideAgain(ls, p, now)
				decided[k] = dec
			}
		}
		if r.cutIfDenied(ls, dec, trigger) {
			n++
		}
	}
	return n
}

// redecideAll decides every live stream of every agent again, agents in
// parallel (at most a few at a time: deciding is CPU work, and the opens
// arriving meanwhile need the CPU too).
func (r *Relay) redecideAll(trigger string) {
	start := time.Now()
	agents := r.agentList()
	var cut, total int
	var mu sync.Mutex
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for _, a := range agents {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			n := a.live.len()
			c := r.redecideAgent(a, trigger)
			mu.Lock()
			cut += c
			total += n
			mu.Unlock()
		})
	}
	wg.Wait()
	if total > 0 {
		r.log.Info("relay: live streams decided again", "trigger", trigger, "streams", total, "cut", cut, "took", time.Since(start).Round(time.Microsecond).String())
	}
}

func (r *Relay) agentList() []*agentSession {
	r.mu.RLock()
	defer r.mu.RUnlock()
	agents := make([]*agentSession, 0, len(r.agents))
	for a := range r.agents {
		agents = append(agents, a)
	}
	return agents
}

// revokedReject returns the Reject for claims that the revocation list
// names, or nil.
func (r *Relay) revokedReject(c *identity.Claims) *wire.Reject {
	if r.cfg.Revocations == nil || c == nil {
		return nil
	}
	reason, revoked := r.cfg.Revocations.Revoked(c.ID, c.Subject)
	if !revoked {
		return nil
	}
	msg := "the relay's revocation list names this token"
	if reason == "subject_revoked" {
		msg = "the relay's revocation list names this token's subject"
	}
	return &wire.Reject{Code: wire.CodeRevoked, Reason: reason, Message: msg}
}

// endIfRevoked ends s, its live streams first, when the revocation list
// names its token or subject. It reports whether it did.
func (r *Relay) endIfRevoked(s *session, live *liveSet) bool {
	rej := r.revokedReject(s.claims.Load())
	if rej == nil {
		return false
	}
	// Not s.goaway: its write waits up to 5 s for a client that stopped
	// reading, and a revoked session must end now. The CONNECTION_CLOSE
	// carries the code and reason, and comes before any stream's reset,
	// so that the agent's streams fail with CODE_REVOKED and its reason.
	// The streams are taken before the close, which ends them.
	var streams []*liveStream
	if live != nil {
		streams = live.snapshot()
	}
	s.endReason.CompareAndSwap(nil, &rej.Reason)
	closeConn(s.conn, rej.Code, rej.Reason, rej.Message)
	for _, ls := range streams {
		ls.cut(triggerRevocations, rej.Reason, rej.Message, nil)
	}
	return true
}

// watchRevocations ends the sessions that the revocation list names, at
// every change of the list.
func (r *Relay) watchRevocations() {
	defer r.wg.Done()
	for {
		select {
		case <-r.cfg.Revocations.Changed():
		case <-r.ctx.Done():
			return
		}
		start := time.Now()
		ended := 0
		for _, a := range r.agentList() {
			if r.endIfRevoked(&a.session, &a.live) {
				ended++
			}
		}
		r.mu.RLock()
		conns := make([]*connectorSession, 0, len(r.connectors))
		for c := range r.connectors {
			conns = append(conns, c)
		}
		r.mu.RUnlock()
		for _, c := range conns {
			if r.endIfRevoked(&c.session, nil) {
				ended++
			}
		}
		r.log.Info("relay: revocation list changed; sessions checked", "ended", ended, "took", time.Since(start).Round(time.Microsecond).String())
	}
}

// ---- control pushes ----

// pusher writes an agent's catalog updates and Revoke notices on its
// control stream, from a goroutine of its own: an agent that stops
// reading its control stream holds only its own pushes, never another
// session's, and never the goroutine that triggered them. Catalogs are
// latest-wins: a push computes the catalog when it runs, so pushes that
// pile up while one is blocked collapse into one.
type pusher struct {
	kick chan struct{} // one slot

	mu      sync.Mutex
	catalog bool           // a catalog recomputation is due
	notices []*wire.Revoke // queued, bounded by maxNotices
}

// maxNotices bounds the Revoke frames queued for one agent; beyond it the
// oldest are dropped (the streams are cut regardless; only the agent's
// knowledge of the deciding policies is lost).
const maxNotices = 1024

func newPusher() pusher { return pusher{kick: make(chan struct{}, 1)} }

func (p *pusher) wake() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

func (p *pusher) rescope() {
	p.mu.Lock()
	p.catalog = true
	p.mu.Unlock()
	p.wake()
}

func (p *pusher) notify(m *wire.Revoke) {
	p.mu.Lock()
	if len(p.notices) >= maxNotices {
		p.notices = p.notices[1:]
	}
	p.notices = append(p.notices, m)
	p.mu.Unlock()
	p.wake()
}

// run serves a's pushes until its connection ends.
func (a *agentSession) runPusher() {
	done := a.conn.Context().Done()
	for {
		select {
		case <-a.push.kick:
		case <-done:
			return
		}
		a.push.mu.Lock()
		notices, catalog := a.push.notices, a.push.catalog
		a.push.notices, a.push.catalog = nil, false
		a.push.mu.Unlock()
		for _, m := range notices {
			if err := a.write(m); err != nil {
				a.r.log.Debug("relay: revoke notice failed", "session", a.id, "err", err)
				break
			}
		}
		if catalog {
			a.sendCatalog()
		}
	}
}

// sendCatalog recomputes the agent's catalog and sends it when it
// changed.
func (a *agentSession) sendCatalog() {
	if !a.alive() {
		return
	}
	a.catMu.Lock()
	defer a.catMu.Unlock()
	cat := a.r.catalogFor(a.principal.Load(), a.remoteIP)
	if sameCatalog(cat, a.catalog) {
		return
	}
	a.catalog = cat
	if err := a.write(&wire.Catalog{Bindings: cat}); err != nil {
		a.r.log.Debug("relay: catalog push failed", "session", a.id, "err", err)
	}
}

func sameCatalog(a, b []*wire.Binding) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !sameBinding(a[i], b[i]) {
			return false
		}
	}
	return true
}
