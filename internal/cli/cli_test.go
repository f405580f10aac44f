package cli

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/postern/postern/mesh/identity"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// run runs the postern command in process and returns its exit code and
// output.
func run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = Main(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// examplePolicies is the repository's examples/policies directory.
func examplePolicies(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "examples", "policies")
}

func TestHelp(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"top", []string{"--help"}, "Usage: postern COMMAND"},
		{"relay", []string{"relay", "--help"}, "relay --config relay.yaml"},
		{"connector", []string{"connector", "--help"}, "connector --config connector.yaml"},
		{"keygen", []string{"keygen", "--help"}, "-jwks file"},
		{"token", []string{"token", "--help"}, "postern token issue"},
		{"token issue", []string{"token", "issue", "--help"}, "-sub ID"},
		{"token inspect", []string{"token", "inspect", "-h"}, "WITHOUT verifying"},
		{"policy", []string{"policy", "--help"}, "postern policy validate"},
		{"policy validate", []string{"policy", "validate", "--help"}, "-principal-attribute name=Type"},
		{"policy check", []string{"policy", "check", "--help"}, "-resource name"},
		{"dev", []string{"dev", "--help"}, "staging-echo"},
		{"version", []string{"version", "--help"}, "Go version"},
		{"pin", []string{"pin", "--help"}, "POSTERN_RELAY_PIN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := run(t, tt.args...)
			if code != ExitOK || !strings.Contains(out, tt.want) {
				t.Errorf("exit %d, output lacks %q:\n%s", code, tt.want, out)
			}
			if errOut != "" {
				t.Errorf("--help wrote to stderr as well:\n%s", errOut)
			}
			if n := strings.Count(out, "Usage: postern"); n != 1 {
				t.Errorf("the usage is printed %d times:\n%s", n, out)
			}
		})
	}
}

func TestUsageErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no command", nil, "Usage: postern COMMAND"},
		{"unknown command", []string{"relai"}, `unknown command "relai"`},
		{"unknown flag", []string{"keygen", "--bogus"}, "flag provided but not defined: -bogus"},
		{"token without subcommand", []string{"token"}, "Usage: postern token"},
		{"token unknown subcommand", []string{"token", "verify"}, `token: unknown subcommand "verify": want issue or inspect`},
		{"policy without subcommand", []string{"policy"}, "Usage: postern policy"},
		{"policy unknown subcommand", []string{"policy", "test"}, `policy: unknown subcommand "test": want validate or check`},
		{"token issue without sub", []string{"token", "issue"}, "--sub is required"},
		{"token issue bad role", []string{"token", "issue", "--sub", "x", "--role", "admin"}, `want agent or connector, got "admin"`},
		{"agent token with service", []string{"token", "issue", "--sub", "x", "--service", "db"}, "--service is for connector tokens"},
		{"connector token without service", []string{"token", "issue", "--sub", "x", "--role", "connector"}, "needs at least one --service"},
		{"service without environment", []string{"token", "issue", "--sub", "x", "--role", "connector", "--service", "db:postgres"}, `--service "db:postgres": no environment`},
		{"service with unknown kind", []string{"token", "issue", "--sub", "x", "--role", "connector", "--service", "db:staging:postgres"}, `kind "staging" is not tcp, http or postgres`},
		{"service with five fields", []string{"token", "issue", "--sub", "x", "--role", "connector", "--service", "db:tcp:prod:pii:x"}, "5 fields"},
		{"service with empty label", []string{"token", "issue", "--sub", "x", "--role", "connector", "--service", "db:tcp:prod:pii,"}, `label ""`},
		{"service with label twice", []string{"token", "issue", "--sub", "x", "--role", "connector", "--service", "db:tcp:prod:pii,pii"}, `label "pii" given twice`},
		{"service with bad name", []string{"token", "issue", "--sub", "x", "--role", "connector", "--service", "my db:tcp:prod"}, "the name"},
		{"service twice", []string{"token", "issue", "--sub", "x", "--role", "connector", "--service", "db", "--service", "db:tcp:prod"}, "--service db given twice"},
		{"bad attr", []string{"token", "issue", "--sub", "x", "--attr", "nothing"}, "want name=value"},
		{"keygen bad alg", []string{"keygen", "--alg", "RS256", "--key", filepath.Join(dir, "k"), "--jwks", filepath.Join(dir, "j")}, "want EdDSA or ES256"},
		{"policy check without resource", []string{"policy", "check", "--principal", "a", dir}, "--principal and --resource are required"},
		{"policy validate without dir", []string{"policy", "validate"}, "want the policy directory"},
		{"pin without file", []string{"pin"}, "want one certificate FILE"},
		{"relay positional", []string{"relay", "relay.yaml"}, "given with --config"},
		{"relay missing config", []string{"relay", "--config", filepath.Join(dir, "none.yaml")}, "none.yaml: cannot read the configuration file"},
		{"connector missing config", []string{"connector", "--config", filepath.Join(dir, "none.yaml")}, "none.yaml: cannot read the configuration file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := run(t, tt.args...)
			if code != ExitUsage {
				t.Errorf("exit %d, want %d", code, ExitUsage)
			}
			if out != "" {
				t.Errorf("a usage error wrote to stdout:\n%s", out)
			}
			if !strings.Contains(errOut, tt.want) {
				t.Errorf("stderr lacks %q:\n%s", tt.want, errOut)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	old := Version
	Version = "v9.8.7"
	t.Cleanup(func() { Version = old })
	code, out, _ := run(t, "version")
	if code != ExitOK || !strings.HasPrefix(out, "postern v9.8.7") || !strings.Contains(out, runtime.Version()) {
		t.Errorf("exit %d: %q", code, out)
	}
}

// TestKeygenAndToken: keygen writes a private key (0600) and its public
// set, refuses to overwrite them, and merges for rotation; token issue
// signs tokens that verify against the set, with the claims asked for.
func TestKeygenAndToken(t *testing.T) {
	dir := t.TempDir()
	key, jwks := filepath.Join(dir, "signing-key.jwk"), filepath.Join(dir, "jwks.json")
	if code, out, errOut := run(t, "keygen", "--key", key, "--jwks", jwks); code != ExitOK || !strings.Contains(out, "wrote signing key") {
		t.Fatalf("keygen: exit %d\n%s%s", code, out, errOut)
	}
	if st, err := os.Stat(key); err != nil {
		t.Fatal(err)
	} else if st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, want 0600", st.Mode())
	}
	if code, _, errOut := run(t, "keygen", "--key", key, "--jwks", filepath.Join(dir, "other.json")); code != ExitFailure || !strings.Contains(errOut, "not overwriting") {
		t.Errorf("second keygen over the key: exit %d %s", code, errOut)
	}
	if code, _, errOut := run(t, "keygen", "--key", filepath.Join(dir, "k2"), "--jwks", jwks); code != ExitFailure || !strings.Contains(errOut, "--merge") {
		t.Errorf("keygen over the set: exit %d %s", code, errOut)
	}

	agentTok := filepath.Join(dir, "agent.token")
	code, out, errOut := run(t, "token", "issue", "--key", key, "--sub", "coding-agent", "--group", "coding-agents", "--group", "readers",
		"--attr", "team=platform", "--attr", "level=3", "--ttl", "30m", "--issuer", "https://iss", "--out", agentTok)
	if code != ExitOK || !strings.Contains(out, "wrote agent token for coding-agent") {
		t.Fatalf("token issue: exit %d\n%s%s", code, out, errOut)
	}
	tok, err := os.ReadFile(agentTok)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, strings.TrimSpace(string(tok))) {
		t.Error("token issue --out printed the token")
	}
	if st, err := os.Stat(agentTok); err != nil {
		t.Fatal(err)
	} else if st.Mode().Perm() != 0o600 {
		t.Errorf("token file mode %v, want 0600", st.Mode())
	}

	set, err := os.ReadFile(jwks)
	if err != nil {
		t.Fatal(err)
	}
	v, err := identity.NewVerifier(context.Background(), identity.VerifierConfig{Audience: "postern", Issuer: "https://iss", KeySet: set})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	c, err := v.Verify(strings.TrimSpace(string(tok)), identity.RoleAgent)
	if err != nil {
		t.Fatal(err)
	}
	if c.Subject != "coding-agent" || len(c.Groups) != 2 || c.Attributes["team"] != "platform" || c.Attributes["level"] == nil {
		t.Errorf("claims %+v", c)
	}
	if d := time.Until(c.ExpiresAt); d < 29*time.Minute || d > 31*time.Minute {
		t.Errorf("expires in %s, want 30m", d)
	}

	// A connector token, printed.
	code, out, _ = run(t, "token", "issue", "--key", key, "--sub", "office", "--role", "connector", "--service", "db", "--service", "api", "--issuer", "https://iss")
	if code != ExitOK {
		t.Fatalf("connector token: exit %d", code)
	}
	cc, err := v.Verify(strings.TrimSpace(out), identity.RoleConnector)
	if err != nil {
		t.Fatal(err)
	}
	if cc.MayAdvertise("api") != nil || cc.MayAdvertise("prod-db") == nil {
		t.Errorf("connector services %v", cc.Services)
	}

	// Inspect shows the claims and says it did not verify.
	code, out, _ = run(t, "token", "inspect", agentTok)
	if code != ExitOK || !strings.Contains(out, "subject   coding-agent") || !strings.Contains(out, "groups    coding-agents, readers") || !strings.Contains(out, "not verified") {
		t.Errorf("inspect: exit %d\n%s", code, out)
	}

	// Rotation: a second key merged into the set; tokens of both verify.
	key2 := filepath.Join(dir, "key2.jwk")
	if code, _, errOut := run(t, "keygen", "--key", key2, "--jwks", jwks, "--merge"); code != ExitOK {
		t.Fatalf("keygen --merge: exit %d %s", code, errOut)
	}
	merged, _ := os.ReadFile(jwks)
	v2, err := identity.NewVerifier(context.Background(), identity.VerifierConfig{Audience: "postern", KeySet: merged})
	if err != nil {
		t.Fatal(err)
	}
	defer v2.Close()
	_, out2, _ := run(t, "token", "issue", "--key", key2, "--sub", "new")
	for i, tk := range []string{strings.TrimSpace(string(tok)), strings.TrimSpace(out2)} {
		if _, err := v2.Verify(tk, identity.RoleAgent); err != nil {
			t.Errorf("token %d against the merged set: %v", i, err)
		}
	}

	// A missing key file is a clear failure.
	if code, _, errOut := run(t, "token", "issue", "--key", filepath.Join(dir, "none.jwk"), "--sub", "x"); code != ExitFailure || !strings.Contains(errOut, "postern keygen") {
		t.Errorf("missing key: exit %d %s", code, errOut)
	}
}

