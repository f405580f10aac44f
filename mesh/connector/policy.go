package connector

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"sync"
	"time"

	"github.com/postern/postern/internal/wire"
	"github.com/postern/postern/policy"
)

// Each relay session carries the relay's policy set: the relay sends it
// right after the Welcome and again on every reload (wire.Policy), and the
// connector decides the statements and HTTP requests of the streams that
// relay opens with it. Two relays may hold different sets; each stream is
// decided by the set of the relay that opened it. Until a set has arrived,
// and after one that fails to parse or validate, the session holds none
// and refuses every statement and request.

// policyWait bounds how long a request waits for the session's first set:
// the relay sends it right after the Welcome, and a dial may overtake it.
var policyWait = 2 * time.Second

// NoPolicyMessage is what a statement or request is refused with while the
// connector holds no policy set from the relay that opened its stream.
const NoPolicyMessage = "the connector has no policy set from the relay yet"

// relayPolicy is one relay session's policy set.
type relayPolicy struct {
	relay  string
	engine policy.Engine // holds nil until a set is accepted: deny

	first     chan struct{} // closed when the first Policy frame was handled
	firstOnce sync.Once

	mu    sync.Mutex
	state PolicyState
}

// PolicyState is what a connector holds of one relay's policy set.
type PolicyState struct {
	// Version and Hash are the last Policy frame's (wire.Policy); zero
	// before the first.
	Version uint64
	Hash    string
	// Loaded says the set of that frame is current. When false, the
	// connector refuses every statement and request through that relay,
	// and Err says why.
	Loaded bool
	// Policies is the number of policies in the current set.
	Policies int
	Err      string
}

func newRelayPolicy(relay string) *relayPolicy {
	p := &relayPolicy{relay: relay, first: make(chan struct{})}
	p.state.Err = NoPolicyMessage
	return p
}

// apply makes m's set current, or none when it cannot be built.
func (p *relayPolicy) apply(m *wire.Policy, log *slog.Logger) {
	defer p.firstOnce.Do(func() { close(p.first) })
	st := PolicyState{Version: m.Version, Hash: m.Hash}
	set, err := buildSet(m)
	if err != nil {
		p.engine.Swap(nil)
		st.Err = fmt.Sprintf("the relay's policy set (version %d) was refused: %v", m.Version, err)
		log.Error("connector: policy set refused; refusing every statement and request through this relay until the next one",
			"relay", p.relay, "version", m.Version, "hash", m.Hash, "err", err)
	} else {
		p.engine.Swap(set)
		st.Loaded, st.Policies = true, set.Len()
		log.Info("connector: policy set loaded", "relay", p.relay, "version", m.Version, "hash", m.Hash, "policies", set.Len())
	}
	p.mu.Lock()
	p.state = st
	p.mu.Unlock()
}

func buildSet(m *wire.Policy) (*policy.Set, error) {
	if m.Withheld != "" {
		return nil, fmt.Errorf("the relay withheld it: %s", m.Withheld)
	}
	srcs := make([]policy.Source, len(m.Sources))
	for i, s := range m.Sources {
		srcs[i] = policy.Source{Filename: s.Filename, Text: []byte(s.Text)}
	}
	set, err := policy.ParseSources(srcs...)
	if err != nil {
		return nil, err
	}
	if d := m.Declarations; d != nil {
		opts := policy.ValidateOptions{PrincipalAttributes: maps.Clone(d.PrincipalAttributes), DetailKeys: d.DetailKeys, Actions: d.Actions}
		if errs := set.Validate(opts); len(errs) > 0 {
			return nil, fmt.Errorf("it does not validate against the relay's declarations: %w", errs[0])
		}
	}
	return set, nil
}

func (p *relayPolicy) snapshot() PolicyState {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state
}

// current returns the set to decide with, waiting a little for the
// session's first; nil, with the reason, when there is none.
func (p *relayPolicy) current(ctx context.Context) (*policy.Engine, string) {
	select {
	case <-p.first:
	default:
		t := time.NewTimer(policyWait)
		select {
		case <-p.first:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
	if p.engine.Set() == nil {
		return nil, p.snapshot().Err
	}
	return &p.engine, ""
}

// streamPolicy is what a stream's requests or statements are decided
// with: the relay's policy set for the session, and the agent and binding
// as policy sees them, built once per stream. The agent is the identity
// the relay attested in the Dial; the binding is the service as its
// authority describes it (the relay refuses a connector that advertises
// it otherwise).
type streamPolicy struct {
	pol       *relayPolicy
	principal policy.Principal
	resource  policy.Resource
	source    netip.Addr
	details   map[string]string // the Dial's: the agent's claims, as the relay's open saw them
	audit     *slog.Logger      // with subject, session and binding (and details)
}

func newStreamPolicy(c *Connector, svc *Service, dial *wire.Dial, pol *relayPolicy) (streamPolicy, error) {
	id := dial.GetIdentity()
	var attrs map[string]any
	if a := id.GetAttributes(); len(a) > 0 {
		if err := json.Unmarshal(a, &attrs); err != nil {
			return streamPolicy{}, fmt.Errorf("the identity's attributes are not a JSON object: %w", err)
		}
	}
	p, err := policy.NewPrincipal(id.GetSubject(), id.GetGroups(), attrs)
	if err != nil {
		return streamPolicy{}, err
	}
	sp := streamPolicy{
		pol:       pol,
		principal: p,
		resource:  policy.NewResource(svc.Name, svc.Kind, svc.Environment, svc.Labels...),
		audit:     c.audit.With(slog.String("subject", id.GetSubject()), slog.String("session", dial.Session), slog.String("binding", svc.Name)),
	}
	if ap, err := netip.ParseAddrPort(dial.Source); err == nil {
		sp.source = ap.Addr().Unmap()
	}
	if ds := dial.GetDetails(); len(ds) > 0 {
		// What the agent said of the stream (postern mcp: the tool), as
		// claimed, on every statement's and request's event.
		m := make(map[string]string, len(ds))
		for _, d := range ds {
			m[d.GetKey()] = d.GetValue()
		}
		sp.details = m
		sp.audit = sp.audit.With(slog.Any("details", m))
	}
	return sp, nil
}
