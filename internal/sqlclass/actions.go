package sqlclass

// The classes, weakest first. A statement's Class is the strongest class
// among its actions.
const (
	ClassRead         = "read"         // may run for an agent allowed only to read
	ClassWrite        = "write"        // changes data (ddl is under write)
	ClassDDL          = "ddl"          // changes schema; a kind of write
	ClassUnclassified = "unclassified" // cannot be classified safely: only an explicit permit allows it
)

// classRank orders the classes; an unknown class ranks as unclassified.
var classRank = map[string]int{
	ClassRead:         0,
	ClassWrite:        1,
	ClassDDL:          2,
	ClassUnclassified: 3,
}

// ActionClass maps every fine action [Classify] can return to its class.
// The policy package builds its Cedar action hierarchy from it. Callers must
// not modify it.
var ActionClass = map[string]string{
	// read
	"sql:select":      ClassRead,
	"sql:show":        ClassRead,
	"sql:copy_to":     ClassRead,
	"sql:explain":     ClassRead,
	"sql:transaction": ClassRead,
	"sql:set":         ClassRead,
	"sql:prepare":     ClassRead,
	"sql:cursor":      ClassRead,
	"sql:listen":      ClassRead,

	// write
	"sql:insert":      ClassWrite,
	"sql:update":      ClassWrite,
	"sql:delete":      ClassWrite,
	"sql:merge":       ClassWrite,
	"sql:truncate":    ClassWrite,
	"sql:copy_from":   ClassWrite,
	"sql:select_into": ClassWrite,
	"sql:lock_rows":   ClassWrite,
	"sql:function":    ClassWrite,
	"sql:notify":      ClassWrite,
	"sql:vacuum":      ClassWrite,
	"sql:analyze":     ClassWrite,
	"sql:maintain":    ClassWrite,

	// ddl
	"sql:create":          ClassDDL,
	"sql:create_table_as": ClassDDL,
	"sql:alter":           ClassDDL,
	"sql:drop":            ClassDDL,
	"sql:grant":           ClassDDL,
	"sql:revoke":          ClassDDL,
	"sql:comment":         ClassDDL,

	// unclassified
	"sql:do":               ClassUnclassified,
	"sql:call":             ClassUnclassified,
	"sql:copy_program":     ClassUnclassified,
	"sql:lock":             ClassUnclassified,
	"sql:set_privileged":   ClassUnclassified,
	"sql:begin_read_write": ClassUnclassified,
	"sql:two_phase":        ClassUnclassified,
	"sql:execute":          ClassUnclassified,
	"sql:admin":            ClassUnclassified,
	"sql:other":            ClassUnclassified,
}

// Fine actions, named so the walker cannot misspell them.
const (
	actSelect         = "sql:select"
	actShow           = "sql:show"
	actCopyTo         = "sql:copy_to"
	actExplain        = "sql:explain"
	actTransaction    = "sql:transaction"
	actSet            = "sql:set"
	actPrepare        = "sql:prepare"
	actCursor         = "sql:cursor"
	actListen         = "sql:listen"
	actInsert         = "sql:insert"
	actUpdate         = "sql:update"
	actDelete         = "sql:delete"
	actMerge          = "sql:merge"
	actTruncate       = "sql:truncate"
	actCopyFrom       = "sql:copy_from"
	actSelectInto     = "sql:select_into"
	actLockRows       = "sql:lock_rows"
	actFunction       = "sql:function"
	actNotify         = "sql:notify"
	actVacuum         = "sql:vacuum"
	actAnalyze        = "sql:analyze"
	actMaintain       = "sql:maintain"
	actCreate         = "sql:create"
	actCreateTableAs  = "sql:create_table_as"
	actAlter          = "sql:alter"
	actDrop           = "sql:drop"
	actGrant          = "sql:grant"
	actRevoke         = "sql:revoke"
	actComment        = "sql:comment"
	actDo             = "sql:do"
	actCall           = "sql:call"
	actCopyProgram    = "sql:copy_program"
	actLock           = "sql:lock"
	actSetPrivileged  = "sql:set_privileged"
	actBeginReadWrite = "sql:begin_read_write"
	actTwoPhase       = "sql:two_phase"
	actExecute        = "sql:execute"
	actAdmin          = "sql:admin"
	actOther          = "sql:other"
)

