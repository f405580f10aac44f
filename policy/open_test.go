package policy

import (
	"maps"
	"net/url"
	"slices"
	"testing"

	"github.com/cedar-policy/cedar-go/x/exp/schema"
)

// model is the policy model: coding agents read staging, on-call
// writes the prod-status incidents, no DDL anywhere, nothing financial.
const model = `
@id("coding-agents-read-staging")
permit (principal in Group::"coding-agents", action in Action::"read",
        resource in Environment::"staging");

@id("oncall-writes-prod-status")
permit (principal in Group::"oncall", action in Action::"write",
        resource == Binding::"prod-status")
when { context has http && context.http.path like "/v1/incidents/*" };

@id("no-ddl-anywhere")
forbid (principal, action in Action::"ddl", resource);

@id("forbid-financial")
forbid (principal, action, resource)
  when { resource has labels && resource.labels.contains("financial") };
`

// TestOpen decides opens (AuthorizeOpen) under the rule of the package
// documentation: a permit for connect, or a permit whose scope admits a
// data action, opens; a forbid that applies to connect closes.
func TestOpen(t *testing.T) {
	coder := agent("claude-1", "coding-agents")
	oncall := agent("pager-1", "oncall")
	staging := binding("staging-db", "staging")
	tests := []struct {
		name     string
		policies string
		req      Request
		allowed  bool
		policyID []string
	}{
		{
			name:     "connect-only permits the open",
			policies: `@id("c") permit (principal in Group::"coding-agents", action == Action::"connect", resource in Environment::"staging");`,
			req:      Request{Principal: coder, Resource: staging},
			allowed:  true, policyID: []string{"c"},
		},
		{
			name:     "read-only permits the open",
			policies: model,
			req:      Request{Principal: coder, Resource: staging},
			allowed:  true, policyID: []string{"coding-agents-read-staging"},
		},
		{
			name:     "read-only opens only what it reads",
			policies: model,
			req:      Request{Principal: coder, Resource: binding("prod-db", "prod")},
		},
		{
			name:     "a write with a condition on the request opens",
			policies: model,
			req:      Request{Principal: oncall, Resource: binding("prod-status", "prod")},
			allowed:  true, policyID: []string{"oncall-writes-prod-status"},
		},
		{
			name:     "a write elsewhere does not open",
			policies: model,
			req:      Request{Principal: oncall, Resource: binding("prod-db", "prod")},
		},
		{
			name:     "forbid financial closes the open",
			policies: model,
			req:      Request{Principal: coder, Resource: binding("staging-ledger", "staging", "financial")},
			policyID: []string{"forbid-financial"},
		},
		{
			name:     "forbid ddl does not close the open",
			policies: model + `@id("ddl-only") permit (principal, action in Action::"ddl", resource == Binding::"migrations");`,
			req:      Request{Principal: coder, Resource: binding("migrations", "")},
			allowed:  true, policyID: []string{"ddl-only"},
		},
		{
			name: "forbid write on prod does not close a read open",
			policies: `@id("read-prod") permit (principal in Group::"oncall", action in Action::"read", resource in Environment::"prod");
@id("no-prod-writes") forbid (principal, action in Action::"write", resource in Environment::"prod");`,
			req:     Request{Principal: oncall, Resource: binding("prod-db", "prod")},
			allowed: true, policyID: []string{"read-prod"},
		},
		{
			name: "forbid connect closes a read open",
			policies: `@id("read-prod") permit (principal in Group::"oncall", action in Action::"read", resource in Environment::"prod");
@id("no-prod") forbid (principal, action == Action::"connect", resource in Environment::"prod");`,
			req:      Request{Principal: oncall, Resource: binding("prod-db", "prod")},
			policyID: []string{"no-prod"},
		},
		{
			name:     "an unscoped permit opens",
			policies: `@id("all") permit (principal, action, resource) when { context has sql && context.sql.kinds.contains("SELECT") };`,
			req:      Request{Principal: coder, Resource: staging},
			allowed:  true, policyID: []string{"all"},
		},
		{
			name:     "a condition on the principal still holds at the open",
			policies: `@id("leveled") permit (principal, action in Action::"read", resource) when { principal has level && principal.level > 2 };`,
			req:      Request{Principal: coder, Resource: staging},
		},
		{
			name:     "an unclassified permit opens",
			policies: `@id("do") permit (principal, action == Action::"sql:do", resource == Binding::"staging-db");`,
			req:      Request{Principal: coder, Resource: staging},
			allowed:  true, policyID: []string{"do"},
		},
		{
			name:     "a permit for an unknown action does not open",
			policies: `@id("x") permit (principal, action == Action::"frobnicate", resource);`,
			req:      Request{Principal: coder, Resource: staging},
		},
		{
			name:     "a forbid reading the statement, unguarded, fails closed",
			policies: model + `@id("no-users") forbid (principal, action, resource) when { context.sql.tables_written.contains("users") };`,
			req:      Request{Principal: coder, Resource: staging},
			policyID: []string{"no-users"},
		},
		{
			name:     "the request's action and statement are ignored",
			policies: model,
			req:      Request{Principal: coder, Action: "sql:drop", Resource: staging, SQL: &SQL{Kinds: []string{"DROP"}}},
			allowed:  true, policyID: []string{"coding-agents-read-staging"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set := mustParse(t, tt.policies)
			// Prepared and literal forms, twice each: the cache must agree.
			prep := prepared(t, tt.req.Principal.ID, tt.req.Principal.Groups, nil, tt.req.Resource)
			prep.Action, prep.SQL = tt.req.Action, tt.req.SQL
			for _, req := range []Request{tt.req, prep, prep} {
				d := set.AuthorizeOpen(req)
				if d.Allowed != tt.allowed || !slices.Equal(d.Policies, tt.policyID) {
					t.Fatalf("AuthorizeOpen = %s, want allowed %v by %q", d, tt.allowed, tt.policyID)
				}
			}
		})
	}
}

