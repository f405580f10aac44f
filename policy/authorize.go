package policy

import (
	"errors"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	cedar "github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/types"
)

// The Cedar entity types of the Postern schema; see [SchemaText].
const (
	typeAgent       = "Agent"
	typeGroup       = "Group"
	typeBinding     = "Binding"
	typeEnvironment = "Environment"
	typeAction      = "Action"
)

// ActionConnect is the action of opening a binding, the default of
// [Request.Action].
const ActionConnect = "connect"

var (
	connectUID  = types.NewEntityUID(typeAction, ActionConnect)
	emptyRecord = types.NewRecord(types.RecordMap{})
	emptySet    = types.NewSet()
)

// A Principal is the agent asking, as its verified identity token describes
// it. It becomes the entity Agent::"<ID>", a member of Group::"<g>" for each
// of Groups, whose attributes are Attributes plus role = "agent".
//
// A Principal built with [NewPrincipal] carries its Cedar form, converted
// once, and is a key of the decision cache: reuse it for every decision of a
// session. A Principal literal is converted on every decision and its
// decisions are not cached.
type Principal struct {
	ID     string   // the token's subject; must not be empty
	Groups []string // duplicates are harmless

	// Attributes are the token's free attributes, as decoded from JSON:
	// string -> String, bool -> Bool, an integral float64 or json.Number
	// (or any Go integer) -> Long, []any or []string -> Set, map[string]any
	// or map[string]string -> Record. A nil value is left out, as if absent.
	// A fraction, a non-finite or out-of-range number, a null inside a set
	// or any other Go type makes the request invalid: it is denied, with the
	// reason in Decision.Errors. An attribute named "role" is overridden.
	Attributes map[string]any

	form *principalForm // from NewPrincipal; checked against the fields before use
}

// A Resource is the binding asked for, as the relay's catalog describes it.
// It becomes the entity Binding::"<Name>", a member of
// Environment::"<Environment>" when Environment is not empty, with the
// attributes kind, environment and labels (always present, maybe empty).
//
// A Resource built with [NewResource] carries its Cedar form, converted
// once, and is a key of the decision cache: keep it in the catalog. A
// Resource literal is converted on every decision and its decisions are not
// cached.
type Resource struct {
	Name        string // must not be empty
	Kind        string // "postgres", "http", "tcp", ...
	Environment string // "staging", "prod", ...; may be empty
	Labels      []string

	form *resourceForm // from NewResource; checked against the fields before use
}

// A Request is one access to decide.
type Request struct {
	Principal Principal
	Action    string // an action name: Action::"<Action>"; empty means ActionConnect
	Resource  Resource

	// Time becomes context.time (a Cedar datetime, millisecond precision);
	// the zero Time means now.
	Time time.Time
	// SourceIP becomes context.source_ip (a Cedar ipaddr) when valid. An
	// IPv4-mapped IPv6 address (::ffff:a.b.c.d, as a dual-stack socket
	// reports it) is unmapped so that IPv4 ranges match it; a zone is dropped.
	SourceIP netip.Addr
	// Details become context.details, a record of strings, always present.
	Details map[string]string

	// SQL, when not nil, becomes context.sql: the request is for one SQL
	// statement, and Action is one of its actions (sql:select, ...).
	SQL *SQL
	// HTTP, when not nil, becomes context.http: the request is for one
	// HTTP request, and Action is its method's (see [HTTPAction]).
	HTTP *HTTP
}

// SQL describes one SQL statement, as the connector's classifier reports
// it; it becomes context.sql. Nil slices are empty sets.
type SQL struct {
	Kinds         []string // parse-tree node kinds: "select", "insert", ...
	TablesRead    []string
	TablesWritten []string
	Functions     []string
	// Fingerprint is the same for statements that differ only in their
	// constants. Decisions are cached by it and the fields above.
	Fingerprint string
}

// HTTP describes one HTTP request, its target normalized (package
// internal/httpreq) as the upstream receives it; it becomes context.http.
type HTTP struct {
	Method string // "GET", "POST", ...
	Path   string // decoded, dot-segments resolved
	// Query becomes context.http.query, a set of "key=value" with key and
	// value decoded ("key=" for a key without a value), and
	// context.http.query_keys, the set of its keys.
	Query url.Values
}

