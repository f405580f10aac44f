package transport

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"net"
	"strings"
	"time"
)

// SelfSigned makes a self-signed ECDSA P-256 certificate for hosts (DNS
// names or IP addresses), valid for a year. Clients trust it by its pin
// (see Pin), which the relay prints when it generates one.
func SelfSigned(hosts ...string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "postern relay"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// Pin returns the pin of a certificate: "sha256:" and the lowercase hex
// SHA-256 of its leaf in DER.
func Pin(cert tls.Certificate) string {
	if len(cert.Certificate) == 0 {
		return ""
	}
	return PinDER(cert.Certificate[0])
}

// PinDER returns the pin of a DER-encoded certificate.
func PinDER(der []byte) string {
	sum := sha256.Sum256(der)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// ParsePin checks a pin written by a person: "sha256:<64 hex digits>" or
// the bare hex digits; colons between bytes are accepted, as some tools
// print them. It returns the canonical form.
func ParsePin(s string) (string, error) {
	h := strings.TrimPrefix(strings.TrimSpace(strings.ToLower(s)), "sha256:")
	h = strings.ReplaceAll(h, ":", "")
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != sha256.Size {
		return "", errors.New("transport: a certificate pin is \"sha256:\" followed by 64 hex digits")
	}
	return "sha256:" + h, nil
}

// Trust says how a client trusts the relay's certificate. Exactly one of
// RootCAs and Pin is set.
type Trust struct {
	// RootCAs verifies the relay's certificate chain and name (ServerName,
	// or the host of the dialed address when empty).
	RootCAs *x509.CertPool
	// Pin accepts exactly the certificate with this SHA-256 (see Pin),
	// whatever its issuer and name: for self-signed relays.
	Pin string
	// ServerName overrides the name checked against the certificate when
	// RootCAs is used.
	ServerName string
	// Key is the client's own key (see GenerateClientKey). When set, the
	// client presents a self-signed certificate for it in every
	// handshake, which proves possession for tokens bound to it. Nil
	// presents none.
	Key crypto.Signer
}

// ClientTLS builds the client TLS configuration for dialing host: how
// the relay is trusted and, with Key, the certificate the client
// presents. QUIC and TLS-over-TCP dials both start from it.
func (t Trust) ClientTLS(host string) (*tls.Config, error) {
	c, err := t.trustTLS(host)
	if err != nil || t.Key == nil {
		return c, err
	}
	cert, err := ClientCertificate(t.Key)
	if err != nil {
		return nil, err
	}
	c.Certificates = []tls.Certificate{cert}
	return c, nil
}

func (t Trust) trustTLS(host string) (*tls.Config, error) {
	switch {
	case t.RootCAs != nil && t.Pin != "":
		return nil, errors.New("transport: set either a CA pool or a certificate pin, not both")
	case t.RootCAs != nil:
		name := t.ServerName
		if name == "" {
			name = host
		}
		return &tls.Config{RootCAs: t.RootCAs, ServerName: name, MinVersion: tls.VersionTLS13}, nil
	case t.Pin != "":
		pin, err := ParsePin(t.Pin)
		if err != nil {
			return nil, err
		}
		return &tls.Config{
			MinVersion: tls.VersionTLS13,
			// The chain is not verified by name or issuer: the pin names
			// the one certificate to accept, which is stronger.
			InsecureSkipVerify: true,
			VerifyConnection: func(cs tls.ConnectionState) error {
				if len(cs.PeerCertificates) == 0 {
					return errors.New("transport: relay sent no certificate")
				}
				got := PinDER(cs.PeerCertificates[0].Raw)
				if subtle.ConstantTimeCompare([]byte(got), []byte(pin)) != 1 {
					return fmt.Errorf("transport: relay certificate %s does not match the pinned %s", got, pin)
				}
				return nil
			},
		}, nil
	}
	return nil, errors.New("transport: no way to trust the relay: give a CA pool or a certificate pin")
}
