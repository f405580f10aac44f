package relay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/postern/postern"
	"github.com/postern/postern/internal/quicnet"

	"github.com/postern/postern/internal/wire"
	"github.com/postern/postern/mesh/identity"
	"github.com/postern/postern/policy"
)

// session is what agent and connector sessions share: the connection, its
// control stream and the verified identity.
type session struct {
	r        *Relay
	id       string
	conn     quicnet.Session
	ctrl     quicnet.Stream
	ctrlMu   sync.Mutex // serializes writes on ctrl
	remote   string
	remoteIP netip.Addr
	started  time.Time
	claims   atomic.Pointer[identity.Claims]
	// provenKey is the thumbprint of the key the client proved in its
	// handshake; "" when none.
	provenKey string

	// expiry fires when the current token expires; a refresh moves it.
	expiryMu sync.Mutex
	expiry   *time.Timer

	endReason atomic.Pointer[string]
}

func (s *session) alive() bool { return s.conn.Context().Err() == nil }

// write sends a control frame, bounded so that a client that stopped
// reading cannot hold the relay.
func (s *session) write(m wire.Message) error {
	s.ctrlMu.Lock()
	defer s.ctrlMu.Unlock()
	s.ctrl.SetWriteDeadline(time.Now().Add(5 * time.Second))
	err := wire.WriteFrame(s.ctrl, m)
	s.ctrl.SetWriteDeadline(time.Time{})
	if errors.Is(err, os.ErrDeadlineExceeded) {
		// Part of the frame may be out: the control stream can carry no
		// further frame, and a client that has not read it for the write
		// deadline has stopped reading it. The session ends.
		reason := "control_stream_stalled"
		s.endReason.CompareAndSwap(nil, &reason)
		closeConn(s.conn, wire.CodeTimeout, reason, "the client did not read its control stream")
	}
	return err
}

// goaway tells the client why the session ends, then ends it.
func (s *session) goaway(code wire.Code, reason, msg string) {
	s.endReason.CompareAndSwap(nil, &reason)
	s.write(&wire.Goaway{Code: code, Reason: reason, Message: msg})
	closeConn(s.conn, code, reason, msg)
}

// armExpiry ends the session when the token expires, unless a refresh
// comes first. The token expires when the verifier starts refusing it,
// at exp plus its leeway: a token the verifier welcomed inside its
// leeway must not be sent a goaway at once.
func (s *session) armExpiry(exp time.Time) {
	s.expiryMu.Lock()
	defer s.expiryMu.Unlock()
	if s.expiry != nil {
		s.expiry.Stop()
	}
	if exp.IsZero() {
		return
	}
	s.expiry = time.AfterFunc(time.Until(exp.Add(s.r.cfg.Verifier.Leeway())), func() {
		s.goaway(wire.CodeUnauthenticated, identity.Reason(identity.ErrExpired), "the session's token expired and was not refreshed")
	})
}

func (s *session) stopExpiry() {
	s.expiryMu.Lock()
	defer s.expiryMu.Unlock()
	if s.expiry != nil {
		s.expiry.Stop()
	}
}

