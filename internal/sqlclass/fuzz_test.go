package sqlclass

import (
	"reflect"
	"slices"
	"testing"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// FuzzClassify checks that Classify never panics and that what it returns
// is well formed: every action known, sorted and deduplicated, the class
// one of the four and the strongest of the actions; and that a read
// statement classified on its own is classified the same as among the
// others (so that no neighbour changes what a statement is).
func FuzzClassify(f *testing.F) {
	for _, c := range readCorpus(f) {
		f.Add(c.sql)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		stmts, err := Classify(sql)
		if err != nil {
			return
		}
		for _, st := range stmts {
			checkWellFormed(t, sql, st)
		}
		again, err := Classify(sql)
		if err != nil || !reflect.DeepEqual(again, stmts) {
			t.Fatalf("Classify(%q) is not deterministic: %+v, then %+v, %v", sql, stmts, again, err)
		}
		parts, err := pg_query.SplitWithParser(sql, true)
		if err != nil || len(parts) != len(stmts) {
			return
		}
		for i, st := range stmts {
			if st.Class != ClassRead {
				continue
			}
			alone, err := Classify(parts[i])
			if err != nil || len(alone) != 1 {
				t.Fatalf("read statement %q of %q alone: %+v, %v", parts[i], sql, alone, err)
			}
			if !reflect.DeepEqual(alone[0], st) {
				t.Fatalf("read statement %q of %q: %+v among the others, %+v alone", parts[i], sql, st, alone[0])
			}
		}
	})
}

func checkWellFormed(t *testing.T, sql string, st Statement) {
	t.Helper()
	if _, ok := classRank[st.Class]; !ok {
		t.Fatalf("Classify(%q): class %q", sql, st.Class)
	}
	if len(st.Actions) == 0 {
		t.Fatalf("Classify(%q): no actions", sql)
	}
	for _, a := range st.Actions {
		if _, ok := ActionClass[a]; !ok {
			t.Fatalf("Classify(%q): action %q not in ActionClass", sql, a)
		}
	}
	if got := strongest(st.Actions); got != st.Class {
		t.Fatalf("Classify(%q): class %q, strongest action class %q", sql, st.Class, got)
	}
	for name, list := range map[string][]string{
		"Actions": st.Actions, "Kinds": st.Kinds, "TablesRead": st.TablesRead,
		"TablesWritten": st.TablesWritten, "Functions": st.Functions,
	} {
		if !slices.IsSorted(list) || len(slices.Compact(slices.Clone(list))) != len(list) {
			t.Fatalf("Classify(%q): %s %q not sorted and deduplicated", sql, name, list)
		}
	}
	if st.Fingerprint == "" {
		t.Fatalf("Classify(%q): no fingerprint", sql)
	}
}

func BenchmarkClassify(b *testing.B) {
	for _, bc := range []struct {
		name, sql string
	}{
		{"short_select", "SELECT id, total FROM orders WHERE id = $1"},
		{"medium", `WITH recent AS (
	SELECT o.id, o.customer_id, o.total, o.created
	FROM public.orders o
	WHERE o.created > now() - interval '30 days' AND o.status IN ('paid', 'shipped')
), ranked AS (
	SELECT r.*, row_number() OVER (PARTITION BY r.customer_id ORDER BY r.total DESC) AS rn,
	       sum(r.total) OVER (PARTITION BY r.customer_id) AS customer_total
	FROM recent r
)
SELECT c.id, lower(c.email), coalesce(c.nick, c.name) AS display, k.total, k.customer_total,
       date_trunc('week', k.created) AS week, (SELECT count(*) FROM public.refunds f WHERE f.order_id = k.id) AS refunds
FROM ranked k
JOIN public.customers c ON c.id = k.customer_id
LEFT JOIN sales.regions g ON g.id = c.region_id
WHERE k.rn <= 3 AND c.data->>'tier' = 'gold' AND EXISTS (SELECT 1 FROM public.subscriptions s WHERE s.customer_id = c.id)
ORDER BY k.customer_total DESC, c.id
LIMIT 100`},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Classify(bc.sql); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
