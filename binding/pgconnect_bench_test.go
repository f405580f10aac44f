package binding_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/postern/postern"
	"github.com/postern/postern/binding"
	"github.com/postern/postern/internal/meshtest"
	"github.com/postern/postern/internal/pgtest"
	"github.com/postern/postern/mesh/connector"
)

// BenchmarkPostgresConnect is a new PostgreSQL session through the mesh
// with pgx: the open (pipelined with the startup message), the
// connector's SCRAM login upstream, the welcome, and a Terminate.
func BenchmarkPostgresConnect(b *testing.B) {
	pg := pgtest.Shared(b)
	ctx := context.Background()
	n := dbSeq.Add(1)
	user, password := fmt.Sprintf("bench_%d", n), fmt.Sprintf("pw-%d", n)
	if err := pg.CreateRole(ctx, user, password); err != nil {
		b.Fatal(err)
	}
	svc := connector.Service{Name: "staging-db", Kind: postern.KindPostgres, Upstream: pg.Addr, Environment: "staging",
		Postgres: &connector.Postgres{User: user, Database: "postgres", Password: connector.Secret{Value: password}, SSLMode: "disable"}}
	m := meshtest.New(b, meshtest.Options{})
	m.Connector("office-1", svc)
	db, err := binding.OpenWith(m.Client(m.AgentToken("coding-agent", "coding-agents")), "staging-db")
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	cfg, err := db.PgxConfig()
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			b.Fatal(err)
		}
		c.Close(ctx)
	}
}
