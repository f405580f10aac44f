package identity

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"strings"
	"testing"
)

// TestKeyThumbprint: the thumbprint is RFC 7638's, checked against the
// RFC 8037 appendix A.3 example for Ed25519, and other key types are
// refused.
func TestKeyThumbprint(t *testing.T) {
	// RFC 8037 A.3: the thumbprint of the A.2 public key.
	pub, err := b64.DecodeString("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
	if err != nil {
		t.Fatal(err)
	}
	got, err := KeyThumbprint(ed25519.PublicKey(pub))
	if err != nil {
		t.Fatal(err)
	}
	if want := "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"; got != want {
		t.Fatalf("thumbprint %s, want RFC 8037's %s", got, want)
	}
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if tp, err := KeyThumbprint(&ec.PublicKey); err != nil || len(tp) != jktLen {
		t.Fatalf("P-256: %q, %v", tp, err)
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	for name, k := range map[string]any{"P-384": &p384.PublicKey, "RSA": &rsaKey.PublicKey, "short Ed25519": ed25519.PublicKey(pub[:16])} {
		if _, err := KeyThumbprint(k); err == nil {
			t.Errorf("%s: thumbprint of a key type bound tokens do not use", name)
		}
	}
}

// TestBoundKeyRoundTrip: Issue writes cnf.jkt, Verify reads it back, and
// CheckKey accepts exactly the proven key.
func TestBoundKeyRoundTrip(t *testing.T) {
	k := newKey(t, EdDSA)
	v := newVerifier(t, VerifierConfig{KeySet: jwks(t, k)})
	agent, _, _ := ed25519.GenerateKey(rand.Reader)
	other, _, _ := ed25519.GenerateKey(rand.Reader)
	jkt, _ := KeyThumbprint(agent)
	otherJKT, _ := KeyThumbprint(other)
	c := goodClaims(RoleAgent)
	c.BoundKey = jkt
	tok := issue(t, k, c)
	got, err := v.Verify(tok, RoleAgent)
	if err != nil {
		t.Fatal(err)
	}
	if got.BoundKey != jkt {
		t.Fatalf("BoundKey %q, want %q", got.BoundKey, jkt)
	}
	if err := got.CheckKey(jkt); err != nil {
		t.Fatalf("the bound key: %v", err)
	}
	if err := got.CheckKey(""); !errors.Is(err, ErrKeyNotProven) || Reason(err) != "key_not_proven" {
		t.Fatalf("no key proven: %v (%s)", err, Reason(err))
	}
	if err := got.CheckKey(otherJKT); !errors.Is(err, ErrKeyMismatch) || Reason(err) != "key_mismatch" {
		t.Fatalf("another key: %v (%s)", err, Reason(err))
	}
	unbound, err := v.Verify(issue(t, k, goodClaims(RoleAgent)), RoleAgent)
	if err != nil || unbound.BoundKey != "" || unbound.CheckKey("") != nil || unbound.CheckKey(jkt) != nil {
		t.Fatalf("a bearer token: BoundKey %q, err %v", unbound.BoundKey, err)
	}
	c.BoundKey = "not a thumbprint"
	if _, err := k.Issue(c); err == nil {
		t.Fatal("Issue signed a BoundKey that is not a thumbprint")
	}
}

// TestCnfClaimRefuses: a cnf this relay cannot check refuses the token
// instead of leaving it a bearer token.
func TestCnfClaimRefuses(t *testing.T) {
	k := newKey(t, EdDSA)
	v := newVerifier(t, VerifierConfig{KeySet: jwks(t, k)})
	jkt := strings.Repeat("A", jktLen)
	for name, cnf := range map[string]any{
		"x5t#S256":    map[string]any{"x5t#S256": jkt},
		"jkt and jwk": map[string]any{"jkt": jkt, "jwk": map[string]any{}},
		"string":      jkt,
		"short jkt":   map[string]any{"jkt": "abc"},
		"padded jkt":  map[string]any{"jkt": jkt[:42] + "="},
		"number jkt":  map[string]any{"jkt": 7},
		"empty":       map[string]any{},
	} {
		t.Run(name, func(t *testing.T) {
			p := payloadOf(t, RoleAgent)
			p["cnf"] = cnf
			_, err := v.Verify(craft(t, header(k), p, signWith(t, k)), RoleAgent)
			if !errors.Is(err, ErrInvalidClaim) || !strings.Contains(err.Error(), "cnf") {
				t.Fatalf("Verify = %v, want an invalid cnf claim", err)
			}
		})
	}
}
