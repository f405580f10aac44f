package cli

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/postern/postern/mesh/identity"
)

// TestTokenServiceDescriptions: what --service says of a service is what
// the signed token carries and what inspect shows.
func TestTokenServiceDescriptions(t *testing.T) {
	dir := t.TempDir()
	key, jwks := filepath.Join(dir, "signing-key.jwk"), filepath.Join(dir, "jwks.json")
	if code, _, errOut := run(t, "keygen", "--key", key, "--jwks", jwks); code != ExitOK {
		t.Fatalf("keygen: exit %d %s", code, errOut)
	}
	tokFile := filepath.Join(dir, "connector.token")
	code, out, errOut := run(t, "token", "issue", "--key", key, "--sub", "office", "--role", "connector",
		"--service", "staging-db:postgres:staging",
		"--service", "prod-finance:http:prod:financial,pii",
		"--service", "echo:tcp:",
		"--service", "declared-api",
		"--out", tokFile)
	if code != ExitOK {
		t.Fatalf("token issue: exit %d\n%s%s", code, out, errOut)
	}
	if !strings.Contains(out, "services staging-db:postgres:staging prod-finance:http:prod:financial,pii echo:tcp: declared-api; 1 by name alone, which relay.yaml must declare") {
		t.Errorf("issue does not say that one service is granted by name alone:\n%s", out)
	}

	set, err := os.ReadFile(jwks)
	if err != nil {
		t.Fatal(err)
	}
	v, err := identity.NewVerifier(context.Background(), identity.VerifierConfig{Audience: "postern", KeySet: set})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	b, err := os.ReadFile(tokFile)
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.Verify(strings.TrimSpace(string(b)), identity.RoleConnector)
	if err != nil {
		t.Fatal(err)
	}
	want := []identity.Service{
		{Name: "staging-db", Kind: "postgres", Environment: "staging"},
		{Name: "prod-finance", Kind: "http", Environment: "prod", Labels: []string{"financial", "pii"}},
		{Name: "echo", Kind: "tcp"},
		{Name: "declared-api"},
	}
	if !reflect.DeepEqual(c.Services, want) {
		t.Fatalf("token services %+v\nwant %+v", c.Services, want)
	}

	code, out, errOut = run(t, "token", "inspect", tokFile)
	if code != ExitOK {
		t.Fatalf("inspect: exit %d %s", code, errOut)
	}
	for _, line := range []string{
		"services  staging-db:postgres:staging  (kind postgres, environment staging, labels none)",
		"          prod-finance:http:prod:financial,pii  (kind http, environment prod, labels financial,pii)",
		"          echo:tcp:  (kind tcp, environment none, labels none)",
		"          declared-api  (name only: the relay serves it only if relay.yaml declares it)",
	} {
		if !strings.Contains(out, line+"\n") {
			t.Errorf("inspect does not show %q:\n%s", line, out)
		}
	}
}