// stmtAction gives the action of each statement node whose action does not
// depend on its fields (those are decided in walker.node). A node whose name
// ends in "Stmt" and is in neither place is sql:other. An empty action means
// the node adds none of its own (it only occurs inside another statement).
var stmtAction = map[string]string{
	"ReturnStmt":                 "", // RETURN in a BEGIN ATOMIC function body
	"ClosePortalStmt":            actCursor,
	"FetchStmt":                  actCursor,
	"DeclareCursorStmt":          actCursor,
	"ListenStmt":                 actListen,
	"UnlistenStmt":               actListen,
	"NotifyStmt":                 actNotify,
	"DeallocateStmt":             actPrepare,
	"PrepareStmt":                actPrepare,
	"ExecuteStmt":                actExecute,
	"VariableShowStmt":           actShow,
	"ConstraintsSetStmt":         actSet,
	"TruncateStmt":               actTruncate,
	"ClusterStmt":                actMaintain,
	"ReindexStmt":                actMaintain,
	"RefreshMatViewStmt":         actMaintain,
	"LockStmt":                   actLock,
	"DoStmt":                     actDo,
	"CallStmt":                   actCall,
	"CreateTableAsStmt":          actCreateTableAs,
	"CommentStmt":                actComment,
	"AlterDefaultPrivilegesStmt": actGrant,

	"CreateStmt":              actCreate,
	"CreateSchemaStmt":        actCreate,
	"ViewStmt":                actCreate,
	"CreateSeqStmt":           actCreate,
	"IndexStmt":               actCreate,
	"CreateFunctionStmt":      actCreate,
	"CreateTrigStmt":          actCreate,
	"RuleStmt":                actCreate,
	"DefineStmt":              actCreate,
	"CreateDomainStmt":        actCreate,
	"CompositeTypeStmt":       actCreate,
	"CreateEnumStmt":          actCreate,
	"CreateRangeStmt":         actCreate,
	"CreateOpClassStmt":       actCreate,
	"CreateOpFamilyStmt":      actCreate,
	"CreateConversionStmt":    actCreate,
	"CreateCastStmt":          actCreate,
	"CreateTransformStmt":     actCreate,
	"CreateStatsStmt":         actCreate,
	"CreatePolicyStmt":        actCreate,
	"CreateForeignTableStmt":  actCreate,
	"ImportForeignSchemaStmt": actCreate,
	"CreatePublicationStmt":   actCreate,

	"AlterTableStmt":           actAlter,
	"ReplicaIdentityStmt":      actAlter,
	"AlterDomainStmt":          actAlter,
	"AlterCollationStmt":       actAlter,
	"AlterSeqStmt":             actAlter,
	"AlterEnumStmt":            actAlter,
	"AlterFunctionStmt":        actAlter,
	"AlterOpFamilyStmt":        actAlter,
	"AlterOperatorStmt":        actAlter,
	"AlterTypeStmt":            actAlter,
	"AlterStatsStmt":           actAlter,
	"AlterPolicyStmt":          actAlter,
	"AlterPublicationStmt":     actAlter,
	"AlterTSDictionaryStmt":    actAlter,
	"AlterTSConfigurationStmt": actAlter,
	"RenameStmt":               actAlter,
	"AlterObjectSchemaStmt":    actAlter,
	"AlterOwnerStmt":           actAlter,
	"AlterObjectDependsStmt":   actAlter,
	"AlterTableMoveAllStmt":    actAlter,
	"ReassignOwnedStmt":        actAlter,

	"DropStmt":      actDrop,
	"DropOwnedStmt": actDrop,

	// Roles, databases, tablespaces, extensions, languages, foreign servers,
	// subscriptions, event triggers and the server itself: beyond one
	// database's schema, so only an explicit permit allows them.
	"CreateRoleStmt":               actAdmin,
	"AlterRoleStmt":                actAdmin,
	"AlterRoleSetStmt":             actAdmin,
	"DropRoleStmt":                 actAdmin,
	"GrantRoleStmt":                actAdmin,
	"CreatedbStmt":                 actAdmin,
	"AlterDatabaseStmt":            actAdmin,
	"AlterDatabaseSetStmt":         actAdmin,
	"AlterDatabaseRefreshCollStmt": actAdmin,
	"DropdbStmt":                   actAdmin,
	"CreateTableSpaceStmt":         actAdmin,
	"DropTableSpaceStmt":           actAdmin,
	"AlterTableSpaceOptionsStmt":   actAdmin,
	"CreateExtensionStmt":          actAdmin,
	"AlterExtensionStmt":           actAdmin,
	"AlterExtensionContentsStmt":   actAdmin,
	"CreateFdwStmt":                actAdmin,
	"AlterFdwStmt":                 actAdmin,
	"CreateForeignServerStmt":      actAdmin,
	"AlterForeignServerStmt":       actAdmin,
	"CreateUserMappingStmt":        actAdmin,
	"AlterUserMappingStmt":         actAdmin,
	"DropUserMappingStmt":          actAdmin,
	"CreatePLangStmt":              actAdmin,
	"CreateSubscriptionStmt":       actAdmin,
	"AlterSubscriptionStmt":        actAdmin,
	"DropSubscriptionStmt":         actAdmin,
	"CreateEventTrigStmt":          actAdmin,
	"AlterEventTrigStmt":           actAdmin,
	"CreateAmStmt":                 actAdmin,
	"SecLabelStmt":                 actAdmin,
	"AlterSystemStmt":              actAdmin,
	"LoadStmt":                     actAdmin,
	"CheckPointStmt":               actAdmin,
}

// targetFields names, per node, the fields holding the relations it changes:
// a RangeVar or a list of them. Every other RangeVar in a tree is read.
var targetFields = map[string][]string{
	"CreateStmt":             {"relation"},
	"ViewStmt":               {"view"},
	"CreateSeqStmt":          {"sequence"},
	"AlterSeqStmt":           {"sequence"},
	"AlterTableStmt":         {"relation"},
	"IndexStmt":              {"relation"},
	"TruncateStmt":           {"relations"},
	"RefreshMatViewStmt":     {"relation"},
	"RenameStmt":             {"relation"},
	"AlterObjectSchemaStmt":  {"relation"},
	"AlterOwnerStmt":         {"relation"},
	"AlterObjectDependsStmt": {"relation"},
	"CreateTrigStmt":         {"relation"},
	"RuleStmt":               {"relation"},
	"CreatePolicyStmt":       {"table"},
	"AlterPolicyStmt":        {"table"},
	"ClusterStmt":            {"relation"},
	"ReindexStmt":            {"relation"},
	"VacuumRelation":         {"relation"},
	"LockStmt":               {"relations"},
	"PartitionCmd":           {"name"},
	"GrantStmt":              {"objects"},
	"IntoClause":             {"rel"},
	"InsertStmt":             {"relation"},
	"UpdateStmt":             {"relation"},
	"DeleteStmt":             {"relation"},
	"MergeStmt":              {"relation"},
}
