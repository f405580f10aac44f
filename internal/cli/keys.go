package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/postern/postern"
	"github.com/postern/postern/internal/config"
	"github.com/postern/postern/internal/wire"
	"github.com/postern/postern/mesh/identity"
	"github.com/postern/postern/transport"
)

const keygenAbout = `
Make a signing key for identity tokens and write two files: the private
key (a JWK, mode 0600: keep it where you issue tokens, never on a relay)
and the public key set (a JWK set: give it to relays as tokens.jwks_file,
or serve it at tokens.jwks_url). Existing files are never overwritten.

To rotate keys, make a new key with --merge: its public key is added to
the existing set. Relays then accept tokens of both keys; remove the old
key from the set once its last token has expired.`

func runKeygen(_ context.Context, env Env, args []string) int {
	fs := flagSet(env, "keygen", "keygen [--key signing-key.jwk] [--jwks jwks.json] [--alg EdDSA|ES256]", keygenAbout)
	keyPath := fs.String("key", "signing-key.jwk", "write the private signing key to `file` (mode 0600)")
	jwksPath := fs.String("jwks", "jwks.json", "write the public JWK set to `file`")
	alg := fs.String("alg", "EdDSA", "signature `algorithm`: EdDSA (Ed25519) or ES256 (P-256)")
	merge := fs.Bool("merge", false, "add the new public key to an existing --jwks file instead of refusing to overwrite it (key rotation)")
	pos, code, done := parse(fs, env, args)
	if done {
		return code
	}
	if len(pos) > 0 {
		return failf(env, ExitUsage, "keygen: unexpected argument %q", pos[0])
	}
	a := identity.Algorithm(*alg)
	if a != identity.EdDSA && a != identity.ES256 {
		return failf(env, ExitUsage, "keygen: --alg: want EdDSA or ES256, got %q", *alg)
	}
	if _, err := os.Stat(*keyPath); err == nil {
		return failf(env, ExitFailure, "keygen: %s exists; not overwriting a signing key (remove it first, or choose another --key)", *keyPath)
	}
	var oldSet []byte
	if b, err := os.ReadFile(*jwksPath); err == nil {
		if !*merge {
			return failf(env, ExitFailure, "keygen: %s exists; not overwriting it (use --merge to add the new key to it, for rotation)", *jwksPath)
		}
		oldSet = b
	} else if !errors.Is(err, os.ErrNotExist) {
		return failf(env, ExitFailure, "keygen: %v", err)
	}
	key, err := identity.GenerateSigningKey(a)
	if err != nil {
		return failf(env, ExitFailure, "keygen: %v", err)
	}
	private, err := key.MarshalJWK()
	if err != nil {
		return failf(env, ExitFailure, "keygen: %v", err)
	}
	public, err := key.PublicJWKS()
	if err != nil {
		return failf(env, ExitFailure, "keygen: %v", err)
	}
	if oldSet != nil {
		if public, err = identity.MergeJWKS(oldSet, public); err != nil {
			return failf(env, ExitFailure, "keygen: --merge: %s: %v", *jwksPath, err)
		}
	}
	if err := config.WriteSecretFile(*keyPath, append(private, '\n')); err != nil {
		return failf(env, ExitFailure, "keygen: %v", err)
	}
	if err := writeFileAtomic(*jwksPath, append(indentJSON(public), '\n'), 0o644); err != nil {
		return failf(env, ExitFailure, "keygen: %v", err)
	}
	fmt.Fprintf(env.Stdout, "wrote signing key %s (%s, kid %s): keep it secret\n", *keyPath, a, key.KeyID())
	fmt.Fprintf(env.Stdout, "wrote public key set %s: relays verify tokens with it (tokens.jwks_file)\n", *jwksPath)
	return ExitOK
}

const agentKeyAbout = `
Make the private key an agent (or a connector) proves in its handshakes,
and write two files: the private key (PEM PKCS #8, mode 0600: give it to
the agent as POSTERN_KEY_FILE, or to a connector as key_file, and to
nothing else) and its public key (PEM), which is what the token issuer
needs:

  postern agent-key --key agent.key --pub agent.pub
  postern token issue --sub coding-agent --group coding-agents --bind-key agent.pub

A token issued with --bind-key works only from a client holding the key:
a copy of the token alone is refused (key_not_proven). Existing files
are never overwritten.`

