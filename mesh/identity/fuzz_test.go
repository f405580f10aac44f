package identity

import (
	"strings"
	"testing"
	"time"
)

// FuzzVerify feeds arbitrary strings to Verify. It must never panic, every
// refusal must carry a sentinel and leak nothing, and it must never accept
// content that this test did not sign.
func FuzzVerify(f *testing.F) {
	ed, ec := newKey(f, EdDSA), newKey(f, ES256)
	set, err := MergeJWKS(jwks(f, ed), jwks(f, ec))
	if err != nil {
		f.Fatal(err)
	}
	v := newVerifier(f, VerifierConfig{KeySet: set})

	signed := map[string]bool{} // signing inputs (header.payload) we produced
	add := func(tok string) {
		signed[tok[:strings.LastIndexByte(tok, '.')]] = true
		f.Add(tok)
	}
	add(issue(f, ed, goodClaims(RoleAgent)))
	add(issue(f, ed, goodClaims(RoleConnector)))
	add(issue(f, ec, goodClaims(RoleAgent)))
	expired := goodClaims(RoleAgent)
	expired.ExpiresAt = testNow.Add(-time.Hour)
	add(issue(f, ed, expired))
	bound := goodClaims(RoleAgent)
	bound.BoundKey = strings.Repeat("A", 43)
	add(issue(f, ed, bound))

	p := payloadOf(f, RoleAgent)
	for _, bad := range []string{
		"", "garbage", "a.b", "a.b.c.d", "!!!.e30.", "e30.e30.", "e30.e30.e30",
		craft(f, map[string]any{"alg": "none"}, p, nil),
		craft(f, map[string]any{"alg": "HS256", "kid": ed.KeyID()}, p, hmacSHA256(ed.pub.ed)),
		craft(f, map[string]any{"alg": "ES256", "kid": ed.KeyID()}, p, signWith(f, ed)),
		craft(f, `{"alg":"EdDSA","alg":"none"}`, p, nil),
		craft(f, header(ed), `{"sub":1}`, nil),
		strings.Repeat("A", DefaultMaxTokenSize+1),
	} {
		f.Add(bad)
	}

	f.Fuzz(func(t *testing.T, token string) {
		for _, role := range []Role{RoleAgent, RoleConnector} {
			c, err := v.Verify(token, role)
			if err == nil {
				i := strings.LastIndexByte(token, '.')
				if c == nil || i < 0 || !signed[token[:i]] {
					t.Fatalf("Verify accepted content nobody signed: %q", token)
				}
				continue
			}
			if c != nil {
				t.Fatal("claims returned with an error")
			}
			if r := Reason(err); r == "invalid_token" || r == "ok" {
				t.Fatalf("error without a sentinel: %v", err)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "identity: ") {
				t.Fatalf("error %q", msg)
			}
			if len(token) >= 16 && strings.Contains(msg, token) {
				t.Fatalf("error contains the token: %q", msg)
			}
		}
	})
}

// FuzzParseUnverified must never panic.
func FuzzParseUnverified(f *testing.F) {
	k := newKey(f, ES256)
	f.Add(issue(f, k, goodClaims(RoleConnector)))
	f.Add(craft(f, header(k), `{"exp":1.5,"aud":["a",null],"groups":[],"attributes":{"a":{"b":[1,{}]}}}`, nil))
	f.Add(craft(f, header(k), `{"role":"connector","services":["a",{"name":"b","kind":"http","environment":"prod","labels":["financial"]}]}`, nil))
	f.Add(craft(f, header(k), `{"role":"connector","services":[{"name":"b","kind":"tcp","kind":"http"},{"name":"c","labels":[null]}]}`, nil))
	f.Add("e30.e30.")
	f.Fuzz(func(t *testing.T, token string) {
		c, err := ParseUnverified(token)
		if (c == nil) == (err == nil) {
			t.Fatalf("ParseUnverified = %v, %v", c, err)
		}
		// Whatever services claim is read, Issue would write again: the
		// parser accepts nothing the issuer's rules refuse.
		if c != nil {
			if err := checkServices(c.Services); err != nil {
				t.Fatalf("parsed services that Issue refuses: %v", err)
			}
		}
	})
}

// FuzzParseKeys feeds arbitrary bytes to the JWK and JWK set parsers.
func FuzzParseKeys(f *testing.F) {
	for _, alg := range []Algorithm{EdDSA, ES256} {
		k := newKey(f, alg)
		f.Add(jwks(f, k))
		priv, _ := k.MarshalJWK()
		f.Add(priv)
	}
	f.Add([]byte(`{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]}`))
	f.Add([]byte(rfc8037Key))
	f.Fuzz(func(t *testing.T, data []byte) {
		if ks, err := parseKeySet(data); err == nil {
			for kid, k := range ks.byKID {
				if k == nil || k.kid != kid || (k.alg != EdDSA && k.alg != ES256) {
					t.Fatalf("bad key %q: %+v", kid, k)
				}
			}
		}
		if k, err := ParseSigningKey(data); err == nil {
			if _, err := k.Issue(Claims{Role: RoleAgent}); err != nil {
				t.Fatalf("parsed key cannot sign: %v", err)
			}
		}
		_, _ = MergeJWKS(data)
	})
}
