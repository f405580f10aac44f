package cli

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"strings"

	"github.com/postern/postern/internal/config"
	"github.com/postern/postern/internal/httpreq"
	"github.com/postern/postern/internal/sqlclass"
	"github.com/postern/postern/policy"
)

const policyAbout = `
Validate Cedar policies and check what they decide, before a relay loads
them.

  postern policy validate [schema flags] DIR
  postern policy check --principal ID [--group G]... --resource NAME [--env E] [--label L]...
                       [--sql STATEMENTS | --http "METHOD TARGET"] [schema flags] DIR

"validate" parses every *.cedar file in DIR and checks each policy against
Postern's schema: an unknown entity type (Bindng::"x"), action
(Action::"conect") or attribute (resource.lables) is an error, because
such a policy would silently never apply, and a forbid that never applies
is a hole. It prints every problem with its file, line and @id, and exits
1 when there is one.

"check" decides one open as a relay would and prints "allow (IDS)" or
"deny (IDS)" with the @ids of the deciding policies. It exits 0 when the
request is allowed and 3 when it is denied.

With --sql, it decides statements instead, as a connector will: each
statement is classified by PostgreSQL's parser, each of its actions
(sql:select, sql:delete, ...) is decided with context.sql, and the
statement is allowed only if every action is. With --http "POST
/v1/orders?x=1", it decides one HTTP request: the target is normalized
as the upstream would receive it, the action is the method's (http:POST)
and the context carries context.http. It prints one line per statement
or request, then one per action, and exits 3 if any is denied.

The schema knows connect, the groups read, write, ddl and unclassified,
the fine sql: and http: actions under them, and context.sql and
context.http. Token attributes, request details and other actions must
be declared for validation (--principal-attribute, --detail-key,
--declare-action), as in the relay's policy section; --config takes them,
and DIR, from a relay configuration file.`

// schemaFlags are the declarations that policy validation adds to
// Postern's schema, from flags or a relay configuration.
type schemaFlags struct {
	config     *string
	attributes listFlag
	detailKeys listFlag
	actions    listFlag
}

func addSchemaFlags(fs *flag.FlagSet) *schemaFlags {
	s := &schemaFlags{}
	s.config = fs.String("config", "", "take DIR and the declarations below from the policy section of this relay configuration `file`")
	fs.Var(&s.attributes, "principal-attribute", "declare a token attribute policies read, `name=Type` (Type: String, Long, Bool, Set<String>, ...; repeatable)")
	fs.Var(&s.detailKeys, "detail-key", "declare a request detail `key` that policies read as context.details.key (repeatable)")
	fs.Var(&s.actions, "declare-action", "declare an `action` outside the hierarchy (connect, read, write, ddl, unclassified, sql:..., http:... are known; repeatable)")
	return s
}

// resolve returns the policy directory and validation options from the
// positional DIR, the flags and --config.
func (s *schemaFlags) resolve(pos []string) (string, policy.ValidateOptions, error) {
	var dir string
	var opts policy.ValidateOptions
	if *s.config != "" {
		var err error
		if dir, opts, err = config.LoadRelayPolicy(*s.config); err != nil {
			return "", opts, err
		}
	}
	switch {
	case len(pos) == 1:
		dir = pos[0]
	case len(pos) > 1:
		return "", opts, fmt.Errorf("want one policy directory, got %d arguments", len(pos))
	case dir == "":
		return "", opts, fmt.Errorf("want the policy directory (or --config relay.yaml)")
	}
	for _, a := range s.attributes {
		name, typ, ok := strings.Cut(a, "=")
		if !ok || name == "" || typ == "" {
			return "", opts, fmt.Errorf("--principal-attribute %q: want name=Type", a)
		}
		if opts.PrincipalAttributes == nil {
			opts.PrincipalAttributes = map[string]string{}
		}
		opts.PrincipalAttributes[name] = typ
	}
	opts.DetailKeys = append(opts.DetailKeys, s.detailKeys...)
	opts.Actions = append(opts.Actions, s.actions...)
	return dir, opts, nil
}

func runPolicy(ctx context.Context, env Env, args []string) int {
	return subcommand(ctx, env, "policy", "policy validate|check ...", policyAbout,
		[]command{{name: "validate", run: runPolicyValidate}, {name: "check", run: runPolicyCheck}}, args)
}

