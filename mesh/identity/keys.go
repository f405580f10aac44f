package identity

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
)

// Algorithm is a JWS signature algorithm that Postern accepts.
type Algorithm string

// The accepted algorithms. Every other alg, "none" and the HMAC family
// included, is refused before any key is looked up.
const (
	EdDSA Algorithm = "EdDSA" // Ed25519 (RFC 8037); the default
	ES256 Algorithm = "ES256" // ECDSA on P-256 with SHA-256 (RFC 7518)
)

// SigningKey is a private key that issues tokens: an Ed25519 or P-256 key,
// its key ID (kid) and its algorithm. Its String method never prints key
// material, so a SigningKey is safe to pass to a logger by mistake.
type SigningKey struct {
	alg    Algorithm
	kid    string
	ed     ed25519.PrivateKey // EdDSA
	ec     *ecdsa.PrivateKey  // ES256
	pub    *publicKey
	header string // base64url protected header, built once
}

// GenerateSigningKey returns a new random key for alg ("" means EdDSA). Its
// key ID is the key's RFC 7638 thumbprint.
func GenerateSigningKey(alg Algorithm) (*SigningKey, error) {
	switch alg {
	case "", EdDSA:
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("identity: generate Ed25519 key: %w", err)
		}
		return newSigningKey(EdDSA, "", priv, nil)
	case ES256:
		priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("identity: generate P-256 key: %w", err)
		}
		return newSigningKey(ES256, "", nil, priv)
	default:
		return nil, fmt.Errorf("identity: cannot generate a key for algorithm %s: want %q or %q", quote(string(alg)), EdDSA, ES256)
	}
}

func newSigningKey(alg Algorithm, kid string, ed ed25519.PrivateKey, ec *ecdsa.PrivateKey) (*SigningKey, error) {
	pub := &publicKey{alg: alg}
	if ed != nil {
		pub.ed = ed.Public().(ed25519.PublicKey)
	} else {
		pub.ec = &ec.PublicKey
	}
	thumb, err := pub.thumbprint()
	if err != nil {
		return nil, err
	}
	if kid == "" {
		kid = thumb
	}
	pub.kid = kid
	h, err := json.Marshal(struct {
		Alg Algorithm `json:"alg"`
		Kid string    `json:"kid"`
		Typ string    `json:"typ"`
	}{alg, kid, "JWT"})
	if err != nil {
		return nil, fmt.Errorf("identity: encode token header: %w", err)
	}
	return &SigningKey{alg: alg, kid: kid, ed: ed, ec: ec, pub: pub, header: b64.EncodeToString(h)}, nil
}

// ParseSigningKey reads a private JWK, as written by [SigningKey.MarshalJWK]:
// an OKP Ed25519 key or an EC P-256 key with its private part "d". The key ID
// is the JWK's "kid" when present, else the RFC 7638 thumbprint. A public
// JWK, another key type or a key whose public part does not match its private
// part is refused.
func ParseSigningKey(jwkJSON []byte) (*SigningKey, error) {
	j, err := parseJWK(jwkJSON)
	if err != nil {
		return nil, fmt.Errorf("identity: signing key: %w", err)
	}
	if j.D == "" {
		return nil, errors.New(`identity: signing key: the JWK has no private part "d" (is this a public key?)`)
	}
	alg, err := j.algorithm()
	if err != nil {
		return nil, fmt.Errorf("identity: signing key: %w", err)
	}
	if j.Use != "" && j.Use != "sig" {
		return nil, fmt.Errorf(`identity: signing key: "use" is %s, want "sig"`, quote(j.Use))
	}
	d, err := decodeFixed("d", j.D, 32)
	if err != nil {
		return nil, fmt.Errorf("identity: signing key: %w", err)
	}
	var sk *SigningKey
	switch alg {
	case EdDSA:
		sk, err = newSigningKey(EdDSA, j.Kid, ed25519.NewKeyFromSeed(d), nil)
	case ES256:
		var priv *ecdsa.PrivateKey
		if priv, err = ecdsa.ParseRawPrivateKey(elliptic.P256(), d); err != nil {
			return nil, errors.New(`identity: signing key: "d" is not a valid P-256 private key`)
		}
		sk, err = newSigningKey(ES256, j.Kid, nil, priv)
	}
	if err != nil {
		return nil, err
	}
	// The public half in the file must be the one the private half implies;
	// otherwise the verifiers would be handed a key that verifies nothing
	// (or, worse, someone else's).
	pub, err := j.publicKey(alg)
	if err != nil {
		return nil, fmt.Errorf("identity: signing key: %w", err)
	}
	if !pub.equal(sk.pub) {
		return nil, errors.New("identity: signing key: the public part (x, y) does not match the private part (d)")
	}
	return sk, nil
}

