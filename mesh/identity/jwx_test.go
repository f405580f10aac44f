package identity

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/lestrrat-go/jwx/v3/jws"
)

// Signing and verifying a bare signing input, whatever a header says, is
// something only tests need: Issue and Verify go through jws.Sign and
// jws.Verify with a whole token. These helpers use the same jwx algorithms.

// sign signs input with k under k's algorithm.
func (k *SigningKey) sign(input string) ([]byte, error) {
	signer, err := jws.SignerFor(k.alg.jwa())
	if err != nil {
		return nil, err
	}
	return signer.Sign(k.raw, []byte(input))
}

// verifySignature reports whether sig over input verifies with key.
func verifySignature(key *publicKey, input string, sig []byte) bool {
	verifier, err := jws.VerifierFor(key.alg.jwa())
	if err != nil {
		return false
	}
	return verifier.Verify(key.key, []byte(input), sig) == nil
}

// TestVerifyUsesOnlyTheKeySet: a token cannot bring its own key. jwx knows
// the jwk, jku and x5u header members; the verifier must give it the key set
// and nothing else.
func TestVerifyUsesOnlyTheKeySet(t *testing.T) {
	ours, attacker := newKey(t, EdDSA), newKey(t, EdDSA)
	v := newVerifier(t, VerifierConfig{KeySet: jwks(t, ours)})
	var set struct{ Keys []map[string]any }
	if err := json.Unmarshal(jwks(t, attacker), &set); err != nil {
		t.Fatal(err)
	}
	attackerJWK := set.Keys[0]
	jku := newJWKSServer(t, jwks(t, attacker))

	tests := []struct {
		name string
		kid  string
		key  string // the header member naming the attacker's key
	}{
		{"embedded jwk, attacker's kid", attacker.KeyID(), "jwk"},
		{"embedded jwk, our kid", ours.KeyID(), "jwk"},
		{"jku, attacker's kid", attacker.KeyID(), "jku"},
		{"jku, our kid", ours.KeyID(), "jku"},
		{"x5u, our kid", ours.KeyID(), "x5u"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := map[string]any{"alg": "EdDSA", "kid": tt.kid, "typ": "JWT"}
			if tt.key == "jwk" {
				h["jwk"] = attackerJWK
			} else {
				h[tt.key] = jku.URL
			}
			tok := craft(t, h, payloadOf(t, RoleAgent), signWith(t, attacker))
			_, err := v.Verify(tok, RoleAgent)
			if !errors.Is(err, ErrSignature) {
				t.Fatalf("Verify = %v, want ErrSignature", err)
			}
			assertNoLeak(t, err.Error(), tok)
		})
	}
	if n := jku.hits.Load(); n != 0 {
		t.Errorf("the verifier fetched a URL named by a token %d times", n)
	}
}

// TestVerifyOneSpelling: jwx decodes base64 leniently, so the structure step
// must refuse every spelling of a signed token but the canonical one.
func TestVerifyOneSpelling(t *testing.T) {
	k := newKey(t, EdDSA)
	v := newVerifier(t, VerifierConfig{KeySet: jwks(t, k)})
	var tok string
	var parts []string
	for c := goodClaims(RoleAgent); ; c.Subject += "x" {
		// A signature whose encoding uses the URL-only characters, and a
		// payload whose last character has unused bits.
		tok = issue(t, k, c)
		parts = strings.Split(tok, ".")
		if strings.ContainsAny(parts[2], "-_") && len(parts[1])%4 != 0 {
			break
		}
	}
	if _, err := v.Verify(tok, RoleAgent); err != nil {
		t.Fatal(err)
	}
	sig := parts[2]
	reencode := func(enc *base64.Encoding) string {
		var out []string
		for _, p := range parts {
			b, err := b64.DecodeString(p)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, enc.EncodeToString(b))
		}
		return strings.Join(out, ".")
	}
	// Same bytes, another spelling: the last character's low bit is unused.
	setUnusedBit := func(part string) string {
		i := strings.IndexByte(base64URLAlphabet, part[len(part)-1])
		return part[:len(part)-1] + string(base64URLAlphabet[i|1])
	}
	tests := []struct {
		name, token string
	}{
		{"padded", reencode(base64.URLEncoding)},
		{"standard alphabet", reencode(base64.RawStdEncoding)},
		{"standard alphabet, padded", reencode(base64.StdEncoding)},
		{"signature in the standard alphabet", parts[0] + "." + parts[1] + "." + strings.NewReplacer("-", "+", "_", "/").Replace(sig)},
		{"payload with an unused bit set", parts[0] + "." + setUnusedBit(parts[1]) + "." + sig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.token == tok {
				t.Fatal("the test did not change the token")
			}
			// Why the check is ours: jwx alone may accept these (logged, not
			// asserted, as jwx's leniency is not ours to pin).
			_, err := jws.Verify([]byte(tt.token), v.keys.Load().verifyOptions...)
			t.Logf("jws.Verify alone: %v", err)
			if _, err := v.Verify(tt.token, RoleAgent); !errors.Is(err, ErrMalformed) {
				t.Fatalf("Verify = %v, want ErrMalformed", err)
			}
		})
	}
}