func runAgentKey(_ context.Context, env Env, args []string) int {
	fs := flagSet(env, "agent-key", "agent-key [--key agent.key] [--pub agent.pub]", agentKeyAbout)
	keyPath := fs.String("key", "agent.key", "write the private key to `file` (PEM, mode 0600)")
	pubPath := fs.String("pub", "agent.pub", "write the public key to `file` (PEM), for token issue --bind-key")
	pos, code, done := parse(fs, env, args)
	if done {
		return code
	}
	if len(pos) > 0 {
		return failf(env, ExitUsage, "agent-key: unexpected argument %q", pos[0])
	}
	for _, p := range []string{*keyPath, *pubPath} {
		if _, err := os.Stat(p); err == nil {
			return failf(env, ExitFailure, "agent-key: %s exists; not overwriting it (remove it first, or choose another file)", p)
		}
	}
	key, err := transport.GenerateClientKey()
	if err != nil {
		return failf(env, ExitFailure, "agent-key: %v", err)
	}
	private, err := transport.MarshalClientKey(key)
	if err != nil {
		return failf(env, ExitFailure, "agent-key: %v", err)
	}
	public, err := transport.MarshalPublicKey(key.Public())
	if err != nil {
		return failf(env, ExitFailure, "agent-key: %v", err)
	}
	jkt, err := identity.KeyThumbprint(key.Public())
	if err != nil {
		return failf(env, ExitFailure, "agent-key: %v", err)
	}
	if err := config.WriteSecretFile(*keyPath, private); err != nil {
		return failf(env, ExitFailure, "agent-key: %v", err)
	}
	if err := writeFileAtomic(*pubPath, public, 0o644); err != nil {
		return failf(env, ExitFailure, "agent-key: %v", err)
	}
	fmt.Fprintf(env.Stdout, "wrote private key %s (Ed25519): keep it secret; the agent reads it from POSTERN_KEY_FILE\n", *keyPath)
	fmt.Fprintf(env.Stdout, "wrote public key %s (thumbprint %s): bind tokens to it with postern token issue --bind-key %s\n", *pubPath, jkt, *pubPath)
	return ExitOK
}

func indentJSON(b []byte) []byte {
	var v any
	if json.Unmarshal(b, &v) != nil {
		return b
	}
	out, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return b
	}
	return out
}

