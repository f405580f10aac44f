package relay

import (
	"slices"
	"sync/atomic"

	"github.com/postern/postern"
	"github.com/postern/postern/internal/wire"
	"github.com/postern/postern/policy"
)

// route is a binding the relay knows, and the connectors serving it now.
// Opens read it without locks: the connector list and the metadata are
// replaced whole, never changed in place.
type route struct {
	name     string
	declared bool // metadata from the relay's config, not from connectors
	meta     atomic.Pointer[routeMeta]
	conns    atomic.Pointer[[]*connectorSession]
	next     atomic.Uint32                  // round-robin cursor
	metrics  atomic.Pointer[bindingMetrics] // its counters, resolved at the first open (metrics.go)
}

// routeMeta is a binding's description in the forms the relay needs it.
type routeMeta struct {
	binding  postern.Binding
	wire     *wire.Binding // shared by every catalog that lists it: never changed
	readOnly *wire.Binding // wire with read_only set; nil for a tcp binding
	resource policy.Resource
}

func newMeta(b postern.Binding) *routeMeta {
	labels := slices.Clone(b.Labels)
	m := &routeMeta{
		binding:  b,
		wire:     &wire.Binding{Name: b.Name, Kind: b.Kind, Environment: b.Environment, Labels: labels, Description: b.Description},
		resource: policy.NewResource(b.Name, b.Kind, b.Environment, labels...),
	}
	if b.Kind != postern.KindTCP {
		m.readOnly = &wire.Binding{Name: b.Name, Kind: b.Kind, Environment: b.Environment, Labels: labels, Description: b.Description, ReadOnly: true}
	}
	return m
}

func newRoute(b postern.Binding, declared bool) *route {
	rt := &route{name: b.Name, declared: declared}
	rt.meta.Store(newMeta(b))
	rt.conns.Store(&[]*connectorSession{})
	return rt
}

// pick returns the next connector in round-robin order, skipping those in
// tried and those whose connection is gone; nil when none is left. A
// connector that missed a DialAck is picked only when no other is left.
func (rt *route) pick(tried []*connectorSession) *connectorSession {
	conns := *rt.conns.Load()
	n := len(conns)
	if n == 0 {
		return nil
	}
	start := int(rt.next.Add(1) - 1)
	var suspect *connectorSession
	for i := 0; i < n; i++ {
		c := conns[(start+i)%n]
		if slices.Contains(tried, c) || !c.alive() {
			continue
		}
		if !c.suspected() {
			return c
		}
		if suspect == nil {
			suspect = c
		}
	}
	return suspect
}

// hasOther reports whether a live connector outside tried serves rt.
func (rt *route) hasOther(tried []*connectorSession) bool {
	for _, c := range *rt.conns.Load() {
		if !slices.Contains(tried, c) && c.alive() {
			return true
		}
	}
	return false
}

func (rt *route) add(c *connectorSession) {
	conns := append(slices.Clone(*rt.conns.Load()), c)
	rt.conns.Store(&conns)
}

func (rt *route) remove(c *connectorSession) {
	conns := slices.DeleteFunc(slices.Clone(*rt.conns.Load()), func(x *connectorSession) bool { return x == c })
	rt.conns.Store(&conns)
}

func sortedSet(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return slices.Compact(c)
}
