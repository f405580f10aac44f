package policy

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/cedar-policy/cedar-go/x/exp/schema"
)

// goodPolicies use every part of the schema correctly.
const goodPolicies = sentence + `
@id("ops-prod-hours")
permit (principal in Group::"ops", action == Action::"connect", resource in Environment::"prod")
  when { context.time.toTime() >= duration("8h") && context.time.toTime() < duration("18h") };

@id("office-only")
forbid (principal, action, resource is Binding in Environment::"prod")
  unless { context has source_ip && context.source_ip.isInRange(ip("10.0.0.0/8")) };

@id("payments-team")
permit (principal, action, resource)
  when { principal has team && principal.team == "payments" && resource.kind == "postgres" };

@id("cleared")
permit (principal is Agent, action in [Action::"connect", Action::"read"], resource)
  when { principal has clearance && principal.clearance >= 3 && principal.role == "agent" };

@id("get-only")
forbid (principal, action == Action::"read", resource == Binding::"billing-api")
  unless { context.details has method && context.details.method == "GET" };

@id("no-ddl")
forbid (principal, action in Action::"ddl", resource);

@id("read-staging")
permit (principal in Group::"coding-agents", action in Action::"read", resource in Environment::"staging");

@id("incidents")
permit (principal in Group::"oncall", action in [Action::"write", Action::"http:GET"], resource == Binding::"prod-status")
  when { context has http && context.http.path like "/v1/incidents/*" && context.http.query_keys.contains("id") };

@id("no-users-writes")
forbid (principal, action in Action::"write", resource)
  when { context has sql && (context.sql.tables_written.contains("users") || context.sql.kinds.contains("DROP")) };

@id("no-private-functions")
forbid (principal, action in Action::"unclassified", resource)
  unless { context has sql && context.sql.functions.isEmpty() && context.sql.fingerprint != "" && context.sql.tables_read.isEmpty() };

@id("no-empty-labels")
forbid (principal, action, resource) when { resource.labels.isEmpty() && resource.environment == "" };
`

var goodOptions = ValidateOptions{
	PrincipalAttributes: map[string]string{"team": "String", "clearance": "Long", "org": "{ unit: String, level?: Long }"},
	DetailKeys:          []string{"method", "path"},
	Actions:             []string{"read"},
}

func TestValidateGoodPolicies(t *testing.T) {
	set := mustParse(t, goodPolicies)
	for _, err := range set.Validate(goodOptions) {
		t.Errorf("unexpected problem: %v", err)
	}
	// The architecture's sentence needs no options.
	for _, err := range mustParse(t, sentence).Validate(ValidateOptions{}) {
		t.Errorf("unexpected problem in the sentence: %v", err)
	}
}

