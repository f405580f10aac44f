package identity

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

func TestGenerateSigningKey(t *testing.T) {
	tests := []struct {
		name    string
		alg     Algorithm
		want    Algorithm
		wantErr bool
	}{
		{"default is EdDSA", "", EdDSA, false},
		{"EdDSA", EdDSA, EdDSA, false},
		{"ES256", ES256, ES256, false},
		{"RS256 refused", "RS256", "", true},
		{"HS256 refused", "HS256", "", true},
		{"none refused", "none", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := GenerateSigningKey(tt.alg)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("GenerateSigningKey(%q) succeeded", tt.alg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if k.Algorithm() != tt.want {
				t.Errorf("Algorithm = %q, want %q", k.Algorithm(), tt.want)
			}
			thumb, _ := k.pub.thumbprint()
			if k.KeyID() != thumb || len(thumb) != 43 {
				t.Errorf("KeyID = %q, want the thumbprint %q", k.KeyID(), thumb)
			}
		})
	}
}

func TestSigningKeyJWKRoundTrip(t *testing.T) {
	for _, alg := range []Algorithm{EdDSA, ES256} {
		t.Run(string(alg), func(t *testing.T) {
			k := newKey(t, alg)
			priv, err := k.MarshalJWK()
			if err != nil {
				t.Fatal(err)
			}
			k2, err := ParseSigningKey(priv)
			if err != nil {
				t.Fatalf("ParseSigningKey(MarshalJWK()): %v", err)
			}
			if k2.KeyID() != k.KeyID() || k2.Algorithm() != k.Algorithm() {
				t.Errorf("reparsed key is %v, want %v", k2, k)
			}
			again, _ := k2.MarshalJWK()
			if !bytes.Equal(again, priv) {
				t.Errorf("MarshalJWK not stable:\n%s\n%s", priv, again)
			}
			// A token from the reparsed key verifies against the original set.
			v := newVerifier(t, VerifierConfig{KeySet: jwks(t, k)})
			if _, err := v.Verify(issue(t, k2, goodClaims(RoleAgent)), RoleAgent); err != nil {
				t.Fatal(err)
			}
			pub := jwks(t, k)
			if bytes.Contains(pub, []byte(`"d"`)) {
				t.Errorf("PublicJWKS carries private material: %s", pub)
			}
		})
	}
}

// RFC 8037, appendix A: a known Ed25519 key, its thumbprint and a signature.
const (
	rfc8037Key   = `{"kty":"OKP","crv":"Ed25519","d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}`
	rfc8037Thumb = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
	rfc8037Input = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc"
	rfc8037Sig   = "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
)

func TestRFC8037Vectors(t *testing.T) {
	k, err := ParseSigningKey([]byte(rfc8037Key))
	if err != nil {
		t.Fatal(err)
	}
	if k.KeyID() != rfc8037Thumb {
		t.Errorf("KeyID = %q, want the RFC 8037 thumbprint %q", k.KeyID(), rfc8037Thumb)
	}
	sig, _ := k.sign(rfc8037Input)
	if got := b64.EncodeToString(sig); got != rfc8037Sig {
		t.Errorf("signature = %s, want %s", got, rfc8037Sig)
	}
	want, _ := b64.DecodeString(rfc8037Sig)
	if !verifySignature(k.pub, rfc8037Input, want) {
		t.Error("the RFC 8037 signature does not verify")
	}
}

