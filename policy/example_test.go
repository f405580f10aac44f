package policy_test

import (
	"errors"
	"fmt"
	"log"
	"net/netip"
	"time"

	"github.com/postern/postern/mesh/identity"
	"github.com/postern/postern/policy"
)

const examplePolicy = `
@id("staging-connect")
permit (principal in Group::"coding-agents", action == Action::"connect",
        resource in Environment::"staging");

@id("forbid-financial")
forbid (principal, action, resource)
  when { resource has labels && resource.labels.contains("financial") };
`

func Example() {
	set, err := policy.Parse("mesh.cedar", []byte(examplePolicy))
	if err != nil {
		log.Fatal(err)
	}

	// Once per session, from the verified token.
	agent, err := policy.NewPrincipal("claude-1", []string{"coding-agents"}, map[string]any{"team": "payments"})
	if err != nil {
		log.Fatal(err)
	}
	// Once per catalog entry.
	stagingDB := policy.NewResource("staging-db", "postgres", "staging")
	ledger := policy.NewResource("staging-ledger", "postgres", "staging", "financial")

	// On every open.
	for _, r := range []policy.Resource{stagingDB, ledger} {
		d := set.Authorize(policy.Request{Principal: agent, Resource: r, Time: time.Now()})
		fmt.Println(r.Name, d)
	}

	stranger := policy.Principal{ID: "stranger"}
	fmt.Println("stranger", set.Authorize(policy.Request{Principal: stranger, Resource: stagingDB}))
	// Output:
	// staging-db allow (staging-connect)
	// staging-ledger deny (forbid-financial)
	// stranger deny (no policy permits)
}

// A relay's use of the package: load and validate a directory of
// policies, then decide each open. These are the repository's example
// policies.
func ExampleLoadDir() {
	dir := "../examples/policies"
	// The verified token of the session, and the address it came from.
	claims := identity.Claims{Subject: "coding-agent", Groups: []string{"coding-agents"}, Attributes: map[string]any{"team": "payments"}}
	remote := netip.MustParseAddrPort("192.0.2.7:50412")

	set, err := policy.LoadDir(dir) // every *.cedar file of dir
	if err != nil {
		log.Fatal(err) // every problem, each "policy: FILE:LINE:COL: ..."
	}
	if errs := set.Validate(policy.ValidateOptions{
		PrincipalAttributes: map[string]string{"team": "String"},
	}); len(errs) > 0 {
		log.Fatal(errors.Join(errs...))
	}
	engine := policy.NewEngine(set)

	// Per session, from the verified token; per catalog entry.
	agent, err := policy.NewPrincipal(claims.Subject, claims.Groups, claims.Attributes)
	if err != nil {
		log.Fatal(err) // an attribute Cedar cannot hold
	}
	db := policy.NewResource("staging-db", "postgres", "staging", "pii")

	// Per open.
	d := engine.AuthorizeOpen(policy.Request{
		Principal: agent,
		Resource:  db,
		SourceIP:  remote.Addr(),
		Details:   map[string]string{"database": "app"},
	})
	fmt.Println(d.Allowed, d) // true allow (coding-agents-read-staging)

	// Per statement, at the connector: each of its actions.
	d = engine.Authorize(policy.Request{
		Principal: agent,
		Action:    "sql:delete",
		Resource:  db,
		SQL:       &policy.SQL{Kinds: []string{"DELETE"}, TablesWritten: []string{"orders"}},
	})
	fmt.Println(d.Allowed, d) // false deny (no policy permits)

	ledger := policy.NewResource("staging-ledger", "postgres", "staging", "financial")
	fmt.Println(engine.AuthorizeOpen(policy.Request{Principal: agent, Resource: ledger}))
	// Output:
	// true allow (coding-agents-read-staging)
	// false deny (no policy permits)
	// deny (forbid-financial)
}

func ExampleDecision_erroringForbid() {
	set, err := policy.Parse("clearance.cedar", []byte(`
@id("everyone")
permit (principal, action, resource);

@id("low-clearance")
forbid (principal, action, resource) when { principal.clearance < 3 };
`))
	if err != nil {
		log.Fatal(err)
	}
	// No clearance attribute: the forbid fails to evaluate, and denies.
	d := set.Authorize(policy.Request{
		Principal: policy.Principal{ID: "claude-1"},
		Resource:  policy.Resource{Name: "db"},
	})
	fmt.Println(d)
	for _, e := range d.Errors {
		fmt.Printf("%s: %s\n", e.PolicyID, e.Message)
	}
	// Output:
	// deny (low-clearance)
	// low-clearance: `Agent::"claude-1"` does not have the attribute `clearance`
}

func ExampleEngine() {
	open, _ := policy.Parse("open.cedar", []byte(`@id("open") permit (principal, action, resource);`))
	closed, _ := policy.Parse("closed.cedar", []byte(`@id("lockdown") forbid (principal, action, resource);`))

	engine := policy.NewEngine(open)
	req := policy.Request{Principal: policy.Principal{ID: "a"}, Resource: policy.Resource{Name: "db"}}
	fmt.Println(engine.Authorize(req))

	_, changed := engine.Current()
	engine.Swap(closed) // e.g. on SIGHUP, after LoadDir and Validate succeed
	<-changed           // the relay re-scopes its catalogs here
	fmt.Println(engine.Authorize(req))
	// Output:
	// allow (open)
	// deny (lockdown)
}

func ExampleSet_Validate() {
	set, err := policy.Parse("typos.cedar", []byte(`
@id("staging")
permit (principal in Grup::"coding-agents", action == Action::"connect", resource);

@id("financial")
forbid (principal, action, resource)
  when { resource has lables && resource.lables.contains("financial") };

@id("payments")
permit (principal, action == Action::"conect", resource)
  when { principal has team && principal.team == "payments" };
`))
	if err != nil {
		log.Fatal(err)
	}
	opts := policy.ValidateOptions{PrincipalAttributes: map[string]string{"team": "String"}}
	for _, problem := range set.Validate(opts) {
		fmt.Println(problem)
	}
	// Output:
	// policy: typos.cedar:2:1: policy "staging": unrecognized entity type `Grup`
	// policy: typos.cedar:5:1: policy "financial": `resource has lables` is always false: Binding has no attribute `lables`
	// policy: typos.cedar:9:1: policy "payments": unrecognized action `Action::"conect"`
}
