package policy

import (
	"fmt"
	"net/netip"
	"runtime"
	"strings"
	"sync/atomic"
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

// benchRequest is allowed by agent-7. It is in team-0, which has an
// environment permit that reads context.time at every size, and in two more
// teams that have them once there are 100 policies or more: its decision
// depends on the context and is never cached.
func benchRequest() Request {
	return Request{
		Principal: Principal{
			ID:         "agent-7",
			Groups:     []string{"team-0", "team-1", "team-7", "coding-agents"},
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
	return prepare(b, benchRequest())
}

func prepare(b *testing.B, req Request) Request {
	b.Helper()
	p, err := NewPrincipal(req.Principal.ID, req.Principal.Groups, req.Principal.Attributes)
	if err != nil {
		b.Fatal(err)
	}
	req.Principal = p
	r := req.Resource
	req.Resource = NewResource(r.Name, r.Kind, r.Environment, r.Labels...)
	return req
}

// cacheableRequests returns prepared requests that agent-7's permit allows
// and that no policy reading the context applies to, so that their decisions
// are cached. With n > 1 they are n distinct keys, as many tokens of the
// same agent (each refresh is a NewPrincipal) times as many catalog entries
// of the same binding: enough keys that a cycle through them misses.
func cacheableRequests(b *testing.B, n int) []Request {
	b.Helper()
	req := benchRequest()
	req.Principal.Groups = []string{"coding-agents", "payments"}
	if n == 1 {
		return []Request{prepare(b, req)}
	}
	const resources = 256
	ps := make([]Request, n/resources)
	for i := range ps {
		ps[i] = prepare(b, req)
	}
	rs := make([]Resource, resources)
	for i := range rs {
		rs[i] = prepare(b, req).Resource
	}
	reqs := make([]Request, 0, n)
	for _, p := range ps {
		for _, r := range rs {
			p.Resource = r
			reqs = append(reqs, p)
		}
	}
	return reqs
}

// authorizeCases are the paths of a decision: a Request literal, converted
// every time; prepared, but depending on the context, so evaluated every
// time; a cache hit; and a cache miss that evaluates and stores, cycling
// through eight times as many keys as the cache has slots.
func authorizeCases(b *testing.B) []struct {
	name string
	reqs []Request
} {
	return []struct {
		name string
		reqs []Request
	}{
		{"literal", []Request{benchRequest()}},
		{"prepared", []Request{preparedRequest(b)}},
		{"hit", cacheableRequests(b, 1)},
		{"miss", cacheableRequests(b, 8*cacheSlots)},
	}
}

func BenchmarkAuthorize(b *testing.B) {
	for _, n := range sizes {
		set, err := Parse("bench.cedar", []byte(benchPolicies(n)))
		if err != nil {
			b.Fatal(err)
		}
		for _, c := range authorizeCases(b) {
			b.Run(fmt.Sprintf("policies=%d/%s", n, c.name), func(b *testing.B) {
				if d := set.Authorize(c.reqs[0]); !d.Allowed {
					b.Fatalf("benchmark request denied: %s %v", d, d.Errors)
				}
				if cached := isCached(set, c.reqs[0]); cached != (c.name == "hit" || c.name == "miss") {
					b.Fatalf("cached = %v", cached)
				}
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					set.Authorize(c.reqs[i])
					if i++; i == len(c.reqs) {
						i = 0
					}
				}
			})
		}
	}
}

// BenchmarkAuthorizeParallel is BenchmarkAuthorize through an Engine on
// every core, as the relay decides: it shows contention on the cache (a hit
// writes no shared memory) and on the Engine's pointer.
func BenchmarkAuthorizeParallel(b *testing.B) {
	for _, n := range sizes {
		set, err := Parse("bench.cedar", []byte(benchPolicies(n)))
		if err != nil {
			b.Fatal(err)
		}
		e := NewEngine(set)
		for _, c := range authorizeCases(b) {
			b.Run(fmt.Sprintf("policies=%d/%s", n, c.name), func(b *testing.B) {
				var g atomic.Int64
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					// Each goroutine cycles through the keys from its own
					// place, far enough from the others' that a miss does
					// not find what another goroutine stored.
					i := int(g.Add(1)) * len(c.reqs) / runtime.GOMAXPROCS(0) % len(c.reqs)
					for pb.Next() {
						e.Authorize(c.reqs[i])
						if i++; i == len(c.reqs) {
							i = 0
						}
					}
				})
			})
		}
	}
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

// hierarchyPolicies are the model, appended to benchPolicies: the
// statements' decisions go through `action in` and context.sql.
const hierarchyPolicies = `
@id("coding-agents-read-staging")
permit (principal in Group::"coding-agents", action in Action::"read", resource in Environment::"staging");

@id("no-ddl-anywhere")
forbid (principal, action in Action::"ddl", resource);

@id("no-users-writes")
forbid (principal, action in Action::"write", resource)
  when { context has sql && context.sql.tables_written.contains("users") };
`

// BenchmarkAuthorizeStatement decides SQL statements (sql:select, under
// read) at 1000 policies: a literal request; a cache hit (one statement);
// a miss, cycling through more statements (distinct fingerprints) than
// the cache has slots; and the open of the same binding, cached.
func BenchmarkAuthorizeStatement(b *testing.B) {
	set, err := Parse("bench.cedar", []byte(benchPolicies(1000)+hierarchyPolicies))
	if err != nil {
		b.Fatal(err)
	}
	req := cacheableRequests(b, 1)[0]
	req.Action = "sql:select"
	stmt := func(i int) *SQL {
		return &SQL{Kinds: []string{"select"}, TablesRead: []string{"orders"}, Fingerprint: fmt.Sprintf("%016x", i)}
	}
	literal := req
	literal.Principal = Principal{ID: req.Principal.ID, Groups: req.Principal.Groups, Attributes: req.Principal.Attributes}
	literal.Resource = Resource{Name: req.Resource.Name, Kind: req.Resource.Kind, Environment: req.Resource.Environment, Labels: req.Resource.Labels}
	literal.SQL = stmt(0)
	hit := req
	hit.SQL = stmt(0)
	misses := make([]Request, 8*cacheSlots)
	for i := range misses {
		misses[i] = req
		misses[i].SQL = stmt(i + 1)
	}
	cases := []struct {
		name string
		open bool
		reqs []Request
	}{
		{"literal", false, []Request{literal}},
		{"hit", false, []Request{hit}},
		{"miss", false, misses},
		{"open-hit", true, []Request{hit}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			authorize := set.Authorize
			if c.open {
				authorize = set.AuthorizeOpen
			}
			if d := authorize(c.reqs[0]); !d.Allowed {
				b.Fatalf("benchmark request denied: %s %v", d, d.Errors)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				authorize(c.reqs[i])
				if i++; i == len(c.reqs) {
					i = 0
				}
			}
		})
	}
}
