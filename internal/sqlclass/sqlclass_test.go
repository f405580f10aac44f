package sqlclass

import (
	"bufio"
	"errors"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// corpusCase is one case of testdata/corpus.txt. The file holds cases as
//
//	== name
//	SQL text, any number of lines
//	=> class write
//	=> actions sql:delete sql:select
//	=> read orders
//	=> written public.orders
//	=> funcs count
//	=> kinds delete select
//	=> stmts 2
//	=> error
//
// An expectation absent is not checked; one present with no values checks
// for none. For several statements the values are the union over them and
// class is the strongest.
type corpusCase struct {
	name   string
	line   int
	sql    string
	expect map[string][]string
}

func readCorpus(t testing.TB) []corpusCase {
	t.Helper()
	f, err := os.Open("testdata/corpus.txt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	var cases []corpusCase
	var cur *corpusCase
	var sql []string
	flush := func() {
		if cur != nil {
			cur.sql = strings.TrimSpace(strings.Join(sql, "\n"))
			cases = append(cases, *cur)
		}
		sql = nil
	}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "== "):
			flush()
			cur = &corpusCase{name: strings.TrimSpace(line[3:]), line: n, expect: map[string][]string{}}
		case cur == nil:
			// Preamble.
		case strings.HasPrefix(line, "=> "):
			fields := splitFields(line[3:])
			cur.expect[fields[0]] = fields[1:]
		default:
			sql = append(sql, line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	flush()
	return cases
}

func TestCorpus(t *testing.T) {
	cases := readCorpus(t)
	if len(cases) < 150 {
		t.Errorf("corpus has %d cases, want at least 150", len(cases))
	}
	seen := map[string]bool{}
	for _, c := range cases {
		if seen[c.name] {
			t.Errorf("line %d: duplicate case name %q", c.line, c.name)
		}
		seen[c.name] = true
		t.Run(c.name, func(t *testing.T) {
			stmts, err := Classify(c.sql)
			if _, wantErr := c.expect["error"]; wantErr {
				if err == nil {
					t.Fatalf("line %d: Classify(%q) = %+v, want an error", c.line, c.sql, stmts)
				}
				if !errors.Is(err, ErrParse) {
					t.Fatalf("line %d: error %v does not wrap ErrParse", c.line, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("line %d: Classify(%q): %v", c.line, c.sql, err)
			}
			got := union(stmts)
			for key, want := range c.expect {
				if key == "stmts" {
					if n, _ := strconv.Atoi(want[0]); n != len(stmts) {
						t.Errorf("line %d: %d statements, want %d", c.line, len(stmts), n)
					}
					continue
				}
				g, ok := got[key]
				if !ok {
					t.Fatalf("line %d: unknown expectation %q", c.line, key)
				}
				if !slices.Equal(g, want) {
					t.Errorf("line %d: %s = %q, want %q\n%s", c.line, key, g, want, c.sql)
				}
			}
		})
	}
}

// union merges the results of several statements the way the corpus states
// them.
func union(stmts []Statement) map[string][]string {
	sets := map[string]map[string]bool{}
	add := func(key string, vals ...string) {
		if sets[key] == nil {
			sets[key] = map[string]bool{}
		}
		for _, v := range vals {
			sets[key][v] = true
		}
	}
	var actions []string
	for _, s := range stmts {
		add("actions", s.Actions...)
		add("kinds", s.Kinds...)
		add("read", s.TablesRead...)
		add("written", s.TablesWritten...)
		add("funcs", s.Functions...)
		actions = append(actions, s.Actions...)
	}
	out := map[string][]string{}
	for _, k := range []string{"actions", "kinds", "read", "written", "funcs"} {
		out[k] = sortedKeys(sets[k])
		if out[k] == nil {
			out[k] = []string{}
		}
	}
	out["class"] = []string{strongest(actions)}
	return out
}

func TestStatementFields(t *testing.T) {
	stmts, err := Classify("SELECT o.id /* secret */ FROM public.orders o WHERE o.total > 100; DELETE FROM orders WHERE id = 7")
	if err != nil {
		t.Fatal(err)
	}
	if len(stmts) != 2 {
		t.Fatalf("%d statements, want 2", len(stmts))
	}
	if got, want := stmts[0].Normalized, "SELECT o.id              FROM public.orders o WHERE o.total > $1"; got != want {
		t.Errorf("Normalized = %q, want %q", got, want)
	}
	if got, want := stmts[1].Normalized, "DELETE FROM orders WHERE id = $1"; got != want {
		t.Errorf("Normalized = %q, want %q", got, want)
	}
	again, err := Classify("select o.id from public.orders o where o.total > 5")
	if err != nil {
		t.Fatal(err)
	}
	if stmts[0].Fingerprint == "" || again[0].Fingerprint != stmts[0].Fingerprint {
		t.Errorf("fingerprints %q and %q differ for the same statement with other literals", stmts[0].Fingerprint, again[0].Fingerprint)
	}
	if stmts[1].Fingerprint == stmts[0].Fingerprint {
		t.Errorf("SELECT and DELETE share fingerprint %q", stmts[0].Fingerprint)
	}
}

func TestEmptyAndNUL(t *testing.T) {
	for _, sql := range []string{"", " ; ;", "-- just a comment"} {
		stmts, err := Classify(sql)
		if err != nil || len(stmts) != 0 {
			t.Errorf("Classify(%q) = %v, %v; want no statements", sql, stmts, err)
		}
	}
	if _, err := Classify("SELECT 1\x00; DROP TABLE orders"); !errors.Is(err, ErrParse) {
		t.Errorf("NUL byte: error %v, want ErrParse", err)
	}
}

// TestTablesName every node named in stmtAction and targetFields, so that a
// misspelt name (which would quietly fall to sql:other or lose a target)
// fails here.
func TestTablesNameRealNodes(t *testing.T) {
	check := func(name string) {
		t.Helper()
		mt, err := protoregistry.GlobalTypes.FindMessageByName(protoreflect.FullName("pg_query." + name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			return
		}
		_ = mt
	}
	for name := range stmtAction {
		check(name)
	}
	for name, fields := range targetFields {
		check(name)
		mt, err := protoregistry.GlobalTypes.FindMessageByName(protoreflect.FullName("pg_query." + name))
		if err != nil {
			continue
		}
		for _, f := range fields {
			if mt.Descriptor().Fields().ByName(protoreflect.Name(f)) == nil {
				t.Errorf("%s has no field %q", name, f)
			}
		}
	}
	for a := range stmtAction {
		if act := stmtAction[a]; act != "" && ActionClass[act] == "" {
			t.Errorf("stmtAction[%s] = %q, not in ActionClass", a, act)
		}
	}
}

// TestEveryStmtNodeDecided lists the statement nodes of the parse tree that
// neither stmtAction nor walker.node decides: they are sql:other. The list
// is pinned so that a new pg_query version's new statements are looked at.
func TestEveryStmtNodeDecided(t *testing.T) {
	inNode := setOf("SelectStmt", "InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt",
		"ExplainStmt", "CopyStmt", "VariableSetStmt", "TransactionStmt", "DiscardStmt",
		"VacuumStmt", "GrantStmt", "DropStmt")
	var other []string
	protoregistry.GlobalTypes.RangeMessages(func(mt protoreflect.MessageType) bool {
		d := mt.Descriptor()
		name := string(d.Name())
		if d.ParentFile().Package() != "pg_query" || !strings.HasSuffix(name, "Stmt") {
			return true
		}
		if _, ok := stmtAction[name]; !ok && !inNode[name] {
			other = append(other, name)
		}
		return true
	})
	slices.Sort(other)
	want := []string{"PLAssignStmt", "RawStmt", "SetOperationStmt"}
	if !reflect.DeepEqual(other, want) {
		t.Errorf("statement nodes left to sql:other: %q, want %q", other, want)
	}
}

func TestAllowListExcludesWriters(t *testing.T) {
	never := []string{"nextval", "setval", "currval", "lastval", "set_config", "setseed",
		"pg_terminate_backend", "pg_cancel_backend", "pg_reload_conf", "pg_notify",
		"txid_current", "pg_current_xact_id", "query_to_xml", "pg_switch_wal"}
	prefixes := []string{"pg_sleep", "pg_advisory", "pg_try_advisory", "dblink", "lo_",
		"pg_read_", "pg_ls_", "pg_stat_file", "pg_logical", "pg_create_", "pg_drop_", "pg_backup"}
	for name := range readOnlyFunctions {
		if slices.Contains(never, name) {
			t.Errorf("%s is on the read-only allow-list", name)
		}
		for _, p := range prefixes {
			if strings.HasPrefix(name, p) {
				t.Errorf("%s (%s*) is on the read-only allow-list", name, p)
			}
		}
	}
}

func TestActionClassHasOnlyClasses(t *testing.T) {
	for a, c := range ActionClass {
		if _, ok := classRank[c]; !ok {
			t.Errorf("ActionClass[%s] = %q, not a class", a, c)
		}
		if !strings.HasPrefix(a, "sql:") {
			t.Errorf("action %q lacks the sql: prefix", a)
		}
	}
}

// splitFields splits on spaces outside double quotes, so that a quoted
// identifier with a space is one value.
func splitFields(s string) []string {
	var out []string
	var cur strings.Builder
	quoted := false
	for _, r := range s {
		switch {
		case r == '"':
			quoted = !quoted
			cur.WriteRune(r)
		case r == ' ' && !quoted:
			if cur.Len() > 0 {
				out = append(out, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteRune(r)
		}
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out
}

// TestNormalizedHidesLiterals: Normalized is logged, so neither a literal
// nor a comment may survive into it, in utility statements too.
func TestNormalizedHidesLiterals(t *testing.T) {
	for _, tc := range []struct {
		name, sql, want string
	}{
		{"select", "SELECT * FROM t WHERE pw = 'hunter2' AND n = 42", "SELECT * FROM t WHERE pw = $1 AND n = $2"},
		{"comment", "SELECT 1 /* hunter2 */ -- hunter2", "SELECT $1"},
		{"create_role", "CREATE ROLE a PASSWORD 'hunter2'", "CREATE ROLE a PASSWORD $1"},
		{"copy_program", "COPY t TO PROGRAM 'curl -d hunter2 x'", "COPY t TO PROGRAM $1"},
		{"prepare", "PREPARE q AS SELECT 'hunter2', $1", "PREPARE q AS SELECT $2, $1"},
		{"alter_system", "ALTER SYSTEM SET x.y = 'hunter2'", "ALTER SYSTEM SET x.y = $1"},
		{"comment_on", "COMMENT ON TABLE t IS 'hunter2'", "COMMENT ON TABLE t IS $1"},
		{"do", "DO $$ BEGIN PERFORM 'hunter2'; END $$", "DO $1"},
		{"set", "SET app.key = 'hunter2'", "SET app.key = $1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stmts, err := Classify(tc.sql)
			if err != nil {
				t.Fatal(err)
			}
			if got := stmts[0].Normalized; got != tc.want {
				t.Errorf("Normalized = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestConcurrent: the connector classifies for many sessions at once.
func TestConcurrent(t *testing.T) {
	cases := readCorpus(t)
	want := make([][]Statement, len(cases))
	for i, c := range cases {
		want[i], _ = Classify(c.sql)
	}
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i, c := range cases {
				got, _ := Classify(c.sql)
				if !reflect.DeepEqual(got, want[i]) {
					t.Errorf("%s: concurrent Classify = %+v, want %+v", c.name, got, want[i])
					return
				}
			}
		}()
	}
	wg.Wait()
}
