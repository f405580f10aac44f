package binding

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/postern/postern"
	"github.com/postern/postern/internal/pgconnstr"
)

// The agent's side of a postgres binding holds no credentials: the
// connector logs in to the database with its own and hands the agent the
// logged-in session. The user and database the agent names are
// placeholders that the connector ignores, and the agent speaks without
// TLS because the mesh already encrypts.

// connString is what pgx parses. Every setting that matters is explicit,
// so that PG* variables in the agent's environment change nothing.
func (b *Binding) connString() string {
	return fmt.Sprintf("host=%s port=5432 user=postern dbname=%s sslmode=disable target_session_attrs=any",
		pgconnstr.Quote(b.host), pgconnstr.Quote(b.name))
}

// SQL returns a *sql.DB for a postgres binding, through pgx's database/sql
// driver. Agent code writes no DSN and holds no password:
// db.QueryContext(ctx, "select ...") just works. Like sql.Open it does not
// connect: the first query connects to the relay and checks the
// binding's kind. Every call returns the same *sql.DB; Close on the
// Binding closes it.
func (b *Binding) SQL() (*sql.DB, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.closedErr(); err != nil {
		return nil, err
	}
	if b.db == nil {
		cfg, err := b.pgxConfig()
		if err != nil {
			return nil, err
		}
		b.db = sql.OpenDB(&sqlConnector{b: b, inner: stdlib.GetConnector(*cfg)})
	}
	return b.db, nil
}

// PgxConfig returns a pgx connection configuration for a postgres binding,
// for pgx.ConnectConfig or to build a pool of one's own. Its DialFunc
// opens a stream to the binding whatever the configured host says. Each
// call returns a new configuration, which the caller may change.
func (b *Binding) PgxConfig() (*pgx.ConnConfig, error) {
	if err := b.checkOpen(); err != nil {
		return nil, err
	}
	return b.pgxConfig()
}

func (b *Binding) pgxConfig() (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig(b.connString())
	if err != nil {
		return nil, fmt.Errorf("binding: %s: %w", b.name, err)
	}
	b.setDial(cfg)
	return cfg, nil
}

func (b *Binding) setDial(cfg *pgx.ConnConfig) {
	cfg.Password = "" // nothing to send: the connector authenticates
	cfg.TLSConfig = nil
	cfg.Fallbacks = nil
	// The host is the binding's name, never resolved.
	cfg.LookupFunc = func(_ context.Context, host string) ([]string, error) { return []string{host}, nil }
	cfg.DialFunc = b.dialPostgres
	// A cancelled context sends the server a CancelRequest (through the
	// mesh) rather than cutting the connection: a server does not notice
	// a closed client while it runs a query, so only a cancel stops it,
	// and the session survives for the next query.
	cfg.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: pc, DeadlineDelay: cancelGrace}
	}
}

// cancelGrace is how long a cancelled query may take to end after its
// CancelRequest is sent, before pgx closes the connection instead.
const cancelGrace = 5 * time.Second

// dialPostgres opens a stream for pgx: a session, or a cancel request
// (pgx dials the connection's remote address, which names the binding).
// The open and pgx's first message leave together (DialEarly): a refusal
// surfaces on pgx's first read, as the same *postern.Error.
func (b *Binding) dialPostgres(ctx context.Context, _, _ string) (net.Conn, error) {
	if err := b.expectKind(ctx, postern.KindPostgres); err != nil {
		return nil, err
	}
	return b.client.DialEarly(ctx, "tcp", b.name)
}

// PgxPool returns a pgx pool for a postgres binding. It does not connect:
// the pool's first Acquire does. Every call returns the same pool; Close
// on the Binding closes it.
func (b *Binding) PgxPool(ctx context.Context) (*pgxpool.Pool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.closedErr(); err != nil {
		return nil, err
	}
	if b.pool != nil {
		return b.pool, nil
	}
	cfg, err := pgxpool.ParseConfig(b.connString())
	if err != nil {
		return nil, fmt.Errorf("binding: %s: %w", b.name, err)
	}
	b.setDial(cfg.ConnConfig)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("binding: %s: %w", b.name, err)
	}
	b.pool = pool
	return pool, nil
}

// sqlConnector checks the kind before pgx connects, and returns the
// mesh's own error for a refused open: pgx's wrapping would name the
// placeholder user and database, which mean nothing here.
type sqlConnector struct {
	b     *Binding
	inner driver.Connector
}

func (c *sqlConnector) Connect(ctx context.Context) (driver.Conn, error) {
	if err := c.b.expectKind(ctx, postern.KindPostgres); err != nil {
		return nil, err
	}
	conn, err := c.inner.Connect(ctx)
	if err != nil {
		var me *postern.Error
		var ke *KindError
		switch {
		case errors.As(err, &me):
			return nil, me
		case errors.As(err, &ke):
			return nil, ke
		}
		return nil, err
	}
	return conn, nil
}

func (c *sqlConnector) Driver() driver.Driver { return c.inner.Driver() }