func TestValidateFindsTypos(t *testing.T) {
	tests := []struct {
		name   string
		policy string // one policy, with @id("bad") on line 1
		opts   *ValidateOptions
		want   []string // substrings of the problems, in order
	}{
		{
			name:   "unknown resource entity type",
			policy: `permit (principal, action, resource == Bindng::"x");`,
			want:   []string{"unrecognized entity type `Bindng`"},
		},
		{
			name:   "unknown group entity type",
			policy: `permit (principal in Grup::"coding-agents", action, resource);`,
			want:   []string{"unrecognized entity type `Grup`"},
		},
		{
			name:   "unknown entity type in a condition",
			policy: `permit (principal, action, resource) when { resource in Enviroment::"prod" };`,
			want:   []string{"Enviroment"},
		},
		{
			name:   "unknown action",
			policy: `permit (principal, action == Action::"conect", resource);`,
			want:   []string{"unrecognized action `Action::\"conect\"`"},
		},
		{
			name:   "undeclared action",
			policy: `permit (principal, action == Action::"raed", resource);`,
			opts:   &ValidateOptions{},
			want:   []string{"unrecognized action `Action::\"raed\"`"},
		},
		{
			name:   "misspelled fine action",
			policy: `forbid (principal, action in [Action::"sql:dorp"], resource);`,
			opts:   &ValidateOptions{},
			want:   []string{"unrecognized action `Action::\"sql:dorp\"`"},
		},
		{
			name:   "a group compared with ==",
			policy: `permit (principal, action == Action::"write", resource);`,
			opts:   &ValidateOptions{},
			want:   []string{"write `action in Action::\"write\"`"},
		},
		{
			name:   "unguarded statement context",
			policy: `forbid (principal, action in Action::"write", resource) when { context.sql.tables_written.contains("users") };`,
			opts:   &ValidateOptions{},
			want:   []string{"`sql`"},
		},
		{
			name:   "unknown statement context field",
			policy: `forbid (principal, action in Action::"read", resource) when { context has sql && context.sql.tables.contains("users") };`,
			opts:   &ValidateOptions{},
			want:   []string{"`tables`"},
		},
		{
			name:   "unknown http context field",
			policy: `permit (principal, action in Action::"read", resource) when { context has http && context.http.paht like "/v1/*" };`,
			opts:   &ValidateOptions{},
			want:   []string{"`paht`"},
		},
		{
			name:   "unknown resource attribute",
			policy: `forbid (principal, action, resource) when { resource.lables.contains("financial") };`,
			want:   []string{"attribute `lables` on entity type `Binding` not found"},
		},
		{
			name:   "unknown attribute behind has",
			policy: `forbid (principal, action, resource) when { resource has lables && resource.lables.contains("financial") };`,
			want:   []string{"`resource has lables` is always false: Binding has no attribute `lables`"},
		},
		{
			name:   "wrong attribute type",
			policy: `permit (principal, action, resource) when { resource.kind == 3 };`,
			want:   []string{"the types Long and String are not compatible"},
		},
		{
			name:   "wrong context field type",
			policy: `permit (principal, action, resource) when { context.time > 5 };`,
			want:   []string{"datetime"},
		},
		{
			name:   "unknown context field",
			policy: `permit (principal, action, resource) when { context.sourceip.isLoopback() };`,
			want:   []string{"attribute `sourceip` in context not found"},
		},
		{
			name:   "unguarded optional context field",
			policy: `permit (principal, action, resource) when { context.source_ip.isLoopback() };`,
			want:   []string{"unable to guarantee safety of access to optional attribute `source_ip`"},
		},
		{
			name:   "undeclared detail key",
			policy: `permit (principal, action, resource) when { context.details has method && context.details.method == "GET" };`,
			opts:   &ValidateOptions{},
			want:   []string{"`context.details has method` is always false: context.details has no attribute `method`; declare it in ValidateOptions.DetailKeys"},
		},
		{
			name:   "undeclared principal attribute",
			policy: `permit (principal, action, resource) when { principal.team == "payments" };`,
			opts:   &ValidateOptions{},
			want:   []string{"attribute `team` on entity type `Agent` not found; declare it in ValidateOptions.PrincipalAttributes"},
		},
		{
			name:   "undeclared principal attribute behind has",
			policy: `permit (principal, action, resource) when { principal has tema && principal.tema == "payments" };`,
			want:   []string{"`principal has tema` is always false: Agent has no attribute `tema`; declare it in ValidateOptions.PrincipalAttributes"},
		},
		{
			name:   "declared principal attribute needs a guard",
			policy: `forbid (principal, action, resource) when { principal.clearance < 3 };`,
			want:   []string{"optional attribute `clearance` on entity type `Agent`; tokens may lack it"},
		},
		{
			name:   "declared principal attribute of the wrong type",
			policy: `permit (principal, action, resource) when { principal has clearance && principal.clearance == "high" };`,
			want:   []string{"the types Long and String are not compatible"},
		},
		{
			name:   "unknown field in a declared record",
			policy: `permit (principal, action, resource) when { principal has org && principal.org has levl };`,
			want:   []string{"`principal.org has levl` is always false: principal.org has no attribute `levl`"},
		},
		{
			name:   "principal scope of the wrong type",
			policy: `permit (principal in Environment::"prod", action, resource);`,
			want:   []string{"unable to find an applicable action"},
		},
		{
			name:   "several problems in one policy",
			policy: `permit (principal in Grup::"g", action == Action::"conect", resource) when { resource.lables.isEmpty() };`,
			// With no valid scope, the validator has no request type to check
			// the condition against: fixing the scope reveals the rest.
			want: []string{"unrecognized entity type `Grup`", "unrecognized action"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := goodOptions
			if tt.opts != nil {
				opts = *tt.opts
			}
			src := "// the policy under test\n@id(\"bad\")\n" + tt.policy + "\n\n" + sentence
			set, err := Parse("typo.cedar", []byte(src))
			if err != nil {
				t.Fatal(err)
			}
			got := set.Validate(opts)
			if len(got) != len(tt.want) {
				t.Fatalf("%d problems, want %d:\n%s", len(got), len(tt.want), joinErrs(got))
			}
			for i, err := range got {
				var pe *Error
				if !errors.As(err, &pe) {
					t.Fatalf("%v is a %T, not a *policy.Error", err, err)
				}
				if pe.PolicyID != "bad" || pe.File != "typo.cedar" || pe.Line != 2 {
					t.Errorf("problem located at %s:%d policy %q, want typo.cedar:2 policy \"bad\"", pe.File, pe.Line, pe.PolicyID)
				}
				if !strings.HasPrefix(err.Error(), `policy: typo.cedar:2:1: policy "bad": `) {
					t.Errorf("Error() = %q, want the location and policy first", err)
				}
				if !strings.Contains(pe.Message, tt.want[i]) {
					t.Errorf("problem %d = %q, want it to contain %q", i, pe.Message, tt.want[i])
				}
			}
		})
	}
}