// readControl serves the control stream after the handshake: token
// refreshes. It returns when the stream or the connection ends.
func (s *session) readControl(role identity.Role, onRefresh func(*identity.Claims) *wire.Reject) {
	for {
		m, err := wire.ReadFrame(s.ctrl, s.r.limits.MaxFrameSize)
		if err != nil {
			return
		}
		switch m := m.(type) {
		case *wire.Refresh:
			claims, rej := s.r.verify(m.Token, role)
			if rej == nil && claims.Subject != s.claims.Load().Subject {
				rej = &wire.Reject{Code: wire.CodeUnauthenticated, Reason: "subject_changed", Message: "a refreshed token must have the session's subject"}
			}
			if rej == nil {
				rej = s.r.checkKey(claims, s.provenKey)
			}
			if rej == nil && claims.BoundKey != s.claims.Load().BoundKey {
				// The proof above holds for a token bound to the
				// connection's key, and there is no other; what is left is
				// a bound session refreshed with a bearer token.
				rej = &wire.Reject{Code: wire.CodeKeyNotProven, Reason: "binding_changed",
					Message: "a session that started with a token bound to a key is refreshed only with tokens bound to it"}
			}
			if rej == nil && onRefresh != nil {
				rej = onRefresh(claims)
			}
			if rej != nil {
				s.r.log.Warn("relay: token refresh refused", "session", s.id, "reason", rej.Reason)
				s.write(rej)
				continue
			}
			s.claims.Store(claims)
			s.armExpiry(claims.ExpiresAt)
			s.write(&wire.Refreshed{ExpiresUnixMs: wire.UnixMs(claims.ExpiresAt)})
		case *wire.Goaway:
			reason := "client_goaway: " + m.Reason
			s.endReason.CompareAndSwap(nil, &reason)
		default:
			s.goaway(wire.CodeProtocol, "unexpected_frame", fmt.Sprintf("a %s frame is not valid on the control stream", m.FrameType().Name()))
			return
		}
	}
}

func (s *session) auditAttrs(role string) []slog.Attr {
	c := s.claims.Load()
	return []slog.Attr{
		slog.String("session", s.id),
		slog.String("role", role),
		slog.String("subject", c.Subject),
		slog.Any("groups", c.Groups),
		slog.String("remote", s.remote),
		slog.Bool("key_bound", c.BoundKey != ""),
	}
}

// refuse answers the handshake with rej, closes the connection and audits
// the refusal.
func (s *session) refuse(role string, rej *wire.Reject) {
	s.r.m.handshakeFailed(role, rej.Reason)
	s.r.reject(s.conn, s.ctrl, rej)
	emit(s.r.audit, slog.LevelWarn, EventSessionReject, append(s.auditAttrs(role),
		slog.String("code", rej.Code.Text()), slog.String("reason", rej.Reason), slog.String("message", rej.Message))...)
}

func (s *session) end(role string) {
	s.stopExpiry()
	reason := "closed"
	if p := s.endReason.Load(); p != nil {
		reason = *p
	} else if err := context.Cause(s.conn.Context()); err != nil {
		reason = err.Error()
	}
	attrs := append(s.auditAttrs(role),
		slog.String("reason", reason),
		slog.Int64("duration_ms", time.Since(s.started).Milliseconds()))
	emit(s.r.audit, slog.LevelInfo, EventSessionEnd, attrs...)
}

// ---- agents ----

type agentSession struct {
	session
	audit     *slog.Logger // r.audit with the session and subject, pre-encoded once
	principal atomic.Pointer[policy.Principal]
	ident     atomic.Pointer[wire.Identity] // as sent to connectors
	streams   atomic.Int64                  // binding streams open now

	stallMu  sync.Mutex
	stalling map[*stallStream]struct{} // streams past their Result, for the stall watch

	catMu   sync.Mutex
	catalog []*wire.Binding // as last sent

	wantsRevoke bool    // its Hello lists wire.FeatureRevoke
	live        liveSet // streams a connector serves now, for revocation
	push        pusher  // catalog and Revoke frames, sent on their own
}

// setClaims derives what opens need from verified claims: the Cedar
// principal, converted once per token rather than once per open, and the
// identity sent to connectors.
func (a *agentSession) setClaims(c *identity.Claims) error {
	p, err := policy.NewPrincipal(c.Subject, c.Groups, c.Attributes)
	if err != nil {
		return err
	}
	a.principal.Store(&p)
	var attrs []byte
	if len(c.Attributes) > 0 {
		attrs, _ = json.Marshal(c.Attributes)
	}
	a.ident.Store(&wire.Identity{Subject: c.Subject, Role: wire.RoleAgent, Groups: c.Groups, Attributes: attrs})
	return nil
}

