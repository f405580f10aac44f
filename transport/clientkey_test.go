package transport

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
)

// TestClientKeyFiles: a generated key survives its PEM files, its public
// key is read back from the public file, the private file or a
// certificate, and other key types and files are refused with errors
// that say what is wanted.
func TestClientKeyFiles(t *testing.T) {
	key, err := GenerateClientKey()
	if err != nil {
		t.Fatal(err)
	}
	priv, err := MarshalClientKey(key)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := MarshalPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseClientKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	if !back.Public().(ed25519.PublicKey).Equal(key.Public()) {
		t.Fatal("the key read back differs")
	}
	cert, err := ClientCertificate(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := cert.Leaf.CheckSignature(cert.Leaf.SignatureAlgorithm, cert.Leaf.RawTBSCertificate, cert.Leaf.Signature); err != nil {
		t.Fatalf("the client certificate is not self-signed by the key: %v", err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})
	for name, file := range map[string][]byte{"public": pub, "private": priv, "certificate": certPEM} {
		got, err := ParsePublicKey(file)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !got.(ed25519.PublicKey).Equal(key.Public()) {
			t.Fatalf("%s: another public key", name)
		}
	}

	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if _, err := ClientCertificate(p256); err != nil {
		t.Fatalf("P-256: %v", err)
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	der384, _ := x509.MarshalPKCS8PrivateKey(p384)
	tests := []struct {
		name, want string
		in         []byte
	}{
		{name: "not PEM", in: []byte("hello"), want: `want a PEM "PRIVATE KEY"`},
		{name: "a certificate", in: certPEM, want: `want a PEM "PRIVATE KEY"`},
		{name: "P-384", in: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der384}), want: "want Ed25519 or ECDSA P-256"},
		{name: "garbage DER", in: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}}), want: "client key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseClientKey(tt.in); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
	if _, err := MarshalClientKey(p384); err == nil {
		t.Fatal("marshalled a P-384 key")
	}
	if _, err := ParsePublicKey(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: []byte{1}})); err == nil || !strings.Contains(err.Error(), `"RSA PRIVATE KEY"`) {
		t.Fatalf("an RSA PEM block: %v", err)
	}
}

// FuzzParseClientKey and FuzzParsePublicKey: whatever a key file holds,
// the parsers return a key of an accepted type or an error, and never
// panic.
func FuzzParseClientKey(f *testing.F) {
	key, _ := GenerateClientKey()
	priv, _ := MarshalClientKey(key)
	f.Add(priv)
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		k, err := ParseClientKey(in)
		if err == nil && checkClientKey(k.Public()) != nil {
			t.Fatalf("accepted a %T", k)
		}
	})
}

func FuzzParsePublicKey(f *testing.F) {
	key, _ := GenerateClientKey()
	pub, _ := MarshalPublicKey(key.Public())
	priv, _ := MarshalClientKey(key)
	cert, _ := ClientCertificate(key)
	f.Add(pub)
	f.Add(priv)
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}))
	f.Fuzz(func(t *testing.T, in []byte) {
		k, err := ParsePublicKey(in)
		if err == nil && checkClientKey(k) != nil {
			t.Fatalf("accepted a %T", k)
		}
	})
}
