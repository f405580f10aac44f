package policy

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/cedar-policy/cedar-go/types"
	xast "github.com/cedar-policy/cedar-go/x/exp/ast"
	"github.com/cedar-policy/cedar-go/x/exp/schema"
	sast "github.com/cedar-policy/cedar-go/x/exp/schema/ast"
	"github.com/cedar-policy/cedar-go/x/exp/schema/resolved"
	"github.com/cedar-policy/cedar-go/x/exp/schema/validate"
)

// SchemaText is the Cedar schema of the requests that [Set.Authorize]
// builds, before [ValidateOptions] add the token attributes, request
// details and further actions that a deployment uses.
const SchemaText = `// A group named in an agent's token.
entity Group;

// An agent, named by its token's subject. Its other attributes are the
// token's free attributes, declared with ValidateOptions.PrincipalAttributes.
entity Agent in [Group] {
  role: String,
};

// A deployment environment: "staging", "prod", ...
entity Environment;

// A service that connectors advertise and agents open.
entity Binding in [Environment] {
  kind: String,
  environment: String,
  labels: Set<String>,
};

// The request details, declared with ValidateOptions.DetailKeys.
type Details = {};

// A SQL statement, as the connector's parser classifies it. Table and
// function names are as written, schema-qualified when the statement
// qualifies them ("public.orders" or "orders").
type SQL = {
  kinds: Set<String>,          // parse-tree node kinds: "select", "insert", ...
  tables_read: Set<String>,
  tables_written: Set<String>,
  functions: Set<String>,
  fingerprint: String,         // the same for statements that differ only in constants
};

// An HTTP request, its target normalized as the upstream receives it.
type HTTP = {
  method: String,              // "GET", "POST", ...
  path: String,                // decoded, dot-segments resolved: "/v1/incidents/42"
  query: Set<String>,          // each parameter, decoded, as "key=value"
  query_keys: Set<String>,     // each parameter's decoded key
};

type Context = {
  time: datetime,
  source_ip?: ipaddr,
  details: Details,
  sql?: SQL,                   // present when deciding a SQL statement
  http?: HTTP,                 // present when deciding an HTTP request
};

// Open a binding, at the relay.
action connect appliesTo {
  principal: [Agent],
  resource: [Binding],
  context: Context,
};

// The groups of the hierarchy. No request names one: policies match them
// with "action in". ddl is under write; unclassified is under neither.
action read, write, unclassified;
action ddl in [write];

action "sql:select", "sql:show", "sql:copy_to", "sql:explain",
       "sql:transaction", "sql:set", "sql:prepare", "sql:cursor",
       "sql:listen",
       "http:GET", "http:HEAD", "http:OPTIONS"
  in [read] appliesTo {
  principal: [Agent],
  resource: [Binding],
  context: Context,
};

action "sql:insert", "sql:update", "sql:delete", "sql:merge",
       "sql:truncate", "sql:copy_from", "sql:select_into",
       "sql:lock_rows", "sql:function", "sql:notify", "sql:vacuum",
       "sql:analyze", "sql:maintain",
       "http:POST", "http:PUT", "http:PATCH", "http:DELETE"
  in [write] appliesTo {
  principal: [Agent],
  resource: [Binding],
  context: Context,
};

action "sql:create", "sql:alter", "sql:drop", "sql:grant",
       "sql:revoke", "sql:comment", "sql:create_table_as"
  in [ddl] appliesTo {
  principal: [Agent],
  resource: [Binding],
  context: Context,
};

action "sql:do", "sql:call", "sql:copy_program", "sql:lock",
       "sql:set_privileged", "sql:begin_read_write", "sql:two_phase",
       "sql:execute", "sql:admin", "sql:other",
       "http:other"
  in [unclassified] appliesTo {
  principal: [Agent],
  resource: [Binding],
  context: Context,
};
`

// ValidateOptions describe what a deployment adds to [SchemaText]. The zero
// value validates against SchemaText alone.
type ValidateOptions struct {
	// PrincipalAttributes declares the token attributes that policies may
	// read, by name, each with its Cedar schema type: "String", "Long",
	// "Bool", "Set<String>", "{ team: String, level?: Long }". Every one
	// is optional, as a token may lack it, so a policy must test
	// `principal has name` before it reads principal.name. Reading or
	// testing an undeclared attribute is reported: Cedar treats
	// `principal has x` on an undeclared x as always false and then skips
	// checking what it guards, which would hide the very typos validation
	// is for. role is always declared.
	PrincipalAttributes map[string]string

	// DetailKeys declares the keys of context.details (String values) that
	// policies may read; each is optional, like PrincipalAttributes.
	DetailKeys []string

	// Actions declares actions besides connect and the hierarchy's
	// (see [Actions]), with the same principal, resource and context. A
	// group of the hierarchy (read, write, ddl, unclassified) named here
	// becomes an action that a request may name itself, as an agent's open
	// can: `action == Action::"read"` is then valid.
	Actions []string
}