func (r *Relay) serveAgent(a *agentSession) {
	claims := a.claims.Load()
	if err := a.setClaims(claims); err != nil {
		a.refuse(wire.RoleAgent, &wire.Reject{Code: wire.CodeUnauthenticated, Reason: identity.Reason(identity.ErrInvalidClaim),
			Message: "the token's attributes cannot be used by policy: " + err.Error()})
		return
	}
	if r.draining.Load() {
		a.refuse(wire.RoleAgent, &wire.Reject{Code: wire.CodeShutdown, Reason: "relay_shutdown", Message: "the relay is shutting down"})
		return
	}
	a.audit = r.audit.With(slog.String("session", a.id), slog.String("subject", claims.Subject))
	a.push = newPusher()
	r.mu.Lock()
	r.agents[a] = struct{}{}
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.agents, a)
		r.mu.Unlock()
	}()
	// Checked again now that the session is registered: a list change
	// since the Hello was checked, that the watcher's look at the
	// sessions missed, is caught here.
	if rej := r.revokedReject(claims); rej != nil {
		a.refuse(wire.RoleAgent, rej)
		return
	}

	a.catMu.Lock()
	a.catalog = r.catalogFor(a.principal.Load(), a.remoteIP)
	welcome := &wire.Welcome{
		Session:       a.id,
		Identity:      a.ident.Load(),
		Catalog:       a.catalog,
		Limits:        &wire.Limits{MaxStreams: uint64(r.limits.StreamsPerAgent), MaxFrameSize: uint64(r.limits.MaxFrameSize)},
		ExpiresUnixMs: wire.UnixMs(claims.ExpiresAt),
	}
	err := a.write(welcome)
	a.catMu.Unlock()
	if err != nil {
		closeConn(a.conn, wire.CodeProtocol, "welcome_failed", "could not send the welcome")
		return
	}
	a.armExpiry(claims.ExpiresAt)
	emit(r.audit, slog.LevelInfo, EventSessionStart, append(a.auditAttrs(wire.RoleAgent),
		slog.Int("bindings", len(welcome.Catalog)))...)
	r.m.sessionStarted(wire.RoleAgent)
	defer r.m.sessionEnded(wire.RoleAgent)
	defer a.end(wire.RoleAgent)

	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		a.runPusher()
	}()
	go func() {
		defer wg.Done()
		a.readControl(identity.RoleAgent, func(c *identity.Claims) *wire.Reject {
			if err := a.setClaims(c); err != nil {
				return &wire.Reject{Code: wire.CodeUnauthenticated, Reason: identity.Reason(identity.ErrInvalidClaim),
					Message: "the token's attributes cannot be used by policy: " + err.Error()}
			}
			a.pushCatalog()
			// The new token may grant less (fewer groups, other
			// attributes): its live streams are decided again.
			r.redecideAgent(a, triggerRefresh)
			return nil
		})
		// The control stream is the session: when it ends, so does the
		// connection.
		closeConn(a.conn, wire.CodeOK, "closed", "control stream ended")
	}()
	for {
		st, err := a.conn.AcceptStream(r.ctx)
		if err != nil {
			break
		}
		r.streamStarted()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer r.streamEnded()
			r.serveStream(a, st)
		}()
	}
	wg.Wait()
}

// pushCatalog has the agent's pusher recompute its catalog and send it
// when it changed. It does not wait.
func (a *agentSession) pushCatalog() { a.push.rescope() }

func sameBinding(a, b *wire.Binding) bool {
	return a.Name == b.Name && a.Kind == b.Kind && a.Environment == b.Environment &&
		a.Description == b.Description && a.ReadOnly == b.ReadOnly && slices.Equal(a.Labels, b.Labels)
}

// ---- connectors ----

