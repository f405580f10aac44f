package policy

import (
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var stagingReq = Request{Principal: agent("claude-1", "coding-agents"), Resource: binding("staging-db", "staging")}

func TestEngineZeroValueDenies(t *testing.T) {
	var e Engine
	checkDecision(t, e.Authorize(stagingReq), false, nil, nil)
	if e.Set() != nil {
		t.Errorf("Set() = %v, want nil", e.Set())
	}
	ch := e.Changed()
	select {
	case <-ch:
		t.Fatal("Changed fired before any Swap")
	default:
	}
	e.Swap(mustParse(t, sentence))
	waitClosed(t, ch)
	checkDecision(t, e.Authorize(stagingReq), true, []string{"staging-connect"}, nil)
}

func TestEngineSwap(t *testing.T) {
	allow := mustParse(t, sentence)
	deny := mustParse(t, `@id("lockdown") forbid (principal, action, resource);`)
	tests := []struct {
		name     string
		set      *Set
		allowed  bool
		policies []string
	}{
		{"permit", allow, true, []string{"staging-connect"}},
		{"lockdown", deny, false, []string{"lockdown"}},
		{"nil denies", nil, false, nil},
		{"permit again", allow, true, []string{"staging-connect"}},
	}
	e := NewEngine(nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := e.Changed()
			e.Swap(tt.set)
			waitClosed(t, before)
			if e.Set() != tt.set {
				t.Errorf("Set() is not the swapped set")
			}
			after := e.Changed()
			if after == before {
				t.Fatal("Changed returned the closed channel after Swap")
			}
			select {
			case <-after:
				t.Fatal("the fresh Changed channel is already closed")
			default:
			}
			checkDecision(t, e.Authorize(stagingReq), tt.allowed, tt.policies, nil)
		})
	}
}

func TestEngineCurrent(t *testing.T) {
	s1, s2 := mustParse(t, sentence), mustParse(t, `@id("x") permit (principal, action, resource);`)
	e := NewEngine(s1)
	set, changed := e.Current()
	if set != s1 {
		t.Fatal("Current returned another set")
	}
	e.Swap(s2)
	waitClosed(t, changed)
	if set, _ := e.Current(); set != s2 {
		t.Fatal("Current did not return the swapped set")
	}
}

func waitClosed(t *testing.T, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("Changed channel not closed after Swap")
	}
}

// TestEngineConcurrentSwap runs decisions while the set is swapped back and
// forth; under -race it checks the Engine's synchronization, and every
// decision must be one that either set gives.
func TestEngineConcurrentSwap(t *testing.T) {
	allow := mustParse(t, sentence)
	deny := mustParse(t, `@id("lockdown") forbid (principal, action, resource);`)
	e := NewEngine(allow)

	const workers, decisions, swaps = 4, 2000, 500
	var wg sync.WaitGroup
	errs := make(chan string, workers)
	for range workers {
		wg.Go(func() {
			for range decisions {
				d := e.Authorize(stagingReq)
				ok := (d.Allowed && len(d.Policies) == 1 && d.Policies[0] == "staging-connect") ||
					(!d.Allowed && len(d.Policies) == 1 && d.Policies[0] == "lockdown")
				if !ok {
					errs <- d.String()
					return
				}
			}
		})
	}
	// A watcher re-scopes on every change, as the relay does.
	stop := make(chan struct{})
	var seen int
	var watcher sync.WaitGroup
	_, changed := e.Current() // before the first Swap, so that one is seen
	watcher.Go(func() {
		for {
			select {
			case <-changed:
				seen++
			case <-stop:
				return
			}
			_, changed = e.Current()
		}
	})
	for i := range swaps {
		if i%2 == 0 {
			e.Swap(deny)
		} else {
			e.Swap(allow)
		}
	}
	wg.Wait()
	close(stop)
	watcher.Wait()
	close(errs)
	for s := range errs {
		t.Errorf("decision from neither set: %s", s)
	}
	if seen == 0 {
		t.Error("the watcher never saw a change")
	}
}