// Schema returns the Cedar schema that Validate checks against: SchemaText
// with the options applied.
func (o ValidateOptions) Schema() (string, error) {
	s, err := o.schema()
	if err != nil {
		return "", err
	}
	b, err := s.MarshalCedar()
	return string(b), err
}

func (o ValidateOptions) schema() (*schema.Schema, error) {
	var s schema.Schema
	s.SetFilename("policy.SchemaText")
	if err := s.UnmarshalCedar([]byte(SchemaText)); err != nil {
		return nil, fmt.Errorf("policy: schema: %w", err)
	}
	a := s.AST()

	agent := a.Entities["Agent"]
	for _, name := range slices.Sorted(maps.Keys(o.PrincipalAttributes)) {
		if name == "role" {
			continue
		}
		t, err := parseSchemaType(o.PrincipalAttributes[name])
		if err != nil {
			return nil, fmt.Errorf("policy: ValidateOptions.PrincipalAttributes[%s]: %w", strconv.Quote(name), err)
		}
		agent.Shape[types.String(name)] = sast.Attribute{Type: t, Optional: true}
	}

	details := sast.RecordType{}
	for _, k := range o.DetailKeys {
		details[types.String(k)] = sast.Attribute{Type: sast.String(), Optional: true}
	}
	a.CommonTypes["Details"] = sast.CommonType{Type: details}

	connect := a.Actions[ActionConnect]
	for _, name := range o.Actions {
		act, known := a.Actions[types.String(name)]
		if name == "" || (known && act.AppliesTo != nil) {
			continue
		}
		// A group (read, write, ...) declared here becomes an action that
		// requests may name too, keeping its place in the hierarchy.
		applies := *connect.AppliesTo
		act.AppliesTo = &applies
		a.Actions[types.String(name)] = act
	}
	return &s, nil
}

// parseSchemaType parses one type in the Cedar schema syntax.
func parseSchemaType(t string) (sast.IsType, error) {
	var s schema.Schema
	if err := s.UnmarshalCedar([]byte("entity T { x: " + t + " };")); err != nil {
		return nil, fmt.Errorf("invalid Cedar type %q: %w", t, err)
	}
	return s.AST().Entities["T"].Shape["x"].Type, nil
}

// Validate checks every policy of s against the schema that opts describe
// and returns every problem found, each an *Error naming the policy's @id,
// file and line. It reports what would make a policy never apply or fail at
// evaluation: unknown entity types (Bindng::"x"), unknown actions
// (Action::"conect"), unknown attributes (resource.lables), type mismatches
// (resource.kind == 3), unknown context fields, `has` tests that can never
// be true, and reads of optional attributes without a `has` guard. A
// malformed option is reported as the only problem.
func (s *Set) Validate(opts ValidateOptions) []error {
	sch, err := opts.schema()
	if err != nil {
		return []error{err}
	}
	rs, err := sch.Resolve()
	if err != nil {
		return []error{fmt.Errorf("policy: schema: %w", err)}
	}
	v := validate.New(rs)
	var problems []error
	for _, e := range s.entriesOrNil() {
		for _, msg := range validatePolicy(v, rs, e) {
			problems = append(problems, posError(e.pos, e.id, "%s", msg))
		}
	}
	return problems
}

func (s *Set) entriesOrNil() []*entry {
	if s == nil {
		return nil
	}
	return s.entries
}

var contextFor = regexp.MustCompile(`in context for Action::"(?:[^"\\]|\\.)*"`)

const noApplicableAction = "unable to find an applicable action given the policy scope constraints"