// KeyID returns the key ID that tokens carry in their kid header.
func (k *SigningKey) KeyID() string { return k.kid }

// Algorithm returns the key's signature algorithm.
func (k *SigningKey) Algorithm() Algorithm { return k.alg }

// String describes the key without its material.
func (k *SigningKey) String() string {
	if k == nil {
		return "identity.SigningKey(nil)"
	}
	return fmt.Sprintf("identity.SigningKey{alg: %s, kid: %s}", k.alg, k.kid)
}

// GoString is String, so that %#v does not print the private key either.
func (k *SigningKey) GoString() string { return k.String() }

// MarshalJWK returns the private key as JWK JSON, including "kid", "alg" and
// "use". It is a secret: write it to a file with mode 0600.
func (k *SigningKey) MarshalJWK() ([]byte, error) {
	j := k.pub.jwk()
	switch k.alg {
	case EdDSA:
		j.D = b64.EncodeToString(k.ed.Seed())
	case ES256:
		d, err := k.ec.Bytes()
		if err != nil {
			return nil, fmt.Errorf("identity: encode P-256 key: %w", err)
		}
		j.D = b64.EncodeToString(d)
	}
	return json.Marshal(j)
}

// PublicJWKS returns the JWK set {"keys":[...]} holding the key's public
// half, for verifiers: VerifierConfig.KeySet, or the document served at
// VerifierConfig.JWKSURL.
func (k *SigningKey) PublicJWKS() ([]byte, error) {
	return json.Marshal(jwkSet{Keys: []any{k.pub.jwk()}})
}

// MergeJWKS merges JWK sets into one, for key rotation: publish the old and
// the new public keys together until every token signed by the old key has
// expired. Keys are kept in order; a key present twice is kept once. Every
// key must be a public EdDSA (Ed25519) or ES256 (P-256) key; a set carrying
// private material, or two different keys under one kid, is refused.
func MergeJWKS(sets ...[]byte) ([]byte, error) {
	var out []any
	seen := map[string]*publicKey{}
	for i, set := range sets {
		raws, err := splitJWKS(set)
		if err != nil {
			return nil, fmt.Errorf("identity: merge key sets: set %d: %w", i+1, err)
		}
		for n, raw := range raws {
			pub, err := parsePublicJWK(raw)
			if err != nil {
				return nil, fmt.Errorf("identity: merge key sets: set %d, key %d: %w", i+1, n+1, err)
			}
			if prev, ok := seen[pub.kid]; ok {
				if !prev.equal(pub) {
					return nil, fmt.Errorf("identity: merge key sets: two different keys share kid %s", quote(pub.kid))
				}
				continue
			}
			seen[pub.kid] = pub
			out = append(out, pub.jwk())
		}
	}
	if len(out) == 0 {
		return nil, errors.New("identity: merge key sets: no keys")
	}
	return json.Marshal(jwkSet{Keys: out})
}

// publicKey is a verification key from a key set.
type publicKey struct {
	kid string
	alg Algorithm
	ed  ed25519.PublicKey // EdDSA
	ec  *ecdsa.PublicKey  // ES256
}

func (p *publicKey) equal(q *publicKey) bool {
	if p.alg != q.alg {
		return false
	}
	if p.alg == EdDSA {
		return p.ed.Equal(q.ed)
	}
	return p.ec.Equal(q.ec)
}