// TestPolicyCommands: the answers and the deciding policy IDs on the
// example policies, and validation catching typos.
func TestPolicyCommands(t *testing.T) {
	dir := examplePolicies(t)
	code, out, errOut := run(t, "policy", "validate", dir)
	if code != ExitOK || !strings.Contains(out, "3 policies valid") || !strings.Contains(out, "coding-agents-staging") || !strings.Contains(out, "forbid-financial") || !strings.Contains(out, "oncall-prod") {
		t.Errorf("validate examples: exit %d\n%s%s", code, out, errOut)
	}
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"coding agent to staging db", []string{"--principal", "coding-agent", "--group", "coding-agents", "--resource", "staging-db", "--kind", "postgres", "--env", "staging"}, ExitOK, "allow (coding-agents-staging)"},
		{"coding agent to financial prod", []string{"--principal", "coding-agent", "--group", "coding-agents", "--resource", "prod-finance", "--kind", "postgres", "--env", "prod", "--label", "financial"}, ExitDenied, "deny (forbid-financial)"},
		{"coding agent to financial staging", []string{"--principal", "coding-agent", "--group", "coding-agents", "--resource", "staging-ledger", "--env", "staging", "--label", "financial"}, ExitDenied, "deny (forbid-financial)"},
		{"coding agent to prod", []string{"--principal", "coding-agent", "--group", "coding-agents", "--resource", "prod-status", "--kind", "http", "--env", "prod"}, ExitDenied, "deny (no policy permits)"},
		{"oncall to prod", []string{"--principal", "oncall-agent", "--group", "oncall", "--resource", "prod-status", "--kind", "http", "--env", "prod"}, ExitOK, "allow (oncall-prod)"},
		{"oncall to financial prod", []string{"--principal", "oncall-agent", "--group", "oncall", "--resource", "prod-finance", "--env", "prod", "--label", "financial"}, ExitDenied, "deny (forbid-financial)"},
		{"no group", []string{"--principal", "someone", "--resource", "staging-db", "--env", "staging"}, ExitDenied, "deny (no policy permits)"},
		{"flags after dir", []string{"--principal", "coding-agent", "--resource", "staging-db", dir, "--env", "staging", "--group", "coding-agents"}, ExitOK, "allow (coding-agents-staging)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"policy", "check"}, tt.args...)
			if !slices.Contains(tt.args, dir) {
				args = append(args, dir)
			}
			code, out, errOut := run(t, args...)
			if code != tt.code || strings.TrimSpace(out) != tt.want {
				t.Errorf("exit %d (want %d), output %q (want %q)\n%s", code, tt.code, out, tt.want, errOut)
			}
		})
	}
}

