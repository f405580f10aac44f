package postern_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/postern/postern"
	"github.com/postern/postern/binding"
)

// An agent reads a private database through the relay, with the
// environment naming the relay and the agent's token.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	db, err := binding.Open("staging-db") // POSTERN_RELAY, POSTERN_TOKEN, ...
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	sqlDB, err := db.SQL() // a *sql.DB; the connector logs in, not the agent
	if err != nil {
		log.Fatal(err)
	}
	rows, err := sqlDB.QueryContext(ctx, "select id, item from orders")
	if err != nil {
		log.Fatal(err)
	}
	defer rows.Close()
}

// A refused open names the binding and the policies that refused it.
func ExampleError() {
	// What an open that policy denies returns, as mesh.Client.Dial or a
	// binding's handle returns it.
	var err error = &postern.Error{
		Op:       "open",
		Binding:  "prod-finance",
		Err:      postern.ErrDenied,
		Policies: []string{"forbid-financial"},
	}

	if errors.Is(err, postern.ErrDenied) {
		var e *postern.Error
		errors.As(err, &e) // e.Policies names the policies that decided
		fmt.Println(e.Binding, e.Policies)
	}
	fmt.Println(err)
	// Output:
	// prod-finance [forbid-financial]
	// postern: open "prod-finance": denied by policy (policy forbid-financial)
}
