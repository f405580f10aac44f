package sqlclass

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// ErrParse is wrapped by every error [Classify] returns for text the
// PostgreSQL parser rejects. The caller denies the statement.
var ErrParse = errors.New("sqlclass: cannot parse")

// Statement is what one SQL statement does, from its parse tree.
type Statement struct {
	// Actions is every fine action the statement performs, deduplicated and
	// sorted. Each is a key of [ActionClass].
	Actions []string
	// Class is the strongest class among Actions: unclassified > ddl >
	// write > read.
	Class string
	// Kinds is the statement kinds found anywhere in the tree ("select",
	// "insert", "explain", ...), sorted and deduplicated: a node
	// FooBarStmt is "foo_bar".
	Kinds []string
	// TablesRead and TablesWritten are the relations read and changed, as
	// written in the statement: schema-qualified only if the statement
	// qualifies them (search_path is the server's), identifiers as
	// PostgreSQL folds them and quoted only where needed ("public.orders",
	// "orders", `public."Order Items"`). CTE names are not relations.
	TablesRead    []string
	TablesWritten []string
	// Functions is the functions called, as written (schema-qualified only
	// if written so; SQL-syntax forms as the parser names them, e.g.
	// "pg_catalog.extract"), and the user-defined operators and casts the
	// tree shows, as "OPERATOR(sym)" and "::type".
	Functions []string
	// Fingerprint is pg_query's fingerprint of the statement: literals and
	// comments do not change it.
	Fingerprint string
	// Normalized is the statement as pg_query.Normalize gives it, literals
	// replaced by $n, with comments blanked out: safe to log.
	Normalized string
}

// Classify parses sql, which may hold several statements as a simple Query
// does, and returns one Statement per statement, in order. Text holding only
// comments or semicolons has no statements. A parse error is returned
// wrapping [ErrParse]; the caller denies (fails closed). Classify is safe
// for concurrent use.
func Classify(sql string) ([]Statement, error) {
	if strings.IndexByte(sql, 0) >= 0 {
		// The C parser would stop at the NUL and never see the rest.
		return nil, fmt.Errorf("%w: NUL byte in statement text", ErrParse)
	}
	tree, err := pg_query.Parse(sql)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrParse, err)
	}
	out := make([]Statement, 0, len(tree.Stmts))
	for _, raw := range tree.Stmts {
		text, err := stmtText(sql, raw)
		if err != nil {
			return nil, err
		}
		st := classifyNode(raw.Stmt)
		if st.Fingerprint, err = pg_query.Fingerprint(text); err != nil {
			return nil, fmt.Errorf("%w: fingerprint: %w", ErrParse, err)
		}
		if st.Normalized, err = normalize(text, isUtility(raw.Stmt)); err != nil {
			return nil, fmt.Errorf("%w: normalize: %w", ErrParse, err)
		}
		out = append(out, st)
	}
	return out, nil
}

// stmtText cuts one statement out of sql by the parser's byte offsets; a
// length of zero means "to the end".
func stmtText(sql string, raw *pg_query.RawStmt) (string, error) {
	start, n := int(raw.StmtLocation), int(raw.StmtLen)
	end := len(sql)
	if n > 0 {
		end = start + n
	}
	if start < 0 || start > end || end > len(sql) {
		return "", fmt.Errorf("%w: statement at %d+%d outside the text", ErrParse, start, n)
	}
	return strings.TrimSpace(sql[start:end]), nil
}

// normalize gives the statement with no literal and no comment, for logs.
// pg_query.Normalize replaces the literals it knows the place of, but keeps
// comments (which may hold anything) and leaves the literals of some
// utility statements (COPY ... PROGRAM 'cmd', PREPARE, COMMENT ON, CREATE
// TABLE AS, ALTER SYSTEM): those are blanked out before and, in utility
// statements, replaced after, by the tokens of PostgreSQL's own scanner.
func normalize(text string, utility bool) (string, error) {
	if strings.Contains(text, "--") || strings.Contains(text, "/*") {
		var err error
		text, err = replaceTokens(text, func(tok *pg_query.ScanToken, _ string) (string, bool) {
			if tok.Token == pg_query.Token_SQL_COMMENT || tok.Token == pg_query.Token_C_COMMENT {
				return strings.Repeat(" ", int(tok.End-tok.Start)), true
			}
			return "", false
		})
		if err != nil {
			return "", err
		}
	}
	norm, err := pg_query.Normalize(strings.TrimSpace(text))
	if err != nil || !utility {
		return norm, err
	}
	last := 0
	if _, err := replaceTokens(norm, func(tok *pg_query.ScanToken, s string) (string, bool) {
		if tok.Token == pg_query.Token_PARAM {
			if n, err := strconv.Atoi(strings.TrimPrefix(s, "$")); err == nil && n > last {
				last = n
			}
		}
		return "", false
	}); err != nil {
		return "", err
	}
	return replaceTokens(norm, func(tok *pg_query.ScanToken, _ string) (string, bool) {
		switch tok.Token {
		case pg_query.Token_SCONST, pg_query.Token_USCONST, pg_query.Token_BCONST,
			pg_query.Token_XCONST, pg_query.Token_ICONST, pg_query.Token_FCONST:
			last++
			return "$" + strconv.Itoa(last), true
		}
		return "", false
	})
}

// replaceTokens scans text and replaces each token for which f says so.
func replaceTokens(text string, f func(tok *pg_query.ScanToken, s string) (string, bool)) (string, error) {
	scan, err := pg_query.Scan(text)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	at := 0
	for _, tok := range scan.Tokens {
		s, e := int(tok.Start), int(tok.End)
		if s < at || e > len(text) || s > e {
			return "", fmt.Errorf("token at %d..%d outside the text", s, e)
		}
		r, ok := f(tok, text[s:e])
		if !ok {
			continue
		}
		b.WriteString(text[at:s])
		b.WriteString(r)
		at = e
	}
	b.WriteString(text[at:])
	return b.String(), nil
}

// isUtility reports whether n is a utility statement, one whose constants
// pg_query.Normalize may leave in place.
func isUtility(n *pg_query.Node) bool {
	switch n.GetNode().(type) {
	case *pg_query.Node_SelectStmt, *pg_query.Node_InsertStmt, *pg_query.Node_UpdateStmt,
		*pg_query.Node_DeleteStmt, *pg_query.Node_MergeStmt:
		return false
	}
	return true
}

func classifyNode(n *pg_query.Node) Statement {
	w := newWalker()
	if n != nil {
		w.visit(n)
	}
	st := Statement{
		Actions:       sortedKeys(w.actions),
		Kinds:         sortedKeys(w.kinds),
		TablesRead:    sortedKeys(w.read),
		TablesWritten: sortedKeys(w.written),
		Functions:     sortedKeys(w.funcs),
	}
	st.Class = strongest(st.Actions)
	return st
}

// strongest is the strongest class among actions; none, or an action
// without a class, is unclassified.
func strongest(actions []string) string {
	if len(actions) == 0 {
		return ClassUnclassified
	}
	best := ClassRead
	for _, a := range actions {
		c, ok := ActionClass[a]
		if !ok {
			return ClassUnclassified
		}
		if classRank[c] > classRank[best] {
			best = c
		}
	}
	return best
}

func sortedKeys(m map[string]bool) []string {
	if len(m) == 0 {
		return nil
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
