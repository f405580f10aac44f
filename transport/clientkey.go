package transport

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"time"
)

// A client's own key. A token bound to a key (sender-constrained, see
// identity.Claims.BoundKey) is accepted only from a client that proves it
// holds the key: the client presents a certificate for it in the TLS
// handshake, and TLS makes it sign the handshake with the private key.
// The certificate is self-signed and made afresh from the key; the relay
// checks its key, never its issuer or dates.

// GenerateClientKey makes an Ed25519 key for a client to prove in its
// handshakes. A program that asks for its own token generates one at
// start, keeps it in memory and has the token bound to its public key.
func GenerateClientKey() (crypto.Signer, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	return priv, nil
}

// MarshalClientKey encodes key as a PEM "PRIVATE KEY" (PKCS #8) block.
func MarshalClientKey(key crypto.Signer) ([]byte, error) {
	if err := checkClientKey(key.Public()); err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("transport: encode client key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// MarshalPublicKey encodes pub as a PEM "PUBLIC KEY" (PKIX) block: the
// file an issuer reads to bind tokens to the key.
func MarshalPublicKey(pub crypto.PublicKey) ([]byte, error) {
	if err := checkClientKey(pub); err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("transport: encode public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// ParseClientKey decodes a PEM "PRIVATE KEY" (PKCS #8) block holding an
// Ed25519 or ECDSA P-256 key, as MarshalClientKey writes it or
// `openssl genpkey -algorithm ed25519` does.
func ParseClientKey(data []byte) (crypto.Signer, error) {
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "PRIVATE KEY" {
		return nil, errors.New(`transport: client key: want a PEM "PRIVATE KEY" (PKCS #8) block`)
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("transport: client key: %w", err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("transport: client key: %T is not a signing key", k)
	}
	if err := checkClientKey(s.Public()); err != nil {
		return nil, err
	}
	return s, nil
}

// ParsePublicKey decodes the public key of a PEM "PUBLIC KEY" block, of
// a "PRIVATE KEY" block or of a "CERTIFICATE": whichever file an issuer
// is handed.
func ParsePublicKey(data []byte) (crypto.PublicKey, error) {
	b, _ := pem.Decode(data)
	if b == nil {
		return nil, errors.New(`transport: public key: no PEM block (want "PUBLIC KEY", "PRIVATE KEY" or "CERTIFICATE")`)
	}
	var pub crypto.PublicKey
	switch b.Type {
	case "PUBLIC KEY":
		k, err := x509.ParsePKIXPublicKey(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("transport: public key: %w", err)
		}
		pub = k
	case "PRIVATE KEY":
		s, err := ParseClientKey(data)
		if err != nil {
			return nil, err
		}
		pub = s.Public()
	case "CERTIFICATE":
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("transport: public key: %w", err)
		}
		pub = c.PublicKey
	default:
		return nil, fmt.Errorf(`transport: public key: a PEM %q block; want "PUBLIC KEY", "PRIVATE KEY" or "CERTIFICATE"`, b.Type)
	}
	if err := checkClientKey(pub); err != nil {
		return nil, err
	}
	return pub, nil
}

// checkClientKey accepts the key types TLS 1.3 client certificates and
// bound tokens share here: Ed25519 and ECDSA P-256.
func checkClientKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case ed25519.PublicKey:
		return nil
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() {
			return nil
		}
	}
	return fmt.Errorf("transport: client key: want Ed25519 or ECDSA P-256, not %T", pub)
}

// ClientCertificate makes a self-signed client certificate for key, to
// prove possession of it in a TLS handshake.
func ClientCertificate(key crypto.Signer) (tls.Certificate, error) {
	if key == nil {
		return tls.Certificate{}, errors.New("transport: client certificate: no key")
	}
	if err := checkClientKey(key.Public()); err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "postern client"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(10 * 365 * 24 * time.Hour), // never checked: the key is what counts
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("transport: client certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// ServerRequestsClientKeys sets c, a server's TLS configuration, to ask
// clients for a certificate without requiring one or checking its chain:
// the certificate only proves a key (TLS verifies the client's signature
// of the handshake), and what the key may do is the token's business.
func ServerRequestsClientKeys(c *tls.Config) {
	c.ClientAuth = tls.RequestClientCert
}

// PeerKey returns the public key the client proved in the handshake
// whose state is cs, or nil when it presented no certificate.
func PeerKey(cs tls.ConnectionState) crypto.PublicKey {
	if len(cs.PeerCertificates) == 0 {
		return nil
	}
	return cs.PeerCertificates[0].PublicKey
}
