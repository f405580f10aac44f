package identity

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
)

// Algorithm is a JWS signature algorithm that Postern accepts.
type Algorithm string

// The accepted algorithms. Every other alg, "none" and the HMAC family
// included, is refused before any key is looked up.
const (
	EdDSA Algorithm = "EdDSA" // Ed25519 (RFC 8037); the default
	ES256 Algorithm = "ES256" // ECDSA on P-256 with SHA-256 (RFC 7518)
)

// jwa returns the jwx name of a, which must be EdDSA or ES256.
func (a Algorithm) jwa() jwa.SignatureAlgorithm {
	if a == ES256 {
		return jwa.ES256()
	}
	return jwa.EdDSA()
}

// SigningKey is a private key that issues tokens: an Ed25519 or P-256 key,
// its key ID (kid) and its algorithm. Its String method never prints key
// material, so a SigningKey is safe to pass to a logger by mistake.
type SigningKey struct {
	alg    Algorithm
	kid    string
	raw    crypto.Signer // what jws.Sign signs with: a jwk.Key would be converted on every call
	priv   jwk.Key       // the same key with kid, alg and use, as MarshalJWK writes it
	pub    *publicKey
	header jws.Headers // kid and typ "JWT"; jws.Sign adds alg
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
		return newSigningKey(EdDSA, "", priv)
	case ES256:
		priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("identity: generate P-256 key: %w", err)
		}
		return newSigningKey(ES256, "", priv)
	default:
		return nil, fmt.Errorf("identity: cannot generate a key for algorithm %s: want %q or %q", quote(string(alg)), EdDSA, ES256)
	}
}

// newSigningKey wraps raw, an ed25519.PrivateKey or a *ecdsa.PrivateKey on
// P-256. An empty kid means the RFC 7638 thumbprint.
func newSigningKey(alg Algorithm, kid string, raw crypto.Signer) (*SigningKey, error) {
	pub, err := newPublicKey(alg, kid, raw.Public())
	if err != nil {
		return nil, err
	}
	priv, err := jwk.Import(raw)
	if err != nil { // jwx's text is not passed on: it could describe the private key
		return nil, fmt.Errorf("identity: cannot represent the %s private key as a JWK", alg)
	}
	if err := setKeyMembers(priv, pub.kid, alg); err != nil {
		return nil, err
	}
	header := jws.NewHeaders()
	if err := header.Set(jws.KeyIDKey, pub.kid); err != nil {
		return nil, fmt.Errorf("identity: token header: %w", err)
	}
	if err := header.Set(jws.TypeKey, "JWT"); err != nil {
		return nil, fmt.Errorf("identity: token header: %w", err)
	}
	return &SigningKey{alg: alg, kid: pub.kid, raw: raw, priv: priv, pub: pub, header: header}, nil
}