// jwkJSON is a JWK of the two kinds Postern uses, in a fixed member order.
type jwkJSON struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y,omitempty"`
	D   string `json:"d,omitempty"`
	Kid string `json:"kid,omitempty"`
	Alg string `json:"alg,omitempty"`
	Use string `json:"use,omitempty"`
}

type jwkSet struct {
	Keys []any `json:"keys"`
}

// coordinates returns the key's JWK x (and y for P-256), base64url.
func (p *publicKey) coordinates() (x, y string, err error) {
	if p.alg == EdDSA {
		return b64.EncodeToString(p.ed), "", nil
	}
	b, err := p.ec.Bytes() // 0x04 || X || Y
	if err != nil || len(b) != 65 {
		return "", "", errors.New("identity: encode P-256 public key")
	}
	return b64.EncodeToString(b[1:33]), b64.EncodeToString(b[33:]), nil
}

func (p *publicKey) jwk() jwkJSON {
	x, y, _ := p.coordinates() // cannot fail for a key that thumbprint accepted
	j := jwkJSON{X: x, Y: y, Kid: p.kid, Alg: string(p.alg), Use: "sig"}
	if p.alg == EdDSA {
		j.Kty, j.Crv = "OKP", "Ed25519"
	} else {
		j.Kty, j.Crv = "EC", "P-256"
	}
	return j
}

// thumbprint is the RFC 7638 JWK thumbprint (SHA-256, base64url): the
// required members in lexicographic order, no whitespace.
func (p *publicKey) thumbprint() (string, error) {
	x, y, err := p.coordinates()
	if err != nil {
		return "", err
	}
	var canon string
	if p.alg == EdDSA {
		canon = `{"crv":"Ed25519","kty":"OKP","x":"` + x + `"}`
	} else {
		canon = `{"crv":"P-256","kty":"EC","x":"` + x + `","y":"` + y + `"}`
	}
	sum := sha256.Sum256([]byte(canon))
	return b64.EncodeToString(sum[:]), nil
}

// errUnsupportedKey marks a well-formed JWK that Postern has no use for (an
// RSA key, an encryption key, ...): a verifier skips it, MergeJWKS refuses it.
var errUnsupportedKey = errors.New("unsupported key")

// parseJWK decodes one JWK object; members must have string values.
func parseJWK(data []byte) (*jwkJSON, error) {
	m, err := decodeObject(data)
	if err != nil {
		return nil, errors.New("the JWK is not a JSON object")
	}
	var j jwkJSON
	for _, f := range []struct {
		name string
		dst  *string
	}{{"kty", &j.Kty}, {"crv", &j.Crv}, {"x", &j.X}, {"y", &j.Y}, {"d", &j.D}, {"kid", &j.Kid}, {"alg", &j.Alg}, {"use", &j.Use}} {
		raw, ok := m[f.name]
		if !ok {
			continue
		}
		if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, f.dst) != nil {
			return nil, fmt.Errorf("JWK member %q must be a string", f.name)
		}
	}
	return &j, nil
}

// algorithm maps kty/crv (and alg when present) to an Algorithm.
func (j *jwkJSON) algorithm() (Algorithm, error) {
	var alg Algorithm
	switch {
	case j.Kty == "OKP" && j.Crv == "Ed25519":
		alg = EdDSA
	case j.Kty == "EC" && j.Crv == "P-256":
		alg = ES256
	default:
		return "", fmt.Errorf("%w: kty %s crv %s; want OKP Ed25519 or EC P-256", errUnsupportedKey, quote(j.Kty), quote(j.Crv))
	}
	switch {
	case j.Alg == "" || j.Alg == string(alg):
	case alg == EdDSA && j.Alg == "Ed25519": // RFC 9864's fully specified name
	default:
		return "", fmt.Errorf("%w: alg %s on a %s %s key", errUnsupportedKey, quote(j.Alg), j.Kty, j.Crv)
	}
	return alg, nil
}

