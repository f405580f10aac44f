package connector_test

import (
	"strings"
	"testing"

	"github.com/postern/postern"
	"github.com/postern/postern/mesh/connector"
)

// TestNewChecksCredentials: a service's credentials must fit its kind.
func TestNewChecksCredentials(t *testing.T) {
	pg := func(p *connector.Postgres) connector.Service {
		return connector.Service{Name: "db", Kind: postern.KindPostgres, Upstream: "10.0.0.1:5432", Postgres: p}
	}
	web := func(h *connector.HTTP) connector.Service {
		return connector.Service{Name: "api", Kind: postern.KindHTTP, Upstream: "10.0.0.1:80", HTTP: h}
	}
	header := func(name string, s connector.Secret) *connector.HTTP {
		return &connector.HTTP{Headers: map[string]connector.Secret{name: s}}
	}
	tests := []struct {
		name    string
		svc     connector.Service
		wantErr string // empty: valid
	}{
		{name: "postgres", svc: pg(&connector.Postgres{User: "app", Password: connector.Secret{Env: "PGPASS"}, SSLMode: "verify-full"})},
		{name: "postgres without password", svc: pg(&connector.Postgres{User: "app"})},
		{name: "postgres without login", svc: pg(nil), wantErr: "needs Postgres"},
		{name: "postgres without user", svc: pg(&connector.Postgres{Database: "x"}), wantErr: "Postgres.User is required"},
		{name: "read-only login without user", svc: pg(&connector.Postgres{User: "app", ReadOnly: &connector.PostgresLogin{}}), wantErr: "Postgres.ReadOnly.User is required"},
		{name: "read-only login is the main one", svc: pg(&connector.Postgres{User: "app", ReadOnly: &connector.PostgresLogin{User: "app"}}), wantErr: "a role of its own"},
		{name: "postgres bad sslmode", svc: pg(&connector.Postgres{User: "app", SSLMode: "yes"}), wantErr: `SSLMode "yes"`},
		{name: "postgres two password sources", svc: pg(&connector.Postgres{User: "app", Password: connector.Secret{Value: "a", File: "/f"}}), wantErr: "more than one"},
		{name: "postgres with HTTP", svc: func() connector.Service {
			s := pg(&connector.Postgres{User: "app"})
			s.HTTP = &connector.HTTP{}
			return s
		}(), wantErr: "HTTP is set"},
		{name: "http", svc: web(header("Authorization", connector.Secret{File: "/run/token"}))},
		{name: "http without credentials", svc: web(nil)},
		{name: "http bad header name", svc: web(header("Bad Header", connector.Secret{Value: "x"})), wantErr: "not a header name"},
		{name: "http Host header", svc: web(header("host", connector.Secret{Value: "x"})), wantErr: "cannot be injected"},
		{name: "http hop-by-hop header", svc: web(header("Connection", connector.Secret{Value: "x"})), wantErr: "cannot be injected"},
		{name: "http empty secret", svc: web(header("X-Key", connector.Secret{})), wantErr: "exactly one"},
		{name: "http with Postgres", svc: func() connector.Service { s := web(nil); s.Postgres = &connector.Postgres{User: "x"}; return s }(), wantErr: "Postgres is set"},
		{name: "tcp with credentials", svc: connector.Service{Name: "raw", Upstream: "10.0.0.1:22", HTTP: &connector.HTTP{}}, wantErr: "tcp service"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := connector.New(connector.Config{
				Relays: []string{"relay.example.com:7443"}, Token: "t",
				Pin:      "sha256:" + strings.Repeat("ab", 32),
				Services: []connector.Service{tt.svc},
			})
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "connector: config: service") {
				t.Fatalf("err = %v, want one saying %q", err, tt.wantErr)
			}
		})
	}
}