func runPolicyValidate(_ context.Context, env Env, args []string) int {
	fs := flagSet(env, "policy validate", "policy validate [flags] DIR", policyAbout)
	sf := addSchemaFlags(fs)
	pos, code, done := parse(fs, env, args)
	if done {
		return code
	}
	dir, opts, err := sf.resolve(pos)
	if err != nil {
		return failf(env, ExitUsage, "policy validate: %v", err)
	}
	set, err := policy.LoadDir(dir)
	if err != nil {
		fmt.Fprintln(env.Stdout, err)
		return failf(env, ExitFailure, "policy validate: %s: the policies do not parse", dir)
	}
	if errs := set.Validate(opts); len(errs) > 0 {
		for _, e := range errs {
			fmt.Fprintln(env.Stdout, e)
		}
		return failf(env, ExitFailure, "policy validate: %s: %d problem(s) in %d policies", dir, len(errs), set.Len())
	}
	if set.Len() == 0 {
		fmt.Fprintf(env.Stdout, "%s: no policies (*.cedar): a relay would deny every open\n", dir)
		return ExitOK
	}
	fmt.Fprintf(env.Stdout, "%s: %d policies valid: %s\n", dir, set.Len(), strings.Join(set.IDs(), ", "))
	return ExitOK
}

func runPolicyCheck(_ context.Context, env Env, args []string) int {
	fs := flagSet(env, "policy check", "policy check --principal ID --resource NAME [flags] DIR", policyAbout)
	sf := addSchemaFlags(fs)
	principal := fs.String("principal", "", "the agent's `ID` (its token's subject; required)")
	var groups, attrs, labels, details listFlag
	fs.Var(&groups, "group", "a `group` the agent is in (repeatable)")
	fs.Var(&attrs, "attr", "a token attribute `name=value`; the value is JSON (3, true) or else a string (repeatable)")
	action := fs.String("action", policy.ActionConnect, "the `action`")
	resource := fs.String("resource", "", "the binding `name` (required)")
	kind := fs.String("kind", "tcp", "the binding's `kind`: tcp, http or postgres")
	envName := fs.String("env", "", "the binding's `environment` (staging, prod, ...)")
	fs.Var(&labels, "label", "a `label` of the binding (repeatable)")
	fs.Var(&details, "detail", "a request detail `key=value` (repeatable)")
	source := fs.String("source-ip", "", "the agent's source `address`, for policies that read context.source_ip")
	sqlText := fs.String("sql", "", "decide these SQL `statements` (one or more, ';'-separated) as a connector would")
	httpLine := fs.String("http", "", "decide this HTTP `request`, \"METHOD TARGET\" (\"POST /v1/orders?x=1\"), as a connector would")
	pos, code, done := parse(fs, env, args)
	if done {
		return code
	}
	actionSet := false
	fs.Visit(func(f *flag.Flag) { actionSet = actionSet || f.Name == "action" })
	switch {
	case *sqlText != "" && *httpLine != "":
		return failf(env, ExitUsage, "policy check: --sql and --http are exclusive")
	case (*sqlText != "" || *httpLine != "") && actionSet:
		return failf(env, ExitUsage, "policy check: --action is the statement's or the request's own with --sql and --http")
	}
	dir, opts, err := sf.resolve(pos)
	if err != nil {
		return failf(env, ExitUsage, "policy check: %v", err)
	}
	if *principal == "" || *resource == "" {
		return failf(env, ExitUsage, "policy check: --principal and --resource are required")
	}
	attributes, err := parseAttrs(attrs)
	if err != nil {
		return failf(env, ExitUsage, "policy check: %v", err)
	}
	req := policy.Request{Action: *action, Details: map[string]string{}}
	if req.Principal, err = policy.NewPrincipal(*principal, groups, attributes); err != nil {
		return failf(env, ExitUsage, "policy check: --principal: %v", err)
	}
	req.Resource = policy.NewResource(*resource, *kind, *envName, labels...)
	for _, kv := range details {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return failf(env, ExitUsage, "policy check: --detail %q: want key=value", kv)
		}
		req.Details[k] = v
	}
	if *source != "" {
		if req.SourceIP, err = netip.ParseAddr(*source); err != nil {
			return failf(env, ExitUsage, "policy check: --source-ip: %v", err)
		}
	}
	set, err := config.LoadPolicies(dir, opts)
	if err != nil {
		fmt.Fprintln(env.Stderr, err)
		return failf(env, ExitUsage, "policy check: %s: the policies do not load; a relay would refuse them too", dir)
	}
	switch {
	case *sqlText != "":
		return checkSQL(env, set, req, *sqlText)
	case *httpLine != "":
		return checkHTTP(env, set, req, *httpLine)
	}
	var d policy.Decision
	if req.Action == policy.ActionConnect {
		d = set.AuthorizeOpen(req) // as the relay decides an open
	} else {
		d = set.Authorize(req)
	}
	fmt.Fprintln(env.Stdout, d)
	printErrors(env, "  ", d)
	if !d.Allowed {
		return ExitDenied
	}
	return ExitOK
}