// An EvalError is an error raised while deciding a request. PolicyID names
// the policy whose evaluation failed, or is empty when the request itself
// could not be turned into Cedar (it is then denied without evaluation).
type EvalError struct {
	PolicyID string
	Message  string
}

// A Decision is the outcome of [Set.Authorize].
type Decision struct {
	Allowed bool

	// Policies are the @ids of the policies that decided, in load order:
	// when allowed, the permits that matched; when denied by policy, the
	// forbids that matched or failed to evaluate; empty on the default deny
	// (no permit matched) and on an invalid request.
	Policies []string

	// Errors lists every evaluation error, permits' included, in load
	// order. A forbid that fails to evaluate denies the request (Cedar
	// would skip it and fail open); a permit that fails does not permit.
	Errors []EvalError

	// Cached says the decision came from the Set's decision cache, not
	// from an evaluation (for metrics; it never changes the outcome).
	Cached bool
}

// String returns "allow (id, ...)", "deny (id, ...)", "deny (no policy
// permits)" or "deny (invalid request: reason)".
func (d Decision) String() string {
	var b strings.Builder
	if d.Allowed {
		b.WriteString("allow (")
	} else {
		b.WriteString("deny (")
	}
	switch {
	case len(d.Policies) > 0:
		b.WriteString(strings.Join(d.Policies, ", "))
	case !d.Allowed && len(d.Errors) > 0 && d.Errors[0].PolicyID == "":
		b.WriteString("invalid request: ")
		b.WriteString(d.Errors[0].Message)
	default:
		b.WriteString("no policy permits")
	}
	b.WriteString(")")
	return b.String()
}

// Authorize decides req: allow only if some permit matches and no forbid
// matches or fails to evaluate. A nil or empty Set denies everything. This
// is Cedar's decision for req's action exactly; for opening a binding, the
// relay asks [Set.AuthorizeOpen].
//
// When req's Principal and Resource come from [NewPrincipal] and
// [NewResource] and are unchanged since, the decision is cached when the
// policies that apply to it read no part of the context other than
// context.sql (and context.http, when req has no HTTP): the same principal,
// action, resource and statement (req.SQL, compared field by field) are
// decided again without evaluation, for as long as s lives. The returned
// Decision is the caller's to keep and modify.
func (s *Set) Authorize(req Request) Decision {
	return s.authorize(&req, false)
}

// AuthorizeOpen decides whether req's principal may open req's binding,
// whatever req.Action says (the action decided is connect, with neither
// context.sql nor context.http). It allows when no forbid that applies to
// connect matches or fails, and either a permit matches connect or some
// permit admits, by its scope, a data action (one under read, write or
// unclassified) for this principal and binding, and its conditions that do
// not read context.sql or context.http hold. Statements and requests
// through the binding are then each decided by [Set.Authorize]; see
// "Opening a binding" in the package documentation. It is cached as
// Authorize is.
func (s *Set) AuthorizeOpen(req Request) Decision {
	req.Action, req.SQL, req.HTTP = ActionConnect, nil, nil
	return s.authorize(&req, true)
}

// MayWrite reports whether some statement or request of req's principal
// through req's binding might be a write, whatever req.Action says: whether
// a permit whose scope admits an action under write or unclassified
// matches this principal and binding, with those of its conditions that
// read context.sql or context.http left out, as [Set.AuthorizeOpen] leaves
// them out. Forbids are not consulted: they only narrow what the
// statements' own decisions allow. It is false for a nil or empty Set and
// when a condition fails to evaluate, so that a caller choosing a
// read-only login when it is false fails safe. The connector asks it at
// each stream of a postgres binding that has a read-only login.
func (s *Set) MayWrite(req Request) bool {
	if s.Len() == 0 {
		return false
	}
	req.Action, req.SQL, req.HTTP = ActionConnect, nil, nil
	creq, ents, err := buildRequest(&req)
	if err != nil {
		return false
	}
	c := &candidates{}
	s.writers.candidates(c, creq, ents)
	found, reads := c.scan()
	if !found {
		return false
	}
	if reads != 0 {
		creq.Context = buildContext(&req)
	}
	dec, _ := cedar.Authorize(c, ents, creq)
	return dec == cedar.Allow
}

