package relay

import (
	"slices"
	"testing"

	"github.com/postern/postern/policy"
)

// TestDecideOpen: the action an agent names in its Open narrows the open
// rule and never widens it.
func TestDecideOpen(t *testing.T) {
	set, err := policy.Parse("open.cedar", []byte(`
@id("read-prod") permit (principal in Group::"oncall", action in Action::"read", resource in Environment::"prod");
@id("no-prod-opens") forbid (principal, action == Action::"connect", resource == Binding::"prod-ledger");
@id("no-prod-writes") forbid (principal, action in Action::"write", resource in Environment::"prod");
@id("custom") permit (principal, action == Action::"query", resource == Binding::"prod-ledger");
`))
	if err != nil {
		t.Fatal(err)
	}
	e := policy.NewEngine(set)
	agent := policy.Principal{ID: "pager", Groups: []string{"oncall"}}
	status := policy.Resource{Name: "prod-status", Kind: "http", Environment: "prod"}
	ledger := policy.Resource{Name: "prod-ledger", Kind: "postgres", Environment: "prod"}
	tests := []struct {
		name     string
		action   string
		resource policy.Resource
		allowed  bool
		policies []string
	}{
		{"connect by reading", "", status, true, []string{"read-prod"}},
		{"named read", "sql:select", status, true, []string{"read-prod"}},
		{"named write", "http:POST", status, false, []string{"no-prod-writes"}},
		{"forbid on connect", "", ledger, false, []string{"no-prod-opens"}},
		{"a named read does not dodge it", "sql:select", ledger, false, []string{"no-prod-opens"}},
		{"a named group does not either", "read", ledger, false, []string{"no-prod-opens"}},
		{"nor a declared action", "query", ledger, false, []string{"no-prod-opens"}},
		{"a declared action must be permitted too", "query", status, false, nil},
		{"a named group must be permitted too", "write", status, false, []string{"no-prod-writes"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := decideOpen(e, policy.Request{Principal: agent, Action: tt.action, Resource: tt.resource})
			if d.Allowed != tt.allowed || !slices.Equal(d.Policies, tt.policies) {
				t.Errorf("decideOpen = %s, want allowed %v by %q", d, tt.allowed, tt.policies)
			}
		})
	}
}
