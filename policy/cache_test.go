package policy

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// prepared is a request for id in groups on r, both prepared.
func prepared(t *testing.T, id string, groups []string, attrs map[string]any, r Resource) Request {
	t.Helper()
	p, err := NewPrincipal(id, groups, attrs)
	if err != nil {
		t.Fatal(err)
	}
	return Request{Principal: p, Resource: NewResource(r.Name, r.Kind, r.Environment, r.Labels...)}
}

// isCached reports whether s has a decision cached for req.
func isCached(s *Set, req Request) bool {
	creq, ents, err := buildRequest(&req)
	if err != nil || ents.principal.seq == 0 || ents.resource.seq == 0 {
		return false
	}
	_, ok := s.cache.load(&cacheKey{principal: ents.principal.seq, resource: ents.resource.seq, action: string(creq.Action.ID), sql: sqlKey(req.SQL), http: req.HTTP != nil})
	return ok
}

// isOpenCached reports whether s has an open decision cached for req.
func isOpenCached(s *Set, req Request) bool {
	req.Action, req.SQL, req.HTTP = "", nil, nil
	_, ents, err := buildRequest(&req)
	if err != nil || ents.principal.seq == 0 || ents.resource.seq == 0 {
		return false
	}
	_, ok := s.cache.load(&cacheKey{principal: ents.principal.seq, resource: ents.resource.seq, action: ActionConnect, open: true})
	return ok
}

// TestSwapDropsCachedAllow: once a reload removes the permit, or adds a
// forbid, the allow cached by the old Set must not be returned.
func TestSwapDropsCachedAllow(t *testing.T) {
	tests := []struct {
		name     string
		reload   string
		policies []string
	}{
		{"permit removed", `@id("other") permit (principal in Group::"ops", action, resource);`, nil},
		{"forbid added", sentence + `@id("lockdown") forbid (principal, action, resource in Environment::"staging");`, []string{"lockdown"}},
		{"no policies", ``, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			old := mustParse(t, sentence)
			e := NewEngine(old)
			req := prepared(t, "claude-1", []string{"coding-agents"}, nil, binding("staging-db", "staging"))
			for range 2 {
				checkDecision(t, e.Authorize(req), true, []string{"staging-connect"}, nil)
			}
			if !isCached(old, req) {
				t.Fatal("the allow was not cached")
			}
			e.Swap(mustParse(t, tt.reload))
			for range 2 {
				checkDecision(t, e.Authorize(req), false, tt.policies, nil)
			}
			// The old Set's decisions stay true of the old Set.
			checkDecision(t, old.Authorize(req), true, []string{"staging-connect"}, nil)
		})
	}
}

// TestContextIsNeverCached: a decision that a policy reading the context
// takes part in must follow the context of each request.
func TestContextIsNeverCached(t *testing.T) {
	nine := time.Date(2025, 6, 2, 9, 0, 0, 0, time.UTC)
	tests := []struct {
		name     string
		policies string
		allowed  func(req *Request) // makes req allowed
		denied   func(req *Request) // makes req denied
	}{
		{
			name:     "time",
			policies: `@id("hours") permit (principal, action, resource) when { context.time.toTime() < duration("18h") };`,
			allowed:  func(r *Request) { r.Time = nine },
			denied:   func(r *Request) { r.Time = nine.Add(10 * time.Hour) },
		},
		{
			name:     "zero time is now",
			policies: `@id("future") permit (principal, action, resource) when { context.time > datetime("2025-01-01") };`,
			allowed:  func(r *Request) { r.Time = time.Time{} },
			denied:   func(r *Request) { r.Time = nine.AddDate(-1, 0, 0) },
		},
		{
			name:     "source ip",
			policies: `@id("office") permit (principal, action, resource) when { context has source_ip && context.source_ip.isInRange(ip("10.0.0.0/8")) };`,
			allowed:  func(r *Request) { r.SourceIP = netip.MustParseAddr("10.1.2.3") },
			denied:   func(r *Request) { r.SourceIP = netip.MustParseAddr("192.0.2.1") },
		},
		{
			name:     "details",
			policies: `@id("read-only") permit (principal, action, resource) unless { context.details has write };`,
			allowed:  func(r *Request) { r.Details = nil },
			denied:   func(r *Request) { r.Details = map[string]string{"write": "1"} },
		},
		{
			// One candidate reading the context is enough to make the
			// whole decision depend on it.
			name: "a forbid among permits",
			policies: `@id("all") permit (principal, action, resource);
@id("late") forbid (principal, action, resource in Environment::"staging") when { context.time.toTime() >= duration("18h") };`,
			allowed: func(r *Request) { r.Time = nine },
			denied:  func(r *Request) { r.Time = nine.Add(10 * time.Hour) },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set := mustParse(t, tt.policies)
			req := prepared(t, "claude-1", []string{"coding-agents"}, nil, binding("staging-db", "staging"))
			for i := range 6 {
				r := req
				want := i%3 != 1 // allowed, denied, allowed, allowed, denied, ...
				if want {
					tt.allowed(&r)
				} else {
					tt.denied(&r)
				}
				if d := set.Authorize(r); d.Allowed != want || len(d.Errors) > 0 {
					t.Fatalf("decision %d: %s %v, want allowed %v", i, d, d.Errors, want)
				}
				if isCached(set, r) {
					t.Fatalf("decision %d was cached", i)
				}
			}
		})
	}
}

