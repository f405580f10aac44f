package policy

import (
	"fmt"
	"math/rand/v2"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	cedar "github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/types"
)

// TestIndexMatchesCedar checks the scope index and the decision cache
// against cedar-go evaluating every policy over an entity map built
// independently of buildRequest: for random policy sets and requests, the
// decision, the deciding policies and the erroring policies must be the same.
//
// Most requests come from a pool that lives across rounds, drawn at random
// and recombined, so that each is decided many times, interleaved with the
// others, before and after the Engine swaps in another set (sometimes back
// to an earlier one, whose cache is still filled). Every time a request is
// drawn its time and details change, so that a decision that depends on
// the context and was cached would be caught.
func TestIndexMatchesCedar(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	type generation struct {
		src     string
		set     *Set
		ref     *cedar.PolicySet
		openRef *cedar.PolicySet // ref and the openers, written independently
		forbids map[string]bool
	}
	newGeneration := func() generation {
		// Small sets as well as large: in a large one, some policy that
		// reads the context applies to most requests.
		src, openers := randomPolicies(rng, 1+rng.IntN(pick(rng, 8, 40)))
		g := generation{src: src, set: mustParse(t, src), ref: cedar.NewPolicySet(), openRef: cedar.NewPolicySet(), forbids: map[string]bool{}}
		ref, err := cedar.NewPolicyListFromBytes("ref.cedar", []byte(src))
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ref {
			id := string(p.Annotations()["id"])
			g.ref.Add(cedar.PolicyID(id), p)
			g.openRef.Add(cedar.PolicyID(id), p)
			g.forbids[id] = p.Effect() == cedar.Forbid
		}
		extra, err := cedar.NewPolicyListFromBytes("openers.cedar", []byte(openers))
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range extra {
			g.openRef.Add(cedar.PolicyID(p.Annotations()["id"]+openerSuffix), p)
		}
		return g
	}

	pool := make([]Request, 32)
	for i := range pool {
		pool[i] = randomRequest(rng)
	}
	var prev, cur generation
	e := NewEngine(nil)
	hits := 0
	for round := range 60 {
		if round > 1 && rng.IntN(4) == 0 {
			prev, cur = cur, prev // back to the previous set, cache and all
		} else {
			prev, cur = cur, newGeneration()
		}
		e.Swap(cur.set)
		for range 5 { // new tokens and catalog entries
			pool[rng.IntN(len(pool))] = randomRequest(rng)
		}
		for range 300 {
			// Mix principals, resources and actions, so that a key
			// missing one would be caught.
			req := pool[rng.IntN(len(pool))]
			if rng.IntN(10) == 0 {
				req = randomRequest(rng) // seen once
			}
			if rng.IntN(3) == 0 {
				req.Resource = pool[rng.IntN(len(pool))].Resource
			}
			if rng.IntN(3) == 0 {
				req.Action = randomAction(rng)
			}
			// A statement or request, changed on every draw: a decision
			// that reads them and was cached under too small a key would
			// be caught.
			req.SQL, req.HTTP = randomSQL(rng), randomHTTP(rng)
			// A changed copy of a prepared request must not be decided
			// from (or cached under) the forms it shares with the pool's.
			if rng.IntN(5) == 0 {
				changeFields(rng, &req.Principal, &req.Resource, false)
			}
			req.Time = pick(rng, jan2024, jan2026)
			req.Details = pick(rng, map[string]string(nil), map[string]string{"x": "1"})
			open := rng.IntN(4) == 0
			var got Decision
			var allowed bool
			var policies, errIDs []string
			if open {
				if isOpenCached(cur.set, req) {
					hits++
				}
				got = e.AuthorizeOpen(req)
				o := req
				o.Action, o.SQL, o.HTTP = ActionConnect, nil, nil
				allowed, policies, errIDs = reference(cur.openRef, cur.forbids, o)
			} else {
				if isCached(cur.set, req) {
					hits++
				}
				got = e.Authorize(req)
				allowed, policies, errIDs = reference(cur.ref, cur.forbids, req)
			}

			gotPolicies := slices.Sorted(slices.Values(got.Policies))
			var gotErrs []string
			for _, e := range got.Errors {
				gotErrs = append(gotErrs, e.PolicyID)
			}
			slices.Sort(gotErrs)
			if got.Allowed != allowed || !slices.Equal(gotPolicies, policies) || !slices.Equal(gotErrs, errIDs) {
				t.Fatalf("round %d: open %v request %+v sql %+v http %+v\npolicies:\n%s\ngot      %v %q errors %q\nexpected %v %q errors %q",
					round, open, req, req.SQL, req.HTTP, cur.src, got.Allowed, gotPolicies, gotErrs, allowed, policies, errIDs)
			}
		}
	}
	// About half the pool is prepared and unchanged, but the draws mix in
	// changed copies and literals, three in five carry a statement, and
	// most random sets hold a policy that reads the context and applies to
	// most requests: these seeds give some 700 hits (others, 450 and up).
	if hits < 60*300/60 {
		t.Errorf("only %d of %d decisions came from the cache", hits, 60*300)
	}
	t.Logf("%d of %d decisions came from the cache", hits, 60*300)
}

