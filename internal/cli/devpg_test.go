package cli

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/postern/postern/binding"
	"github.com/postern/postern/internal/meshtest"
	"github.com/postern/postern/mesh"
)

// TestDevPostgres runs postern dev's mesh with PostgreSQL: the banner
// shows the connector's decisions on the coding agent's statements, and
// through the binding its SELECT on staging-db returns rows while its
// DELETE is refused with SQLSTATE 42501, saying why, and deletes nothing.
func TestDevPostgres(t *testing.T) {
	var audit, logs meshtest.Log
	dir := t.TempDir()
	m, err := startDev(context.Background(), devOptions{
		listen: "127.0.0.1:0", dir: dir, ttl: time.Hour, postgres: true,
		log: slog.New(slog.NewTextHandler(&logs, nil)), audit: &audit,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer m.stop()
	if !m.hasService("staging-db") {
		if os.Getenv("CI") != "" {
			t.Fatalf("no staging-db: %s", m.pgNote)
		}
		t.Skip(m.pgNote)
	}
	var banner bytes.Buffer
	m.printBanner(&banner)
	for _, want := range []string{
		"SELECT id, item FROM orders       allow (coding-agents-read-staging)",
		"DELETE FROM orders WHERE id = 1   ERROR 42501: postern: denied (no policy permits sql:delete): DELETE FROM orders WHERE id = $1",
	} {
		if !strings.Contains(banner.String(), want) {
			t.Errorf("banner lacks %q:\n%s", want, banner.String())
		}
	}

	tok, err := os.ReadFile(filepath.Join(dir, "coding-agent.token"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := mesh.NewClient(mesh.Config{Relay: m.relay.Addr().String(), Pin: m.pin, Token: strings.TrimSpace(string(tok))})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b, err := binding.OpenWith(c, "staging-db")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	db, err := b.SQL()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var n int
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM orders").Scan(&n); err != nil || n != 3 {
		t.Fatalf("SELECT: %d, %v", n, err)
	}
	_, err = db.ExecContext(ctx, "DELETE FROM orders WHERE id = 1")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "42501" || pgErr.Message != "postern: denied (no policy permits sql:delete): DELETE FROM orders WHERE id = $1" {
		t.Fatalf("DELETE: %v; want 42501", err)
	}
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM orders").Scan(&n); err != nil || n != 3 {
		t.Fatalf("after the denied DELETE: %d, %v", n, err)
	}
}