// publicKey builds the public key that the JWK's x (and y) describe.
func (j *jwkJSON) publicKey(alg Algorithm) (*publicKey, error) {
	p := &publicKey{alg: alg, kid: j.Kid}
	switch alg {
	case EdDSA:
		x, err := decodeFixed("x", j.X, ed25519.PublicKeySize)
		if err != nil {
			return nil, err
		}
		p.ed = ed25519.PublicKey(x)
	case ES256:
		x, err := decodeFixed("x", j.X, 32)
		if err != nil {
			return nil, err
		}
		y, err := decodeFixed("y", j.Y, 32)
		if err != nil {
			return nil, err
		}
		// ParseUncompressedPublicKey checks that the point is on the curve.
		if p.ec, err = ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...)); err != nil {
			return nil, errors.New("x, y is not a point on P-256")
		}
	}
	if p.kid == "" {
		var err error
		if p.kid, err = p.thumbprint(); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// parsePublicJWK reads one verification key. Private material is an error
// (someone published a private key); a key of another kind wraps
// errUnsupportedKey.
func parsePublicJWK(data []byte) (*publicKey, error) {
	j, err := parseJWK(data)
	if err != nil {
		return nil, err
	}
	if j.D != "" {
		return nil, errors.New(`the key set holds a private key ("d"); publish only public keys`)
	}
	if j.Use != "" && j.Use != "sig" {
		return nil, fmt.Errorf(`%w: "use" is %s, not "sig"`, errUnsupportedKey, quote(j.Use))
	}
	alg, err := j.algorithm()
	if err != nil {
		return nil, err
	}
	return j.publicKey(alg)
}

func decodeFixed(name, s string, size int) ([]byte, error) {
	b, err := b64.DecodeString(s)
	if err != nil || len(b) != size || !isBase64URL(s) {
		return nil, fmt.Errorf("JWK member %q must be %d bytes, base64url without padding", name, size)
	}
	return b, nil
}

// splitJWKS returns the raw keys of a JWK set document.
func splitJWKS(data []byte) ([]json.RawMessage, error) {
	m, err := decodeObject(data)
	if err != nil {
		return nil, errors.New(`not a JWK set: want a JSON object {"keys":[...]}`)
	}
	raw, ok := m["keys"]
	var keys []json.RawMessage
	if !ok || !bytes.HasPrefix(raw, []byte("[")) || json.Unmarshal(raw, &keys) != nil {
		return nil, errors.New(`not a JWK set: want a "keys" array`)
	}
	return keys, nil
}

// keySet is an immutable set of verification keys, indexed by kid.
type keySet struct {
	byKID   map[string]*publicKey
	skipped int // keys of kinds Postern does not use
}

// maxKeys bounds a key set; real sets hold a handful of keys.
const maxKeys = 100

// parseKeySet reads a JWK set for a verifier. Keys of other kinds (RSA,
// encryption keys) are skipped, so that an identity provider's set may carry
// them; a malformed key, private material, two different keys under one
// kid, or no usable key at all fail the whole set.
func parseKeySet(data []byte) (*keySet, error) {
	raws, err := splitJWKS(data)
	if err != nil {
		return nil, err
	}
	if len(raws) > maxKeys {
		return nil, fmt.Errorf("key set holds %d keys, more than %d", len(raws), maxKeys)
	}
	ks := &keySet{byKID: make(map[string]*publicKey, len(raws))}
	for i, raw := range raws {
		pub, err := parsePublicJWK(raw)
		if errors.Is(err, errUnsupportedKey) {
			ks.skipped++
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("key %d: %w", i+1, err)
		}
		if prev, ok := ks.byKID[pub.kid]; ok {
			if !prev.equal(pub) {
				return nil, fmt.Errorf("two different keys share kid %s", quote(pub.kid))
			}
			continue
		}
		ks.byKID[pub.kid] = pub
	}
	if len(ks.byKID) == 0 {
		return nil, errors.New("the key set holds no EdDSA (Ed25519) or ES256 (P-256) public key")
	}
	return ks, nil
}