var (
	jan2024 = time.Date(2024, 1, 1, 10, 0, 0, 0, time.UTC)
	jan2026 = time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
)

// reference decides req with cedar-go over all policies, applying Postern's
// rule that an erroring forbid denies.
func reference(ps *cedar.PolicySet, forbids map[string]bool, req Request) (bool, []string, []string) {
	p, r := req.Principal, req.Resource
	ents := types.EntityMap{}
	var groups []types.EntityUID
	for _, g := range p.Groups {
		uid := types.NewEntityUID("Group", types.String(g))
		groups = append(groups, uid)
		ents[uid] = types.Entity{UID: uid}
	}
	attrs := types.RecordMap{"role": types.String("agent")}
	if lvl, ok := p.Attributes["level"]; ok {
		attrs["level"] = types.Long(lvl.(int))
	}
	agentUID := types.NewEntityUID("Agent", types.String(p.ID))
	ents[agentUID] = types.Entity{UID: agentUID, Parents: types.NewEntityUIDSet(groups...), Attributes: types.NewRecord(attrs)}
	var envs []types.EntityUID
	if r.Environment != "" {
		env := types.NewEntityUID("Environment", types.String(r.Environment))
		envs = append(envs, env)
		ents[env] = types.Entity{UID: env}
	}
	var labels []types.Value
	for _, l := range r.Labels {
		labels = append(labels, types.String(l))
	}
	bindingUID := types.NewEntityUID("Binding", types.String(r.Name))
	ents[bindingUID] = types.Entity{UID: bindingUID, Parents: types.NewEntityUIDSet(envs...), Attributes: types.NewRecord(types.RecordMap{
		"kind":        types.String(r.Kind),
		"environment": types.String(r.Environment),
		"labels":      types.NewSet(labels...),
	})}
	action := req.Action
	if action == "" {
		action = "connect"
	}
	// The action hierarchy, each action an entity with its parent.
	for _, a := range Actions() {
		uid := types.NewEntityUID("Action", types.String(a))
		e := types.Entity{UID: uid}
		if p, ok := ActionParent(a); ok {
			e.Parents = types.NewEntityUIDSet(types.NewEntityUID("Action", types.String(p)))
		}
		ents[uid] = e
	}
	details := types.RecordMap{}
	for k, v := range req.Details {
		details[types.String(k)] = types.String(v)
	}
	ctx := types.RecordMap{
		"time":    types.NewDatetime(req.Time),
		"details": types.NewRecord(details),
	}
	set := func(ss []string) types.Set {
		var vs []types.Value
		for _, s := range ss {
			vs = append(vs, types.String(s))
		}
		return types.NewSet(vs...)
	}
	if q := req.SQL; q != nil {
		ctx["sql"] = types.NewRecord(types.RecordMap{
			"kinds":          set(q.Kinds),
			"tables_read":    set(q.TablesRead),
			"tables_written": set(q.TablesWritten),
			"functions":      set(q.Functions),
			"fingerprint":    types.String(q.Fingerprint),
		})
	}
	if h := req.HTTP; h != nil {
		var query, keys []string
		for k, vs := range h.Query {
			keys = append(keys, k)
			for _, v := range vs {
				query = append(query, k+"="+v)
			}
		}
		ctx["http"] = types.NewRecord(types.RecordMap{
			"method":     types.String(h.Method),
			"path":       types.String(h.Path),
			"query":      set(query),
			"query_keys": set(keys),
		})
	}
	creq := cedar.Request{
		Principal: agentUID,
		Action:    types.NewEntityUID("Action", types.String(action)),
		Resource:  bindingUID,
		Context:   types.NewRecord(ctx),
	}
	dec, diag := cedar.Authorize(ps, ents, creq)
	var policies, errs []string
	for _, rs := range diag.Reasons {
		policies = append(policies, strings.TrimSuffix(string(rs.PolicyID), openerSuffix))
	}
	for _, e := range diag.Errors {
		id := strings.TrimSuffix(string(e.PolicyID), openerSuffix)
		errs = append(errs, id)
		if forbids[id] {
			if dec == cedar.Allow {
				dec, policies = cedar.Deny, nil
			}
			policies = append(policies, id)
		}
	}
	slices.Sort(policies)
	slices.Sort(errs)
	// A permit and its opener decide under one @id.
	return bool(dec), slices.Compact(policies), slices.Compact(errs)
}

