package identity

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/subtle"
	"fmt"

	"github.com/lestrrat-go/jwx/v3/jwk"
)

// Sender-constrained tokens. A token whose cnf claim holds a key
// thumbprint is useless without that key's private half: the relay
// accepts it only on a connection whose TLS handshake proved possession
// of the key (a client certificate for it). The binding is to the key,
// not to a certificate (RFC 8705's x5t#S256), so that the holder can make
// a fresh self-signed certificate whenever it starts, and an issuer needs
// only the public key, which is what `postern token issue --bind-key`
// reads. The thumbprint is RFC 7638's over the key's JWK, the "jkt"
// confirmation method that RFC 9449 registers.

// KeyThumbprint returns the RFC 7638 SHA-256 thumbprint of pub, base64url
// without padding: the value of a token's cnf.jkt ([Claims.BoundKey]).
// pub is an Ed25519 or an ECDSA P-256 public key, the key types a client
// certificate may have here.
func KeyThumbprint(pub crypto.PublicKey) (string, error) {
	switch k := pub.(type) {
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return "", fmt.Errorf("identity: Ed25519 public key of %d bytes", len(k))
		}
	case *ecdsa.PublicKey:
		if k == nil || k.Curve != elliptic.P256() {
			return "", fmt.Errorf("identity: an ECDSA key for a bound token must be on P-256")
		}
	default:
		return "", fmt.Errorf("identity: a bound token's key is Ed25519 or ECDSA P-256, not %T", pub)
	}
	j, err := jwk.Import(pub)
	if err != nil {
		return "", fmt.Errorf("identity: key thumbprint: %w", err)
	}
	sum, err := j.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("identity: key thumbprint: %w", err)
	}
	return b64.EncodeToString(sum), nil
}

// jktLen is the length of a base64url SHA-256 thumbprint.
const jktLen = 43

// CheckKey reports whether a connection that proved possession of the
// key with thumbprint proven (empty: it proved none) may use a token with
// these claims: nil for a bearer token (BoundKey empty) and for a bound
// token whose key was proven; an error wrapping [ErrKeyNotProven] when
// no key was proven, or [ErrKeyMismatch] when another key was.
func (c *Claims) CheckKey(proven string) error {
	if c == nil || c.BoundKey == "" {
		return nil
	}
	if proven == "" {
		return reject(ErrKeyNotProven, "token of %s is bound to a key and the connection presented no client certificate for it", quote(c.Subject))
	}
	if subtle.ConstantTimeCompare([]byte(proven), []byte(c.BoundKey)) != 1 {
		return reject(ErrKeyMismatch, "token of %s is bound to another key than the client certificate's", quote(c.Subject))
	}
	return nil
}

// cnf reads the confirmation claim: absent, or an object with exactly
// one member, "jkt", a base64url SHA-256 thumbprint. Any other
// confirmation method (x5t#S256, jwk, ...) refuses the token rather than
// leaving it a bearer token: a binding this relay cannot check must not
// be ignored.
func (m claimMap) cnf() (string, error) {
	raw, ok := m.raw("cnf")
	if !ok {
		return "", nil
	}
	const shape = `token claim "cnf" must be {"jkt": "<RFC 7638 SHA-256 thumbprint>"}`
	if raw[0] != '{' {
		return "", reject(ErrInvalidClaim, shape)
	}
	obj, err := decodeObject(raw)
	if err != nil {
		return "", reject(ErrInvalidClaim, shape)
	}
	for k := range obj {
		if k != "jkt" {
			return "", reject(ErrInvalidClaim, `token claim "cnf" has member %s; only "jkt" (a key thumbprint) is supported`, quote(k))
		}
	}
	jkt, err := obj.str("jkt")
	if err != nil || len(jkt) != jktLen || !canonicalBase64URL(jkt) {
		return "", reject(ErrInvalidClaim, shape)
	}
	return jkt, nil
}