func (s *Set) authorize(req *Request, open bool) Decision {
	if s.Len() == 0 {
		return Decision{}
	}
	creq, ents, err := buildRequest(req)
	if err != nil {
		return Decision{Errors: []EvalError{{Message: err.Error()}}}
	}
	// A form with a seq is the one NewPrincipal or NewResource made, and its
	// fields still match the request's: cedarForm checked them.
	var key *cacheKey
	if ents.principal.seq != 0 && ents.resource.seq != 0 {
		key = &cacheKey{
			principal: ents.principal.seq,
			resource:  ents.resource.seq,
			action:    string(creq.Action.ID),
			sql:       sqlKey(req.SQL),
			http:      req.HTTP != nil,
			open:      open,
		}
		if d, ok := s.cache.load(key); ok {
			d.Cached = true
			return d
		}
	}

	var buf [12][]*entry // enough for most requests; an open with many groups grows it
	c := &candidates{lists: buf[:0]}
	s.idx.candidates(c, creq, ents)
	if open {
		s.openers.candidates(c, creq, ents)
	}
	found, reads := c.scan()
	if !found {
		// No policy applies. Finding that again costs a few map lookups,
		// not an evaluation: not worth a slot of the cache.
		return Decision{}
	}
	if reads != 0 {
		creq.Context = buildContext(req)
	}

	dec, diag := cedar.Authorize(c, ents, creq)
	d := s.decision(dec, diag)
	// The decision depends on nothing but the key when the candidates read
	// no part of the context but the statement, which the key holds, or
	// the HTTP request's absence.
	cacheable := reads&readsOther == 0 && (reads&readsHTTP == 0 || req.HTTP == nil)
	if key != nil && cacheable {
		s.cache.store(key, d)
	}
	return d
}

// candidates adds the buckets of idx that req selects to c.
func (idx *index) candidates(c *candidates, creq types.Request, ents requestEntities) {
	c.add(idx.always)
	c.add(idx.byPrincipal[creq.Principal])
	for _, g := range ents.principal.uids {
		c.add(idx.byPrincipal[g])
	}
	c.add(idx.byResource[creq.Resource])
	if env := ents.resource.env; env != nil {
		c.add(idx.byResource[*env])
	}
	for _, l := range ents.resource.labels {
		c.add(idx.byLabel[l])
	}
	c.add(idx.byAction[creq.Action])
}

func (s *Set) decision(dec cedar.Decision, diag cedar.Diagnostic) Decision {
	var d Decision
	var deciders []*entry
	failedForbid := false
	if len(diag.Errors) > 0 {
		type failure struct {
			e   *entry
			msg string
		}
		failed := make([]failure, len(diag.Errors))
		for i, de := range diag.Errors {
			failed[i] = failure{s.byID[de.PolicyID], de.Message}
		}
		slices.SortStableFunc(failed, func(a, b failure) int { return a.e.ord - b.e.ord })
		// An open evaluates a permit and its opener (see openerOf) under
		// one @id: the same error twice is one.
		failed = slices.CompactFunc(failed, func(a, b failure) bool { return a == b })
		d.Errors = make([]EvalError, len(failed))
		for i, f := range failed {
			d.Errors[i] = EvalError{PolicyID: string(f.e.id), Message: f.msg}
			if f.e.forbid {
				deciders = append(deciders, f.e)
				failedForbid = true
			}
		}
	}
	switch {
	case dec == cedar.Deny:
		for _, r := range diag.Reasons {
			deciders = append(deciders, s.byID[r.PolicyID])
		}
	case failedForbid:
		// cedar-go skipped the failing forbid and allowed: fail closed.
	default:
		d.Allowed = true
		for _, r := range diag.Reasons {
			deciders = append(deciders, s.byID[r.PolicyID])
		}
	}
	if len(deciders) > 0 {
		deciders = sortEntries(deciders)
		d.Policies = make([]string, len(deciders))
		for i, e := range deciders {
			d.Policies[i] = string(e.id)
		}
	}
	return d
}