// writeFileAtomic replaces path with b: readers see the old file or the
// new one, never a part of it (a connector re-reading its token file, a
// relay its key set).
func writeFileAtomic(path string, b []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

const tokenAbout = `
Issue and inspect identity tokens.

  postern token issue --sub ID [--role agent|connector] [--group G]... [--service S]... [--ttl 1h] [--max-ttl 24h] [--out FILE]
  postern token inspect FILE

"issue" signs a token with the key from keygen and prints it (or writes it
to --out with mode 0600, replacing the file at once, so that a connector
re-reading it never sees half a token). An agent token names the agent
(--sub) and its groups, which policies read as Group::"<g>"; a connector
token names the services it may advertise (--service), so that a stolen
connector token cannot claim anything else.

--bind-key FILE binds the token to a public key (postern agent-key writes
one): the relay then accepts it only from a client that proves the key in
its handshake (POSTERN_KEY_FILE, mesh.Config.Key, connector.yaml's
key_file), so a copy of the token alone is useless.

A connector token also says what each service is, because policy decides
on it and the relay trusts only the token (or the bindings declared in
relay.yaml), never the connector's word:

  --service NAME:KIND:ENVIRONMENT[:LABEL,LABEL...]

    --service staging-api:http:staging
    --service prod-finance:postgres:prod:financial,pii
    --service echo:tcp:               (no environment, no labels)

KIND is tcp, http or postgres. The connector must advertise the service
exactly so (connector.yaml's kind, environment and labels), or the relay
refuses it. --service NAME alone grants the name without a description:
the relay then serves it only if relay.yaml declares the binding.

A relay refuses a token whose lifetime (exp - iat) exceeds its
tokens.max_ttl, 24h by default, so "issue" refuses a --ttl above --max-ttl
(24h unless given): pass --max-ttl with the relay's tokens.max_ttl to
issue longer ones. Every token has an ID (jti), printed with --out, that
the relay's tokens.revocation_file can revoke before it expires.

"inspect" prints a token's claims WITHOUT verifying it, to see what a file
holds; only a relay's verification means anything.`

func runToken(ctx context.Context, env Env, args []string) int {
	return subcommand(ctx, env, "token", "token issue|inspect ...", tokenAbout,
		[]command{{name: "issue", run: runTokenIssue}, {name: "inspect", run: runTokenInspect}}, args)
}

func runTokenIssue(_ context.Context, env Env, args []string) int {
	fs := flagSet(env, "token issue", "token issue --sub ID [flags]", tokenAbout)
	keyPath := fs.String("key", "signing-key.jwk", "the signing key `file` written by keygen")
	sub := fs.String("sub", "", "the subject: the agent's or connector's `ID` (required)")
	role := fs.String("role", "agent", "`agent` or connector")
	var groups, services, attrs listFlag
	fs.Var(&groups, "group", "a `group` the agent belongs to (repeatable)")
	fs.Var(&services, "service", "a `service` the connector may advertise, as NAME:KIND:ENVIRONMENT[:LABEL,...] (or NAME alone when relay.yaml declares it; repeatable; connector tokens only)")
	fs.Var(&attrs, "attr", "a free attribute `name=value` that policies read as principal.name; the value is JSON (3, true, [\"a\"]) or else a string (repeatable)")
	ttl := fs.Duration("ttl", time.Hour, "how long the token is valid")
	maxTTL := fs.Duration("max-ttl", config.DefaultMaxTTL, "the relay's tokens.max_ttl: a longer --ttl is refused, since the relay would refuse the token")
	aud := fs.String("audience", "postern", "the `audience`: the relay's tokens.audience")
	iss := fs.String("issuer", "", "the `issuer`: the relay's tokens.issuer, when it sets one")
	out := fs.String("out", "", "write the token to `file` (mode 0600) instead of printing it")
	bindKey := fs.String("bind-key", "", "bind the token to the public key in `file` (PEM, from postern agent-key): only a client proving that key may use it")
	pos, code, done := parse(fs, env, args)
	if done {
		return code
	}
	if len(pos) > 0 {
		return failf(env, ExitUsage, "token issue: unexpected argument %q", pos[0])
	}
	if *sub == "" {
		return failf(env, ExitUsage, "token issue: --sub is required")
	}
	r := identity.Role(*role)
	if r != identity.RoleAgent && r != identity.RoleConnector {
		return failf(env, ExitUsage, "token issue: --role: want agent or connector, got %q", *role)
	}
	if r == identity.RoleAgent && len(services) > 0 {
		return failf(env, ExitUsage, "token issue: --service is for connector tokens (--role connector)")
	}
	if r == identity.RoleConnector && len(services) == 0 {
		return failf(env, ExitUsage, "token issue: a connector token needs at least one --service it may advertise")
	}
	if *ttl <= 0 {
		return failf(env, ExitUsage, "token issue: --ttl must be positive")
	}
	if *ttl > *maxTTL {
		return failf(env, ExitUsage, "token issue: --ttl %s is more than %s, the longest lifetime the relay accepts (tokens.max_ttl; a relay refuses such a token with token_lifetime_exceeded): issue a shorter-lived token, or pass --max-ttl with the relay's tokens.max_ttl", *ttl, *maxTTL)
	}
	if *aud == "" {
		return failf(env, ExitUsage, "token issue: --audience must not be empty")
	}
	attributes, err := parseAttrs(attrs)
	if err != nil {
		return failf(env, ExitUsage, "token issue: %v", err)
	}
	granted, err := parseServices(services)
	if err != nil {
		return failf(env, ExitUsage, "token issue: %v", err)
	}
	var bound string
	if *bindKey != "" {
		pem, err := os.ReadFile(*bindKey)
		if err != nil {
			return failf(env, ExitFailure, "token issue: --bind-key: %v", err)
		}
		pub, err := transport.ParsePublicKey(pem)
		if err != nil {
			return failf(env, ExitFailure, "token issue: --bind-key %s: %v", *bindKey, err)
		}
		if bound, err = identity.KeyThumbprint(pub); err != nil {
			return failf(env, ExitFailure, "token issue: --bind-key %s: %v", *bindKey, err)
		}
	}
	b, err := os.ReadFile(*keyPath)
	if err != nil {
		return failf(env, ExitFailure, "token issue: --key: cannot read the signing key: %v (make one with postern keygen)", err)
	}
	key, err := identity.ParseSigningKey(b)
	if err != nil {
		return failf(env, ExitFailure, "token issue: --key %s: %v", *keyPath, err)
	}
	c := identity.Claims{
		Issuer:     *iss,
		Subject:    *sub,
		Audience:   []string{*aud},
		ExpiresAt:  time.Now().Add(*ttl),
		Role:       r,
		Groups:     groups,
		Attributes: attributes,
		Services:   granted,
		BoundKey:   bound,
	}
	tok, err := key.Issue(c)
	if err != nil {
		return failf(env, ExitFailure, "token issue: %v", err)
	}
	if *out == "" {
		fmt.Fprintln(env.Stdout, tok)
		return ExitOK
	}
	if err := writeFileAtomic(*out, []byte(tok+"\n"), 0o600); err != nil {
		return failf(env, ExitFailure, "token issue: --out: %v", err)
	}
	what := "groups " + orNone(groups)
	if r == identity.RoleConnector {
		what = "services " + strings.Join(services, " ") // labels are separated by commas
		if n := undescribed(granted); n > 0 {
			what += fmt.Sprintf("; %d by name alone, which relay.yaml must declare", n)
		}
	}
	if bound != "" {
		what += "; bound to key " + bound
	}
	id := ""
	if parsed, err := identity.ParseUnverified(tok); err == nil {
		id = parsed.ID
	}
	fmt.Fprintf(env.Stdout, "wrote %s token for %s (%s; expires %s; id %s) to %s\n", r, *sub, what, c.ExpiresAt.UTC().Format(time.RFC3339), id, *out)
	return ExitOK
}

func orNone(l []string) string {
	if len(l) == 0 {
		return "none"
	}
	return strings.Join(l, ",")
}

// parseServices reads --service flags: NAME:KIND:ENVIRONMENT[:LABELS], or
// NAME alone. Each error quotes the flag and says what is wrong with it.
func parseServices(flags []string) ([]identity.Service, error) {
	var out []identity.Service
	seen := map[string]bool{}
	for _, f := range flags {
		s, err := parseService(f)
		if err != nil {
			return nil, fmt.Errorf("--service %q: %v", f, err)
		}
		if seen[s.Name] {
			return nil, fmt.Errorf("--service %s given twice", s.Name)
		}
		seen[s.Name] = true
		out = append(out, s)
	}
	return out, nil
}

const serviceSyntax = "want NAME:KIND:ENVIRONMENT[:LABEL,LABEL...] (staging-db:postgres:staging, prod-finance:http:prod:financial) or NAME alone"

func parseService(f string) (identity.Service, error) {
	parts := strings.Split(f, ":")
	var s identity.Service
	s.Name = parts[0]
	if err := wire.ValidName(s.Name); err != nil {
		return s, fmt.Errorf("the name: %s; %s", strings.TrimPrefix(err.Error(), "wire: "), serviceSyntax)
	}
	switch len(parts) {
	case 1:
		return s, nil
	case 2:
		return s, fmt.Errorf("no environment: %s (an empty one is written NAME:KIND:)", serviceSyntax)
	case 3, 4:
	default:
		return s, fmt.Errorf("%d fields: %s", len(parts), serviceSyntax)
	}
	s.Kind, s.Environment = parts[1], parts[2]
	if !postern.ValidKind(s.Kind) {
		return s, fmt.Errorf("kind %q is not tcp, http or postgres; %s", s.Kind, serviceSyntax)
	}
	if s.Environment != "" {
		if err := wire.ValidName(s.Environment); err != nil {
			return s, fmt.Errorf("environment: %s", strings.TrimPrefix(err.Error(), "wire: "))
		}
	}
	if len(parts) == 4 {
		for _, l := range strings.Split(parts[3], ",") {
			if err := wire.ValidName(l); err != nil {
				return s, fmt.Errorf("label %q: %s (labels are separated by commas)", l, strings.TrimPrefix(err.Error(), "wire: "))
			}
			if slices.Contains(s.Labels, l) {
				return s, fmt.Errorf("label %q given twice", l)
			}
			s.Labels = append(s.Labels, l)
		}
		if len(s.Labels) > identity.MaxServiceLabels {
			return s, fmt.Errorf("%d labels, more than %d", len(s.Labels), identity.MaxServiceLabels)
		}
	}
	return s, nil
}

func undescribed(l []identity.Service) int {
	n := 0
	for _, s := range l {
		if !s.Described() {
			n++
		}
	}
	return n
}

// formatService writes s as --service takes it, and says what it means.
func formatService(s identity.Service) string {
	if !s.Described() {
		return s.Name + "  (name only: the relay serves it only if relay.yaml declares it)"
	}
	flag := s.Name + ":" + s.Kind + ":" + s.Environment
	if len(s.Labels) > 0 {
		flag += ":" + strings.Join(s.Labels, ",")
	}
	env := s.Environment
	if env == "" {
		env = "none"
	}
	return fmt.Sprintf("%s  (kind %s, environment %s, labels %s)", flag, s.Kind, env, orNone(s.Labels))
}

// parseAttrs turns name=value flags into token attributes: a value that
// is JSON is taken as such, anything else as a string.
func parseAttrs(kvs []string) (map[string]any, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	m := map[string]any{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--attr %q: want name=value", kv)
		}
		if _, dup := m[k]; dup {
			return nil, fmt.Errorf("--attr %s given twice", k)
		}
		var j any
		if dec := json.NewDecoder(strings.NewReader(v)); dec.Decode(&j) == nil && !dec.More() && v != "" {
			m[k] = j
		} else {
			m[k] = v
		}
	}
	return m, nil
}

