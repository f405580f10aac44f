package binding_test

import (
	"testing"

	"github.com/postern/postern/internal/meshtest"
	"github.com/postern/postern/transport"
)

// TestOverTCP runs the bindings' behaviours with the relay on TCP only and
// every agent and connector on TLS over TCP: PostgreSQL statements decided
// by the connector (allowed, denied, reloaded), a cancel request, HTTP
// requests decided per method, credentials injected. The whole package
// runs so with POSTERN_TEST_NETWORK=tcp.
func TestOverTCP(t *testing.T) {
	t.Setenv(meshtest.EnvNetwork, transport.NetworkTCP)
	for _, tt := range []struct {
		name string
		test func(*testing.T)
	}{
		{"PostgresSQL", TestPostgresSQL},
		{"PostgresCancel", TestPostgresCancel},
		{"PostgresPolicySelectAllowedDeleteDenied", TestPostgresPolicySelectAllowedDeleteDenied},
		{"PostgresPolicyReload", TestPostgresPolicyReload},
		{"HTTPPolicyGetAllowedPostDenied", TestHTTPPolicyGetAllowedPostDenied},
		{"HTTPInjectsCredentials", TestHTTPInjectsCredentials},
		{"HTTPCancel", TestHTTPCancel},
		{"OpenAndClose", TestOpenAndClose},
	} {
		t.Run(tt.name, tt.test)
	}
}