// TestPolicyValidateRejects: validate names the file, the line and the
// policy of a typo that would make a policy never apply.
func TestPolicyValidateRejects(t *testing.T) {
	tests := []struct {
		name  string
		src   string
		flags []string
		want  []string
		code  int
	}{
		{"unknown entity type", `@id("typo-type") permit (principal in Grop::"coding-agents", action == Action::"connect", resource);`, nil, []string{"bad.cedar:1:", "typo-type", "Grop"}, ExitFailure},
		{"unknown attribute", "// forbids nothing: lables is a typo\n@id(\"typo-attr\") forbid (principal, action, resource)\nwhen { resource.lables.contains(\"financial\") };", nil, []string{"bad.cedar:2:", "typo-attr", "lables"}, ExitFailure},
		{"unknown action", `@id("typo-action") permit (principal, action == Action::"conect", resource);`, nil, []string{"bad.cedar:1:", "typo-action", "conect"}, ExitFailure},
		{"undeclared token attribute", `@id("team") permit (principal, action, resource) when { principal has team && principal.team == "infra" };`, nil, []string{"team"}, ExitFailure},
		{"declared token attribute", `@id("team") permit (principal, action, resource) when { principal has team && principal.team == "infra" };`, []string{"--principal-attribute", "team=String"}, []string{"1 policies valid: team"}, ExitOK},
		{"syntax error", `@id("x") permit (principal action, resource);`, nil, []string{"bad.cedar:1:"}, ExitFailure},
		{"missing id", `permit (principal, action, resource);`, nil, []string{"bad.cedar:1:", "@id"}, ExitFailure},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "bad.cedar"), []byte(tt.src), 0o644); err != nil {
				t.Fatal(err)
			}
			args := append([]string{"policy", "validate", dir}, tt.flags...)
			code, out, errOut := run(t, args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d\n%s%s", code, tt.code, out, errOut)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if tt.code != ExitOK {
				// check refuses to decide on policies a relay would refuse.
				code, _, errOut := run(t, append([]string{"policy", "check", "--principal", "a", "--resource", "b", dir}, tt.flags...)...)
				if code != ExitUsage || !strings.Contains(errOut, "do not load") {
					t.Errorf("check on bad policies: exit %d\n%s", code, errOut)
				}
			}
		})
	}
}

// TestPolicyConfigFlag: validate and check take the directory and the
// declarations from a relay configuration, and read nothing else it names:
// they run where the relay's key set, certificate and audit log are not
// (in CI), and create none of them.
func TestPolicyConfigFlag(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "policies"), 0o755)
	os.WriteFile(filepath.Join(dir, "policies", "team.cedar"), []byte(`@id("infra-team") permit (principal, action, resource) when { principal has team && principal.team == "infra" };`), 0o644)
	cfg := filepath.Join(dir, "relay.yaml")
	os.WriteFile(cfg, []byte(`tls: {cert_file: relay.crt, key_file: relay.key, self_signed: true}
tokens: {audience: postern, jwks_file: /etc/postern/jwks.json}
policy:
  dir: policies
  principal_attributes: {team: String}
audit: /nonexistent/postern/audit.log
`), 0o644)
	if code, out, errOut := run(t, "policy", "validate", "--config", cfg); code != ExitOK {
		t.Errorf("validate --config: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut := run(t, "policy", "check", "--config", cfg, "--principal", "a", "--attr", "team=infra", "--resource", "db")
	if code != ExitOK || strings.TrimSpace(out) != "allow (infra-team)" {
		t.Errorf("check --config: exit %d %q\n%s", code, out, errOut)
	}
	for _, f := range []string{"relay.crt", "relay.key"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			t.Errorf("a policy command created the relay's %s", f)
		}
	}

	// The file is still decoded strictly.
	os.WriteFile(cfg, []byte("policy:\n  dir: policies\n  principal_atributes: {team: String}\n"), 0o644)
	if code, _, errOut := run(t, "policy", "validate", "--config", cfg); code != ExitUsage || !strings.Contains(errOut, "relay.yaml:3:3: policy.principal_atributes: unknown field") {
		t.Errorf("validate --config with a typo: exit %d\n%s", code, errOut)
	}
}

// TestRelayCannotListen: a relay whose address is taken exits 1 and says
// why, once.
func TestRelayCannotListen(t *testing.T) {
	taken, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	dir := t.TempDir()
	if code, _, errOut := run(t, "keygen", "--key", filepath.Join(dir, "signing-key.jwk"), "--jwks", filepath.Join(dir, "jwks.json")); code != ExitOK {
		t.Fatalf("keygen: exit %d\n%s", code, errOut)
	}
	if err := os.Mkdir(filepath.Join(dir, "policies"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "relay.yaml")
	yaml := "listen: " + taken.LocalAddr().String() + "\ntokens: {audience: postern, jwks_file: jwks.json}\npolicy: {dir: policies}\n"
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := run(t, "relay", "--config", cfg)
	if code != ExitFailure || !strings.Contains(errOut, "address already in use") {
		t.Errorf("exit %d, want %d naming the cause:\n%s", code, ExitFailure, errOut)
	}
	if strings.Contains(errOut, "relay: relay:") {
		t.Errorf("the error stutters:\n%s", errOut)
	}
}