// ParseSigningKey reads a private JWK, as written by [SigningKey.MarshalJWK]:
// an OKP Ed25519 key or an EC P-256 key with its private part "d". The key ID
// is the JWK's "kid" when present, else the RFC 7638 thumbprint. A public
// JWK, another key type or a key whose public part does not match its private
// part is refused.
func ParseSigningKey(jwkJSON []byte) (*SigningKey, error) {
	j, err := peekJWK(jwkJSON)
	if err != nil {
		return nil, fmt.Errorf("identity: signing key: %w", err)
	}
	if j.d == "" {
		return nil, errors.New(`identity: signing key: the JWK has no private part "d" (is this a public key?)`)
	}
	alg, err := j.algorithm()
	if err != nil {
		return nil, fmt.Errorf("identity: signing key: %w", err)
	}
	if j.use != "" && j.use != "sig" {
		return nil, fmt.Errorf(`identity: signing key: "use" is %s, want "sig"`, quote(j.use))
	}
	if err := j.required(alg); err != nil {
		return nil, fmt.Errorf("identity: signing key: %w", err)
	}
	// jwx decodes the members and checks their sizes, and that (x, y) is on
	// the curve; none of its error text reaches our message, which could
	// otherwise quote key material.
	key, err := jwk.ParseKey(jwkJSON)
	if err != nil {
		return nil, fmt.Errorf("identity: signing key: %w", j.invalid(alg))
	}
	var raw any
	if err := jwk.Export(key, &raw); err != nil {
		if alg == EdDSA { // jwx refuses here an x that is not the public half of d
			return nil, errMismatch
		}
		return nil, fmt.Errorf("identity: signing key: %w", j.invalid(alg))
	}
	var signer crypto.Signer
	switch priv := raw.(type) {
	case ed25519.PrivateKey:
		signer = priv
	case *ecdsa.PrivateKey:
		// jwx builds the key from d and (x, y) without checking that they
		// belong together; derive the public point from d and compare.
		d, err := priv.Bytes()
		if err != nil {
			return nil, errors.New(`identity: signing key: "d" is not a valid P-256 private key`)
		}
		derived, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), d)
		if err != nil {
			return nil, errors.New(`identity: signing key: "d" is not a valid P-256 private key`)
		}
		if !derived.PublicKey.Equal(&priv.PublicKey) {
			return nil, errMismatch
		}
		signer = derived
	default:
		return nil, fmt.Errorf("identity: signing key: %w", j.invalid(alg))
	}
	// The public half in the file must be the one the private half implies
	// (checked above); otherwise the verifiers would be handed a key that
	// verifies nothing (or, worse, someone else's).
	return newSigningKey(alg, j.kid, signer)
}

var errMismatch = errors.New("identity: signing key: the public part (x, y) does not match the private part (d)")

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
	b, err := json.Marshal(k.priv)
	if err != nil {
		return nil, errors.New("identity: encode the signing key as a JWK")
	}
	return b, nil
}

// PublicJWKS returns the JWK set {"keys":[...]} holding the key's public
// half, for verifiers: VerifierConfig.KeySet, or the document served at
// VerifierConfig.JWKSURL.
func (k *SigningKey) PublicJWKS() ([]byte, error) {
	set := jwk.NewSet()
	if err := set.AddKey(k.pub.key); err != nil {
		return nil, fmt.Errorf("identity: public key set: %w", err)
	}
	return json.Marshal(set)
}

// MergeJWKS merges JWK sets into one, for key rotation: publish the old and
// the new public keys together until every token signed by the old key has
// expired. Keys are kept in order; a key present twice is kept once. Every
// key must be a public EdDSA (Ed25519) or ES256 (P-256) key; a set carrying
// private material, or two different keys under one kid, is refused.
func MergeJWKS(sets ...[]byte) ([]byte, error) {
	out := jwk.NewSet()
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
			if err := out.AddKey(pub.key); err != nil {
				return nil, fmt.Errorf("identity: merge key sets: %w", err)
			}
		}
	}
	if out.Len() == 0 {
		return nil, errors.New("identity: merge key sets: no keys")
	}
	return json.Marshal(out)
}

// publicKey is a verification key from a key set.
type publicKey struct {
	kid string
	alg Algorithm
	key jwk.Key           // public JWK with kid, alg and use, as published and as jws.Verify uses it
	ed  ed25519.PublicKey // EdDSA
	ec  *ecdsa.PublicKey  // ES256
}

// newPublicKey builds the verification key for raw, an ed25519.PublicKey or
// a *ecdsa.PublicKey. An empty kid means the RFC 7638 thumbprint.
func newPublicKey(alg Algorithm, kid string, raw crypto.PublicKey) (*publicKey, error) {
	p := &publicKey{alg: alg}
	switch k := raw.(type) {
	case ed25519.PublicKey:
		if alg == EdDSA && len(k) == ed25519.PublicKeySize {
			p.ed = k
		}
	case *ecdsa.PublicKey:
		if alg == ES256 && k.Curve == elliptic.P256() {
			p.ec = k
		}
	}
	if p.ed == nil && p.ec == nil {
		return nil, fmt.Errorf("identity: a %T is not an %s public key", raw, alg)
	}
	var err error
	if p.key, err = jwk.Import(raw); err != nil {
		return nil, fmt.Errorf("identity: cannot represent the %s public key as a JWK", alg)
	}
	if kid == "" {
		if kid, err = p.thumbprint(); err != nil {
			return nil, err
		}
	}
	p.kid = kid
	if err := setKeyMembers(p.key, kid, alg); err != nil {
		return nil, err
	}
	return p, nil
}