// openerSuffix names, in the reference, the opener of a policy.
const openerSuffix = "~open"

func pick[T any](rng *rand.Rand, xs ...T) T { return xs[rng.IntN(len(xs))] }

// randomPolicies returns n random policies and, written from the same
// parts, the opener of each permit that admits a data action: what
// AuthorizeOpen must decide as if it were there.
func randomPolicies(rng *rand.Rand, n int) (src, openers string) {
	var b, o strings.Builder
	for i := range n {
		n := func(k int) int { return rng.IntN(k) }
		principal := pick(rng,
			"principal",
			fmt.Sprintf(`principal == Agent::"a%d"`, n(5)),
			fmt.Sprintf(`principal in Group::"g%d"`, n(4)),
			fmt.Sprintf(`principal in Agent::"a%d"`, n(5)),
			"principal is Agent",
			fmt.Sprintf(`principal is Agent in Group::"g%d"`, n(4)),
			`principal == Group::"g1"`,
			`principal in Environment::"e1"`,
		)
		// Each action scope, and whether it admits a data action.
		actions := []struct {
			scope string
			data  bool
		}{
			{"action", true},
			{`action == Action::"connect"`, false},
			{`action == Action::"read"`, true},
			{`action in [Action::"connect", Action::"read"]`, true},
			{`action in [Action::"read", Action::"read"]`, true},
			{`action in Action::"connect"`, false},
			{`action in []`, false},
			{`action in Action::"read"`, true},
			{`action in Action::"write"`, true},
			{`action in Action::"ddl"`, true},
			{`action in Action::"unclassified"`, true},
			{`action == Action::"sql:select"`, true},
			{`action in Action::"sql:drop"`, true},
			{`action == Action::"http:POST"`, true},
			{`action in [Action::"ddl", Action::"write"]`, true},
			{`action in [Action::"read", Action::"sql:drop", Action::"http:other"]`, true},
			{`action in [Action::"connect", Action::"unknown"]`, false},
			{`action == Action::"unknown"`, false},
		}
		action := actions[n(len(actions))]
		resource := pick(rng,
			"resource",
			fmt.Sprintf(`resource == Binding::"b%d"`, n(5)),
			fmt.Sprintf(`resource in Environment::"e%d"`, n(3)),
			fmt.Sprintf(`resource in Binding::"b%d"`, n(5)),
			"resource is Binding",
			fmt.Sprintf(`resource is Binding in Environment::"e%d"`, n(3)),
			`resource is Agent`,
		)
		cond := pick(rng,
			"",
			"",
			fmt.Sprintf(`when { resource.labels.contains("l%d") }`, n(3)),
			fmt.Sprintf(`when { principal.level > %d }`, n(4)), // errors without level
			`unless { context.details has x }`,
			fmt.Sprintf(`when { principal in Group::"g%d" && resource.environment == "e%d" }`, n(4), n(3)),
			`when { context.time > datetime("2025-01-01") }`,
			// Label conditions: the index files the first three under the
			// label; the others must be evaluated for every request.
			fmt.Sprintf(`when { resource.labels.contains("l%d") && principal.level > 1 }`, n(3)),
			fmt.Sprintf(`when { resource has labels && resource.labels.contains("l%d") }`, n(3)),
			fmt.Sprintf(`when { resource.labels.contains("l%d") } when { principal.level > 2 }`, n(3)),
			fmt.Sprintf(`when { principal.level > 1 && resource.labels.contains("l%d") }`, n(3)),
			fmt.Sprintf(`unless { resource.labels.contains("l%d") }`, n(3)),
			fmt.Sprintf(`when { resource.labels.contains("l%d") || principal.level > 1 }`, n(3)),
			fmt.Sprintf(`when { principal.level > 0 } when { resource.labels.contains("l%d") }`, n(3)),
			// The statement and the request.
			fmt.Sprintf(`when { context has sql && context.sql.tables_read.contains("t%d") }`, n(3)),
			fmt.Sprintf(`when { context has sql && context.sql.tables_written.contains("t%d") }`, n(3)),
			`when { context.sql.kinds.contains("SELECT") }`, // errors without sql
			`unless { context has sql && context.sql.functions.isEmpty() }`,
			`when { context has sql && context.sql.fingerprint == "f1" }`,
			`when { context has http && context.http.path like "/v1/*" }`,
			`unless { context has http && context.http.query_keys.contains("k") }`,
			`when { context has http && context.http.query.contains("k=1") && context.http.method == "GET" }`,
			`when { context.http.path == "/admin" }`, // errors without http
		)
		effect := pick(rng, "permit", "permit", "forbid")
		fmt.Fprintf(&b, "@id(\"p%d\")\n%s (%s, %s, %s) %s;\n\n", i, effect, principal, action.scope, resource, cond)
		if effect == "permit" && action.data {
			ocond := cond
			if strings.Contains(cond, "context.sql") || strings.Contains(cond, "context has sql") ||
				strings.Contains(cond, "context.http") || strings.Contains(cond, "context has http") {
				ocond = "" // one condition each: the whole of it is about the statement
			}
			fmt.Fprintf(&o, "@id(\"p%d\")\npermit (%s, action == Action::\"connect\", %s) %s;\n\n", i, principal, resource, ocond)
		}
	}
	return b.String(), o.String()
}