// TestVerifyHeaderMembersJWXTypes: members that the structure step ignores
// but jwx types are refused as malformed when they have the wrong type, and
// "b64" is refused whatever its value.
func TestVerifyHeaderMembersJWXTypes(t *testing.T) {
	k := newKey(t, EdDSA)
	v := newVerifier(t, VerifierConfig{KeySet: jwks(t, k)})
	tests := []struct {
		name  string
		edit  func(h map[string]any)
		msg   string
		wants error
	}{
		{"x5c not an array", func(h map[string]any) { h["x5c"] = 5 }, "wrong type", ErrMalformed},
		{"jwk not an object", func(h map[string]any) { h["jwk"] = "secret-looking-value-xyz" }, "wrong type", ErrMalformed},
		{"b64 false", func(h map[string]any) { h["b64"] = false }, `"b64"`, ErrMalformed},
		{"b64 true", func(h map[string]any) { h["b64"] = true }, `"b64"`, ErrMalformed},
		{"unknown member", func(h map[string]any) { h["x-trace"] = 7 }, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := header(k)
			tt.edit(h)
			tok := craft(t, h, payloadOf(t, RoleAgent), signWith(t, k))
			_, err := v.Verify(tok, RoleAgent)
			if !errors.Is(err, tt.wants) || (err == nil) != (tt.wants == nil) {
				t.Fatalf("Verify = %v, want %v", err, tt.wants)
			}
			if err == nil {
				return
			}
			if !strings.Contains(err.Error(), tt.msg) || strings.Contains(err.Error(), "secret-looking") {
				t.Errorf("error %q: want %q and nothing from the token", err, tt.msg)
			}
			assertNoLeak(t, err.Error(), tok)
		})
	}
}

// TestIssuedHeader pins the protected header that jws.Sign writes.
func TestIssuedHeader(t *testing.T) {
	for _, alg := range []Algorithm{EdDSA, ES256} {
		t.Run(string(alg), func(t *testing.T) {
			k := newKey(t, alg)
			tok := issue(t, k, goodClaims(RoleAgent))
			h, err := b64.DecodeString(tok[:strings.IndexByte(tok, '.')])
			if err != nil {
				t.Fatal(err)
			}
			want := `{"alg":"` + string(alg) + `","kid":"` + k.KeyID() + `","typ":"JWT"}`
			if string(h) != want {
				t.Errorf("header = %s, want %s", h, want)
			}
			sig, _ := b64.DecodeString(tok[strings.LastIndexByte(tok, '.')+1:])
			if len(sig) != 64 {
				t.Errorf("signature is %d bytes, want 64 (R || S for ES256, not DER)", len(sig))
			}
		})
	}
}

// TestIssueConcurrent: a SigningKey, with the jws header it shares between
// calls, signs from many goroutines (run with -race).
func TestIssueConcurrent(t *testing.T) {
	for _, alg := range []Algorithm{EdDSA, ES256} {
		t.Run(string(alg), func(t *testing.T) {
			k := newKey(t, alg)
			v := newVerifier(t, VerifierConfig{KeySet: jwks(t, k)})
			var wg sync.WaitGroup
			for range 8 {
				wg.Go(func() {
					for range 20 {
						tok, err := k.Issue(goodClaims(RoleAgent))
						if err != nil {
							t.Errorf("Issue: %v", err)
							return
						}
						if _, err := v.Verify(tok, RoleAgent); err != nil {
							t.Errorf("Verify: %v", err)
							return
						}
					}
				})
			}
			wg.Wait()
		})
	}
}