type connectorSession struct {
	session
	services []string
	// described holds, per service advertised, the description policy
	// reads, as its authority gave it when the session began.
	described []postern.Binding

	acks        bool      // its Hello lists wire.FeatureDialAck
	keepsAlive  bool      // its Hello lists wire.FeatureKeepAlive
	heardN      uint64    // packets received at the watch's last look (watch goroutine only)
	heardAt     time.Time // when that count last changed (watch goroutine only)
	ackWatch    ackWatch
	suspect     atomic.Int64 // until when (Unix ns) it gets opens only when no other connector is left: it missed a DialAck
	wantsPolicy bool         // its Hello lists wire.FeaturePolicy
	policyMu    sync.Mutex   // serializes policy pushes
	policySent  uint64       // the version last sent
	welcomed    bool         // the Welcome is out: Policy frames may follow
}

func (c *connectorSession) name() string { return c.claims.Load().Subject }

func (r *Relay) serveConnector(c *connectorSession, services []*wire.Binding) {
	claims := c.claims.Load()
	described, rej := r.checkServices(claims, services)
	if rej != nil {
		c.refuse(wire.RoleConnector, rej)
		return
	}
	c.described = described
	for _, s := range services {
		c.services = append(c.services, s.Name)
	}
	if rej := r.register(c); rej != nil {
		c.refuse(wire.RoleConnector, rej)
		return
	}
	defer r.unregisterAndRescope(c)
	if rej := r.revokedReject(claims); rej != nil { // as for agents
		c.refuse(wire.RoleConnector, rej)
		return
	}

	welcome := &wire.Welcome{
		Session:       c.id,
		Identity:      &wire.Identity{Subject: claims.Subject, Role: wire.RoleConnector, Groups: claims.Groups},
		Limits:        &wire.Limits{MaxFrameSize: uint64(r.limits.MaxFrameSize)},
		ExpiresUnixMs: wire.UnixMs(claims.ExpiresAt),
	}
	if err := c.write(welcome); err != nil {
		closeConn(c.conn, wire.CodeProtocol, "welcome_failed", "could not send the welcome")
		return
	}
	// The set, before anything else: dials may follow at once, and the
	// connector refuses their statements and requests until it has one.
	c.policyMu.Lock()
	c.welcomed = true
	c.policyMu.Unlock()
	c.pushPolicy()
	c.armExpiry(claims.ExpiresAt)
	emit(r.audit, slog.LevelInfo, EventSessionStart, append(c.auditAttrs(wire.RoleConnector),
		slog.Any("services", c.services))...)
	r.m.sessionStarted(wire.RoleConnector)
	defer r.m.sessionEnded(wire.RoleConnector)
	defer c.end(wire.RoleConnector)
	r.rescopeIfNew()

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		// Connectors open no streams of their own: refuse any.
		for {
			st, err := c.conn.AcceptStream(r.ctx)
			if err != nil {
				return
			}
			st.CancelRead(quicnet.StreamRefused)
			st.CancelWrite(quicnet.StreamRefused)
		}
	}()
	// A refreshed token must still grant every service advertised, and
	// describe each as before: otherwise revoking a service, or changing
	// what it is, in the next token would not reach the live session.
	c.readControl(identity.RoleConnector, func(claims *identity.Claims) *wire.Reject {
		next, rej := r.checkServices(claims, services)
		if rej != nil {
			return rej
		}
		for i, b := range next {
			if field, now, was := differs(b, c.described[i]); field != "" {
				return &wire.Reject{Code: wire.CodeDenied, Reason: "service_mismatch", Message: fmt.Sprintf(
					"service %q: the refreshed token describes its %s as %s, but the session serves it as %s; reconnect with the new token",
					b.Name, field, now, was)}
			}
		}
		return nil
	})
	closeConn(c.conn, wire.CodeOK, "closed", "control stream ended")
	wg.Wait()
}

