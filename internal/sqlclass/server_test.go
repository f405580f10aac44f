package sqlclass

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/goleak"

	"github.com/postern/postern/internal/pgtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(pgtest.Main(m)) }

// serverSchema gives the corpus's usual tables something to run against.
const serverSchema = `
CREATE TABLE orders (id int PRIMARY KEY, total numeric, created timestamptz, customer_id int,
	status text, item_ids int[], region_id int, x int, note text);
CREATE TABLE customers (id int, name text, nick text, email text, banned bool, region_id int, data jsonb, a text, b text);
CREATE TABLE items (id int, order_id int, price numeric);
CREATE TABLE t (a int, b int, c text, d text, e text, f int, g int, id int, x int, y numeric, z numeric,
	arr int[], flag bool, name text, secret text, pw text, n int, ts tsvector, q tsquery);
CREATE TABLE u (b int, id int);
CREATE TABLE audit (order_id int);
CREATE TABLE events (data jsonb);
CREATE TABLE nodes (id int, parent int);
CREATE TABLE a (id int);
CREATE TABLE b (id int);
CREATE TABLE c (id int);
CREATE TABLE jobs (id int);
CREATE TABLE parent (id int);
CREATE SCHEMA sales;
CREATE TABLE sales.regions (id int, region_id int);
CREATE TABLE "Order Items" ("Id" int);
CREATE TABLE "Customers" (id int);
`

// TestReadsRunReadOnly runs every corpus statement Classify calls a read
// inside BEGIN READ ONLY on a real server: PostgreSQL must not refuse it
// as a write (SQLSTATE 25006). Other errors (a table the schema lacks, a
// cursor never declared) say nothing either way and are ignored. This
// checks one direction only: the server lets functions such as
// pg_terminate_backend run in a read-only transaction, so a write the
// server allows there is not caught.
func TestReadsRunReadOnly(t *testing.T) {
	s := pgtest.Shared(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	db := fmt.Sprintf("sqlclass_%d", time.Now().UnixNano())
	if err := s.Exec(ctx, "postgres", "CREATE DATABASE "+db); err != nil {
		t.Fatal(err)
	}
	if err := s.Exec(ctx, db, serverSchema); err != nil {
		t.Fatal(err)
	}
	c, err := pgconn.Connect(ctx, s.ConnString(s.User, s.Password, db))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	if _, err := c.Exec(ctx, "SET statement_timeout = '5s'").ReadAll(); err != nil {
		t.Fatal(err)
	}
	ran := 0
	for _, cc := range readCorpus(t) {
		if _, isErr := cc.expect["error"]; isErr {
			continue
		}
		stmts, err := Classify(cc.sql)
		if err != nil || len(stmts) == 0 {
			continue
		}
		u := union(stmts)
		// Transaction control would end the read-only transaction itself.
		if u["class"][0] != ClassRead || slices.Contains(u["kinds"], "transaction") {
			continue
		}
		t.Run(cc.name, func(t *testing.T) {
			if _, err := c.Exec(ctx, "BEGIN READ ONLY").ReadAll(); err != nil {
				t.Fatal(err)
			}
			_, err := c.Exec(ctx, cc.sql).ReadAll()
			if _, rerr := c.Exec(ctx, "ROLLBACK").ReadAll(); rerr != nil {
				t.Fatal(rerr)
			}
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) && pgErr.Code == "25006" {
				t.Errorf("line %d: classified read, but the server refuses it read-only: %v\n%s", cc.line, err, cc.sql)
			}
			if err == nil {
				ran++
			}
		})
	}
	t.Logf("%d read statements ran without error in a read-only transaction", ran)
}