// sortEntries sorts es in load order and drops duplicates (a permit and
// its opener), in place.
func sortEntries(es []*entry) []*entry {
	if len(es) > 1 {
		slices.SortFunc(es, func(a, b *entry) int { return a.ord - b.ord })
		es = slices.Compact(es)
	}
	return es
}

// requestEntities serves the entities of a request that have parents or
// attributes: the principal, the resource and the known actions. Groups and
// Environments have neither, so they need no entity: Cedar treats a missing
// entity as one without parents and attributes.
type requestEntities struct {
	principal *principalForm
	resource  *resourceForm
}

func (r requestEntities) Get(uid types.EntityUID) (types.Entity, bool) {
	switch uid {
	case r.principal.entity.UID:
		return r.principal.entity, true
	case r.resource.entity.UID:
		return r.resource.entity, true
	}
	if uid.Type == typeAction {
		// The known actions, with their parents: how `action in
		// Action::"read"` matches Action::"sql:select".
		e, ok := actionEntities[uid]
		return e, ok
	}
	return types.Entity{}, false
}

var (
	errNoPrincipal = errors.New("principal ID is empty")
	errNoResource  = errors.New("resource name is empty")
)

func buildRequest(req *Request) (types.Request, requestEntities, error) {
	pf, err := req.Principal.cedarForm()
	if err != nil {
		return types.Request{}, requestEntities{}, err
	}
	rf, err := req.Resource.cedarForm()
	if err != nil {
		return types.Request{}, requestEntities{}, err
	}
	action := connectUID
	if req.Action != "" && req.Action != ActionConnect {
		action = actionUID(req.Action)
	}
	// The context is left empty: Authorize builds it only if a policy to
	// evaluate reads it.
	return types.Request{
		Principal: pf.entity.UID,
		Action:    action,
		Resource:  rf.entity.UID,
	}, requestEntities{principal: pf, resource: rf}, nil
}

func buildContext(req *Request) types.Record {
	t := req.Time
	if t.IsZero() {
		t = time.Now()
	}
	details := emptyRecord
	if len(req.Details) > 0 {
		m := make(types.RecordMap, len(req.Details))
		for k, v := range req.Details {
			m[types.String(k)] = types.String(v)
		}
		details = types.NewRecord(m)
	}
	ctx := make(types.RecordMap, 5)
	ctx["time"] = types.NewDatetime(t)
	ctx["details"] = details
	if ip := req.SourceIP; ip.IsValid() {
		ip = ip.Unmap().WithZone("")
		ctx["source_ip"] = types.IPAddr(netip.PrefixFrom(ip, ip.BitLen()))
	}
	if q := req.SQL; q != nil {
		ctx["sql"] = types.NewRecord(types.RecordMap{
			"kinds":          stringSet(q.Kinds),
			"tables_read":    stringSet(q.TablesRead),
			"tables_written": stringSet(q.TablesWritten),
			"functions":      stringSet(q.Functions),
			"fingerprint":    types.String(q.Fingerprint),
		})
	}
	if h := req.HTTP; h != nil {
		var query, keys []string
		for k, vs := range h.Query {
			keys = append(keys, k)
			for _, v := range vs {
				query = append(query, k+"="+v)
			}
		}
		ctx["http"] = types.NewRecord(types.RecordMap{
			"method":     types.String(h.Method),
			"path":       types.String(h.Path),
			"query":      stringSet(query),
			"query_keys": stringSet(keys),
		})
	}
	return types.NewRecord(ctx)
}

func stringSet(ss []string) types.Set {
	if len(ss) == 0 {
		return emptySet
	}
	vals := make([]types.Value, len(ss))
	for i, s := range ss {
		vals[i] = types.String(s)
	}
	return types.NewSet(vals...)
}
