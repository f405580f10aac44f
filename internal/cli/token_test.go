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
		"id        " + c.ID + " (jti)", // what a revocation_file's "token ID" names
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

// TestTokenMaxTTL: issue refuses a --ttl longer than the relay accepts
// (24h unless --max-ttl says the relay's tokens.max_ttl is longer), and
// prints the token's ID, which a revocation file names.
func TestTokenMaxTTL(t *testing.T) {
	dir := t.TempDir()
	key, jwks := filepath.Join(dir, "signing-key.jwk"), filepath.Join(dir, "jwks.json")
	if code, _, errOut := run(t, "keygen", "--key", key, "--jwks", jwks); code != ExitOK {
		t.Fatalf("keygen: exit %d %s", code, errOut)
	}
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"a year", []string{"--ttl", "8760h"}, ExitUsage, "--ttl 8760h0m0s is more than 24h0m0s, the longest lifetime the relay accepts (tokens.max_ttl"},
		{"a day and a second", []string{"--ttl", "24h0m1s"}, ExitUsage, "pass --max-ttl with the relay's tokens.max_ttl"},
		{"a day", []string{"--ttl", "24h"}, ExitOK, "; id "},
		{"a week, for a relay that allows it", []string{"--ttl", "168h", "--max-ttl", "168h"}, ExitOK, "; id "},
		{"a week, max 48h", []string{"--ttl", "168h", "--max-ttl", "48h"}, ExitUsage, "is more than 48h0m0s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := filepath.Join(dir, "t.token")
			code, stdout, stderr := run(t, append([]string{"token", "issue", "--key", key, "--sub", "a", "--out", out}, tt.args...)...)
			if code != tt.code || !strings.Contains(stdout+stderr, tt.want) {
				t.Fatalf("exit %d, want %d; output lacks %q:\n%s%s", code, tt.code, tt.want, stdout, stderr)
			}
			if code != ExitOK {
				return
			}
			b, _ := os.ReadFile(out)
			c, err := identity.ParseUnverified(strings.TrimSpace(string(b)))
			if err != nil || c.ID == "" || !strings.Contains(stdout, "; id "+c.ID+")") {
				t.Errorf("printed %q; token ID %q (%v)", stdout, c.ID, err)
			}
		})
	}
}
