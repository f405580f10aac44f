package pgconnstr_test

import (
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/postern/postern/internal/pgconnstr"
)

// TestQuoteRoundTrip: whatever a value holds, pgconn parses back exactly
// that value, and nothing of it becomes another setting.
func TestQuoteRoundTrip(t *testing.T) {
	for _, tt := range []struct{ name, value string }{
		{name: "plain", value: "app_1"},
		{name: "space and equals", value: "app db = x"},
		{name: "single quote", value: "app's"},
		{name: "backslash", value: `C:\pg\ca.pem`},
		{name: "injection attempt", value: "x' host='evil.example"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := pgconn.ParseConfig("host=127.0.0.1 port=5432 sslmode=disable user=" + pgconnstr.Quote(tt.value) + " dbname=d")
			if err != nil {
				t.Fatal(err)
			}
			if cfg.User != tt.value || cfg.Host != "127.0.0.1" || cfg.Database != "d" {
				t.Fatalf("parsed user %q host %q dbname %q, want user %q", cfg.User, cfg.Host, cfg.Database, tt.value)
			}
		})
	}
}
