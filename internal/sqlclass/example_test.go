package sqlclass_test

import (
	"fmt"

	"github.com/postern/postern/internal/sqlclass"
)

// A SELECT whose CTE deletes is a write: the whole tree is walked.
func ExampleClassify() {
	query := "WITH d AS (DELETE FROM orders WHERE created < '2020-01-01' RETURNING id) SELECT count(*) FROM d"
	stmts, err := sqlclass.Classify(query)
	if err != nil {
		fmt.Println("deny:", err) // fail closed
		return
	}
	for _, st := range stmts {
		// Ask Cedar about each of st.Actions, or about st.Class.
		fmt.Println(st.Class, st.Actions)
		fmt.Println("written:", st.TablesWritten, "functions:", st.Functions)
		fmt.Println(st.Normalized)
	}
	// Output:
	// write [sql:delete sql:select]
	// written: [orders] functions: [count]
	// WITH d AS (DELETE FROM orders WHERE created < $1 RETURNING id) SELECT count(*) FROM d
}