// TestStatements decides statements and requests (Authorize) under the
// model: each fine action by its place in the hierarchy and its context.
func TestStatements(t *testing.T) {
	set := mustParse(t, model)
	coder := agent("claude-1", "coding-agents")
	oncall := agent("pager-1", "oncall")
	staging := binding("staging-db", "staging")
	status := Resource{Name: "prod-status", Kind: "http", Environment: "prod"}
	sel := &SQL{Kinds: []string{"SELECT"}, TablesRead: []string{"orders"}, Fingerprint: "a1"}
	tests := []struct {
		name     string
		req      Request
		allowed  bool
		policies []string
	}{
		{"select in staging", Request{Principal: coder, Action: "sql:select", Resource: staging, SQL: sel}, true, []string{"coding-agents-read-staging"}},
		{"explain in staging", Request{Principal: coder, Action: "sql:explain", Resource: staging, SQL: sel}, true, []string{"coding-agents-read-staging"}},
		{"delete in staging", Request{Principal: coder, Action: "sql:delete", Resource: staging, SQL: &SQL{Kinds: []string{"DELETE"}}}, false, nil},
		{"drop is ddl, forbidden", Request{Principal: coder, Action: "sql:drop", Resource: staging, SQL: &SQL{Kinds: []string{"DROP"}}}, false, []string{"no-ddl-anywhere"}},
		{"do is unclassified", Request{Principal: coder, Action: "sql:do", Resource: staging, SQL: &SQL{Kinds: []string{"DO"}}}, false, nil},
		{"connect is not read", Request{Principal: coder, Resource: staging}, false, nil},
		{"GET in staging", Request{Principal: coder, Action: HTTPAction("GET"), Resource: staging, HTTP: &HTTP{Method: "GET", Path: "/"}}, true, []string{"coding-agents-read-staging"}},
		{"TRACE is unclassified", Request{Principal: coder, Action: HTTPAction("TRACE"), Resource: staging, HTTP: &HTTP{Method: "TRACE", Path: "/"}}, false, nil},
		{"oncall posts an incident", Request{Principal: oncall, Action: "http:POST", Resource: status, HTTP: &HTTP{Method: "POST", Path: "/v1/incidents/42"}}, true, []string{"oncall-writes-prod-status"}},
		{"oncall posts elsewhere", Request{Principal: oncall, Action: "http:POST", Resource: status, HTTP: &HTTP{Method: "POST", Path: "/admin"}}, false, nil},
		{"oncall gets an incident", Request{Principal: oncall, Action: "http:GET", Resource: status, HTTP: &HTTP{Method: "GET", Path: "/v1/incidents/42"}}, false, nil},
		{"oncall writes SQL there", Request{Principal: oncall, Action: "sql:insert", Resource: status, SQL: &SQL{Kinds: []string{"INSERT"}}}, false, nil},
		{"query parameters", Request{Principal: oncall, Action: "http:PUT", Resource: status, HTTP: &HTTP{Method: "PUT", Path: "/v1/incidents/7", Query: url.Values{"x": {"1"}}}}, true, []string{"oncall-writes-prod-status"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkDecision(t, set.Authorize(tt.req), tt.allowed, tt.policies, nil)
		})
	}
}

