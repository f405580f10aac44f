package binding_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"time"

	"github.com/postern/postern"
	"github.com/postern/postern/binding"
	"github.com/postern/postern/mesh"
)

// An agent reads a staging database it holds no password for. The
// environment names the relay and the agent's token (see ConfigFromEnv).
func ExampleOpen() {
	db, err := binding.Open("staging-db") // cheap and lazy, like sql.Open
	if err != nil {
		log.Fatal(err) // a missing or malformed POSTERN_* variable, named
	}
	defer db.Close()
	sqlDB, err := db.SQL() // the connector holds the password
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rows, err := sqlDB.QueryContext(ctx, "SELECT id, item FROM orders ORDER BY id")
	if err != nil {
		log.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var id int
		var item string
		if err := rows.Scan(&id, &item); err != nil {
			log.Fatal(err)
		}
		fmt.Println(id, item)
	}
}

// A refused open says why: the policy that denied it, or that no binding
// has the name.
func ExampleOpen_denied() {
	db, err := binding.Open("prod-finance")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	sqlDB, err := db.SQL()
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	err = sqlDB.PingContext(ctx)
	var me *postern.Error
	switch {
	case errors.Is(err, postern.ErrDenied) && errors.As(err, &me):
		fmt.Println("denied by policy", me.Policies)
	case errors.Is(err, postern.ErrUnknownBinding):
		fmt.Println("no such binding for this agent")
	case errors.Is(err, postern.ErrUpstream):
		fmt.Println("the database refused the connector:", err)
	}
}

// HTTP requests name only a path: the binding is the host, and the
// connector adds the API's credentials.
func ExampleBinding_HTTPClient() {
	api, err := binding.Open("staging-api")
	if err != nil {
		log.Fatal(err)
	}
	defer api.Close()
	hc, err := api.HTTPClient()
	if err != nil {
		log.Fatal(err)
	}
	resp, err := hc.Get("/orders") // the binding is the host
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.Status, len(body))
}

// pgx users take a pool.
func ExampleBinding_PgxPool() {
	db, err := binding.Open("staging-db")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	pool, err := db.PgxPool(ctx)
	if err != nil {
		log.Fatal(err)
	}
	var n int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM orders").Scan(&n); err != nil {
		log.Fatal(err)
	}
	fmt.Println(n, "orders")
}

// Any TCP service is a net.Conn.
func ExampleBinding_Dial() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	echo, err := binding.Open("staging-echo")
	if err != nil {
		log.Fatal(err)
	}
	defer echo.Close()
	conn, err := echo.Dial(ctx) // a net.Conn
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintln(conn, "hello")
	line, err := bufio.NewReader(conn).ReadString('\n')
	fmt.Print(line, err)
}

// A program that manages its own client (a logger, a token source of its
// own) opens bindings on it.
func ExampleOpenWith() {
	cfg, err := binding.ConfigFromEnv()
	if err != nil {
		log.Fatal(err)
	}
	cfg.ConnectTimeout = 5 * time.Second
	client, err := mesh.NewClient(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	db, err := binding.OpenWith(client, "staging-db")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	kind, err := db.Kind(context.Background())
	fmt.Println(kind, err)
}

func ExampleKindError() {
	err := &binding.KindError{Binding: "staging-api", Kind: postern.KindHTTP, Want: postern.KindPostgres}
	fmt.Println(err)
	fmt.Println(errors.Is(err, binding.ErrWrongKind))
	// Output:
	// binding: staging-api is an http binding, not postgres
	// true
}
