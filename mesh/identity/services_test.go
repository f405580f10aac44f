package identity

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// connectorWith signs a connector payload whose services claim is raw JSON.
func connectorWith(t *testing.T, k *SigningKey, services string) string {
	t.Helper()
	p := payloadOf(t, RoleConnector)
	p["services"] = json.RawMessage(services)
	return craft(t, header(k), p, signWith(t, k))
}

func TestServicesClaim(t *testing.T) {
	k := newKey(t, EdDSA)
	v := newVerifier(t, VerifierConfig{KeySet: jwks(t, k)})
	tests := []struct {
		name     string
		services string
		want     []Service // nil: refused
		msg      string    // in the refusal
	}{
		{name: "names", services: `["a", "b"]`, want: []Service{{Name: "a"}, {Name: "b"}}},
		{name: "described and named", services: `[{"name":"prod-finance","kind":"postgres","environment":"prod","labels":["financial"]}, "staging-api"]`,
			want: []Service{{Name: "prod-finance", Kind: "postgres", Environment: "prod", Labels: []string{"financial"}}, {Name: "staging-api"}}},
		{name: "kind alone", services: `[{"name":"echo","kind":"tcp"}]`, want: []Service{{Name: "echo", Kind: "tcp"}}},
		{name: "not an array", services: `{"a":true}`, msg: "must be an array"},
		{name: "a number", services: `[1]`, msg: "must be an array"},
		{name: "null entry", services: `["a", null]`, msg: "must be an array"},
		{name: "bad name", services: `["a b"]`, msg: "letters, digits"},
		{name: "empty name", services: `[""]`, msg: "name"},
		{name: "twice", services: `["a", {"name":"a","kind":"tcp"}]`, msg: `"a" twice`},
		{name: "unknown member", services: `[{"name":"a","kind":"tcp","env":"prod"}]`, msg: `member "env"`},
		{name: "duplicate member", services: `[{"name":"a","kind":"tcp","kind":"http"}]`, msg: "duplicate"},
		{name: "no name", services: `[{"kind":"tcp"}]`, msg: `no "name"`},
		{name: "no kind", services: `[{"name":"a","environment":"prod"}]`, msg: `no "kind"`},
		{name: "unknown kind", services: `[{"name":"a","kind":"udp"}]`, msg: `kind "udp"`},
		{name: "kind not a string", services: `[{"name":"a","kind":1}]`, msg: "kind must be a string"},
		{name: "bad environment", services: `[{"name":"a","kind":"tcp","environment":"pr od"}]`, msg: "environment"},
		{name: "labels a string", services: `[{"name":"a","kind":"tcp","labels":"financial"}]`, msg: "labels must be an array"},
		{name: "label null", services: `[{"name":"a","kind":"tcp","labels":[null]}]`, msg: "labels must be an array"},
		{name: "label twice", services: `[{"name":"a","kind":"tcp","labels":["x","x"]}]`, msg: `label "x" twice`},
		{name: "too many labels", services: `[{"name":"a","kind":"tcp","labels":[` + numbered("l", MaxServiceLabels+1) + `]}]`, msg: "labels, more than"},
		{name: "too many services", services: `[` + numbered("s", MaxServices+1) + `]`, msg: "services, more than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := v.Verify(connectorWith(t, k, tt.services), RoleConnector)
			if tt.want != nil {
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(c.Services, tt.want) {
					t.Fatalf("Services = %+v, want %+v", c.Services, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted: %+v", c.Services)
			}
			if !errors.Is(err, ErrInvalidClaim) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("error %q, want ErrInvalidClaim with %q", err, tt.msg)
			}
		})
	}
}

func numbered(prefix string, n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`"` + prefix + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + itoa(i) + `"`)
	}
	return b.String()
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

// Issue writes what Verify reads, and refuses what Verify would refuse.
func TestIssueServices(t *testing.T) {
	k := newKey(t, EdDSA)
	v := newVerifier(t, VerifierConfig{KeySet: jwks(t, k)})
	c := goodClaims(RoleConnector)
	got, err := v.Verify(issue(t, k, c), RoleConnector)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Services, c.Services) {
		t.Fatalf("round trip: %+v, want %+v", got.Services, c.Services)
	}
	if s, ok := got.Service("billing-api"); !ok || !s.Described() || s.Environment != "prod" {
		t.Errorf("Service(billing-api) = %+v, %v", s, ok)
	}
	if s, ok := got.Service("staging-db"); !ok || s.Described() {
		t.Errorf("Service(staging-db) = %+v, %v", s, ok)
	}
	for _, bad := range []struct {
		name string
		s    []Service
	}{
		{"environment without kind", []Service{{Name: "a", Environment: "prod"}}},
		{"bad kind", []Service{{Name: "a", Kind: "udp"}}},
		{"bad name", []Service{{Name: "a:1"}}},
		{"twice", []Service{{Name: "a"}, {Name: "a"}}},
	} {
		t.Run(bad.name, func(t *testing.T) {
			c := goodClaims(RoleConnector)
			c.Services = bad.s
			if tok, err := k.Issue(c); err == nil {
				t.Fatalf("issued %s", tok)
			}
		})
	}
}
