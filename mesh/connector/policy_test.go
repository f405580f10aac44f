package connector_test

import (
	"strings"
	"testing"
	"time"

	"github.com/postern/postern"
	"github.com/postern/postern/internal/meshtest"
	"github.com/postern/postern/mesh/connector"
	"github.com/postern/postern/policy"
)

const pushPolicies = `
@id("read-staging")
permit (principal in Group::"coding-agents", action in Action::"read", resource in Environment::"staging");
`

func startPolicyConnector(t *testing.T, m *meshtest.Mesh, name string) *connector.Connector {
	t.Helper()
	svc := connector.Service{Name: "staging-api-" + name, Kind: postern.KindHTTP, Environment: "staging", Upstream: meshtest.EchoServer(t)}
	c, _ := m.StartConnector(connector.Config{Token: m.ConnectorToken(name, meshtest.Describe(svc)...), Services: []connector.Service{svc}})
	return c
}

func policyState(c *connector.Connector, relay string) connector.PolicyState {
	return c.Policy()[relay]
}

// TestPolicyPush: a connector receives the relay's set with its session,
// and every reload within a second, with a higher version each time.
func TestPolicyPush(t *testing.T) {
	m := meshtest.New(t, meshtest.Options{Policies: pushPolicies})
	a := startPolicyConnector(t, m, "office-1")
	b := startPolicyConnector(t, m, "office-2")
	for _, c := range []*connector.Connector{a, b} {
		meshtest.WaitFor(t, "the first policy set", func() bool { return policyState(c, m.Addr()).Loaded })
		st := policyState(c, m.Addr())
		if st.Version == 0 || len(st.Hash) != 64 || st.Policies != 1 || st.Err != "" {
			t.Fatalf("first set: %+v", st)
		}
	}
	first := policyState(a, m.Addr())

	set, err := policy.Parse("reload.cedar", []byte(pushPolicies+`
@id("no-writes")
forbid (principal, action in Action::"write", resource);
`))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	m.Policy.Swap(set)
	for _, c := range []*connector.Connector{a, b} {
		for policyState(c, m.Addr()).Policies != 2 {
			if time.Since(start) > time.Second {
				t.Fatalf("the reload did not reach the connector within 1s: %+v", policyState(c, m.Addr()))
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	t.Logf("reload reached both connectors in %v", time.Since(start))
	second := policyState(a, m.Addr())
	if second.Version <= first.Version || second.Hash == first.Hash || !second.Loaded {
		t.Fatalf("after reload: %+v, before %+v", second, first)
	}
	if got := policyState(b, m.Addr()); got.Version != second.Version || got.Hash != second.Hash {
		t.Fatalf("two connectors of one relay hold different sets: %+v and %+v", got, second)
	}
}

// TestPolicyThatDoesNotValidate: a set that the connector cannot validate
// against the relay's declarations leaves it with none, saying why.
func TestPolicyThatDoesNotValidate(t *testing.T) {
	m := meshtest.New(t, meshtest.Options{
		Policies: pushPolicies + `
@id("infra-only")
forbid (principal, action, resource) unless { principal has team && principal.team == "infra" };
`,
		PolicyOptions: &policy.ValidateOptions{}, // team is not declared
	})
	c := startPolicyConnector(t, m, "office-1")
	meshtest.WaitFor(t, "the first policy frame", func() bool { return policyState(c, m.Addr()).Version > 0 })
	st := policyState(c, m.Addr())
	if st.Loaded || !strings.Contains(st.Err, "does not validate") || !strings.Contains(st.Err, "team") {
		t.Fatalf("state %+v; want not loaded, with the validation error", st)
	}
}
