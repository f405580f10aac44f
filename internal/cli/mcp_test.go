package cli

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMCPFlags: what postern mcp refuses before it reads the
// environment or connects.
func TestMCPFlags(t *testing.T) {
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("POSTERN_RELAY", "")
	t.Setenv(EnvMCPToken, "")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"beyond loopback", []string{"--http", "0.0.0.0:8080"}, "is not a loopback address"},
		{"every interface", []string{"--http", ":8080"}, "is not a loopback address"},
		{"remote without a token", []string{"--http", "192.0.2.1:8080", "--allow-remote"}, "needs a bearer token"},
		{"empty token file", []string{"--http", "127.0.0.1:0", "--http-token-file", empty}, "is empty"},
		{"remote without http", []string{"--allow-remote"}, "go with --http"},
		{"bad size", []string{"--max-bytes", "lots"}, "positive number of bytes"},
		{"zero rows", []string{"--max-rows", "0"}, "must be positive"},
		{"no relay", nil, "POSTERN_RELAY: not set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := run(t, append([]string{"mcp"}, tt.args...)...)
			if code != ExitUsage || !strings.Contains(stderr, tt.want) || stdout != "" {
				t.Errorf("exit %d, stdout %q, stderr %q; want %d and %q", code, stdout, stderr, ExitUsage, tt.want)
			}
		})
	}
}

func TestByteSize(t *testing.T) {
	tests := []struct {
		name, in string
		want     int
		ok       bool
	}{
		{"plain", "4000", 4000, true},
		{"KiB", "64KiB", 64 << 10, true},
		{"MiB", "1MiB", 1 << 20, true},
		{"B", "10B", 10, true},
		{"zero", "0", 0, false},
		{"unit only", "MiB", 0, false},
		{"overflow", "4GiB", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b byteSize
			err := b.Set(tt.in)
			if (err == nil) != tt.ok || tt.ok && int(b) != tt.want {
				t.Errorf("Set(%q) = %d, %v; want %d, ok %v", tt.in, b, err, tt.want, tt.ok)
			}
			if tt.ok && tt.name != "B" && b.String() != tt.in {
				t.Errorf("String() = %q after Set(%q)", b.String(), tt.in)
			}
		})
	}
}

func TestRequireBearer(t *testing.T) {
	h := requireBearer("s3cret", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) }))
	tests := []struct {
		name, auth string
		want       int
	}{
		{"none", "", http.StatusUnauthorized},
		{"wrong", "Bearer s3cre", http.StatusUnauthorized},
		{"other scheme", "Basic s3cret", http.StatusUnauthorized},
		{"right", "Bearer s3cret", http.StatusTeapot},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/mcp", nil)
			if tt.auth != "" {
				r.Header.Set("Authorization", tt.auth)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tt.want {
				t.Errorf("status %d, want %d", w.Code, tt.want)
			}
			if tt.want == http.StatusUnauthorized && !strings.HasPrefix(w.Header().Get("WWW-Authenticate"), "Bearer") {
				t.Error("a 401 without WWW-Authenticate: Bearer")
			}
		})
	}
}