func joinErrs(errs []error) string {
	var b strings.Builder
	for _, e := range errs {
		b.WriteString("  " + e.Error() + "\n")
	}
	return b.String()
}

func TestValidateOptionErrors(t *testing.T) {
	set := mustParse(t, sentence)
	got := set.Validate(ValidateOptions{PrincipalAttributes: map[string]string{"team": "Strng<"}})
	if len(got) != 1 || !strings.Contains(got[0].Error(), `PrincipalAttributes["team"]: invalid Cedar type "Strng<"`) {
		t.Errorf("problems = %v", got)
	}
	got = set.Validate(ValidateOptions{PrincipalAttributes: map[string]string{"team": "Strng"}})
	if len(got) != 1 || !strings.Contains(got[0].Error(), "Strng") {
		t.Errorf("problems = %v", got)
	}
}

func TestSchema(t *testing.T) {
	// SchemaText is valid on its own.
	var s schema.Schema
	if err := s.UnmarshalCedar([]byte(SchemaText)); err != nil {
		t.Fatalf("SchemaText: %v", err)
	}
	if _, err := s.Resolve(); err != nil {
		t.Fatalf("SchemaText: %v", err)
	}
	text, err := goodOptions.Schema()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"team?: String", "clearance?: Long", "method?: String", "action read appliesTo", "action connect", "source_ip?: ipaddr", `action "sql:drop" in ddl`, "sql?: SQL", "http?: HTTP"} {
		if !strings.Contains(text, want) {
			t.Errorf("Schema() lacks %q:\n%s", want, text)
		}
	}
	// Schema must not change SchemaText's declarations between calls.
	plain, err := ValidateOptions{}.Schema()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(plain, "team") || strings.Contains(plain, "action read appliesTo") {
		t.Errorf("options leaked into another schema:\n%s", plain)
	}
}

// TestDocShowsSchema keeps the schema in the package documentation equal to
// SchemaText.
func TestDocShowsSchema(t *testing.T) {
	src, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	var want strings.Builder
	for _, line := range strings.Split(strings.TrimRight(SchemaText, "\n"), "\n") {
		want.WriteString("//\t" + line + "\n")
	}
	if !strings.Contains(strings.ReplaceAll(string(src), "//\t\n", "//\n"), strings.ReplaceAll(want.String(), "//\t\n", "//\n")) {
		t.Errorf("doc.go does not show SchemaText; it should contain:\n%s", want.String())
	}
}
