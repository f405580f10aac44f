package sqlclass

// readOnlyFunctions is the allow-list of built-in functions a read may call:
// a call of any other function is sql:function, a write. A name here is
// allowed when called unqualified or qualified with pg_catalog, never with
// another schema.
//
// A function belongs here only if it is built in (in pg_catalog), changes
// nothing (no table, sequence, setting, lock, large object, file or other
// session), reads no file and runs no SQL given to it as a string. Volatility
// is not enough: nextval is volatile and writes, but so is random, which
// does not; and set_config is stable-looking in use but changes a setting.
// Functions deliberately absent, whatever their volatility: nextval, setval,
// currval, lastval, set_config, setseed, pg_sleep*, pg_terminate_backend,
// pg_cancel_backend, pg_reload_conf, pg_rotate_logfile, pg_advisory_*,
// pg_try_advisory_*, pg_notify, txid_current, pg_current_xact_id, dblink*,
// lo_*, loread, lowrite, pg_read_file, pg_read_binary_file, pg_ls_*,
// pg_stat_file, query_to_xml and the other *_to_xml functions that run a
// query string, pg_logical_*, pg_create_*_replication_slot,
// pg_drop_replication_slot, pg_switch_wal, pg_backup_*, and every
// user-defined function. TestAllowListExcludesWriters keeps them out.
//
// To extend the list, add the name below with the PostgreSQL documentation
// section it comes from, check it against the rules above (and its source,
// if in doubt: "stable" in pg_proc does not mean "no side effects"), and add
// a corpus case calling it.
var readOnlyFunctions = setOf(
	// Aggregates (functions-aggregate).
	"count", "sum", "avg", "min", "max", "array_agg", "string_agg",
	"bool_and", "bool_or", "every", "bit_and", "bit_or", "bit_xor",
	"json_agg", "jsonb_agg", "json_object_agg", "jsonb_object_agg",
	"json_agg_strict", "jsonb_agg_strict", "json_object_agg_strict",
	"jsonb_object_agg_strict", "json_object_agg_unique", "jsonb_object_agg_unique",
	"stddev", "stddev_pop", "stddev_samp", "variance", "var_pop", "var_samp",
	"corr", "covar_pop", "covar_samp", "regr_avgx", "regr_avgy", "regr_count",
	"regr_intercept", "regr_r2", "regr_slope", "regr_sxx", "regr_sxy", "regr_syy",
	"percentile_cont", "percentile_disc", "mode", "any_value",
	"range_agg", "range_intersect_agg", "xmlagg",

	// Window functions (functions-window).
	"row_number", "rank", "dense_rank", "percent_rank", "cume_dist", "ntile",
	"lag", "lead", "first_value", "last_value", "nth_value",

	// Mathematics (functions-math).
	"abs", "ceil", "ceiling", "floor", "round", "trunc", "sign", "sqrt", "cbrt",
	"power", "pow", "exp", "ln", "log", "log10", "mod", "div", "pi", "degrees",
	"radians", "sin", "cos", "tan", "asin", "acos", "atan", "atan2", "sind",
	"cosd", "tand", "sinh", "cosh", "tanh", "width_bucket", "scale", "gcd",
	"lcm", "factorial", "min_scale", "trim_scale", "random", "random_normal",

	// Strings (functions-string), including the pg_catalog names the parser
	// gives SQL-syntax forms: TRIM is btrim/ltrim/rtrim, SUBSTRING ... FROM is
	// substring, POSITION is position, OVERLAY is overlay, SIMILAR TO calls
	// similar_to_escape, IS NORMALIZED is is_normalized.
	"lower", "upper", "length", "char_length", "character_length",
	"octet_length", "bit_length", "concat", "concat_ws", "substr", "substring",
	"position", "strpos", "replace", "translate", "btrim", "ltrim", "rtrim",
	"lpad", "rpad", "left", "right", "repeat", "reverse", "split_part",
	"initcap", "format", "quote_ident", "quote_literal", "quote_nullable",
	"md5", "sha224", "sha256", "sha384", "sha512", "encode", "decode",
	"ascii", "chr", "to_hex", "regexp_replace", "regexp_match",
	"regexp_matches", "regexp_split_to_array", "regexp_split_to_table",
	"regexp_count", "regexp_instr", "regexp_like", "regexp_substr",
	"starts_with", "string_to_array", "string_to_table", "array_to_string",
	"overlay", "normalize", "is_normalized", "similar_to_escape", "unistr",

	// Formatting and dates (functions-formatting, functions-datetime).
	// AT TIME ZONE is timezone, EXTRACT is extract.
	"to_char", "to_date", "to_number", "to_timestamp", "now",
	"clock_timestamp", "statement_timestamp", "transaction_timestamp",
	"timeofday", "date_trunc", "date_part", "extract", "age", "make_date",
	"make_time", "make_timestamp", "make_timestamptz", "make_interval",
	"justify_days", "justify_hours", "justify_interval", "isfinite",
	"date_bin", "timezone", "date_add", "date_subtract",

	// JSON (functions-json): constructors, accessors, processing.
	"to_json", "to_jsonb", "array_to_json", "row_to_json", "json_build_array",
	"jsonb_build_array", "json_build_object", "jsonb_build_object",
	"json_object", "jsonb_object", "json_array_length", "jsonb_array_length",
	"json_array_elements", "jsonb_array_elements", "json_array_elements_text",
	"jsonb_array_elements_text", "json_each", "jsonb_each", "json_each_text",
	"jsonb_each_text", "json_extract_path", "jsonb_extract_path",
	"json_extract_path_text", "jsonb_extract_path_text", "json_object_keys",
	"jsonb_object_keys", "json_typeof", "jsonb_typeof", "json_strip_nulls",
	"jsonb_strip_nulls", "jsonb_set", "jsonb_set_lax", "jsonb_insert",
	"jsonb_pretty", "json_to_record", "jsonb_to_record", "json_to_recordset",
	"jsonb_to_recordset", "json_populate_record", "jsonb_populate_record",
	"json_populate_recordset", "jsonb_populate_recordset", "jsonb_path_exists",
	"jsonb_path_match", "jsonb_path_query", "jsonb_path_query_array",
	"jsonb_path_query_first",

	// Arrays and set-returning functions (functions-array, functions-srf).
	"array_length", "array_lower", "array_upper", "array_dims", "array_ndims",
	"cardinality", "array_append", "array_prepend", "array_cat",
	"array_remove", "array_replace", "array_position", "array_positions",
	"array_fill", "trim_array", "unnest", "generate_series",
	"generate_subscripts",

	// Conditional, type and session information (functions-conditional,
	// functions-info). current_setting only reads.
	"num_nulls", "num_nonnulls", "pg_typeof", "format_type", "version",
	"current_setting", "current_database", "current_schema",
	"current_schemas", "pg_backend_pid", "gen_random_uuid", "system_user",
	"pg_collation_for", "inet_client_addr", "inet_server_addr",
)