// TestWhatIsCached: only a principal and a resource prepared by NewPrincipal
// and NewResource, and unchanged since, are a key; a decision the policies
// take without reading the context is cached, whatever it is.
func TestWhatIsCached(t *testing.T) {
	set := mustParse(t, sentence+`
@id("leveled") permit (principal in Group::"leveled", action, resource) when { principal.level > 1 };
@id("no-read") forbid (principal, action == Action::"read", resource);
`)
	staging := binding("staging-db", "staging")
	tests := []struct {
		name    string
		req     func(t *testing.T) Request
		allowed bool
		cached  bool
	}{
		{"prepared allow", func(t *testing.T) Request {
			return prepared(t, "claude-1", []string{"coding-agents"}, nil, staging)
		}, true, true},
		{"prepared forbid", func(t *testing.T) Request {
			return prepared(t, "claude-1", []string{"coding-agents"}, nil, binding("ledger", "staging", "financial"))
		}, false, true},
		{"prepared permit that errors", func(t *testing.T) Request {
			return prepared(t, "claude-1", []string{"leveled"}, nil, staging)
		}, false, true},
		{"other action", func(t *testing.T) Request {
			r := prepared(t, "claude-1", []string{"coding-agents"}, nil, staging)
			r.Action = "read"
			return r
		}, false, true},
		{"no candidate", func(t *testing.T) Request {
			return prepared(t, "claude-1", []string{"ops"}, nil, binding("prod-db", "prod"))
		}, false, false},
		{"literal principal", func(t *testing.T) Request {
			r := prepared(t, "claude-1", []string{"coding-agents"}, nil, staging)
			r.Principal = agent("claude-1", "coding-agents")
			return r
		}, true, false},
		{"literal resource", func(t *testing.T) Request {
			r := prepared(t, "claude-1", []string{"coding-agents"}, nil, staging)
			r.Resource = staging
			return r
		}, true, false},
		{"principal changed", func(t *testing.T) Request {
			r := prepared(t, "claude-1", []string{"coding-agents"}, nil, staging)
			r.Principal.ID = "claude-2"
			return r
		}, true, false},
		{"principal's groups changed in place", func(t *testing.T) Request {
			r := prepared(t, "claude-1", []string{"ops"}, nil, staging)
			r.Principal.Groups[0] = "coding-agents"
			return r
		}, true, false},
		{"resource changed", func(t *testing.T) Request {
			r := prepared(t, "claude-1", []string{"coding-agents"}, nil, staging)
			r.Resource.Labels = []string{"financial"}
			return r
		}, false, false},
		{"invalid principal", func(t *testing.T) Request {
			p, _ := NewPrincipal("claude-1", []string{"coding-agents"}, map[string]any{"score": 0.5})
			return Request{Principal: p, Resource: NewResource("staging-db", "postgres", "staging")}
		}, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := tt.req(t)
			for i := range 3 {
				if d := set.Authorize(req); d.Allowed != tt.allowed {
					t.Fatalf("decision %d: %s, want allowed %v", i, d, tt.allowed)
				}
				if got := isCached(set, req); got != tt.cached {
					t.Fatalf("after decision %d: cached %v, want %v", i, got, tt.cached)
				}
			}
		})
	}
}

