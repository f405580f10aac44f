package binding_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/postern/postern"
	"github.com/postern/postern/binding"
	"github.com/postern/postern/internal/meshtest"
	"github.com/postern/postern/internal/pgtest"
	"github.com/postern/postern/mesh"
	"github.com/postern/postern/mesh/connector"
	"github.com/postern/postern/mesh/relay"
)

// One PostgreSQL server serves every test of the package (pgtest.Shared);
// each test makes a role and a database of its own on it.
func TestMain(m *testing.M) { goleak.VerifyTestMain(pgtest.Main(m)) }

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// world is a relay, one connector serving services, and a coding agent
// (group coding-agents, which policy lets connect to staging) holding no
// credential for any of them.
type world struct {
	*meshtest.Mesh
	agent  *mesh.Client
	logged *meshtest.Log // the connector's log, at debug level
}

func newWorld(t *testing.T, services ...connector.Service) *world {
	t.Helper()
	m := meshtest.New(t, meshtest.Options{})
	logged := &meshtest.Log{}
	m.ConnectorWith(connector.Config{
		Token:    m.ConnectorToken("office-1", meshtest.Describe(services...)...),
		Services: services,
		Logger:   slog.New(slog.NewJSONHandler(logged, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	return &world{Mesh: m, agent: m.Client(m.AgentToken("coding-agent", "coding-agents")), logged: logged}
}

// open opens a binding on the agent's client, closed at cleanup.
func (w *world) open(t *testing.T, name string) *binding.Binding {
	t.Helper()
	b, err := binding.OpenWith(w.agent, name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("close %s: %v", name, err)
		}
	})
	return b
}

var dbSeq atomic.Int32

// pgLogin is a role, its password and its database on the shared server.
type pgLogin struct {
	pg                       *pgtest.Server
	user, password, database string
}

// newDatabase makes a role with a password and a database it owns.
func newDatabase(t *testing.T) pgLogin {
	t.Helper()
	pg := pgtest.Shared(t)
	n := dbSeq.Add(1)
	l := pgLogin{pg: pg, user: fmt.Sprintf("app_%d", n), password: fmt.Sprintf("s3cret-%d-%d", n, time.Now().UnixNano()), database: fmt.Sprintf("appdb_%d", n)}
	if err := pg.CreateRole(testCtx(t), l.user, l.password); err != nil {
		t.Fatal(err)
	}
	if err := pg.CreateDatabase(testCtx(t), l.database, l.user); err != nil {
		t.Fatal(err)
	}
	return l
}

// service is a postgres service logging in as l.
func (l pgLogin) service(name string, password string) connector.Service {
	return connector.Service{
		Name: name, Kind: postern.KindPostgres, Upstream: l.pg.Addr, Environment: "staging",
		Postgres: &connector.Postgres{User: l.user, Database: l.database, Password: connector.Secret{Value: password}, SSLMode: "disable"},
	}
}

// TestKindAndCatalogErrors: a handle of the wrong kind names the binding
// and its kind; a binding outside the catalog fails with what the relay
// says (denied by a named policy, or unknown); and no stream is opened to
// a connector for any of them.
func TestKindAndCatalogErrors(t *testing.T) {
	echo := meshtest.EchoServer(t)
	api := meshtest.Server(t, func(c net.Conn) {})
	w := newWorld(t,
		connector.Service{Name: "staging-db", Kind: postern.KindPostgres, Upstream: echo, Environment: "staging",
			Postgres: &connector.Postgres{User: "u", SSLMode: "disable"}},
		connector.Service{Name: "staging-api", Kind: postern.KindHTTP, Upstream: api, Environment: "staging"},
		connector.Service{Name: "staging-tcp", Kind: postern.KindTCP, Upstream: echo, Environment: "staging"},
		connector.Service{Name: "prod-finance", Kind: postern.KindPostgres, Upstream: echo, Environment: "staging", Labels: []string{"financial"},
			Postgres: &connector.Postgres{User: "u", SSLMode: "disable"}},
	)
	use := map[string]func(context.Context, *binding.Binding) error{
		"sql": func(ctx context.Context, b *binding.Binding) error {
			db, err := b.SQL()
			if err != nil {
				return err
			}
			return db.PingContext(ctx)
		},
		"pgxpool": func(ctx context.Context, b *binding.Binding) error {
			p, err := b.PgxPool(ctx)
			if err != nil {
				return err
			}
			return p.Ping(ctx)
		},
		"http": func(ctx context.Context, b *binding.Binding) error {
			hc, err := b.HTTPClient()
			if err != nil {
				return err
			}
			req, _ := http.NewRequestWithContext(ctx, "GET", "/", nil)
			resp, err := hc.Do(req)
			if err == nil {
				resp.Body.Close()
			}
			return err
		},
		"tcp": func(ctx context.Context, b *binding.Binding) error {
			c, err := b.Dial(ctx)
			if err == nil {
				c.Close()
			}
			return err
		},
	}
	tests := []struct {
		name    string
		binding string
		use     string
		want    error  // sentinel the error must match
		text    string // the error's text must contain it
	}{
		{name: "sql on http", binding: "staging-api", use: "sql", want: binding.ErrWrongKind, text: "binding: staging-api is an http binding, not postgres"},
		{name: "pgxpool on tcp", binding: "staging-tcp", use: "pgxpool", want: binding.ErrWrongKind, text: "binding: staging-tcp is a tcp binding, not postgres"},
		{name: "http on postgres", binding: "staging-db", use: "http", want: binding.ErrWrongKind, text: "binding: staging-db is a postgres binding, not http"},
		{name: "tcp on http", binding: "staging-api", use: "tcp", want: binding.ErrWrongKind, text: "binding: staging-api is an http binding, not tcp"},
		{name: "denied sql", binding: "prod-finance", use: "sql", want: postern.ErrDenied, text: "forbid-financial"},
		{name: "denied tcp", binding: "prod-finance", use: "tcp", want: postern.ErrDenied, text: `"prod-finance"`},
		{name: "unknown sql", binding: "no-such-db", use: "sql", want: postern.ErrUnknownBinding, text: `"no-such-db"`},
		{name: "unknown pgxpool", binding: "no-such-db", use: "pgxpool", want: postern.ErrUnknownBinding, text: `"no-such-db"`},
		{name: "unknown http", binding: "no-such-api", use: "http", want: postern.ErrUnknownBinding, text: `"no-such-api"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := w.open(t, tt.binding)
			err := use[tt.use](testCtx(t), b)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.text) {
				t.Fatalf("error %q does not say %q", err, tt.text)
			}
		})
	}
	if n := len(w.Audit.Events(relay.EventOpenAllow)); n != 0 {
		t.Fatalf("%d opens reached a connector, want none:\n%s", n, w.Audit)
	}

	t.Run("Kind", func(t *testing.T) {
		tests := []struct {
			name, binding, kind string
			want                error
		}{
			{name: "postgres", binding: "staging-db", kind: postern.KindPostgres},
			{name: "http", binding: "staging-api", kind: postern.KindHTTP},
			{name: "tcp", binding: "staging-tcp", kind: postern.KindTCP},
			{name: "not in the catalog", binding: "prod-finance", want: postern.ErrUnknownBinding},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				kind, err := w.open(t, tt.binding).Kind(testCtx(t))
				if !errors.Is(err, tt.want) || kind != tt.kind {
					t.Fatalf("Kind = %q, %v; want %q, %v", kind, err, tt.kind, tt.want)
				}
			})
		}
	})
}

// TestOpenAndClose: Open refuses a bad name at once, and a closed binding
// refuses to hand out handles.
func TestOpenAndClose(t *testing.T) {
	w := newWorld(t, connector.Service{Name: "staging-tcp", Upstream: meshtest.EchoServer(t), Environment: "staging"})
	for _, name := range []string{"", "has space", "http://x", "db:5432", "é", strings.Repeat("a", 129)} {
		if _, err := binding.OpenWith(w.agent, name); !errors.Is(err, postern.ErrUnknownBinding) || !strings.Contains(err.Error(), "not a valid binding name") {
			t.Errorf("OpenWith(%q): err = %v, want an invalid-name error matching ErrUnknownBinding", name, err)
		}
	}
	for _, name := range []string{"team/api.v2", "A_b", strings.Repeat("a", 128)} {
		if _, err := binding.OpenWith(w.agent, name); err != nil {
			t.Errorf("OpenWith(%q) = %v, want it accepted", name, err)
		}
	}
	if _, err := binding.OpenWith(nil, "x"); err == nil {
		t.Error("OpenWith(nil client) did not fail")
	}

	b := w.open(t, "staging-tcp")
	conn, err := b.Dial(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := conn.Read(buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo: %q, %v", buf, err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	calls := []struct {
		name string
		call func() error
	}{
		{"SQL", func() error { _, err := b.SQL(); return err }},
		{"PgxConfig", func() error { _, err := b.PgxConfig(); return err }},
		{"PgxPool", func() error { _, err := b.PgxPool(ctx); return err }},
		{"HTTPClient", func() error { _, err := b.HTTPClient(); return err }},
		{"Dial", func() error { _, err := b.Dial(ctx); return err }},
	}
	for _, c := range calls {
		if err := c.call(); !errors.Is(err, net.ErrClosed) {
			t.Errorf("%s after Close: err = %v, want net.ErrClosed", c.name, err)
		}
	}
	// A stream from Dial is the caller's: it outlives the binding.
	if _, err := conn.Write([]byte("pong")); err != nil {
		t.Fatalf("the dialed stream died with its binding: %v", err)
	}
}