func setOf(names ...string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

// builtinOperators are the operator symbols of pg_operator in a stock
// PostgreSQL 17. An operator named otherwise, or qualified with a schema
// other than pg_catalog, is user-defined: its function is a call of a user
// function. (A user may also overload one of these symbols for a type of
// their own; the parse tree cannot show that.)
var builtinOperators = setOf(
	"+", "-", "*", "/", "%", "^", "|/", "||/", "@", "&", "|", "#", "~",
	"<<", ">>", "=", "<>", "<", ">", "<=", ">=", "~~", "!~~", "~~*", "!~~*",
	"~*", "!~", "!~*", "||", "@>", "<@", "&&", "?", "?|", "?&", "->", "->>",
	"#>", "#>>", "#-", "@?", "@@", "@@@", "<->", "&<", "&>", "<<|", "|>>",
	"&<|", "|&>", "<<=", ">>=", "-|-", "?#", "?-", "?-|", "?||", "@-@", "##",
	"<^", ">^", "^@", "~=", "<#>", "~<~", "~<=~", "~>=~", "~>~",
)

// builtinTypes are the type names of pg_type in a stock PostgreSQL 17 (and
// the SQL spellings the parser maps onto them). A cast to another type, or
// to a type qualified with a schema other than pg_catalog, may run a user
// function: a domain's CHECK, a user cast or a type's input function.
var builtinTypes = setOf(
	"bool", "boolean", "int2", "int4", "int8", "smallint", "integer", "int",
	"bigint", "float4", "float8", "real", "numeric", "decimal", "money",
	"text", "varchar", "char", "bpchar", "name", "bytea", "date", "time",
	"timetz", "timestamp", "timestamptz", "interval", "uuid", "json", "jsonb",
	"jsonpath", "xml", "inet", "cidr", "macaddr", "macaddr8", "bit", "varbit",
	"point", "line", "lseg", "box", "path", "polygon", "circle", "tsvector",
	"tsquery", "oid", "xid", "xid8", "cid", "tid", "regclass", "regtype",
	"regproc", "regprocedure", "regoper", "regoperator", "regnamespace",
	"regrole", "regconfig", "regdictionary", "regcollation", "int4range",
	"int8range", "numrange", "tsrange", "tstzrange", "daterange",
	"int4multirange", "int8multirange", "nummultirange", "tsmultirange",
	"tstzmultirange", "datemultirange", "pg_lsn", "pg_snapshot",
	"txid_snapshot", "record", "unknown", "interval",
)