// checkServices refuses a connector that advertises what its token does not
// grant, a kind the relay does not serve, a name twice, or a service whose
// description nobody with the authority to give it has given, or that its
// Hello contradicts. It returns, for each service, the description policy
// reads: kind, environment and labels from the relay's configuration (a
// declared binding) or else from the connector's token, never from the
// Hello alone; the free-text description from the Hello unless declared.
func (r *Relay) checkServices(claims *identity.Claims, services []*wire.Binding) ([]postern.Binding, *wire.Reject) {
	seen := make(map[string]bool, len(services))
	out := make([]postern.Binding, 0, len(services))
	for _, s := range services {
		if seen[s.Name] {
			return nil, &wire.Reject{Code: wire.CodeProtocol, Reason: "duplicate_service", Message: fmt.Sprintf("service %q advertised twice", s.Name)}
		}
		seen[s.Name] = true
		if err := claims.MayAdvertise(s.Name); err != nil {
			return nil, &wire.Reject{Code: wire.CodeDenied, Reason: identity.Reason(err), Message: err.Error()}
		}
		if !postern.ValidKind(s.Kind) {
			return nil, &wire.Reject{Code: wire.CodeUnsupported, Reason: "unsupported_kind", Message: fmt.Sprintf("service %q has kind %q; the relay serves tcp, http and postgres", s.Name, s.Kind)}
		}
		b, rej := r.authority(claims, s)
		if rej != nil {
			return nil, rej
		}
		out = append(out, b)
	}
	return out, nil
}

// authority returns what policy reads of the service s advertises, from
// whoever may say it: the relay's configuration first, then the
// connector's token. A Hello that disagrees is refused, naming the field.
func (r *Relay) authority(claims *identity.Claims, s *wire.Binding) (postern.Binding, *wire.Reject) {
	granted, _ := claims.Service(s.Name)
	var auth postern.Binding
	var source string
	r.mu.RLock()
	rt := r.routes[s.Name]
	r.mu.RUnlock()
	switch {
	case rt != nil && rt.declared:
		auth = rt.meta.Load().binding
		source = "the relay's configuration"
		if granted.Described() {
			tok := postern.Binding{Name: s.Name, Kind: granted.Kind, Environment: granted.Environment, Labels: granted.Labels}
			if field, said, want := differs(tok, auth); field != "" {
				return postern.Binding{}, &wire.Reject{Code: wire.CodeDenied, Reason: "service_mismatch", Message: fmt.Sprintf(
					"service %q: the connector's token describes its %s as %s, but the relay's configuration declares %s; re-issue the token to match the declaration, or grant the name alone",
					s.Name, field, said, want)}
			}
		}
	case granted.Described():
		auth = postern.Binding{Name: s.Name, Kind: granted.Kind, Environment: granted.Environment, Labels: slices.Clone(granted.Labels), Description: s.Description}
		source = "its token"
	default:
		return postern.Binding{}, &wire.Reject{Code: wire.CodeDenied, Reason: "service_undescribed", Message: fmt.Sprintf(
			"service %q: the connector's token grants the name only and the relay's configuration does not declare it, so nothing trusted says what policy should read of it (kind, environment, labels); "+
				"issue the connector's token with a description (postern token issue --role connector --service %s:%s:ENVIRONMENT[:LABEL,...]) or declare the binding under bindings: in relay.yaml",
			s.Name, s.Name, s.Kind)}
	}
	hello := postern.Binding{Name: s.Name, Kind: s.Kind, Environment: s.Environment, Labels: s.Labels}
	if field, said, want := differs(hello, auth); field != "" {
		return postern.Binding{}, &wire.Reject{Code: wire.CodeDenied, Reason: "service_mismatch", Message: fmt.Sprintf(
			"service %q: the connector advertises its %s as %s, but %s says %s; a connector may not describe a service otherwise than its authority: fix the connector's configuration",
			s.Name, field, said, source, want)}
	}
	return auth, nil
}

