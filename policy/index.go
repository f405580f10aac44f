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
// is its Environment, and an action's ancestors are those of the fixed
// hierarchy (sql:drop in ddl in write; an unknown action has none). A scope
// `principal == E`, `principal in E` or `principal is T in E` can therefore
// only match when E is the principal itself or one of its groups; likewise
// for the resource. Each policy is filed under one entity named by its scope
// (the most selective one) and is evaluated, in full by cedar-go, only when
// that entity is among the request's principal, resource and their
// ancestors. An action scope is filed the other way round, under every
// action it can match: `action in Action::"write"` under write, ddl and each
// of their descendants, `action == A` under A alone; a request then looks
// up its own action only, and finds each policy once. A policy that is not evaluated would have failed its scope,
// which cedar-go checks before the conditions, and so could not have matched
// nor raised an error.
//
// Label forbids, `forbid (principal, action, resource) when {
// resource.labels.contains("financial") }`, name no entity but are as
// selective: a policy whose first condition starts with that test (after
// `resource has labels`, if any) is filed under the label. Cedar evaluates
// the scope, then the conditions in order, left to right, stopping at the
// first false: without the label, such a policy is false before anything
// that could raise an error is evaluated. labels is always present.
type index struct {
	always      []*entry // nothing to file it under: evaluated for every request
	byPrincipal map[types.EntityUID][]*entry
	byResource  map[types.EntityUID][]*entry
	byAction    map[types.EntityUID][]*entry
	byLabel     map[string][]*entry
}

func buildIndex(entries []*entry) index {
	idx := index{
		byPrincipal: make(map[types.EntityUID][]*entry),
		byResource:  make(map[types.EntityUID][]*entry),
		byAction:    make(map[types.EntityUID][]*entry),
		byLabel:     make(map[string][]*entry),
	}
	for _, e := range entries {
		p := (*xast.Policy)(e.policy.AST())
		pk, pRank := scopeKeys(p.Principal)
		rk, rRank := scopeKeys(p.Resource)
		ak, aRank := scopeKeys(p.Action)
		label, hasLabel := labelKey(p)
		switch {
		case pRank == 2:
			file(idx.byPrincipal, pk, e)
		case rRank == 2:
			file(idx.byResource, rk, e)
		case hasLabel:
			idx.byLabel[label] = append(idx.byLabel[label], e)
		case pRank > 0:
			file(idx.byPrincipal, pk, e)
		case rRank > 0:
			file(idx.byResource, rk, e)
		case aRank > 0:
			file(idx.byAction, actionKeys(p.Action, ak), e)
		default:
			idx.always = append(idx.always, e)
		}
	}
	return idx
}

// labelKey returns L if the policy's first condition is a `when` whose
// conjuncts, in evaluation order, are `resource has labels` any number of
// times and then `resource.labels.contains("L")`.
func labelKey(p *xast.Policy) (string, bool) {
	if len(p.Conditions) == 0 || p.Conditions[0].Condition != xast.ConditionWhen {
		return "", false
	}
	for _, n := range conjuncts(p.Conditions[0].Body, nil) {
		if h, ok := n.(xast.NodeTypeHas); ok && h.Value == "labels" && isVariable(h.Arg, "resource") {
			continue
		}
		c, ok := n.(xast.NodeTypeContains)
		if !ok {
			return "", false
		}
		a, ok := c.Left.(xast.NodeTypeAccess)
		if !ok || a.Value != "labels" || !isVariable(a.Arg, "resource") {
			return "", false
		}
		v, ok := c.Right.(xast.NodeValue)
		if !ok {
			return "", false
		}
		l, ok := v.Value.(types.String)
		return string(l), ok
	}
	return "", false
}

// conjuncts flattens a && b && ... in evaluation order.
func conjuncts(n xast.IsNode, out []xast.IsNode) []xast.IsNode {
	if a, ok := n.(xast.NodeTypeAnd); ok {
		return conjuncts(a.Right, conjuncts(a.Left, out))
	}
	return append(out, n)
}

func isVariable(n xast.IsNode, name types.String) bool {
	v, ok := n.(xast.NodeTypeVariable)
	return ok && v.Name == name
}

// actionKeys returns the actions that an action scope with keys can match:
// the keys themselves, and for `in`, every known action below them, each
// once.
func actionKeys(n xast.IsScopeNode, keys []types.EntityUID) []types.EntityUID {
	if _, eq := n.(xast.ScopeTypeEq); eq {
		return keys
	}
	var out []types.EntityUID
	for _, k := range keys {
		for _, d := range descendantsOrSelf(k) {
			if !containsUID(out, d) {
				out = append(out, d)
			}
		}
	}
	return out
}

func file(m map[types.EntityUID][]*entry, keys []types.EntityUID, e *entry) {
	for _, k := range keys {
		m[k] = append(m[k], e)
	}
}

// scopeKeys returns the entities one of which a request's variable (or one of
// its ancestors) must equal for the scope to match, and how selective that
// is: 2 for ==, 1 for in, 0 when the scope names no entity. A policy is
// filed under an == scope first, then a label, then an in scope. The keys of an
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

// scan reports whether there are any candidates and which parts of the
// request context they read.
func (c *candidates) scan() (found bool, reads contextReads) {
	for _, l := range c.lists {
		for _, e := range l {
			reads |= e.reads
		}
	}
	return len(c.lists) > 0, reads
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

// contextReads is the set of the parts of the context that a policy's
// conditions read (or test with has).
type contextReads uint8

const (
	readsSQL   contextReads = 1 << iota // context.sql
	readsHTTP                           // context.http
	readsOther                          // time, source_ip, details, or context as a whole
)

func policyReads(p *xast.Policy) contextReads {
	var reads contextReads
	field := func(name types.String) contextReads {
		switch name {
		case "sql":
			return readsSQL
		case "http":
			return readsHTTP
		}
		return readsOther
	}
	for _, c := range p.Conditions {
		xast.Inspect(xast.NewNode(c.Body), func(n xast.IsNode) bool {
			switch x := n.(type) {
			case xast.NodeTypeAccess:
				if isVariable(x.Arg, "context") {
					reads |= field(x.Value)
					return false
				}
			case xast.NodeTypeHas:
				if isVariable(x.Arg, "context") {
					reads |= field(x.Value)
					return false
				}
			case xast.NodeTypeVariable:
				if x.Name == "context" {
					reads |= readsOther
				}
			}
			return true
		})
	}
	return reads
}
