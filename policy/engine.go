package policy

import "sync/atomic"

// An Engine holds the current Set for a relay and lets it be replaced while
// decisions are being made. Its zero value holds no Set and denies every
// request. It is safe for concurrent use.
type Engine struct {
	cur atomic.Pointer[generation]
}

// A generation is one Set and the channel closed when it is replaced.
type generation struct {
	set     *Set
	changed chan struct{}
}

// NewEngine returns an Engine holding s (nil denies everything).
func NewEngine(s *Set) *Engine {
	e := &Engine{}
	e.cur.Store(&generation{set: s, changed: make(chan struct{})})
	return e
}

func (e *Engine) load() *generation {
	if g := e.cur.Load(); g != nil {
		return g
	}
	// The zero Engine: install an empty generation so that Changed has a
	// channel to hand out. Losing the race to another caller is fine.
	e.cur.CompareAndSwap(nil, &generation{changed: make(chan struct{})})
	return e.cur.Load()
}

// Authorize decides req with the current Set, as [Set.Authorize] does. A
// decision that has started finishes on the Set it started with, even if
// Swap replaces it meanwhile.
func (e *Engine) Authorize(req Request) Decision {
	return e.load().set.Authorize(req)
}

// AuthorizeOpen decides whether req's principal may open req's binding
// with the current Set, as [Set.AuthorizeOpen] does.
func (e *Engine) AuthorizeOpen(req Request) Decision {
	return e.load().set.AuthorizeOpen(req)
}

// MayWrite reports, with the current Set, what [Set.MayWrite] does.
func (e *Engine) MayWrite(req Request) bool {
	return e.load().set.MayWrite(req)
}

// Set returns the current Set; nil for the zero Engine.
func (e *Engine) Set() *Set {
	return e.load().set
}

// Swap makes s the current Set and then closes the channel that Changed
// returned until now. It never blocks. Decisions are cached by each Set, so
// none that the previous Set cached is returned after Swap.
func (e *Engine) Swap(s *Set) {
	next := &generation{set: s, changed: make(chan struct{})}
	prev := e.cur.Swap(next)
	if prev == nil {
		return // the zero Engine: nobody can be waiting yet
	}
	close(prev.changed)
}

// Changed returns a channel that is closed when the current Set is replaced.
// Each Swap closes it and installs a fresh one, so call Changed again after
// it fires. To re-scope without missing a swap, use [Engine.Current], which
// returns the Set and its channel together.
func (e *Engine) Changed() <-chan struct{} {
	return e.load().changed
}

// Current returns the current Set and the channel that is closed when it is
// replaced, read together: whatever a caller derives from the Set (a
// catalog) stays valid until the channel is closed.
//
//	for {
//		set, changed := engine.Current()
//		rescope(set)
//		select {
//		case <-changed:
//		case <-ctx.Done():
//			return
//		}
//	}
func (e *Engine) Current() (*Set, <-chan struct{}) {
	g := e.load()
	return g.set, g.changed
}

// AuthorizeStatement decides one SQL statement that performs actions
// (sqlclass.Statement.Actions): req, whose Action is ignored and whose SQL
// describes the statement, is decided once per action, and the statement
// is allowed only if every action is. When allowed, the Decision's
// Policies are the permits of every action; when denied, the Decision is
// that of the first action denied, which is returned with it. A statement
// without actions is denied, with no action named.
func (e *Engine) AuthorizeStatement(req Request, actions []string) (Decision, string) {
	if len(actions) == 0 {
		return Decision{}, ""
	}
	var permits []string
	var errs []EvalError
	for _, a := range actions {
		req.Action = a
		d := e.Authorize(req)
		if !d.Allowed {
			return d, a
		}
		permits = append(permits, d.Policies...)
		errs = append(errs, d.Errors...)
	}
	return Decision{Allowed: true, Policies: permits, Errors: errs}, ""
}