func printErrors(env Env, indent string, d policy.Decision) {
	for _, e := range d.Errors {
		if e.PolicyID != "" {
			fmt.Fprintf(env.Stdout, "%serror in %s: %s\n", indent, e.PolicyID, e.Message)
		} else {
			fmt.Fprintf(env.Stdout, "%serror: %s\n", indent, e.Message)
		}
	}
}

// checkSQL decides each statement of text as the connector will: every
// action of a statement must be allowed for it to run.
func checkSQL(env Env, set *policy.Set, req policy.Request, text string) int {
	stmts, err := sqlclass.Classify(text)
	if err != nil {
		// The connector refuses what PostgreSQL's parser does not accept.
		fmt.Fprintf(env.Stdout, "deny (%v)\n", err)
		return ExitDenied
	}
	if len(stmts) == 0 {
		return failf(env, ExitUsage, "policy check: --sql: no statement in %q", text)
	}
	code := ExitOK
	for _, st := range stmts {
		req := req
		req.SQL = &policy.SQL{
			Kinds:         st.Kinds,
			TablesRead:    st.TablesRead,
			TablesWritten: st.TablesWritten,
			Functions:     st.Functions,
			Fingerprint:   st.Fingerprint,
		}
		allowed := len(st.Actions) > 0 // a statement that does nothing known is not run
		var lines []string
		var decisions []policy.Decision
		for _, a := range st.Actions {
			req.Action = a
			d := set.Authorize(req)
			allowed = allowed && d.Allowed
			lines = append(lines, fmt.Sprintf("  %s: %s", a, d))
			decisions = append(decisions, d)
		}
		verdict := "allow"
		if !allowed {
			verdict, code = "deny", ExitDenied
		}
		fmt.Fprintf(env.Stdout, "%s %s: %s\n", verdict, st.Class, st.Normalized)
		for i, l := range lines {
			fmt.Fprintln(env.Stdout, l)
			printErrors(env, "    ", decisions[i])
		}
	}
	return code
}

// checkHTTP decides one HTTP request as the connector will, its target
// normalized as the upstream receives it.
func checkHTTP(env Env, set *policy.Set, req policy.Request, line string) int {
	method, target, ok := strings.Cut(strings.TrimSpace(line), " ")
	if !ok {
		return failf(env, ExitUsage, "policy check: --http %q: want \"METHOD TARGET\"", line)
	}
	t, err := httpreq.Parse(method, strings.TrimSpace(target))
	if err != nil {
		// The connector refuses it before any policy is asked.
		fmt.Fprintf(env.Stdout, "deny (%v)\n", err)
		return ExitDenied
	}
	req.Action = policy.HTTPAction(t.Method)
	req.HTTP = &policy.HTTP{Method: t.Method, Path: t.Path, Query: t.Query}
	d := set.Authorize(req)
	verdict := "allow"
	if !d.Allowed {
		verdict = "deny"
	}
	fmt.Fprintf(env.Stdout, "%s %s %s\n", verdict, t.Method, t.RequestURI)
	fmt.Fprintf(env.Stdout, "  %s: %s\n", req.Action, d)
	printErrors(env, "    ", d)
	if !d.Allowed {
		return ExitDenied
	}
	return ExitOK
}
