package policy

import (
	"encoding/json"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

// sentence is the policy that ARCHITECTURE.md says the product must make true.
const sentence = `
@id("staging-connect")
permit (principal in Group::"coding-agents", action == Action::"connect",
        resource in Environment::"staging");

@id("forbid-financial")
forbid (principal, action, resource)
  when { resource has labels && resource.labels.contains("financial") };
`

func mustParse(t *testing.T, src string) *Set {
	t.Helper()
	s, err := Parse("test.cedar", []byte(src))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return s
}

func agent(id string, groups ...string) Principal {
	return Principal{ID: id, Groups: groups}
}

func binding(name, env string, labels ...string) Resource {
	return Resource{Name: name, Kind: "postgres", Environment: env, Labels: labels}
}

// checkDecision compares the parts of a decision that a test cares about:
// Allowed, Policies and the IDs of Errors.
func checkDecision(t *testing.T, got Decision, allowed bool, policies []string, errorIDs []string) {
	t.Helper()
	if got.Allowed != allowed {
		t.Errorf("Allowed = %v, want %v (%s; errors %v)", got.Allowed, allowed, got, got.Errors)
	}
	if !slices.Equal(got.Policies, policies) {
		t.Errorf("Policies = %q, want %q", got.Policies, policies)
	}
	var ids []string
	for _, e := range got.Errors {
		ids = append(ids, e.PolicyID)
	}
	if !slices.Equal(ids, errorIDs) {
		t.Errorf("error policy IDs = %q, want %q (errors %v)", ids, errorIDs, got.Errors)
	}
}

func TestArchitectureSentence(t *testing.T) {
	set := mustParse(t, sentence)
	coder := agent("claude-1", "coding-agents")
	tests := []struct {
		name     string
		req      Request
		allowed  bool
		policies []string
		str      string
	}{
		{
			name:     "group member connects to a staging binding",
			req:      Request{Principal: coder, Resource: binding("staging-db", "staging")},
			allowed:  true,
			policies: []string{"staging-connect"},
			str:      "allow (staging-connect)",
		},
		{
			name:     "financial label is forbidden in prod",
			req:      Request{Principal: coder, Resource: binding("prod-finance", "prod", "financial", "pii")},
			policies: []string{"forbid-financial"},
			str:      "deny (forbid-financial)",
		},
		{
			name:     "forbid beats permit in staging",
			req:      Request{Principal: coder, Resource: binding("staging-ledger", "staging", "financial")},
			policies: []string{"forbid-financial"},
			str:      "deny (forbid-financial)",
		},
		{
			name: "agent outside the group gets the default deny",
			req:  Request{Principal: agent("intruder", "other-agents"), Resource: binding("staging-db", "staging")},
			str:  "deny (no policy permits)",
		},
		{
			name: "prod without a permit is the default deny",
			req:  Request{Principal: coder, Resource: binding("prod-db", "prod")},
			str:  "deny (no policy permits)",
		},
		{
			name: "binding without environment is the default deny",
			req:  Request{Principal: coder, Resource: binding("loose", "")},
			str:  "deny (no policy permits)",
		},
		{
			name: "another action is not connect",
			req:  Request{Principal: coder, Action: "write", Resource: binding("staging-db", "staging")},
			str:  "deny (no policy permits)",
		},
		{
			name:     "explicit connect equals the default",
			req:      Request{Principal: coder, Action: "connect", Resource: binding("staging-db", "staging")},
			allowed:  true,
			policies: []string{"staging-connect"},
			str:      "allow (staging-connect)",
		},
		{
			name:     "duplicate groups do not duplicate policies",
			req:      Request{Principal: agent("claude-1", "coding-agents", "coding-agents"), Resource: binding("staging-db", "staging")},
			allowed:  true,
			policies: []string{"staging-connect"},
			str:      "allow (staging-connect)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := set.Authorize(tt.req)
			checkDecision(t, got, tt.allowed, tt.policies, nil)
			if s := got.String(); s != tt.str {
				t.Errorf("String() = %q, want %q", s, tt.str)
			}
		})
	}
}

func TestForbidThatErrorsDenies(t *testing.T) {
	const src = `
@id("permit-all")
permit (principal, action, resource);

@id("forbid-low-clearance")
forbid (principal, action, resource) when { principal.clearance < 3 };
`
	set := mustParse(t, src)
	tests := []struct {
		name     string
		attrs    map[string]any
		allowed  bool
		policies []string
		errorIDs []string
	}{
		{
			name:     "missing attribute errors and the forbid denies",
			attrs:    nil,
			policies: []string{"forbid-low-clearance"},
			errorIDs: []string{"forbid-low-clearance"},
		},
		{
			name:     "wrong type errors and the forbid denies",
			attrs:    map[string]any{"clearance": "top"},
			policies: []string{"forbid-low-clearance"},
			errorIDs: []string{"forbid-low-clearance"},
		},
		{
			name:     "low clearance matches the forbid",
			attrs:    map[string]any{"clearance": float64(1)},
			policies: []string{"forbid-low-clearance"},
		},
		{
			name:     "high clearance is allowed",
			attrs:    map[string]any{"clearance": float64(5)},
			allowed:  true,
			policies: []string{"permit-all"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := set.Authorize(Request{
				Principal: Principal{ID: "a", Attributes: tt.attrs},
				Resource:  binding("db", "staging"),
			})
			checkDecision(t, got, tt.allowed, tt.policies, tt.errorIDs)
			for _, e := range got.Errors {
				if e.Message == "" {
					t.Errorf("error for %s has no message", e.PolicyID)
				}
			}
		})
	}
}