func TestParseSigningKeyRefuses(t *testing.T) {
	ed := newKey(t, EdDSA)
	ec := newKey(t, ES256)
	jwkOf := func(k *SigningKey, edit func(map[string]any)) []byte {
		t.Helper()
		b, _ := k.MarshalJWK()
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		edit(m)
		b, _ = json.Marshal(m)
		return b
	}
	otherX := func() string {
		b, _ := newKey(t, EdDSA).MarshalJWK()
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		return m["x"].(string)
	}()
	tests := []struct {
		name string
		jwk  []byte
		want string
	}{
		{"not JSON", []byte("nope"), "not a JSON object"},
		{"public key", jwkOf(ed, func(m map[string]any) { delete(m, "d") }), "no private part"},
		{"public x of another key", jwkOf(ed, func(m map[string]any) { m["x"] = otherX }), "does not match"},
		{"no x", jwkOf(ed, func(m map[string]any) { delete(m, "x") }), `"x"`},
		{"short d", jwkOf(ed, func(m map[string]any) { m["d"] = "AAAA" }), `"d"`},
		{"EC y of another point", jwkOf(ec, func(m map[string]any) { m["y"] = m["x"] }), "P-256"},
		{"RSA", []byte(`{"kty":"RSA","d":"AAAA","n":"AQAB","e":"AQAB"}`), "unsupported key"},
		{"encryption key", jwkOf(ed, func(m map[string]any) { m["use"] = "enc" }), `"use"`},
		{"alg does not fit the key", jwkOf(ed, func(m map[string]any) { m["alg"] = "ES256" }), "unsupported key"},
		{"member not a string", jwkOf(ed, func(m map[string]any) { m["kid"] = 5 }), `"kid"`},
		{"duplicate member", []byte(`{"kty":"OKP","kty":"EC"}`), "not a JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := ParseSigningKey(tt.jwk)
			if err == nil {
				t.Fatalf("ParseSigningKey accepted it: %v", k)
			}
			if !strings.HasPrefix(err.Error(), "identity: ") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q: want %q", err, tt.want)
			}
		})
	}
}

func TestParseSigningKeyKeepsKid(t *testing.T) {
	k, err := ParseSigningKey([]byte(strings.Replace(rfc8037Key, `{`, `{"kid":"2026-03","alg":"Ed25519",`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	if k.KeyID() != "2026-03" || k.Algorithm() != EdDSA {
		t.Errorf("key = %v, want kid 2026-03, EdDSA", k)
	}
}

func TestSigningKeyStringHidesMaterial(t *testing.T) {
	for _, alg := range []Algorithm{EdDSA, ES256} {
		t.Run(string(alg), func(t *testing.T) {
			k := newKey(t, alg)
			var m map[string]string
			b, _ := k.MarshalJWK()
			_ = json.Unmarshal(b, &m)
			out := fmt.Sprintf("%v %+v %#v %s", k, k, k, k)
			if strings.Contains(out, m["d"]) || !strings.Contains(out, k.KeyID()) {
				t.Errorf("formatted key: %s", out)
			}
		})
	}
}

func TestMergeJWKS(t *testing.T) {
	a, b := newKey(t, EdDSA), newKey(t, ES256)
	setA, setB := jwks(t, a), jwks(t, b)
	privA, _ := a.MarshalJWK()
	clash := func() []byte {
		var m map[string][]map[string]any
		_ = json.Unmarshal(jwks(t, newKey(t, EdDSA)), &m)
		m["keys"][0]["kid"] = a.KeyID()
		out, _ := json.Marshal(m)
		return out
	}()
	tests := []struct {
		name     string
		sets     [][]byte
		wantKIDs []string
		wantErr  string
	}{
		{"two keys", [][]byte{setA, setB}, []string{a.KeyID(), b.KeyID()}, ""},
		{"duplicate kept once", [][]byte{setA, setB, setA}, []string{a.KeyID(), b.KeyID()}, ""},
		{"nothing", nil, nil, "no keys"},
		{"empty set", [][]byte{[]byte(`{"keys":[]}`)}, nil, "no keys"},
		{"not a set", [][]byte{setA, []byte(`[]`)}, nil, "set 2"},
		{"private key", [][]byte{[]byte(`{"keys":[` + string(privA) + `]}`)}, nil, "private key"},
		{"two keys under one kid", [][]byte{setA, clash}, nil, "share kid"},
		{"RSA key", [][]byte{[]byte(`{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]}`)}, nil, "unsupported key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := MergeJWKS(tt.sets...)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.HasPrefix(err.Error(), "identity: ") {
					t.Fatalf("MergeJWKS = %v, want an error about %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			ks, err := parseKeySet(out)
			if err != nil {
				t.Fatal(err)
			}
			if len(ks.byKID) != len(tt.wantKIDs) {
				t.Errorf("merged set has %d keys, want %d: %s", len(ks.byKID), len(tt.wantKIDs), out)
			}
			for _, kid := range tt.wantKIDs {
				if ks.byKID[kid] == nil {
					t.Errorf("merged set lacks %q", kid)
				}
			}
		})
	}
}
