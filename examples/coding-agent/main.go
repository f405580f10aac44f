// Command coding-agent is what a coding agent's code looks like with
// Postern: it reads the staging database through binding.Open, holding no
// password, and is refused the production financial records by policy.
//
// Run it against `postern dev` (which needs PostgreSQL installed for
// staging-db): start the mesh in one terminal, export the variables it
// prints, and run the agent in another:
//
//	go run ./cmd/postern dev
//	export POSTERN_RELAY=127.0.0.1:7443 POSTERN_RELAY_PIN=sha256:... POSTERN_TOKEN_FILE=...
//	go run ./examples/coding-agent
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/postern/postern"
	"github.com/postern/postern/binding"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// The staging database: a *sql.DB, no DSN, no password.
	// End the session with the relay when done, so its audit trail
	// records the end now rather than at the relay's idle timeout.
	defer binding.CloseDefault()

	staging, err := binding.Open("staging-db")
	if err != nil {
		log.Fatal(err) // e.g. binding: POSTERN_RELAY: not set: ...
	}
	defer staging.Close()
	db, err := staging.SQL()
	if err != nil {
		log.Fatal(err)
	}
	rows, err := db.QueryContext(ctx, "SELECT id, item, status FROM orders ORDER BY id")
	if err != nil {
		log.Fatal(err)
	}
	defer rows.Close()
	fmt.Println("staging-db orders:")
	for rows.Next() {
		var id int
		var item, status string
		if err := rows.Scan(&id, &item, &status); err != nil {
			log.Fatal(err)
		}
		fmt.Printf("  %d  %-10s %s\n", id, item, status)
	}
	if err := rows.Err(); err != nil {
		log.Fatal(err)
	}

	// Production financial records: policy says no, and says which policy.
	finance, err := binding.Open("prod-finance")
	if err != nil {
		log.Fatal(err)
	}
	defer finance.Close()
	fdb, err := finance.SQL()
	if err != nil {
		log.Fatal(err)
	}
	err = fdb.PingContext(ctx)
	var me *postern.Error
	switch {
	case err == nil:
		log.Fatal("prod-finance opened: the policies are not the product's")
	case errors.Is(err, postern.ErrDenied) && errors.As(err, &me):
		fmt.Printf("prod-finance: refused, as it should be: denied by policy %v\n", me.Policies)
	default:
		log.Fatalf("prod-finance: %v", err)
	}
}