// TestRefreshedTokenIsANewKey: the relay prepares a new Principal when a
// token is refreshed; its decisions follow the new attributes at once.
func TestRefreshedTokenIsANewKey(t *testing.T) {
	set := mustParse(t, `@id("cleared") permit (principal, action, resource) when { principal has level && principal.level >= 2 };`)
	db := NewResource("db", "tcp", "")
	before, err := NewPrincipal("claude-1", nil, map[string]any{"level": 3})
	if err != nil {
		t.Fatal(err)
	}
	after, err := NewPrincipal("claude-1", nil, map[string]any{"level": 1})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		checkDecision(t, set.Authorize(Request{Principal: before, Resource: db}), true, []string{"cleared"}, nil)
		checkDecision(t, set.Authorize(Request{Principal: after, Resource: db}), false, nil, nil)
	}
}

// TestCachedDecisionsAreCopies: a caller that changes the slices of a
// decision does not change the next one.
func TestCachedDecisionsAreCopies(t *testing.T) {
	set := mustParse(t, `
@id("a") permit (principal, action, resource);
@id("b") permit (principal, action, resource) when { principal.level > 1 };
`)
	req := prepared(t, "claude-1", nil, nil, binding("db", ""))
	for i := range 3 {
		d := set.Authorize(req)
		checkDecision(t, d, true, []string{"a"}, []string{"b"})
		if i > 0 && !isCached(set, req) {
			t.Fatal("not cached")
		}
		d.Policies[0] = "changed"
		d.Errors[0] = EvalError{PolicyID: "changed"}
		_ = append(d.Policies[:0], "appended")
	}
}

// TestCacheConcurrent decides prepared requests from many goroutines while
// the Engine swaps between two sets: under -race it checks the cache's
// synchronization, and every decision must be the one its set gives
// without a cache.
func TestCacheConcurrent(t *testing.T) {
	sets := []*Set{
		mustParse(t, sentence),
		mustParse(t, sentence+`@id("no-prod") forbid (principal, action, resource in Environment::"prod");
@id("ops") permit (principal in Group::"ops", action, resource);`),
	}
	var reqs []Request
	for i := range 12 {
		g := []string{"coding-agents", "ops", "other"}[i%3]
		env := []string{"staging", "prod"}[i%2]
		reqs = append(reqs, prepared(t, fmt.Sprintf("a%d", i%4), []string{g}, nil, binding(fmt.Sprintf("db%d", i%5), env)))
	}
	// What each set decides for each request, converted afresh every time.
	want := make([][]Decision, len(sets))
	for s, set := range sets {
		for _, r := range reqs {
			lit := r
			lit.Principal = Principal{ID: r.Principal.ID, Groups: r.Principal.Groups}
			lit.Resource = Resource{Name: r.Resource.Name, Kind: r.Resource.Kind, Environment: r.Resource.Environment, Labels: r.Resource.Labels}
			want[s] = append(want[s], set.Authorize(lit))
		}
	}

	e := NewEngine(sets[0])
	const workers, decisions = 4, 3000
	var wg sync.WaitGroup
	errs := make(chan string, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range decisions {
				n := (i*7 + w) % len(reqs)
				set := e.Set()
				s := 0
				if set == sets[1] {
					s = 1
				}
				d := set.Authorize(reqs[n])
				if d.String() != want[s][n].String() {
					errs <- fmt.Sprintf("set %d request %d: %s, want %s", s, n, d, want[s][n])
					return
				}
			}
		})
	}
	for i := range 200 {
		e.Swap(sets[i%2])
	}
	wg.Wait()
	close(errs)
	for s := range errs {
		t.Error(s)
	}
}
