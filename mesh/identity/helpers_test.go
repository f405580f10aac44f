package identity

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// Refreshes every few milliseconds keep the JWKS tests fast.
	minRefreshInterval = 10 * time.Millisecond
	goleak.VerifyTestMain(m)
}

const (
	testAudience = "postern-mesh"
	testIssuer   = "https://issuer.test"
)

// testNow is the fixed clock of the tests' verifiers.
var testNow = time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)

func newKey(t testing.TB, alg Algorithm) *SigningKey {
	t.Helper()
	k, err := GenerateSigningKey(alg)
	if err != nil {
		t.Fatalf("GenerateSigningKey(%q): %v", alg, err)
	}
	return k
}

func jwks(t testing.TB, k *SigningKey) []byte {
	t.Helper()
	set, err := k.PublicJWKS()
	if err != nil {
		t.Fatalf("PublicJWKS: %v", err)
	}
	return set
}

// newVerifier returns a verifier for cfg with the test defaults filled in,
// closed when the test ends.
func newVerifier(t testing.TB, cfg VerifierConfig) *Verifier {
	t.Helper()
	if cfg.Audience == "" {
		cfg.Audience = testAudience
	}
	if cfg.Issuer == "" {
		cfg.Issuer = testIssuer
	}
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return testNow }
	}
	v, err := NewVerifier(context.Background(), cfg)
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	t.Cleanup(func() { v.Close() })
	return v
}

// goodClaims are valid at testNow for testAudience and testIssuer.
func goodClaims(role Role) Claims {
	c := Claims{
		Issuer:    testIssuer,
		Subject:   "agent-42",
		Audience:  []string{testAudience},
		IssuedAt:  testNow.Add(-time.Minute),
		NotBefore: testNow.Add(-time.Minute),
		ExpiresAt: testNow.Add(time.Hour),
		Role:      role,
		Groups:    []string{"coding-agents", "staging"},
		Attributes: map[string]any{
			"team":  "payments",
			"level": 3,
			"limits": map[string]any{
				"max_conns": 10,
				"regions":   []any{"eu", "us"},
				"on_call":   true,
			},
		},
	}
	if role == RoleConnector {
		c.Subject = "connector-7"
		c.Services = []Service{
			{Name: "staging-db"},
			{Name: "billing-api", Kind: "http", Environment: "prod", Labels: []string{"financial", "billing"}},
		}
	}
	return c
}

func issue(t testing.TB, k *SigningKey, c Claims) string {
	t.Helper()
	tok, err := k.Issue(c)
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	return tok
}

// craft builds a token from any header and payload, signed by sign (nil:
// empty signature). It lets tests say what Issue refuses to say.
func craft(t testing.TB, header, payload any, sign func(input string) []byte) string {
	t.Helper()
	enc := func(v any) string {
		if s, ok := v.(string); ok { // raw JSON text
			return b64.EncodeToString([]byte(s))
		}
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("craft: %v", err)
		}
		return b64.EncodeToString(b)
	}
	input := enc(header) + "." + enc(payload)
	var sig []byte
	if sign != nil {
		sig = sign(input)
	}
	return input + "." + b64.EncodeToString(sig)
}

// signWith signs with k whatever alg the header claims.
func signWith(t testing.TB, k *SigningKey) func(string) []byte {
	return func(input string) []byte {
		t.Helper()
		sig, err := k.sign(input)
		if err != nil {
			t.Fatalf("sign: %v", err)
		}
		return sig
	}
}

func hmacSHA256(secret []byte) func(string) []byte {
	return func(input string) []byte {
		m := hmac.New(sha256.New, secret)
		m.Write([]byte(input))
		return m.Sum(nil)
	}
}

// payloadOf returns goodClaims(role) as a JSON object that tests can edit.
func payloadOf(t testing.TB, role Role) map[string]any {
	t.Helper()
	c := goodClaims(role)
	c.ID = "jti-1"
	services, _ := encodeServices(c.Services)
	w := wireClaims{
		Issuer: c.Issuer, Subject: c.Subject, Audience: c.Audience, ID: c.ID, Role: c.Role,
		Groups: c.Groups, Attributes: c.Attributes, Services: services,
	}
	w.ExpiresAt, _ = unixSeconds("exp", c.ExpiresAt)
	w.NotBefore, _ = unixSeconds("nbf", c.NotBefore)
	w.IssuedAt, _ = unixSeconds("iat", c.IssuedAt)
	b, _ := json.Marshal(w)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func header(k *SigningKey) map[string]any {
	return map[string]any{"alg": string(k.Algorithm()), "kid": k.KeyID(), "typ": "JWT"}
}

// assertNoLeak fails if msg contains the token or any long part of it.
func assertNoLeak(t testing.TB, msg, token string) {
	t.Helper()
	if token != "" && strings.Contains(msg, token) {
		t.Errorf("error text contains the token: %q", msg)
	}
	for i, part := range strings.Split(token, ".") {
		if len(part) >= 12 && strings.Contains(msg, part) {
			t.Errorf("error text contains part %d of the token: %q", i, msg)
		}
	}
}