// setKeyMembers sets the members that a Postern key always carries. With
// "alg" set, jws.Verify takes the algorithm from the key, never from the
// token.
func setKeyMembers(k jwk.Key, kid string, alg Algorithm) error {
	for _, m := range []struct {
		name  string
		value any
	}{{jwk.KeyIDKey, kid}, {jwk.AlgorithmKey, alg.jwa()}, {jwk.KeyUsageKey, jwk.ForSignature}} {
		if err := k.Set(m.name, m.value); err != nil {
			return fmt.Errorf("identity: set JWK member %q: %w", m.name, err)
		}
	}
	return nil
}

// thumbprint is the key's RFC 7638 thumbprint (SHA-256, base64url).
func (p *publicKey) thumbprint() (string, error) {
	sum, err := p.key.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("identity: key thumbprint: %w", err)
	}
	return b64.EncodeToString(sum), nil
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

// jwkMembers are the members of a JWK that this package reads before jwx
// parses it: enough to refuse duplicate members (jwx keeps the last one),
// to tell the kinds of key Postern uses from the others (which a verifier
// skips, and jwx would reject rather than skip) and to name a missing
// member.
type jwkMembers struct {
	kty, crv, x, y, d, kid, alg, use string
}

// peekJWK decodes one JWK object; the members it reads must be strings.
func peekJWK(data []byte) (*jwkMembers, error) {
	m, err := decodeObject(data)
	if err != nil {
		return nil, errors.New("the JWK is not a JSON object")
	}
	var j jwkMembers
	for _, f := range []struct {
		name string
		dst  *string
	}{{"kty", &j.kty}, {"crv", &j.crv}, {"x", &j.x}, {"y", &j.y}, {"d", &j.d}, {"kid", &j.kid}, {"alg", &j.alg}, {"use", &j.use}} {
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
func (j *jwkMembers) algorithm() (Algorithm, error) {
	var alg Algorithm
	switch {
	case j.kty == "OKP" && j.crv == "Ed25519":
		alg = EdDSA
	case j.kty == "EC" && j.crv == "P-256":
		alg = ES256
	default:
		return "", fmt.Errorf("%w: kty %s crv %s; want OKP Ed25519 or EC P-256", errUnsupportedKey, quote(j.kty), quote(j.crv))
	}
	switch {
	case j.alg == "" || j.alg == string(alg):
	case alg == EdDSA && j.alg == "Ed25519": // RFC 9864's fully specified name
	default:
		return "", fmt.Errorf("%w: alg %s on a %s %s key", errUnsupportedKey, quote(j.alg), j.kty, j.crv)
	}
	return alg, nil
}

// required names the first coordinate the key's kind needs and lacks.
func (j *jwkMembers) required(alg Algorithm) error {
	if j.x == "" {
		return errors.New(`JWK member "x" is missing`)
	}
	if alg == ES256 && j.y == "" {
		return errors.New(`JWK member "y" is missing`)
	}
	return nil
}

// invalid describes a key that jwx refused to decode.
func (j *jwkMembers) invalid(alg Algorithm) error {
	switch {
	case alg == EdDSA && j.d != "":
		return errors.New(`JWK members "x" and "d" must be 32 bytes each, base64url without padding`)
	case alg == EdDSA:
		return errors.New(`JWK member "x" must be 32 bytes, base64url without padding`)
	case j.d != "":
		return errors.New(`JWK members "x", "y" and "d" must be 32 bytes each, base64url without padding, and (x, y) a point on P-256`)
	default:
		return errors.New(`JWK members "x", "y" are not a point on P-256: want 32 bytes each, base64url without padding`)
	}
}

// errUnsupportedKey marks a well-formed JWK that Postern has no use for (an
// RSA key, an encryption key, ...): a verifier skips it, MergeJWKS refuses it.
var errUnsupportedKey = errors.New("unsupported key")

// parsePublicJWK reads one verification key. Private material is an error
// (someone published a private key); a key of another kind wraps
// errUnsupportedKey.
func parsePublicJWK(data []byte) (*publicKey, error) {
	j, err := peekJWK(data)
	if err != nil {
		return nil, err
	}
	if j.d != "" {
		return nil, errors.New(`the key set holds a private key ("d"); publish only public keys`)
	}
	if j.use != "" && j.use != "sig" {
		return nil, fmt.Errorf(`%w: "use" is %s, not "sig"`, errUnsupportedKey, quote(j.use))
	}
	alg, err := j.algorithm()
	if err != nil {
		return nil, err
	}
	if err := j.required(alg); err != nil {
		return nil, err
	}
	key, err := jwk.ParseKey(data)
	if err != nil {
		return nil, j.invalid(alg)
	}
	var raw any
	if err := jwk.Export(key, &raw); err != nil {
		return nil, j.invalid(alg)
	}
	// Rebuild the key from its raw form, so that the verifier's copy holds
	// the members Postern sets and nothing else from the document.
	return newPublicKey(alg, j.kid, raw)
}

// splitJWKS returns the raw keys of a JWK set document.
func splitJWKS(data []byte) ([]json.RawMessage, error) {
	m, err := decodeObject(data)
	if err != nil {
		return nil, errors.New(`not a JWK set: want a JSON object {"keys":[...]}`)
	}
	raw, ok := m["keys"]
	var keys []json.RawMessage
	if !ok || len(raw) == 0 || raw[0] != '[' || json.Unmarshal(raw, &keys) != nil {
		return nil, errors.New(`not a JWK set: want a "keys" array`)
	}
	return keys, nil
}

// keySet is an immutable set of verification keys, indexed by kid.
type keySet struct {
	byKID   map[string]*publicKey
	set     jwk.Set // the same keys, for jws.Verify
	skipped int     // keys of kinds Postern does not use

	// verifyOptions make jws.Verify check a compact token against set and
	// nothing else (never a key that the token names or carries): the key
	// whose kid the token names, under that key's alg, which must equal the
	// header's alg.
	verifyOptions []jws.VerifyOption
}

// maxKeys bounds a key set; real sets hold a handful of keys.
const maxKeys = 100

// parseKeySet reads a JWK set for a verifier. Keys of other kinds (RSA,
// encryption keys) are skipped, so that an identity provider's set may carry
// them; a malformed key, private material, two different keys under one
// kid, or no usable key at all fail the whole set.
//
// jwk.Parse is not used on the document: it fails the whole set on a key it
// cannot use (an RSA key under 2048 bits, say) where Postern skips it, and it
// takes duplicate members silently.
func parseKeySet(data []byte) (*keySet, error) {
	raws, err := splitJWKS(data)
	if err != nil {
		return nil, err
	}
	if len(raws) > maxKeys {
		return nil, fmt.Errorf("key set holds %d keys, more than %d", len(raws), maxKeys)
	}
	ks := &keySet{byKID: make(map[string]*publicKey, len(raws)), set: jwk.NewSet()}
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
		if err := ks.set.AddKey(pub.key); err != nil {
			return nil, fmt.Errorf("key %d: %w", i+1, err)
		}
	}
	if len(ks.byKID) == 0 {
		return nil, errors.New("the key set holds no EdDSA (Ed25519) or ES256 (P-256) public key")
	}
	ks.verifyOptions = []jws.VerifyOption{
		jws.WithCompact(),
		jws.WithKeySet(ks.set, jws.WithRequireKid(true)),
		jws.WithAlgorithmMatch(true),
		jws.WithCritValidation(true),
	}
	return ks, nil
}