func runTokenInspect(_ context.Context, env Env, args []string) int {
	fs := flagSet(env, "token inspect", "token inspect FILE", "Print the claims of the token in FILE (\"-\" for standard input) WITHOUT verifying it.")
	pos, code, done := parse(fs, env, args)
	if done {
		return code
	}
	if len(pos) != 1 {
		return failf(env, ExitUsage, "token inspect: want one FILE")
	}
	var tok string
	var err error
	if pos[0] == "-" {
		var b []byte
		b, err = io.ReadAll(io.LimitReader(os.Stdin, 64<<10))
		tok = strings.TrimSpace(string(b))
	} else {
		tok, err = config.ReadTokenFile(pos[0])
	}
	if err != nil {
		return failf(env, ExitFailure, "token inspect: %v", err)
	}
	c, err := identity.ParseUnverified(tok)
	if err != nil {
		return failf(env, ExitFailure, "token inspect: %v", err)
	}
	fmt.Fprintf(env.Stdout, "subject   %s\nrole      %s\n", c.Subject, c.Role)
	if len(c.Groups) > 0 {
		fmt.Fprintf(env.Stdout, "groups    %s\n", strings.Join(c.Groups, ", "))
	}
	for i, svc := range c.Services {
		label := "services "
		if i > 0 {
			label = "         "
		}
		fmt.Fprintf(env.Stdout, "%s %s\n", label, formatService(svc))
	}
	if len(c.Attributes) > 0 {
		keys := make([]string, 0, len(c.Attributes))
		for k := range c.Attributes {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			v, _ := json.Marshal(c.Attributes[k])
			fmt.Fprintf(env.Stdout, "attribute %s = %s\n", k, v)
		}
	}
	if c.BoundKey != "" {
		fmt.Fprintf(env.Stdout, "bound to  key %s (cnf.jkt)\n", c.BoundKey)
	}
	iss := c.Issuer
	if iss == "" {
		iss = "(none)"
	}
	id := c.ID
	if id == "" {
		id = "(none: revocation_file can name it only by subject)"
	}
	fmt.Fprintf(env.Stdout, "id        %s (jti)\naudience  %s\nissuer    %s\n", id, strings.Join(c.Audience, ", "), iss)
	state := "valid for " + time.Until(c.ExpiresAt).Round(time.Second).String()
	if time.Now().After(c.ExpiresAt) {
		state = "EXPIRED"
	}
	fmt.Fprintf(env.Stdout, "expires   %s (%s)\n(not verified: only a relay's verification means anything)\n", c.ExpiresAt.UTC().Format(time.RFC3339), state)
	return ExitOK
}
