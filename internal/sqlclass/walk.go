package sqlclass

import (
	"strings"
	"unicode"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// walker visits every message of a parse tree through protobuf reflection,
// so that no field is forgotten: a subquery in any position is reached
// whatever node holds it. Nodes that matter are handled in node; the rest
// are only descended into.
type walker struct {
	actions, kinds, read, written, funcs map[string]bool

	// claimed holds the RangeVars already accounted for (written targets,
	// FOR UPDATE OF aliases), so that the generic visit does not also
	// count them as read.
	claimed map[*pg_query.RangeVar]bool
	// rows holds the VALUES lists that only supply an INSERT's rows: they
	// read nothing, so they are not a sql:select of their own.
	rows map[*pg_query.SelectStmt]bool
	// ctes is the stack of CTE names in scope; an unqualified RangeVar of
	// one of these names is the CTE, not a table.
	ctes [][]string
	// planOnly is above zero inside EXPLAIN without ANALYZE: the statement
	// is planned, not run, so its own actions do not happen and its tables
	// are only read. Function calls stay: the planner folds immutable and
	// estimates stable calls, running them.
	planOnly int
}

func newWalker() *walker {
	return &walker{
		actions: map[string]bool{},
		kinds:   map[string]bool{},
		read:    map[string]bool{},
		written: map[string]bool{},
		funcs:   map[string]bool{},
		claimed: map[*pg_query.RangeVar]bool{},
		rows:    map[*pg_query.SelectStmt]bool{},
	}
}

func (w *walker) act(a string) {
	if a == "" {
		return
	}
	if w.planOnly > 0 && a != actFunction && ActionClass[a] != ClassUnclassified {
		return
	}
	w.actions[a] = true
}

func (w *walker) visit(m proto.Message) {
	if m == nil {
		return
	}
	r := m.ProtoReflect()
	if !r.IsValid() {
		return
	}
	info := nodeInfos[r.Descriptor().FullName()]
	if info == nil {
		// Not a pg_query message: nothing the parser gives.
		w.act(actOther)
		return
	}
	if w.node(m, r, info) {
		return
	}
	if info.with != nil && r.Has(info.with) {
		w.withScope(r, info)
		return
	}
	w.children(r, info, nil)
}

// children visits every message field of r except skip.
func (w *walker) children(r protoreflect.Message, info *nodeInfo, skip protoreflect.FieldDescriptor) {
	if info.oneof != nil {
		if fd := r.WhichOneof(info.oneof); fd != nil && fd.Message() != nil {
			w.visit(r.Get(fd).Message().Interface())
		}
		return
	}
	for _, fd := range info.fields {
		if fd == skip || !r.Has(fd) {
			continue
		}
		if fd.IsList() {
			l := r.Get(fd).List()
			for i := 0; i < l.Len(); i++ {
				w.visit(l.Get(i).Message().Interface())
			}
			continue
		}
		w.visit(r.Get(fd).Message().Interface())
	}
}

// nodeInfo is what the walker needs of one message type, computed once.
type nodeInfo struct {
	name    string
	isStmt  bool
	kind    string
	fields  []protoreflect.FieldDescriptor // message-typed fields
	oneof   protoreflect.OneofDescriptor   // Node's one field, if this is Node
	with    protoreflect.FieldDescriptor   // with_clause, if any
	targets []protoreflect.FieldDescriptor // from targetFields
}

var nodeInfos = func() map[protoreflect.FullName]*nodeInfo {
	infos := map[protoreflect.FullName]*nodeInfo{}
	msgs := pg_query.File_pg_query_proto.Messages()
	for i := 0; i < msgs.Len(); i++ {
		d := msgs.Get(i)
		name := string(d.Name())
		info := &nodeInfo{name: name, isStmt: strings.HasSuffix(name, "Stmt")}
		if info.isStmt {
			info.kind = kindOf(name)
		}
		fields := d.Fields()
		for j := 0; j < fields.Len(); j++ {
			if fd := fields.Get(j); fd.Message() != nil && !fd.IsMap() {
				info.fields = append(info.fields, fd)
			}
		}
		if name == "Node" && d.Oneofs().Len() == 1 {
			info.oneof = d.Oneofs().Get(0)
		}
		info.with = fields.ByName("with_clause")
		for _, f := range targetFields[name] {
			if fd := fields.ByName(protoreflect.Name(f)); fd != nil {
				info.targets = append(info.targets, fd)
			}
		}
		infos[d.FullName()] = info
	}
	return infos
}()

// withScope walks a statement with a WITH clause. A CTE's name hides a
// table of that name in the statement and, for WITH RECURSIVE, in every CTE
// body; without RECURSIVE a body sees only the CTEs before it, so that in
// "WITH orders AS (SELECT * FROM orders) ..." the inner orders is the table.
func (w *walker) withScope(r protoreflect.Message, info *nodeInfo) {
	wf := info.with
	wc, _ := r.Get(wf).Message().Interface().(*pg_query.WithClause)
	if wc == nil {
		w.children(r, info, nil)
		return
	}
	var names []string
	for _, c := range wc.Ctes {
		if cte := c.GetCommonTableExpr(); cte != nil {
			names = append(names, cte.Ctename)
		}
	}
	for i, c := range wc.Ctes {
		visible := names[:min(i, len(names))]
		if wc.Recursive {
			visible = names
		}
		w.ctes = append(w.ctes, visible)
		w.visit(c)
		w.ctes = w.ctes[:len(w.ctes)-1]
	}
	w.ctes = append(w.ctes, names)
	w.children(r, info, wf)
	w.ctes = w.ctes[:len(w.ctes)-1]
}

func (w *walker) isCTE(rv *pg_query.RangeVar) bool {
	if rv.Schemaname != "" || rv.Catalogname != "" {
		return false
	}
	for _, scope := range w.ctes {
		for _, n := range scope {
			if n == rv.Relname {
				return true
			}
		}
	}
	return false
}

// node handles one message before its children are visited. It returns
// true if it has visited the children itself.
func (w *walker) node(m proto.Message, r protoreflect.Message, info *nodeInfo) bool {
	name, isStmt := info.name, info.isStmt
	if sel, ok := m.(*pg_query.SelectStmt); ok && w.rows[sel] {
		return false
	}
	if isStmt {
		w.kinds[info.kind] = true
	}
	for _, fd := range info.targets {
		w.claimTargets(r, fd)
	}
	switch n := m.(type) {
	case *pg_query.SelectStmt:
		w.act(actSelect)
		if n.IntoClause != nil {
			w.act(actSelectInto)
		}
	case *pg_query.LockingClause:
		w.act(actLockRows)
		// FOR UPDATE OF names FROM items (often aliases), not new relations.
		for _, rel := range n.LockedRels {
			if rv := rel.GetRangeVar(); rv != nil {
				w.claimed[rv] = true
			}
		}
	case *pg_query.InsertStmt:
		w.act(actInsert)
		if sel := n.SelectStmt.GetSelectStmt(); sel != nil && len(sel.ValuesLists) > 0 && sel.WithClause == nil {
			w.rows[sel] = true
		}
		if oc := n.OnConflictClause; oc != nil && oc.Action != pg_query.OnConflictAction_ONCONFLICT_NOTHING {
			w.act(actUpdate)
		}
	case *pg_query.UpdateStmt:
		w.act(actUpdate)
	case *pg_query.DeleteStmt:
		w.act(actDelete)
	case *pg_query.MergeStmt:
		w.act(actMerge)
	case *pg_query.RangeVar:
		if !w.claimed[n] && !w.isCTE(n) {
			w.read[relName(n)] = true
		}
	case *pg_query.FuncCall:
		w.call(n.Funcname)
	case *pg_query.A_Expr:
		switch n.Kind {
		case pg_query.A_Expr_Kind_AEXPR_BETWEEN, pg_query.A_Expr_Kind_AEXPR_NOT_BETWEEN,
			pg_query.A_Expr_Kind_AEXPR_BETWEEN_SYM, pg_query.A_Expr_Kind_AEXPR_NOT_BETWEEN_SYM:
			// Named by keyword; the comparisons are built-in <= and >=.
		default:
			w.operator(n.Name)
		}
	case *pg_query.SubLink:
		w.operator(n.OperName)
	case *pg_query.SortBy:
		w.operator(n.UseOp)
	case *pg_query.TypeCast:
		w.cast(n.TypeName)
	case *pg_query.ExplainStmt:
		w.act(actExplain)
		if !explainAnalyzes(n.Options) {
			w.planOnly++
			defer func() { w.planOnly-- }()
		}
		w.visit(n.Query)
		return true
	case *pg_query.CopyStmt:
		if n.IsFrom {
			w.act(actCopyFrom)
			w.write(n.Relation)
		} else {
			w.act(actCopyTo)
		}
		if n.IsProgram || n.Filename != "" {
			w.act(actCopyProgram)
		}
	case *pg_query.VariableSetStmt:
		w.act(setAction(n))
	case *pg_query.TransactionStmt:
		w.act(transactionAction(n))
	case *pg_query.DiscardStmt:
		if n.Target == pg_query.DiscardMode_DISCARD_PLANS ||
			n.Target == pg_query.DiscardMode_DISCARD_SEQUENCES ||
			n.Target == pg_query.DiscardMode_DISCARD_TEMP {
			w.act(actSet)
		} else {
			// DISCARD ALL includes RESET ALL and SET SESSION AUTHORIZATION
			// DEFAULT.
			w.act(actSetPrivileged)
		}
	case *pg_query.VacuumStmt:
		if n.IsVacuumcmd {
			w.act(actVacuum)
		} else {
			w.act(actAnalyze)
		}
	case *pg_query.GrantStmt:
		if n.IsGrant {
			w.act(actGrant)
		} else {
			w.act(actRevoke)
		}
	case *pg_query.DropStmt:
		w.act(actDrop)
		if dropsRelation[n.RemoveType] {
			for _, o := range n.Objects {
				if l := o.GetList(); l != nil {
					w.writeName(qualify(strs(l.Items)))
				}
			}
		}
	default:
		if isStmt {
			a, ok := stmtAction[name]
			if !ok {
				a = actOther
			}
			w.act(a)
		}
	}
	return false
}

var dropsRelation = map[pg_query.ObjectType]bool{
	pg_query.ObjectType_OBJECT_TABLE:         true,
	pg_query.ObjectType_OBJECT_VIEW:          true,
	pg_query.ObjectType_OBJECT_MATVIEW:       true,
	pg_query.ObjectType_OBJECT_SEQUENCE:      true,
	pg_query.ObjectType_OBJECT_FOREIGN_TABLE: true,
	pg_query.ObjectType_OBJECT_INDEX:         true,
}

// claimTargets records the RangeVars in field fd of r as written.
func (w *walker) claimTargets(r protoreflect.Message, fd protoreflect.FieldDescriptor) {
	if !r.Has(fd) {
		return
	}
	one := func(m proto.Message) {
		switch x := m.(type) {
		case *pg_query.RangeVar:
			w.write(x)
		case *pg_query.Node:
			if rv := x.GetRangeVar(); rv != nil {
				w.write(rv)
			}
		}
	}
	if fd.IsList() {
		l := r.Get(fd).List()
		for i := 0; i < l.Len(); i++ {
			one(l.Get(i).Message().Interface())
		}
		return
	}
	one(r.Get(fd).Message().Interface())
}

func (w *walker) write(rv *pg_query.RangeVar) {
	if rv == nil {
		return
	}
	w.claimed[rv] = true
	w.writeName(relName(rv))
}

func (w *walker) writeName(name string) {
	if w.planOnly > 0 {
		w.read[name] = true
		return
	}
	w.written[name] = true
}

// call records a function call; it is a write unless the function is on the
// read-only allow-list.
func (w *walker) call(nameNodes []*pg_query.Node) {
	parts := strs(nameNodes)
	if len(parts) == 0 {
		w.act(actOther)
		return
	}
	w.funcs[qualify(parts)] = true
	if !readOnlyFunctions[builtinName(parts)] {
		w.act(actFunction)
	}
}

// operator checks an operator name: a symbol outside the built-in set, or
// one qualified with a schema other than pg_catalog, is a user function.
func (w *walker) operator(nameNodes []*pg_query.Node) {
	if len(nameNodes) == 0 {
		return
	}
	parts := strs(nameNodes)
	if builtinOperators[builtinName(parts)] {
		return
	}
	sym := parts[len(parts)-1]
	if len(parts) > 1 {
		sym = qualify(parts[:len(parts)-1]) + "." + sym
	}
	w.funcs["OPERATOR("+sym+")"] = true
	w.act(actFunction)
}

// cast checks the target type of a cast: a type outside the built-in set,
// or qualified with a schema other than pg_catalog, may run user code.
func (w *walker) cast(tn *pg_query.TypeName) {
	if tn == nil {
		return
	}
	parts := strs(tn.Names)
	if builtinTypes[builtinName(parts)] {
		return
	}
	w.funcs["::"+qualify(parts)] = true
	w.act(actFunction)
}

// builtinName is the bare name if parts is unqualified or qualified with
// pg_catalog, and "" otherwise (so no allow-list matches).
func builtinName(parts []string) string {
	switch {
	case len(parts) == 1:
		return parts[0]
	case len(parts) == 2 && parts[0] == "pg_catalog":
		return parts[1]
	}
	return ""
}

// strs returns the String values of nodes; a node of any other kind (as in
// "a.*") yields "*" so that it cannot match an allow-list.
func strs(nodes []*pg_query.Node) []string {
	out := make([]string, 0, len(nodes))
	for _, n := range nodes {
		if s := n.GetString_(); s != nil {
			out = append(out, s.Sval)
		} else {
			out = append(out, "*")
		}
	}
	return out
}

func relName(rv *pg_query.RangeVar) string {
	var parts []string
	if rv.Catalogname != "" {
		parts = append(parts, rv.Catalogname)
	}
	if rv.Schemaname != "" {
		parts = append(parts, rv.Schemaname)
	}
	return qualify(append(parts, rv.Relname))
}

// qualify joins identifiers with dots, quoting those that would not read
// back as themselves.
func qualify(parts []string) string {
	q := make([]string, len(parts))
	for i, p := range parts {
		q[i] = quoteIdent(p)
	}
	return strings.Join(q, ".")
}

func quoteIdent(s string) string {
	plain := s != ""
	for i, r := range s {
		if !(r == '_' || r >= 'a' && r <= 'z' || r > unicode.MaxASCII && !unicode.IsUpper(r) ||
			i > 0 && (r >= '0' && r <= '9' || r == '$')) {
			plain = false
			break
		}
	}
	if plain {
		return s
	}
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// kindOf turns a node name into a statement kind: "CreateTableAsStmt" is
// "create_table_as".
func kindOf(name string) string {
	if k, ok := kindNames[name]; ok {
		return k
	}
	name = strings.TrimSuffix(name, "Stmt")
	var b strings.Builder
	for i, r := range name {
		if unicode.IsUpper(r) {
			if i > 0 && !unicode.IsUpper(rune(name[i-1])) {
				b.WriteByte('_')
			}
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

var kindNames = map[string]string{
	"VariableSetStmt":  "set",
	"VariableShowStmt": "show",
	"CreatedbStmt":     "create_database",
	"DropdbStmt":       "drop_database",
	"TransactionStmt":  "transaction",
}

// explainAnalyzes reports whether EXPLAIN's options make it run the
// statement. Anything but an explicit false counts as ANALYZE.
func explainAnalyzes(opts []*pg_query.Node) bool {
	for _, o := range opts {
		if d := o.GetDefElem(); d != nil && strings.EqualFold(d.Defname, "analyze") {
			if v, ok := boolValue(d.Arg); !ok || v {
				return true
			}
		}
	}
	return false
}

// boolValue reads a boolean option value as PostgreSQL's defGetBoolean
// does. A missing value is true.
func boolValue(n *pg_query.Node) (v, ok bool) {
	if n == nil {
		return true, true
	}
	if c := n.GetAConst(); c != nil {
		switch {
		case c.GetIval() != nil:
			return integerBool(c.GetIval().Ival)
		case c.GetBoolval() != nil:
			return c.GetBoolval().Boolval, true
		case c.GetSval() != nil:
			return stringBool(c.GetSval().Sval)
		case c.Isnull:
			return false, false
		}
		// An A_Const with no value is integer zero: protobuf omits zeros.
		return false, true
	}
	switch {
	case n.GetInteger() != nil:
		return integerBool(n.GetInteger().Ival)
	case n.GetBoolean() != nil:
		return n.GetBoolean().Boolval, true
	case n.GetString_() != nil:
		return stringBool(n.GetString_().Sval)
	}
	return false, false
}

func integerBool(i int32) (v, ok bool) {
	switch i {
	case 0:
		return false, true
	case 1:
		return true, true
	}
	return false, false
}

func stringBool(s string) (v, ok bool) {
	switch strings.ToLower(s) {
	case "true", "on", "1", "yes":
		return true, true
	case "false", "off", "0", "no":
		return false, true
	}
	return false, false
}

// privilegedSettings may not be set or reset by a read: they change who the
// session is, whether it may write, or how unqualified names resolve (a
// search_path with a schema before pg_catalog turns "lower(x)" into a user
// function).
var privilegedSettings = setOf(
	"role", "session_authorization", "default_transaction_read_only",
	"transaction_read_only", "search_path", "session_replication_role",
	"session_preload_libraries", "local_preload_libraries",
)

func setAction(n *pg_query.VariableSetStmt) string {
	name := strings.ToLower(n.Name)
	switch {
	case n.Kind == pg_query.VariableSetKind_VAR_RESET_ALL:
		// RESET ALL resets default_transaction_read_only and search_path.
		return actSetPrivileged
	case n.Kind == pg_query.VariableSetKind_VAR_SET_MULTI:
		// SET TRANSACTION ..., SET SESSION CHARACTERISTICS AS TRANSACTION ...
		for _, a := range n.Args {
			d := a.GetDefElem()
			if d == nil || d.Defname != "transaction_read_only" {
				continue
			}
			if v, ok := boolValue(d.Arg); !ok || !v {
				return actSetPrivileged
			}
		}
		return actSet
	case privilegedSettings[name]:
		return actSetPrivileged
	case strings.Contains(name, "."):
		// Custom settings ("app.tenant_id") are what row-level security
		// policies read through current_setting: setting one may widen
		// what the session sees.
		return actSetPrivileged
	}
	return actSet
}

func transactionAction(n *pg_query.TransactionStmt) string {
	switch n.Kind {
	case pg_query.TransactionStmtKind_TRANS_STMT_BEGIN, pg_query.TransactionStmtKind_TRANS_STMT_START:
		for _, o := range n.Options {
			d := o.GetDefElem()
			if d == nil || d.Defname != "transaction_read_only" {
				continue
			}
			if v, ok := boolValue(d.Arg); !ok || !v {
				return actBeginReadWrite
			}
		}
		return actTransaction
	case pg_query.TransactionStmtKind_TRANS_STMT_PREPARE,
		pg_query.TransactionStmtKind_TRANS_STMT_COMMIT_PREPARED,
		pg_query.TransactionStmtKind_TRANS_STMT_ROLLBACK_PREPARED:
		// A prepared transaction outlives the session and keeps its locks;
		// COMMIT PREPARED may finish another session's transaction.
		return actTwoPhase
	case pg_query.TransactionStmtKind_TRANS_STMT_COMMIT,
		pg_query.TransactionStmtKind_TRANS_STMT_ROLLBACK,
		pg_query.TransactionStmtKind_TRANS_STMT_SAVEPOINT,
		pg_query.TransactionStmtKind_TRANS_STMT_RELEASE,
		pg_query.TransactionStmtKind_TRANS_STMT_ROLLBACK_TO:
		return actTransaction
	}
	return actOther
}
