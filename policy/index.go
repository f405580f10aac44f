package policy

import (
	"iter"

	cedar "github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/types"
	xast "github.com/cedar-policy/cedar-go/x/exp/ast"
)

// An index narrows a request down to the policies whose scope can match it,
// so that a decision costs what the few relevant policies cost rather than
// all of them (cedar-go evaluates every policy it is given).
//
// It is exact because Postern builds the entity graph itself: the principal
// Agent's only ancestors are its Groups, the resource Binding's only ancestor
// is its Environment, and actions have none. A scope `principal == E`,
// `principal in E` or `principal is T in E` can therefore only match when E
// is the principal itself or one of its groups; likewise for the resource
// and the action. Each policy is filed under one entity named by its scope
// (the most selective one) and is evaluated, in full by cedar-go, only when
// that entity is among the request's principal, resource or action and
// their ancestors. A policy that is not evaluated would have failed its scope,
// which cedar-go checks before the conditions, and so could not have matched
// nor raised an error.
type index struct {
	always      []*entry // the scope names no entity: evaluated for every request
	byPrincipal map[types.EntityUID][]*entry
	byResource  map[types.EntityUID][]*entry
	byAction    map[types.EntityUID][]*entry
}

func buildIndex(entries []*entry) index {
	idx := index{
		byPrincipal: make(map[types.EntityUID][]*entry),
		byResource:  make(map[types.EntityUID][]*entry),
		byAction:    make(map[types.EntityUID][]*entry),
	}
	for _, e := range entries {
		p := (*xast.Policy)(e.policy.AST())
		pk, pRank := scopeKeys(p.Principal)
		rk, rRank := scopeKeys(p.Resource)
		ak, aRank := scopeKeys(p.Action)
		switch {
		case pRank > 0 && pRank >= rRank:
			file(idx.byPrincipal, pk, e)
		case rRank > 0:
			file(idx.byResource, rk, e)
		case aRank > 0:
			file(idx.byAction, ak, e)
		default:
			idx.always = append(idx.always, e)
		}
	}
	return idx
}

func file(m map[types.EntityUID][]*entry, keys []types.EntityUID, e *entry) {
	for _, k := range keys {
		m[k] = append(m[k], e)
	}
}

// scopeKeys returns the entities one of which a request's variable (or one of
// its ancestors) must equal for the scope to match, and how selective that
// is: 2 for ==, 1 for in, 0 when the scope names no entity. The keys of an
// action set are distinct, and a request's action has no ancestors, so a
// policy is never found twice for one request.
func scopeKeys(n xast.IsScopeNode) ([]types.EntityUID, int) {
	switch s := n.(type) {
	case xast.ScopeTypeEq:
		return []types.EntityUID{s.Entity}, 2
	case xast.ScopeTypeIn:
		return []types.EntityUID{s.Entity}, 1
	case xast.ScopeTypeIsIn:
		return []types.EntityUID{s.Entity}, 1
	case xast.ScopeTypeInSet:
		var keys []types.EntityUID
		for _, uid := range s.Entities {
			if !containsUID(keys, uid) {
				keys = append(keys, uid)
			}
		}
		if len(keys) == 0 {
			// `action in []` matches nothing; file it where it costs nothing.
			return []types.EntityUID{{}}, 1
		}
		return keys, 1
	}
	return nil, 0
}

func containsUID(s []types.EntityUID, u types.EntityUID) bool {
	for _, v := range s {
		if v == u {
			return true
		}
	}
	return false
}

// candidates is the list of buckets that one request selects from an index.
// It implements cedar.PolicyIterator.
type candidates struct {
	lists [][]*entry
}

func (c *candidates) add(l []*entry) {
	if len(l) > 0 {
		c.lists = append(c.lists, l)
	}
}

func (c *candidates) len() int {
	n := 0
	for _, l := range c.lists {
		n += len(l)
	}
	return n
}

func (c *candidates) All() iter.Seq2[cedar.PolicyID, *cedar.Policy] {
	return func(yield func(cedar.PolicyID, *cedar.Policy) bool) {
		for _, l := range c.lists {
			for _, e := range l {
				if !yield(e.id, e.policy) {
					return
				}
			}
		}
	}
}
