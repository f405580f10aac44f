package policy

import (
	"slices"

	cedar "github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/ast"
	"github.com/cedar-policy/cedar-go/types"
	xast "github.com/cedar-policy/cedar-go/x/exp/ast"
)

// The actions that group the others. A policy names them with `action in`:
// `action in Action::"read"` matches every read action on every kind of
// binding. No request is ever made for one of them, so `action ==
// Action::"read"` never matches (and [Set.Validate] says so).
const (
	// ActionRead groups what only observes: SQL SELECT, SHOW, COPY TO
	// STDOUT, EXPLAIN without ANALYZE, ...; HTTP GET, HEAD and OPTIONS.
	ActionRead = "read"
	// ActionWrite groups what changes data: SQL INSERT, UPDATE, DELETE,
	// MERGE, TRUNCATE, COPY FROM, ...; HTTP POST, PUT, PATCH and DELETE;
	// and, through ActionDDL, what changes the schema.
	ActionWrite = "write"
	// ActionDDL, under ActionWrite, groups what changes a database's
	// schema or privileges: CREATE, ALTER, DROP, GRANT, REVOKE, COMMENT.
	ActionDDL = "ddl"
	// ActionUnclassified groups what Postern cannot put under read or
	// write (a DO block, a procedure call, COPY ... PROGRAM, an HTTP TRACE
	// or unknown method). It is under neither, so only a permit that names
	// it (or an unscoped `action`) allows them.
	ActionUnclassified = "unclassified"
)

// ActionHTTPOther is the action of an HTTP request whose method is none of
// GET, HEAD, OPTIONS, POST, PUT, PATCH and DELETE; see [HTTPAction].
const ActionHTTPOther = "http:other"

// actionParents is the hierarchy: each action that has a parent, to it.
// connect, read, write and unclassified have none.
var actionParents = map[string]string{
	ActionDDL: ActionWrite,

	"sql:select":      ActionRead,
	"sql:show":        ActionRead,
	"sql:copy_to":     ActionRead,
	"sql:explain":     ActionRead,
	"sql:transaction": ActionRead,
	"sql:set":         ActionRead,
	"sql:prepare":     ActionRead,
	"sql:cursor":      ActionRead,
	"sql:listen":      ActionRead,

	"sql:insert":      ActionWrite,
	"sql:update":      ActionWrite,
	"sql:delete":      ActionWrite,
	"sql:merge":       ActionWrite,
	"sql:truncate":    ActionWrite,
	"sql:copy_from":   ActionWrite,
	"sql:select_into": ActionWrite,
	"sql:lock_rows":   ActionWrite,
	"sql:function":    ActionWrite,
	"sql:notify":      ActionWrite,
	"sql:vacuum":      ActionWrite,
	"sql:analyze":     ActionWrite,
	"sql:maintain":    ActionWrite,

	"sql:create":          ActionDDL,
	"sql:alter":           ActionDDL,
	"sql:drop":            ActionDDL,
	"sql:grant":           ActionDDL,
	"sql:revoke":          ActionDDL,
	"sql:comment":         ActionDDL,
	"sql:create_table_as": ActionDDL,

	"sql:do":               ActionUnclassified,
	"sql:call":             ActionUnclassified,
	"sql:copy_program":     ActionUnclassified,
	"sql:lock":             ActionUnclassified,
	"sql:set_privileged":   ActionUnclassified,
	"sql:begin_read_write": ActionUnclassified,
	"sql:two_phase":        ActionUnclassified,
	"sql:execute":          ActionUnclassified,
	"sql:admin":            ActionUnclassified,
	"sql:other":            ActionUnclassified,

	"http:GET":      ActionRead,
	"http:HEAD":     ActionRead,
	"http:OPTIONS":  ActionRead,
	"http:POST":     ActionWrite,
	"http:PUT":      ActionWrite,
	"http:PATCH":    ActionWrite,
	"http:DELETE":   ActionWrite,
	ActionHTTPOther: ActionUnclassified,
}

// ActionParent returns the action directly above name in the hierarchy:
// "read" for "sql:select", "ddl" for "sql:drop", "write" for "ddl". It
// reports false for the actions at the top (connect, read, write,
// unclassified) and for names Postern does not know.
func ActionParent(name string) (string, bool) {
	p, ok := actionParents[name]
	return p, ok
}

// Actions returns every action Postern knows, sorted: the groups, connect,
// and the fine actions of SQL and HTTP.
func Actions() []string {
	out := []string{ActionConnect, ActionRead, ActionWrite, ActionUnclassified}
	for a := range actionParents {
		out = append(out, a)
	}
	slices.Sort(out)
	return out
}

