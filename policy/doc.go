// Package policy decides, with Cedar policies, whether an agent may use a
// binding: open it, and run each statement or send each request through it.
//
// # Overview
//
// The relay asks this package on every binding open, and again for every
// binding of a catalog when policies change ([Set.AuthorizeOpen]); the
// connector, where SQL and HTTP are parsed, asks it for every statement and
// every request ([Set.Authorize]), with the same policies. Policies are Cedar
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
//	action     Action::"connect" (the default), or Action::"<name>",
//	           in its parent in the hierarchy below
//	resource   Binding::"<name>"
//	           in Environment::"<env>" when the binding has an environment
//	           attributes: kind (String), environment (String, maybe ""),
//	           labels (Set<String>, always present, maybe empty)
//	context    time (datetime), source_ip (ipaddr, when known),
//	           details (record of strings, always present, maybe empty),
//	           sql (record, when deciding a SQL statement),
//	           http (record, when deciding an HTTP request)
//
// # Actions
//
// Actions form one hierarchy, the same on every kind of binding, so that
// `action in Action::"read"` means reading whether the binding speaks SQL
// or HTTP ([ActionParent] walks it, [Actions] lists it):
//
//	connect        opening a binding, at the relay; in no group
//	read           sql:select sql:show sql:copy_to sql:explain
//	               sql:transaction sql:set sql:prepare sql:cursor sql:listen
//	               http:GET http:HEAD http:OPTIONS
//	write          sql:insert sql:update sql:delete sql:merge sql:truncate
//	               sql:copy_from sql:select_into sql:lock_rows sql:function
//	               sql:notify sql:vacuum sql:analyze sql:maintain
//	               http:POST http:PUT http:PATCH http:DELETE
//	  ddl          sql:create sql:alter sql:drop sql:grant sql:revoke
//	               sql:comment sql:create_table_as
//	unclassified   sql:do sql:call sql:copy_program sql:lock
//	               sql:set_privileged sql:begin_read_write sql:two_phase
//	               sql:execute sql:admin sql:other
//	               http:other (any other method: TRACE, CONNECT, ...)
//
// No request is made for a group itself: policies name a group with
// `action in`, and a fine action with `action ==` or `action in`.
// unclassified is under neither read nor write, so a statement Postern
// cannot classify (a DO block, a procedure call) is allowed only by a
// permit that names it, or one whose action is unscoped.
//
// A statement is decided once for each of its actions, with context.sql:
//
//	kinds           Set<String>  "select", "insert", "explain", ...
//	tables_read     Set<String>  as written, "public.orders" or "orders"
//	tables_written  Set<String>
//	functions       Set<String>
//	fingerprint     String       equal for statements that differ in constants
//
// and it may run only if every one is allowed. An HTTP request is decided
// once, its action [HTTPAction] of the method, with context.http:
//
//	method      String       "GET", "POST", ...
//	path        String       decoded once, dot-segments resolved
//	query       Set<String>  each parameter as "key=value", decoded
//	query_keys  Set<String>  each parameter's key, decoded
//
// sql and http are optional in the schema: a policy reads them after
// `context has sql` (or http), which is false when the open is decided.
//
//	@id("coding-agents-read-staging")
//	permit (principal in Group::"coding-agents", action in Action::"read",
//	        resource in Environment::"staging");
//
//	@id("oncall-writes-prod-status")
//	permit (principal in Group::"oncall", action in Action::"write",
//	        resource == Binding::"prod-status")
//	when { context has http && context.http.path like "/v1/incidents/*" };
//
//	@id("no-ddl-anywhere")
//	forbid (principal, action in Action::"ddl", resource);
//
// # Opening a binding
//
// Default deny holds for every decision: for the open, for each statement
// and for each request. connect is an action of its own, under neither read
// nor write, and a policy that permits only connect lets an agent open a
// binding and then run no statement and send no request through it (a TCP
// binding has none: connect is all there is to decide). So that a policy
// written as "coding agents may read staging" also lets them open staging,
// [Set.AuthorizeOpen], which the relay calls, allows an open when
//
//   - no forbid that applies to connect matches or fails to evaluate, and
//   - some permit matches connect, or some permit whose scope admits a data
//     action (one under read, write or unclassified) matches this
//     principal and binding, with those of its conditions that read
//     context.sql or context.http left out: the statement is not known
//     yet, so the open is allowed if some statement might be.
//
// The decision names the permits that opened. With the three policies
// above: a coding agent opens every staging binding
// (coding-agents-read-staging); an on-call agent opens prod-status
// (oncall-writes-prod-status), even though only some of its requests will
// pass; no-ddl-anywhere, being about ddl only, blocks no open. A forbid
// closes the open when it applies to connect: `forbid (principal, action,
// resource) when { resource.labels.contains("financial") }` names every
// action, connect included, and so does `action == Action::"connect"`;
// `forbid (principal, action in Action::"write", resource in
// Environment::"prod")` does not, and an agent permitted to read prod
// still opens it. A forbid that reads context.sql without `context has
// sql` fails to evaluate at the open and so closes it; [Set.Validate]
// reports that read.
//
// [Set.MayWrite] asks the same scope-level question of write: whether
// some permit whose scope admits an action under write or unclassified
// matches the principal and binding, its conditions on context.sql and
// context.http left out. The connector asks it to choose a binding's
// read-only login; it is false when unsure.
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
//	d := engine.AuthorizeOpen(policy.Request{
//		Principal: agent,
//		Resource:  db,
//		SourceIP:  remote.Addr(),
//		Details:   map[string]string{"database": "app"},
//	})
//	fmt.Println(d.Allowed, d) // true allow (coding-agents-read-staging)
//
//	// Per statement, at the connector: each of its actions.
//	d = engine.Authorize(policy.Request{
//		Principal: agent,
//		Action:    "sql:delete",
//		Resource:  db,
//		SQL:       &policy.SQL{Kinds: []string{"DELETE"}, TablesWritten: []string{"orders"}},
//	})
//	fmt.Println(d.Allowed, d) // false deny (no policy permits)
//
// On reload, parse and validate the new files, then [Engine.Swap]. The
// channel from [Engine.Changed] or [Engine.Current] is closed by the swap,
// telling the relay to recompute its catalogs and to send the new Set to
// its connectors: [Set.Sources] are the documents it was parsed from, and
// [ParseSources] builds, at the connector, a Set that decides alike.
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
// The schema knows the action hierarchy and context.sql and context.http,
// so a misspelled action (Action::"sql:dorp") or field (context.sql.tables)
// is reported, and so is `action == Action::"read"`, which no request
// matches. The token's free attributes are not in the schema until declared with
// [ValidateOptions].PrincipalAttributes; the request details, with
// DetailKeys; actions outside the hierarchy, with Actions. Declared
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
// When none of them reads the context, or none but context.sql, the
// decision depends on nothing but the policies, the principal, the action,
// the resource and the statement, and the Set caches it under the identity
// of a principal from [NewPrincipal] and a resource from [NewResource], the
// action, and every field of the statement (the fingerprint and what the
// classifier found in it): the next open of that binding by that session,
// or the next run of that statement, costs a lookup. An HTTP request's
// decision is cached only when none of its policies reads context.http: a
// path and a query are too varied to key on. Nothing is ever invalidated,
// because nothing a key stands for can change: a reload is a new Set with
// an empty cache, a refreshed token is a new Principal, a changed catalog
// entry a new Resource, and a Principal or Resource whose fields were
// changed after it was made is not cached. A policy that reads
// context.time, source_ip or details makes every decision it applies to be
// evaluated each time. The cache holds a fixed number of decisions
// (16,384), each new one replacing whichever it collides with.
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
//	// A SQL statement, as the connector's parser classifies it. Table and
//	// function names are as written, schema-qualified when the statement
//	// qualifies them ("public.orders" or "orders").
//	type SQL = {
//	  kinds: Set<String>,          // parse-tree node kinds: "select", "insert", ...
//	  tables_read: Set<String>,
//	  tables_written: Set<String>,
//	  functions: Set<String>,
//	  fingerprint: String,         // the same for statements that differ only in constants
//	};
//
//	// An HTTP request, its target normalized as the upstream receives it.
//	type HTTP = {
//	  method: String,              // "GET", "POST", ...
//	  path: String,                // decoded, dot-segments resolved: "/v1/incidents/42"
//	  query: Set<String>,          // each parameter, decoded, as "key=value"
//	  query_keys: Set<String>,     // each parameter's decoded key
//	};
//
//	type Context = {
//	  time: datetime,
//	  source_ip?: ipaddr,
//	  details: Details,
//	  sql?: SQL,                   // present when deciding a SQL statement
//	  http?: HTTP,                 // present when deciding an HTTP request
//	};
//
//	// Open a binding, at the relay.
//	action connect appliesTo {
//	  principal: [Agent],
//	  resource: [Binding],
//	  context: Context,
//	};
//
//	// The groups of the hierarchy. No request names one: policies match them
//	// with "action in". ddl is under write; unclassified is under neither.
//	action read, write, unclassified;
//	action ddl in [write];
//
//	action "sql:select", "sql:show", "sql:copy_to", "sql:explain",
//	       "sql:transaction", "sql:set", "sql:prepare", "sql:cursor",
//	       "sql:listen",
//	       "http:GET", "http:HEAD", "http:OPTIONS"
//	  in [read] appliesTo {
//	  principal: [Agent],
//	  resource: [Binding],
//	  context: Context,
//	};
//
//	action "sql:insert", "sql:update", "sql:delete", "sql:merge",
//	       "sql:truncate", "sql:copy_from", "sql:select_into",
//	       "sql:lock_rows", "sql:function", "sql:notify", "sql:vacuum",
//	       "sql:analyze", "sql:maintain",
//	       "http:POST", "http:PUT", "http:PATCH", "http:DELETE"
//	  in [write] appliesTo {
//	  principal: [Agent],
//	  resource: [Binding],
//	  context: Context,
//	};
//
//	action "sql:create", "sql:alter", "sql:drop", "sql:grant",
//	       "sql:revoke", "sql:comment", "sql:create_table_as"
//	  in [ddl] appliesTo {
//	  principal: [Agent],
//	  resource: [Binding],
//	  context: Context,
//	};
//
//	action "sql:do", "sql:call", "sql:copy_program", "sql:lock",
//	       "sql:set_privileged", "sql:begin_read_write", "sql:two_phase",
//	       "sql:execute", "sql:admin", "sql:other",
//	       "http:other"
//	  in [unclassified] appliesTo {
//	  principal: [Agent],
//	  resource: [Binding],
//	  context: Context,
//	};
package policy
