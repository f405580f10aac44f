package cli

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/postern/postern/mesh/identity"
	"github.com/postern/postern/transport"
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

// TestAgentKeyAndBoundToken: agent-key writes a key the client can load
// and a public key that token issue --bind-key binds the token to; the
// token carries the key's thumbprint, inspect shows it, and a file that is
// not a public key is refused.
func TestAgentKeyAndBoundToken(t *testing.T) {
	dir := t.TempDir()
	key, jwks := filepath.Join(dir, "signing-key.jwk"), filepath.Join(dir, "jwks.json")
	if code, _, errOut := run(t, "keygen", "--key", key, "--jwks", jwks); code != ExitOK {
		t.Fatalf("keygen: exit %d %s", code, errOut)
	}
	agentKey, agentPub := filepath.Join(dir, "agent.key"), filepath.Join(dir, "agent.pub")
	code, out, errOut := run(t, "agent-key", "--key", agentKey, "--pub", agentPub)
	if code != ExitOK {
		t.Fatalf("agent-key: exit %d %s", code, errOut)
	}
	if code, _, errOut := run(t, "agent-key", "--key", agentKey, "--pub", filepath.Join(dir, "other.pub")); code == ExitOK || !strings.Contains(errOut, "not overwriting") {
		t.Fatalf("agent-key over an existing key: exit %d %s", code, errOut)
	}
	if fi, err := os.Stat(agentKey); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("agent key mode: %v %v", fi, err)
	}
	pemKey, err := os.ReadFile(agentKey)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := transport.ParseClientKey(pemKey)
	if err != nil {
		t.Fatal(err)
	}
	jkt, err := identity.KeyThumbprint(signer.Public())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, jkt) {
		t.Errorf("agent-key does not print the thumbprint %s:\n%s", jkt, out)
	}

	for _, bindFrom := range []string{agentPub, agentKey} {
		tokFile := filepath.Join(dir, "agent.token")
		code, out, errOut := run(t, "token", "issue", "--key", key, "--sub", "coding-agent", "--bind-key", bindFrom, "--out", tokFile)
		if code != ExitOK || !strings.Contains(out, "bound to key "+jkt) {
			t.Fatalf("token issue --bind-key %s: exit %d\n%s%s", bindFrom, code, out, errOut)
		}
		set, _ := os.ReadFile(jwks)
		v, err := identity.NewVerifier(context.Background(), identity.VerifierConfig{Audience: "postern", KeySet: set})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(tokFile)
		c, err := v.Verify(strings.TrimSpace(string(b)), identity.RoleAgent)
		v.Close()
		if err != nil || c.BoundKey != jkt {
			t.Fatalf("token bound to %q (%v), want %s", c.BoundKey, err, jkt)
		}
		if code, out, _ := run(t, "token", "inspect", tokFile); code != ExitOK || !strings.Contains(out, "bound to  key "+jkt) {
			t.Fatalf("inspect does not show the binding:\n%s", out)
		}
	}

	if code, _, errOut := run(t, "token", "issue", "--key", key, "--sub", "coding-agent", "--bind-key", jwks); code == ExitOK || !strings.Contains(errOut, "--bind-key") {
		t.Fatalf("--bind-key with a JWK set: exit %d %s", code, errOut)
	}
}