func TestPermitThatErrorsDoesNotPermit(t *testing.T) {
	const src = `
@id("cleared")
permit (principal, action, resource) when { principal.clearance >= 3 };

@id("ops")
permit (principal in Group::"ops", action, resource);
`
	set := mustParse(t, src)
	tests := []struct {
		name     string
		p        Principal
		allowed  bool
		policies []string
		errorIDs []string
	}{
		{
			name:     "the only permit errors: default deny with the error",
			p:        Principal{ID: "a"},
			errorIDs: []string{"cleared"},
		},
		{
			name:     "another permit matches: allow, error still reported",
			p:        Principal{ID: "a", Groups: []string{"ops"}},
			allowed:  true,
			policies: []string{"ops"},
			errorIDs: []string{"cleared"},
		},
		{
			name:     "both permits match",
			p:        Principal{ID: "a", Groups: []string{"ops"}, Attributes: map[string]any{"clearance": 4}},
			allowed:  true,
			policies: []string{"cleared", "ops"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := set.Authorize(Request{Principal: tt.p, Resource: binding("db", "")})
			checkDecision(t, got, tt.allowed, tt.policies, tt.errorIDs)
		})
	}
}

func TestInvalidRequestsAreDenied(t *testing.T) {
	set := mustParse(t, `@id("all") permit (principal, action, resource);`)
	tests := []struct {
		name string
		req  Request
		want string // in the error message
	}{
		{"empty principal", Request{Resource: binding("db", "")}, "principal ID is empty"},
		{"empty resource", Request{Principal: agent("a")}, "resource name is empty"},
		{"fractional attribute", Request{Principal: Principal{ID: "a", Attributes: map[string]any{"score": 0.5}}, Resource: binding("db", "")}, `principal attribute "score": 0.5 is not an integer`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := set.Authorize(tt.req)
			checkDecision(t, got, false, nil, []string{""})
			if !strings.Contains(got.Errors[0].Message, tt.want) {
				t.Errorf("error = %q, want it to contain %q", got.Errors[0].Message, tt.want)
			}
			if s := got.String(); !strings.HasPrefix(s, "deny (invalid request: ") {
				t.Errorf("String() = %q", s)
			}
		})
	}
}

func TestEmptySetDenies(t *testing.T) {
	req := Request{Principal: agent("a"), Resource: binding("db", "")}
	var zero Set
	empty := mustParse(t, "// nothing yet\n")
	for name, s := range map[string]*Set{"nil": nil, "zero": &zero, "empty document": empty} {
		t.Run(name, func(t *testing.T) {
			if s.Len() != 0 {
				t.Errorf("Len() = %d", s.Len())
			}
			checkDecision(t, s.Authorize(req), false, nil, nil)
		})
	}
}

func TestDecisionOrderIsLoadOrder(t *testing.T) {
	// Many matching policies: Policies must come out in document order,
	// whatever order cedar-go evaluates them in.
	var src strings.Builder
	var want []string
	for _, id := range []string{"z", "m", "a", "q", "b", "y", "c"} {
		src.WriteString(`@id("` + id + `") forbid (principal, action, resource);` + "\n")
		want = append(want, id)
	}
	set := mustParse(t, src.String())
	for range 20 {
		got := set.Authorize(Request{Principal: agent("a"), Resource: binding("db", "")})
		checkDecision(t, got, false, want, nil)
	}
}

func TestAttributes(t *testing.T) {
	var decoded map[string]any
	if err := json.Unmarshal([]byte(`{
		"team": "payments",
		"clearance": 4,
		"oncall": true,
		"projects": ["billing", "ledger"],
		"org": {"unit": "eng", "level": 3, "tags": ["a", "b"]},
		"manager": null
	}`), &decoded); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		when  string
		attrs map[string]any
		want  bool
	}{
		{"string", `principal.team == "payments"`, decoded, true},
		{"float64 integer is a Long", `principal.clearance >= 4 && principal.clearance + 1 == 5`, decoded, true},
		{"bool", `principal.oncall`, decoded, true},
		{"set of strings", `principal.projects.contains("ledger") && !principal.projects.contains("x")`, decoded, true},
		{"nested record", `principal.org.unit == "eng" && principal.org.level == 3`, decoded, true},
		{"set inside a record", `principal.org.tags.containsAll(["b", "a"])`, decoded, true},
		{"null is left out", `!(principal has manager)`, decoded, true},
		{"role is always agent", `principal.role == "agent"`, map[string]any{"role": "admin"}, true},
		{"json.Number integer", `principal.n == 9007199254740993`, map[string]any{"n": json.Number("9007199254740993")}, true},
		{"go int", `principal.n == -7`, map[string]any{"n": int32(-7)}, true},
		{"[]string", `principal.s.contains("x")`, map[string]any{"s": []string{"x"}}, true},
		{"map[string]string", `principal.m.k == "v"`, map[string]any{"m": map[string]string{"k": "v"}}, true},
		{"absent attribute is false under has", `principal has team`, nil, false},
		{"mixed set", `principal.s.contains(1) && principal.s.contains("one") && principal.s.contains(true)`, map[string]any{"s": []any{float64(1), "one", true}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set := mustParse(t, `@id("p") permit (principal, action, resource) when { `+tt.when+` };`)
			got := set.Authorize(Request{Principal: Principal{ID: "a", Attributes: tt.attrs}, Resource: binding("db", "")})
			if len(got.Errors) > 0 {
				t.Fatalf("errors: %v", got.Errors)
			}
			if got.Allowed != tt.want {
				t.Errorf("Allowed = %v, want %v", got.Allowed, tt.want)
			}
		})
	}
}