// TestSQLDecisionsAreCachedByStatement: a statement's decision is cached
// under its fields, so a statement with the same fingerprint and other
// tables is decided afresh; an HTTP request that a policy reads is not
// cached.
func TestSQLDecisionsAreCachedByStatement(t *testing.T) {
	set := mustParse(t, model+`@id("no-users") forbid (principal, action, resource) when { context has sql && context.sql.tables_read.contains("users") };`)
	req := prepared(t, "claude-1", []string{"coding-agents"}, nil, binding("staging-db", "staging"))
	req.Action = "sql:select"
	orders := &SQL{Kinds: []string{"SELECT"}, TablesRead: []string{"orders"}, Fingerprint: "f"}
	users := &SQL{Kinds: []string{"SELECT"}, TablesRead: []string{"users"}, Fingerprint: "f"}
	for range 2 {
		req.SQL = orders
		checkDecision(t, set.Authorize(req), true, []string{"coding-agents-read-staging"}, nil)
		if !isCached(set, req) {
			t.Fatal("the statement's decision was not cached")
		}
		req.SQL = users
		checkDecision(t, set.Authorize(req), false, []string{"no-users"}, nil)
	}
	http := prepared(t, "pager-1", []string{"oncall"}, nil, Resource{Name: "prod-status", Kind: "http", Environment: "prod"})
	http.Action = "http:POST"
	http.HTTP = &HTTP{Method: "POST", Path: "/v1/incidents/1"}
	checkDecision(t, set.Authorize(http), true, []string{"oncall-writes-prod-status"}, nil)
	if isCached(set, http) {
		t.Fatal("a decision that read the path was cached")
	}
	http.HTTP = &HTTP{Method: "POST", Path: "/v2/other"}
	checkDecision(t, set.Authorize(http), false, nil, nil)
}

// TestSchemaHierarchy keeps SchemaText's action declarations equal to the
// hierarchy of ActionParent.
func TestSchemaHierarchy(t *testing.T) {
	var s schema.Schema
	if err := s.UnmarshalCedar([]byte(SchemaText)); err != nil {
		t.Fatal(err)
	}
	rs, err := s.Resolve()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for uid, a := range rs.Actions {
		parents := a.Entity.Parents.Slice()
		switch len(parents) {
		case 0:
		case 1:
			got[string(uid.ID)] = string(parents[0].ID)
		default:
			t.Errorf("%s has parents %v", uid, parents)
		}
		if _, known := actionEntities[uid]; !known {
			t.Errorf("the schema declares %s, the hierarchy does not", uid)
		}
		if (a.AppliesTo == nil) != groupAction(uid) {
			t.Errorf("%s: appliesTo %v; only a group has none", uid, a.AppliesTo)
		}
	}
	if !maps.Equal(got, actionParents) {
		t.Errorf("schema parents %v\nhierarchy        %v", got, actionParents)
	}
	if len(rs.Actions) != len(Actions()) {
		t.Errorf("schema declares %d actions, Actions() %d", len(rs.Actions), len(Actions()))
	}
	for _, a := range Actions() {
		if p, ok := ActionParent(a); ok && !IsDataAction(a) {
			t.Errorf("%s under %s is not a data action", a, p)
		}
	}
}

// TestMayWrite decides, by scope, whether an agent might write through a
// binding: the question the connector asks to choose a read-only login.
func TestMayWrite(t *testing.T) {
	coder := agent("claude-1", "coding-agents")
	oncall := agent("pager-1", "oncall")
	staging := binding("staging-db", "staging")
	status := binding("prod-status", "prod")
	tests := []struct {
		name     string
		policies string
		req      Request
		want     bool
	}{
		{name: "read only", policies: model, req: Request{Principal: coder, Resource: staging}, want: false},
		{name: "write under a context.http condition", policies: model, req: Request{Principal: oncall, Resource: status}, want: true},
		{name: "write on another binding", policies: model, req: Request{Principal: oncall, Resource: staging}, want: false},
		{name: "one write action", policies: `@id("p") permit (principal, action == Action::"sql:delete", resource);`, req: Request{Principal: coder, Resource: staging}, want: true},
		{name: "every action", policies: `@id("p") permit (principal, action, resource);`, req: Request{Principal: coder, Resource: staging}, want: true},
		{name: "unclassified", policies: `@id("p") permit (principal, action in Action::"unclassified", resource);`, req: Request{Principal: coder, Resource: staging}, want: true},
		{name: "ddl is under write", policies: `@id("p") permit (principal, action in [Action::"read", Action::"ddl"], resource);`, req: Request{Principal: coder, Resource: staging}, want: true},
		{name: "connect and select", policies: `@id("p") permit (principal, action in [Action::"connect", Action::"sql:select"], resource);`, req: Request{Principal: coder, Resource: staging}, want: false},
		{name: "condition on the principal fails", policies: `@id("p") permit (principal, action, resource) when { principal.team == "db" };`, req: Request{Principal: coder, Resource: staging}, want: false},
		{name: "no policy", policies: ``, req: Request{Principal: coder, Resource: staging}, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := mustParse(t, tt.policies).MayWrite(tt.req); got != tt.want {
				t.Errorf("MayWrite = %v, want %v", got, tt.want)
			}
		})
	}
	var nilSet *Set
	if nilSet.MayWrite(Request{Principal: coder, Resource: staging}) {
		t.Error("a nil Set may write")
	}
}
