// Package policy decides, with Cedar policies, whether an agent may use a
// binding.
//
// # Overview
//
// The relay asks this package on every binding open, and again for every
// binding of a catalog when policies change. Policies are Cedar
// (https://www.cedarpolicy.com) documents in *.cedar files. The rules:
//
//   - Default deny: a request is allowed only if some permit matches it.
//   - Forbid beats permit: one matching forbid denies.
//   - Fail closed: a forbid whose evaluation fails (it reads an attribute
//     the token lacks, compares a string with a number, ...) denies, where
//     plain Cedar would skip it. A permit that fails does not permit.
//     Every such failure is reported in [Decision.Errors].
//   - Every policy is named by an @id("...") annotation, unique across all
//     files, and a [Decision] names the policies that decided it: the
//     relay passes them to the agent and to the audit log.
//
// A [Set] is an immutable, parsed and indexed collection of policies; an
// [Engine] holds the current Set and swaps in a new one on reload without
// stopping decisions in flight.
//
// # Entity model
//
// [Set.Authorize] turns a [Request] into these Cedar entities:
//
//	principal  Agent::"<token subject>"
//	           in Group::"<g>" for each group of the token
//	           attributes: the token's free attributes, and role = "agent"
//	action     Action::"connect" (the default), or Action::"<name>"
//	resource   Binding::"<name>"
//	           in Environment::"<env>" when the binding has an environment
//	           attributes: kind (String), environment (String, maybe ""),
//	           labels (Set<String>, always present, maybe empty)
//	context    time (datetime), source_ip (ipaddr, when known),
//	           details (record of strings, always present, maybe empty)
//
// Token attributes convert from their JSON form: string to String, bool to
// Bool, a number to Long if it is an integer, an array to Set, an object to
// Record. A null attribute or record field is left out. Cedar has no
// floating-point numbers: a fraction (or a null inside an array, or a Go
// type other than these) makes the request invalid, and it is denied with
// the reason rather than decided on a guess. Use [NewPrincipal] when the
// token is accepted to find out at once.
//
// # Usage
//
// A relay loads a directory of policies once, makes a [Principal] for each
// session from its verified token (claims, an identity.Claims, and remote,
// the agent's address) and a [Resource] for each binding, and decides each
// open:
//
//	set, err := policy.LoadDir(dir) // every *.cedar file of dir
//	if err != nil {
//		log.Fatal(err) // every problem, each "policy: FILE:LINE:COL: ..."
//	}
//	if errs := set.Validate(policy.ValidateOptions{
//		PrincipalAttributes: map[string]string{"team": "String"},
//	}); len(errs) > 0 {
//		log.Fatal(errors.Join(errs...))
//	}
//	engine := policy.NewEngine(set)
//
//	// Per session, from the verified token; per catalog entry.
//	agent, err := policy.NewPrincipal(claims.Subject, claims.Groups, claims.Attributes)
//	if err != nil {
//		log.Fatal(err) // an attribute Cedar cannot hold
//	}
//	db := policy.NewResource("staging-db", "postgres", "staging", "pii")
//
//	// Per open.
//	d := engine.Authorize(policy.Request{
//		Principal: agent,
//		Resource:  db,
//		SourceIP:  remote.Addr(),
//		Details:   map[string]string{"database": "app"},
//	})
//	fmt.Println(d.Allowed, d) // true allow (coding-agents-staging)
//
// On reload, parse and validate the new files, then [Engine.Swap]. The
// channel from [Engine.Changed] or [Engine.Current] is closed by the swap,
// telling the relay to recompute its catalogs.
//
// # Validation
//
// A misspelled name does not make a Cedar policy fail: it makes it never
// apply, and a forbid that never applies is a hole. [Set.Validate] checks
// every policy against the schema below, with cedar-go's validator in
// strict mode, and reports unknown entity types and actions, unknown or
// mistyped attributes and context fields, reads of optional attributes
// without a `has` guard, and `has` tests that can never be true.
//
// The token's free attributes are not in the schema until declared with
// [ValidateOptions].PrincipalAttributes; the request details, with
// DetailKeys; actions other than connect, with Actions. Declared
// attributes and keys are optional, so policies must guard them with
// `has`. [ValidateOptions.Schema] prints the resulting schema.
//
// # Performance
//
// cedar-go evaluates every policy it is given. A Set files each policy
// under the entity its scope names (principal == or in, resource == or in,
// action), or under the label its condition starts testing for
// (`resource.labels.contains("financial")`), and evaluates only the
// policies filed under the request's agent, groups, binding, environment,
// labels and action, plus those with nothing to file them under. The
// result is the same as evaluating all of them. The context is built only
// if one of those policies reads it.
//
// When none of them reads it, the decision depends on nothing but the
// policies, the principal, the action and the resource, and the Set caches
// it under the identity of a principal from [NewPrincipal] and a resource
// from [NewResource]: the next open of that binding by that session costs a
// lookup. Nothing is ever invalidated, because nothing a key stands for can
// change: a reload is a new Set with an empty cache, a refreshed token is a
// new Principal, a changed catalog entry a new Resource, and a Principal or
// Resource whose fields were changed after it was made is not cached. A
// policy that reads context.time, source_ip or details makes every decision
// it applies to be evaluated each time. The cache holds a fixed number of
// decisions (16,384), each new one replacing whichever it collides with.
//
// # Schema
//
// The Cedar schema of the requests, [SchemaText], before [ValidateOptions]:
//
//	// A group named in an agent's token.
//	entity Group;
//
//	// An agent, named by its token's subject. Its other attributes are the
//	// token's free attributes, declared with ValidateOptions.PrincipalAttributes.
//	entity Agent in [Group] {
//	  role: String,
//	};
//
//	// A deployment environment: "staging", "prod", ...
//	entity Environment;
//
//	// A service that connectors advertise and agents open.
//	entity Binding in [Environment] {
//	  kind: String,
//	  environment: String,
//	  labels: Set<String>,
//	};
//
//	// The request details, declared with ValidateOptions.DetailKeys.
//	type Details = {};
//
//	type Context = {
//	  time: datetime,
//	  source_ip?: ipaddr,
//	  details: Details,
//	};
//
//	// Open a binding.
//	action connect appliesTo {
//	  principal: [Agent],
//	  resource: [Binding],
//	  context: Context,
//	};
package policy