func TestAttributeConversionErrors(t *testing.T) {
	type opaque struct{}
	tests := []struct {
		name  string
		value any
		want  string
	}{
		{"fraction", 2.5, `"x": 2.5 is not an integer; Cedar has no floating-point numbers`},
		{"NaN", func() float64 { z := 0.0; return z / z }(), "not a number Cedar can represent"},
		{"float out of range", 1e19, "overflows a Cedar Long"},
		{"uint64 out of range", uint64(1 << 63), "overflows a Cedar Long"},
		{"json.Number fraction", json.Number("1.5"), "1.5 is not a 64-bit integer"},
		{"null in a set", []any{"a", nil}, "element 1 is null"},
		{"fraction in a record", map[string]any{"r": 0.1}, `field "r": 0.1 is not an integer`},
		{"unsupported Go type", opaque{}, "unsupported type policy.opaque"},
		{"too deep", nest(40), "nested deeper than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := convertAttributes(map[string]any{"x": tt.value})
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

func nest(n int) any {
	var v any = "leaf"
	for range n {
		v = []any{v}
	}
	return v
}

func TestResourceAndContext(t *testing.T) {
	noon := time.Date(2025, 6, 2, 12, 0, 0, 0, time.UTC)
	base := Request{
		Principal: agent("a"),
		Resource:  Resource{Name: "billing-api", Kind: "http", Environment: "prod", Labels: []string{"financial"}},
		Time:      noon,
		SourceIP:  netip.MustParseAddr("10.1.2.3"),
		Details:   map[string]string{"method": "GET", "path": "/invoices"},
	}
	tests := []struct {
		name string
		when string
		mod  func(r *Request)
		want bool
	}{
		{"kind", `resource.kind == "http"`, nil, true},
		{"environment attribute", `resource.environment == "prod"`, nil, true},
		{"environment parent", `resource in Environment::"prod"`, nil, true},
		{"labels", `resource.labels.contains("financial")`, nil, true},
		{"labels present when empty", `resource has labels && resource.labels.isEmpty()`, func(r *Request) { r.Resource.Labels = nil }, true},
		{"no environment parent when empty", `resource in Environment::""`, func(r *Request) { r.Resource.Environment = "" }, false},
		{"time", `context.time == datetime("2025-06-02T12:00:00Z")`, nil, true},
		{"time of day", `context.time.toTime() >= duration("9h") && context.time.toTime() < duration("17h")`, nil, true},
		{"zero time means now", `context.time > datetime("2025-01-01")`, func(r *Request) { r.Time = time.Time{} }, true},
		{"source ip range", `context.source_ip.isInRange(ip("10.0.0.0/8"))`, nil, true},
		{"mapped IPv4 is unmapped", `context.source_ip.isInRange(ip("10.0.0.0/8"))`, func(r *Request) { r.SourceIP = netip.MustParseAddr("::ffff:10.1.2.3") }, true},
		{"ipv6", `context.source_ip.isIpv6()`, func(r *Request) { r.SourceIP = netip.MustParseAddr("fe80::1%eth0") }, true},
		{"no source ip", `!(context has source_ip)`, func(r *Request) { r.SourceIP = netip.Addr{} }, true},
		{"details", `context.details.method == "GET" && context.details.path like "/invoices*"`, nil, true},
		{"details always present", `context has details && !(context.details has method)`, func(r *Request) { r.Details = nil }, true},
		{"action passes through", `action == Action::"read"`, func(r *Request) { r.Action = "read" }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := base
			if tt.mod != nil {
				tt.mod(&req)
			}
			set := mustParse(t, `@id("p") permit (principal, action, resource) when { `+tt.when+` };`)
			got := set.Authorize(req)
			if len(got.Errors) > 0 {
				t.Fatalf("errors: %v", got.Errors)
			}
			if got.Allowed != tt.want {
				t.Errorf("Allowed = %v, want %v", got.Allowed, tt.want)
			}
		})
	}
}