// IsDataAction reports whether name is a known action under read, write or
// unclassified (a statement or a request, or one of their groups): one
// that a connector decides, as opposed to connect, which the relay decides.
func IsDataAction(name string) bool {
	switch name {
	case ActionRead, ActionWrite, ActionUnclassified:
		return true
	}
	_, ok := actionParents[name]
	return ok
}

// HTTPAction returns the action of an HTTP request with the given method:
// "http:GET" ... "http:DELETE" for the seven methods the hierarchy names
// (compared case-sensitively, as HTTP methods are), else "http:other".
func HTTPAction(method string) string {
	switch method {
	case "GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE":
		return "http:" + method
	}
	return ActionHTTPOther
}

// actionEntities are the Cedar entities of the known actions, each with
// its parent, so that `action in Action::"read"` matches Action::"sql:select"
// as the entity graph says; an unknown action has no entity, and so no
// ancestors.
var actionEntities = func() map[types.EntityUID]types.Entity {
	m := make(map[types.EntityUID]types.Entity, len(actionParents)+4)
	for _, a := range Actions() {
		uid := actionUID(a)
		e := types.Entity{UID: uid}
		if p, ok := actionParents[a]; ok {
			e.Parents = types.NewEntityUIDSet(actionUID(p))
		}
		m[uid] = e
	}
	return m
}()

// actionDescendants maps an action's UID to itself and every known action
// below it, for the index: a policy whose scope is `action in A` can only
// match a request whose action is one of A's descendants (or A).
var actionDescendants = func() map[types.EntityUID][]types.EntityUID {
	m := make(map[types.EntityUID][]types.EntityUID)
	for _, a := range Actions() {
		for x, ok := a, true; ok; x, ok = actionParents[x] {
			m[actionUID(x)] = append(m[actionUID(x)], actionUID(a))
		}
	}
	return m
}()

// descendantsOrSelf returns uid and every known action below it.
func descendantsOrSelf(uid types.EntityUID) []types.EntityUID {
	if d, ok := actionDescendants[uid]; ok {
		return d
	}
	return []types.EntityUID{uid}
}

func actionUID(name string) types.EntityUID {
	return types.NewEntityUID(typeAction, types.String(name))
}

// openerOf returns the policy that stands for permit e when a binding is
// opened, or nil if e admits no data action. It is e with its action scope
// replaced by `action == Action::"connect"` and without the conditions that
// read context.sql or context.http, which are unknown until a statement is
// decided: the open is allowed if some statement might be. It keeps e's @id
// and order, so that a decision names e.
func openerOf(e *entry) *entry { return scopeStandIn(e, isDataAction) }

// writerOf is openerOf for the permits whose scope admits an action under
// write or unclassified (see [Set.MayWrite]); nil for the others.
func writerOf(e *entry) *entry { return scopeStandIn(e, isWriteAction) }

// scopeStandIn returns permit e as openerOf describes it, if its action
// scope admits some action that admits says yes to; nil otherwise.
func scopeStandIn(e *entry, admits func(types.EntityUID) bool) *entry {
	if e.forbid {
		return nil
	}
	p := (*xast.Policy)(e.policy.AST())
	if !admitsAction(p.Action, admits) {
		return nil
	}
	o := *p
	o.Action = xast.ScopeTypeEq{Entity: connectUID}
	o.Conditions = nil
	for _, c := range p.Conditions {
		one := xast.Policy{Conditions: []xast.ConditionType{c}}
		if policyReads(&one)&(readsSQL|readsHTTP) == 0 {
			o.Conditions = append(o.Conditions, c)
		}
	}
	op := cedar.NewPolicyFromAST((*ast.Policy)(&o))
	return &entry{id: e.id, policy: op, ord: e.ord, pos: e.pos, reads: policyReads(&o)}
}

func isDataAction(u types.EntityUID) bool { return IsDataAction(actionName(u)) }

// isWriteAction reports whether u is write or unclassified, or an action
// under one of them.
func isWriteAction(u types.EntityUID) bool {
	for a := actionName(u); a != ""; {
		if a == ActionWrite || a == ActionUnclassified {
			return true
		}
		a = actionParents[a]
	}
	return false
}

// admitsAction reports whether an action scope matches some action that
// admits says yes to.
func admitsAction(n xast.IsScopeNode, admits func(types.EntityUID) bool) bool {
	switch s := n.(type) {
	case xast.ScopeTypeAll:
		return true
	case xast.ScopeTypeEq:
		return admits(s.Entity)
	case xast.ScopeTypeIn:
		return slices.ContainsFunc(descendantsOrSelf(s.Entity), admits)
	case xast.ScopeTypeInSet:
		for _, u := range s.Entities {
			if admitsAction(xast.ScopeTypeIn{Entity: u}, admits) {
				return true
			}
		}
	}
	return false
}

// actionName is the name of an Action entity, "" for another type.
func actionName(u types.EntityUID) string {
	if u.Type != typeAction {
		return ""
	}
	return string(u.ID)
}