func validatePolicy(v *validate.Validator, rs *resolved.Schema, e *entry) (msgs []string) {
	p := (*xast.Policy)(e.policy.AST())
	defer func() {
		// x/exp is experimental; a validator bug must not take down the CLI.
		if r := recover(); r != nil {
			msgs = append(msgs, fmt.Sprintf("validator failed: %v", r))
		}
	}()

	var found []string
	for _, err := range flatten(v.Policy("", p)) {
		// Every action shares one context; naming each repeats the problem.
		msg := contextFor.ReplaceAllString(err.Error(), "in context")
		if strings.HasSuffix(msg, "on entity type `Agent` not found") {
			msg += "; declare it in ValidateOptions.PrincipalAttributes if tokens carry it, and guard it with `principal has`"
		}
		if strings.HasSuffix(msg, "on entity type `Agent`") && strings.HasPrefix(msg, "unable to guarantee safety") {
			msg += "; tokens may lack it: test `principal has` first"
		}
		found = append(found, msg)
	}
	found = append(found, impossibleHas(rs, p)...)

	// An unknown name in the scope also yields this generic message; keep it
	// only when it is the whole story (a scope that names no applicable
	// entity type, like `principal in Environment::"x"`).
	if len(found) > 1 {
		found = slices.DeleteFunc(found, func(m string) bool { return m == noApplicableAction })
	}
	if eq, ok := p.Action.(xast.ScopeTypeEq); ok && len(found) == 1 && found[0] == noApplicableAction && groupAction(eq.Entity) {
		found[0] += fmt.Sprintf("; no request is for %s itself, which groups actions: write `action in %s`", eq.Entity, eq.Entity)
	}
	var seen []string
	for _, m := range found {
		if !slices.Contains(seen, m) {
			seen = append(seen, m)
		}
	}
	return seen
}

func flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

// impossibleHas reports `x has a` tests on a principal, resource or context
// path whose type has no attribute a. The validator types such a test as
// false without complaint and does not check the expression it guards, yet
// a misspelled name there makes the policy silently never apply.
func impossibleHas(rs *resolved.Schema, p *xast.Policy) []string {
	var msgs []string
	for _, c := range p.Conditions {
		xast.Inspect(xast.NewNode(c.Body), func(n xast.IsNode) bool {
			h, ok := n.(xast.NodeTypeHas)
			if !ok {
				return true
			}
			rec, what, ok := recordOf(rs, h.Arg)
			if !ok {
				return true
			}
			if _, known := rec[h.Value]; known {
				return true
			}
			path, _ := pathOf(h.Arg)
			msg := fmt.Sprintf("`%s has %s` is always false: %s has no attribute `%s`", path, h.Value, what, h.Value)
			switch {
			case path == "principal":
				msg += "; declare it in ValidateOptions.PrincipalAttributes if tokens carry it"
			case path == "context.details":
				msg += "; declare it in ValidateOptions.DetailKeys"
			}
			msgs = append(msgs, msg)
			return true
		})
	}
	return msgs
}

// recordOf returns the record type of a path such as resource,
// context.details or principal.org, and what to call it in a message.
func recordOf(rs *resolved.Schema, n xast.IsNode) (resolved.RecordType, string, bool) {
	switch x := n.(type) {
	case xast.NodeTypeVariable:
		switch x.Name {
		case "principal":
			return rs.Entities[typeAgent].Shape, "Agent", true
		case "resource":
			return rs.Entities[typeBinding].Shape, "Binding", true
		case "context":
			if a, ok := rs.Actions[connectUID]; ok && a.AppliesTo != nil {
				return a.AppliesTo.Context, "the context", true
			}
		}
	case xast.NodeTypeAccess:
		parent, _, ok := recordOf(rs, x.Arg)
		if !ok {
			return nil, "", false
		}
		attr, ok := parent[x.Value]
		if !ok {
			return nil, "", false // the validator reports the unknown attribute
		}
		path, _ := pathOf(n)
		switch t := attr.Type.(type) {
		case resolved.RecordType:
			return t, path, true
		case resolved.EntityType:
			if ent, ok := rs.Entities[types.EntityType(t)]; ok {
				return ent.Shape, string(t), true
			}
		}
	}
	return nil, "", false
}

func pathOf(n xast.IsNode) (string, bool) {
	switch x := n.(type) {
	case xast.NodeTypeVariable:
		return string(x.Name), true
	case xast.NodeTypeAccess:
		p, ok := pathOf(x.Arg)
		return p + "." + string(x.Value), ok
	}
	return "", false
}

// groupAction reports whether u is one of the hierarchy's groups.
func groupAction(u types.EntityUID) bool {
	switch actionName(u) {
	case ActionRead, ActionWrite, ActionDDL, ActionUnclassified:
		return true
	}
	return false
}