// randomAction draws the action of a request: connect, a group (which an
// agent's open may name), fine actions of each branch, and unknown ones.
func randomAction(rng *rand.Rand) string {
	return pick(rng, "", "connect", "read", "write", "sql:select", "sql:insert", "sql:drop",
		"sql:do", "http:GET", "http:POST", "http:other", "ddl", "unknown")
}

// randomSQL draws a statement, often nil. Two statements share fingerprint
// "f1" but not their tables, as a classifier might report.
func randomSQL(rng *rand.Rand) *SQL {
	switch rng.IntN(5) {
	case 0:
		return &SQL{Kinds: []string{"SELECT"}, TablesRead: []string{"t0"}, Fingerprint: "f1"}
	case 1:
		return &SQL{Kinds: []string{"SELECT"}, TablesRead: []string{"t1"}, Fingerprint: "f1"}
	case 2:
		return &SQL{Kinds: []string{"INSERT"}, TablesWritten: []string{"t2"}, TablesRead: []string{"t0"}, Functions: []string{"now"}, Fingerprint: "f2"}
	}
	return nil
}

func randomHTTP(rng *rand.Rand) *HTTP {
	switch rng.IntN(8) {
	case 0:
		return &HTTP{Method: "GET", Path: "/v1/x", Query: url.Values{"k": {"1"}}}
	case 1:
		return &HTTP{Method: "POST", Path: "/admin"}
	case 2:
		return &HTTP{Method: "GET", Path: "/v1/y", Query: url.Values{"j": {"2", "3"}}}
	}
	return nil
}

func randomRequest(rng *rand.Rand) Request {
	var groups []string
	for g := range 4 {
		if rng.IntN(3) == 0 {
			groups = append(groups, fmt.Sprintf("g%d", g))
		}
	}
	var labels []string
	for l := range 3 {
		if rng.IntN(3) == 0 {
			labels = append(labels, fmt.Sprintf("l%d", l))
		}
	}
	var attrs map[string]any
	if rng.IntN(2) == 0 {
		attrs = map[string]any{"level": rng.IntN(5)}
	}
	principal := Principal{ID: fmt.Sprintf("a%d", rng.IntN(5)), Groups: groups, Attributes: attrs}
	resource := Resource{Name: fmt.Sprintf("b%d", rng.IntN(5)), Kind: "tcp", Environment: pick(rng, "", "e0", "e1", "e2"), Labels: labels}
	if rng.IntN(3) != 0 {
		// Prepared forms, sometimes made stale by changing a field.
		principal, _ = NewPrincipal(principal.ID, principal.Groups, principal.Attributes)
		resource = NewResource(resource.Name, resource.Kind, resource.Environment, resource.Labels...)
		if rng.IntN(3) == 0 {
			changeFields(rng, &principal, &resource, true)
		}
	}
	return Request{
		Principal: principal,
		Action:    randomAction(rng),
		Resource:  resource,
		Time:      time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC),
		Details:   pick(rng, map[string]string(nil), map[string]string{"x": "1"}),
	}
}

// changeFields changes a field of p or r, as a caller may change its copy of
// a prepared value. inPlace allows changing the elements of their slices,
// which they share with the value they were copied from.
func changeFields(rng *rand.Rand, p *Principal, r *Resource, inPlace bool) {
	n := 5
	if inPlace {
		n = 7
	}
	switch rng.IntN(n) {
	case 0:
		p.Groups = append(slices.Clip(p.Groups), "g2")
	case 1:
		p.ID = "a0"
	case 2:
		p.Attributes = map[string]any{"level": 4}
	case 3:
		r.Labels = append(slices.Clip(r.Labels), "l1", "l1")
	case 4:
		r.Environment = "e1"
	case 5:
		if len(p.Groups) > 0 {
			p.Groups[0] = "g3"
		}
	case 6:
		if len(r.Labels) > 0 {
			r.Labels[0] = "l2"
		}
	}
}