// differs names the first of kind, environment and labels in which a
// differs from b, with both values as a message shows them; "" when they
// agree. Labels are compared as sets.
func differs(a, b postern.Binding) (field, av, bv string) {
	switch {
	case a.Kind != b.Kind:
		return "kind", fmt.Sprintf("%q", a.Kind), fmt.Sprintf("%q", b.Kind)
	case a.Environment != b.Environment:
		return "environment", fmt.Sprintf("%q", a.Environment), fmt.Sprintf("%q", b.Environment)
	case !slices.Equal(sortedSet(a.Labels), sortedSet(b.Labels)):
		return "labels", labelList(a.Labels), labelList(b.Labels)
	}
	return "", "", ""
}

func labelList(l []string) string {
	if len(l) == 0 {
		return "none"
	}
	return fmt.Sprintf("%q", l)
}

// register adds c to the routes of its services, under the descriptions
// checkServices established. While a connector serves a binding, a later
// connector whose token describes it otherwise is refused: two
// authorities disagree, and policy must not decide on whichever spoke
// last. Once no connector serves an undeclared binding, the next trusted
// description replaces the old one: a token is the issuer's signed word,
// and a relay that restarted, or another relay, would take it too. A
// name-only grant can never relabel anything, since checkServices refuses
// it for an undeclared binding.
func (r *Relay) register(c *connectorSession) *wire.Reject {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, b := range c.described {
		rt := r.routes[b.Name]
		if rt == nil || len(*rt.conns.Load()) == 0 {
			continue
		}
		meta := rt.meta.Load().binding
		if field, said, was := differs(b, meta); field != "" {
			return &wire.Reject{Code: wire.CodeDenied, Reason: "service_mismatch", Message: fmt.Sprintf(
				"service %q: the connector's token describes its %s as %s, but a connector serving it now has a token that says %s; "+
					"tokens that describe one service differently are refused while both are live (re-issue them alike, or declare the binding in relay.yaml)",
				b.Name, field, said, was)}
		}
	}
	for _, b := range c.described {
		rt := r.routes[b.Name]
		switch {
		case rt == nil:
			rt = newRoute(b, false)
			r.routes[b.Name] = rt
			r.catalogGen++
		case !rt.declared && len(*rt.conns.Load()) == 0:
			// Back in the catalogs (catalogFor leaves out an undeclared
			// binding nobody serves), perhaps with a new description.
			if !sameDescription(rt.meta.Load().binding, b) {
				rt.meta.Store(newMeta(b))
			}
			r.catalogGen++
		}
		rt.add(c)
	}
	r.connectors[c] = struct{}{}
	return nil
}

// sameDescription reports whether a and b describe a binding alike, for
// policy (kind, environment, labels) and for people (the description).
func sameDescription(a, b postern.Binding) bool {
	field, _, _ := differs(a, b)
	return field == "" && a.Description == b.Description
}

func (r *Relay) unregister(c *connectorSession) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, name := range c.services {
		if rt := r.routes[name]; rt != nil {
			rt.remove(c)
			if !rt.declared && len(*rt.conns.Load()) == 0 {
				r.catalogGen++ // it leaves the catalogs
			}
		}
	}
	delete(r.connectors, c)
}

// unregisterAndRescope unregisters c and pushes the catalogs that lose
// the bindings only c served.
func (r *Relay) unregisterAndRescope(c *connectorSession) {
	r.unregister(c)
	if !r.closed.Load() {
		r.rescopeIfNew()
	}
}

// rescopeIfNew pushes catalogs when connectors brought bindings the relay
// did not know, or changed one's description.
func (r *Relay) rescopeIfNew() {
	r.mu.Lock()
	changed := r.catalogGen != r.pushedGen
	r.pushedGen = r.catalogGen
	r.mu.Unlock()
	if changed {
		r.rescopeAll()
	}
}
