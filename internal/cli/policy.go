package cli

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"strings"

	"github.com/postern/postern/internal/config"
	"github.com/postern/postern/policy"
)

const policyAbout = `
Validate Cedar policies and check what they decide, before a relay loads
them.

  postern policy validate [schema flags] DIR
  postern policy check --principal ID [--group G]... --resource NAME [--env E] [--label L]... [schema flags] DIR

"validate" parses every *.cedar file in DIR and checks each policy against
Postern's schema: an unknown entity type (Bindng::"x"), action
(Action::"conect") or attribute (resource.lables) is an error, because
such a policy would silently never apply, and a forbid that never applies
is a hole. It prints every problem with its file, line and @id, and exits
1 when there is one.

"check" decides one request as a relay would and prints "allow (IDS)" or
"deny (IDS)" with the @ids of the deciding policies. It exits 0 when the
request is allowed and 3 when it is denied.

Token attributes, request details and actions beyond connect must be
declared for validation (--principal-attribute, --detail-key,
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
	fs.Var(&s.actions, "declare-action", "declare an `action` besides connect (repeatable)")
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
	pos, code, done := parse(fs, env, args)
	if done {
		return code
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
	var d policy.Decision
	if req.Action == policy.ActionConnect {
		d = set.AuthorizeOpen(req) // as the relay decides an open
	} else {
		d = set.Authorize(req)
	}
	fmt.Fprintln(env.Stdout, d)
	for _, e := range d.Errors {
		if e.PolicyID != "" {
			fmt.Fprintf(env.Stdout, "  error in %s: %s\n", e.PolicyID, e.Message)
		} else {
			fmt.Fprintf(env.Stdout, "  error: %s\n", e.Message)
		}
	}
	if !d.Allowed {
		return ExitDenied
	}
	return ExitOK
}
