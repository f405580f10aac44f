package transport_test

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log"
	"strings"

	"github.com/postern/postern/transport"
)

// A relay with a self-signed certificate; its clients trust it by pin.
func Example() {
	cert, err := transport.SelfSigned("relay.example.com")
	if err != nil {
		log.Fatal(err)
	}
	pin := transport.Pin(cert) // give this to agents and connectors
	tlsConf, err := transport.Trust{Pin: pin}.ClientTLS("relay.example.com")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(strings.HasPrefix(pin, "sha256:"), len(pin))

	// What the TLS handshake checks: the relay's certificate is the
	// pinned one, and no other is accepted, whoever issued it.
	other, err := transport.SelfSigned("relay.example.com")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(tlsConf.VerifyConnection(presented(cert)))
	fmt.Println(tlsConf.VerifyConnection(presented(other)) != nil)
	// Output:
	// true 71
	// <nil>
	// true
}

// presented is the connection state of a handshake in which the relay
// presented cert.
func presented(cert tls.Certificate) tls.ConnectionState {
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		log.Fatal(err)
	}
	return tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}}
}

// ParsePin accepts a pin as a person may write it, and returns the form
// the relay prints.
func ExampleParsePin() {
	pin, err := transport.ParsePin(" SHA256:9F2C" + strings.Repeat("0", 60) + "\n")
	fmt.Println(pin, err)
	_, err = transport.ParsePin("9f2c...")
	fmt.Println(err)
	// Output:
	// sha256:9f2c000000000000000000000000000000000000000000000000000000000000 <nil>
	// transport: a certificate pin is "sha256:" followed by 64 hex digits
}
