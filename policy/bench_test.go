package policy

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	cedar "github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/types"
)

// benchPolicies generates n policies shaped like a real deployment: per-agent
// permits (most of them), per-environment group permits with conditions,
// label forbids, and a few broad forbids that every request evaluates.
func benchPolicies(n int) string {
	var b strings.Builder
	envs := []string{"dev", "staging", "prod"}
	for i := range n {
		switch {
		case i%10 == 9:
			fmt.Fprintf(&b, "@id(\"forbid-label-%d\")\nforbid (principal, action, resource)\n  when { resource.labels.contains(\"label-%d\") };\n\n", i, i)
		case i%10 == 8:
			// 50 teams, each allowed into one or two environments.
			fmt.Fprintf(&b, "@id(\"env-%d\")\npermit (principal in Group::\"team-%d\", action == Action::\"connect\", resource in Environment::\"%s\")\n  when { context.time.toTime() < duration(\"18h\") };\n\n", i, (i/10)%50, envs[(i/10)%3])
		default:
			fmt.Fprintf(&b, "@id(\"agent-%d\")\npermit (principal == Agent::\"agent-%d\", action == Action::\"connect\", resource == Binding::\"db-%d\")\n  when { principal has clearance && principal.clearance >= 2 };\n\n", i, i, i%200)
		}
	}
	b.WriteString(`@id("forbid-financial")
forbid (principal, action, resource) when { resource.labels.contains("financial") };

@id("office-only-prod")
forbid (principal, action, resource in Environment::"prod")
  unless { context has source_ip && context.source_ip.isInRange(ip("10.0.0.0/8")) };
`)
	return b.String()
}

// benchRequest is allowed by agent-7; it is in two teams that have
// environment permits once there are 100 policies or more.
func benchRequest() Request {
	return Request{
		Principal: Principal{
			ID:         "agent-7",
			Groups:     []string{"team-1", "team-7", "coding-agents"},
			Attributes: map[string]any{"clearance": float64(3), "team": "payments", "projects": []any{"billing", "ledger"}},
		},
		Resource: Resource{Name: "db-7", Kind: "postgres", Environment: "staging", Labels: []string{"pii"}},
		Time:     time.Date(2025, 6, 2, 12, 0, 0, 0, time.UTC),
		SourceIP: netip.MustParseAddr("10.0.0.5"),
		Details:  map[string]string{"database": "app"},
	}
}

var sizes = []int{10, 100, 1000}

// preparedRequest is benchRequest with the principal and resource prepared
// once, as the relay keeps them per session and per catalog entry.
func preparedRequest(b *testing.B) Request {
	b.Helper()
	req := benchRequest()
	p, err := NewPrincipal(req.Principal.ID, req.Principal.Groups, req.Principal.Attributes)
	if err != nil {
		b.Fatal(err)
	}
	req.Principal = p
	r := req.Resource
	req.Resource = NewResource(r.Name, r.Kind, r.Environment, r.Labels...)
	return req
}

func BenchmarkAuthorize(b *testing.B) {
	for _, n := range sizes {
		for _, prepared := range []bool{true, false} {
			b.Run(fmt.Sprintf("policies=%d/prepared=%v", n, prepared), func(b *testing.B) {
				set, err := Parse("bench.cedar", []byte(benchPolicies(n)))
				if err != nil {
					b.Fatal(err)
				}
				req := benchRequest()
				if prepared {
					req = preparedRequest(b)
				}
				if d := set.Authorize(req); !d.Allowed {
					b.Fatalf("benchmark request denied: %s %v", d, d.Errors)
				}
				b.ReportAllocs()
				for b.Loop() {
					set.Authorize(req)
				}
			})
		}
	}
}

// BenchmarkAuthorizeEngine measures the Engine's indirection, in parallel.
func BenchmarkAuthorizeEngine(b *testing.B) {
	set, err := Parse("bench.cedar", []byte(benchPolicies(1000)))
	if err != nil {
		b.Fatal(err)
	}
	e := NewEngine(set)
	req := preparedRequest(b)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			e.Authorize(req)
		}
	})
}

// BenchmarkCedarIsAuthorized is the baseline: cedar-go over the same
// policies and the same request, every policy evaluated, with the entity
// map built once outside the loop (which favors it).
func BenchmarkCedarIsAuthorized(b *testing.B) {
	for _, n := range sizes {
		b.Run(fmt.Sprintf("policies=%d", n), func(b *testing.B) {
			list, err := cedar.NewPolicyListFromBytes("bench.cedar", []byte(benchPolicies(n)))
			if err != nil {
				b.Fatal(err)
			}
			ps := cedar.NewPolicySet()
			for _, p := range list {
				ps.Add(cedar.PolicyID(p.Annotations()["id"]), p)
			}
			req := benchRequest()
			creq, ents, err := buildRequest(&req)
			if err != nil {
				b.Fatal(err)
			}
			creq.Context = buildContext(&req)
			entities := types.EntityMap{ents.principal.entity.UID: ents.principal.entity, ents.resource.entity.UID: ents.resource.entity}
			if d, _ := ps.IsAuthorized(entities, creq); d != cedar.Allow {
				b.Fatal("benchmark request denied")
			}
			b.ReportAllocs()
			for b.Loop() {
				ps.IsAuthorized(entities, creq)
			}
		})
	}
}

// BenchmarkBuildRequest is the per-request cost of turning a Request into
// Cedar entities and context.
func BenchmarkBuildRequest(b *testing.B) {
	for _, prepared := range []bool{true, false} {
		b.Run(fmt.Sprintf("prepared=%v", prepared), func(b *testing.B) {
			req := benchRequest()
			if prepared {
				req = preparedRequest(b)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := buildRequest(&req); err != nil {
					b.Fatal(err)
				}
				buildContext(&req)
			}
		})
	}
}

func BenchmarkParse(b *testing.B) {
	src := []byte(benchPolicies(1000))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse("bench.cedar", src); err != nil {
			b.Fatal(err)
		}
	}
}
