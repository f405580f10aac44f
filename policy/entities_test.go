package policy

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestNewPrincipal(t *testing.T) {
	tests := []struct {
		name    string
		id      string
		attrs   map[string]any
		wantErr string
	}{
		{name: "valid", id: "a", attrs: map[string]any{"team": "x", "n": float64(2)}},
		{name: "no attributes", id: "a"},
		{name: "empty id", id: "", wantErr: "principal ID is empty"},
		{name: "fraction", id: "a", attrs: map[string]any{"score": 0.25}, wantErr: `principal attribute "score": 0.25 is not an integer`},
	}
	set := mustParse(t, `@id("all") permit (principal, action, resource);`)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := NewPrincipal(tt.id, []string{"g"}, tt.attrs)
			d := set.Authorize(Request{Principal: p, Resource: NewResource("db", "tcp", "")})
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("NewPrincipal: %v", err)
				}
				if p.form == nil {
					t.Error("no Cedar form")
				}
				checkDecision(t, d, true, []string{"all"}, nil)
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("NewPrincipal error = %v, want %q", err, tt.wantErr)
			}
			// Authorize reaches the same verdict on its own.
			checkDecision(t, d, false, nil, []string{""})
			if d.Errors[0].Message != err.Error() {
				t.Errorf("Authorize error %q, NewPrincipal error %q", d.Errors[0].Message, err)
			}
		})
	}
}

// TestStaleFormsAreIgnored changes the fields of prepared values: decisions
// must follow the fields, not the form computed before the change nor the
// decision cached for it.
func TestStaleFormsAreIgnored(t *testing.T) {
	set := mustParse(t, `
@id("ops") permit (principal in Group::"ops", action, resource);
@id("prod") forbid (principal, action, resource in Environment::"prod");
@id("pii") forbid (principal, action, resource) when { resource.labels.contains("pii") };
@id("bob") forbid (principal == Agent::"bob", action, resource);
@id("cleared") forbid (principal, action, resource) when { principal has level && principal.level < 2 };
`)
	tests := []struct {
		name     string
		change   func(p *Principal, r *Resource)
		policies []string
	}{
		{"unchanged", func(*Principal, *Resource) {}, []string{"ops"}},
		{"group replaced", func(p *Principal, _ *Resource) { p.Groups = []string{"dev"} }, nil},
		{"group changed in place", func(p *Principal, _ *Resource) { p.Groups[0] = "dev" }, nil},
		{"id changed", func(p *Principal, _ *Resource) { p.ID = "bob" }, []string{"bob"}},
		{"attributes replaced", func(p *Principal, _ *Resource) { p.Attributes = map[string]any{"level": 1} }, []string{"cleared"}},
		{"environment changed", func(_ *Principal, r *Resource) { r.Environment = "prod" }, []string{"prod"}},
		{"label added", func(_ *Principal, r *Resource) { r.Labels = append(r.Labels, "pii") }, []string{"pii"}},
		{"label changed in place", func(_ *Principal, r *Resource) { r.Labels[0] = "pii" }, []string{"pii"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := NewPrincipal("alice", []string{"ops"}, map[string]any{"level": 5})
			if err != nil {
				t.Fatal(err)
			}
			r := NewResource("db", "postgres", "staging", "internal")
			// Decided, and cached, before the change.
			checkDecision(t, set.Authorize(Request{Principal: p, Resource: r}), true, []string{"ops"}, nil)
			tt.change(&p, &r)
			got := set.Authorize(Request{Principal: p, Resource: r})
			checkDecision(t, got, len(tt.policies) == 1 && tt.policies[0] == "ops", tt.policies, nil)
		})
	}
}

func TestNewResourceEmptyName(t *testing.T) {
	set := mustParse(t, `@id("all") permit (principal, action, resource);`)
	d := set.Authorize(Request{Principal: agent("a"), Resource: NewResource("", "tcp", "prod")})
	checkDecision(t, d, false, nil, []string{""})
	if got, want := d.String(), "deny (invalid request: resource name is empty)"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

func TestDecisionString(t *testing.T) {
	tests := []struct {
		name string
		d    Decision
		want string
	}{
		{"allow by one", Decision{Allowed: true, Policies: []string{"staging-read"}}, "allow (staging-read)"},
		{"allow by several", Decision{Allowed: true, Policies: []string{"a", "b"}}, "allow (a, b)"},
		{"deny by forbid", Decision{Policies: []string{"forbid-financial"}}, "deny (forbid-financial)"},
		{"default deny", Decision{}, "deny (no policy permits)"},
		{"default deny with a permit error", Decision{Errors: []EvalError{{PolicyID: "p", Message: "m"}}}, "deny (no policy permits)"},
		{"invalid request", Decision{Errors: []EvalError{{Message: "principal ID is empty"}}}, "deny (invalid request: principal ID is empty)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.d.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
		})
	}
}

// FuzzAttributes feeds token attributes, as JSON, through the conversion:
// it must not panic, and what converts must be readable by a policy.
func FuzzAttributes(f *testing.F) {
	f.Add([]byte(`{"team":"payments","clearance":4,"oncall":true,"projects":["a","b"],"org":{"unit":"eng","n":null}}`))
	f.Add([]byte(`{"x":1.5}`))
	f.Add([]byte(`{"x":[null]}`))
	f.Add([]byte(`{"x":1e300,"y":-9223372036854775808}`))
	f.Add([]byte(`{"role":"admin"}`))
	set, err := Parse("f.cedar", []byte(`@id("p") permit (principal, action, resource) when { principal.role == "agent" };`))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var attrs map[string]any
		if json.Unmarshal(data, &attrs) != nil {
			return
		}
		p, err := NewPrincipal("a", nil, attrs)
		d := set.Authorize(Request{Principal: p, Resource: Resource{Name: "r"}})
		if err != nil {
			checkDecision(t, d, false, nil, []string{""})
			return
		}
		checkDecision(t, d, true, []string{"p"}, nil)
	})
}
