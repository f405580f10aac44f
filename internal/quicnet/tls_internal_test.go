package quicnet

import (
	"crypto/tls"
	"net"
	"testing"

	"github.com/postern/postern/internal/wire"
	"github.com/postern/postern/transport"
)

// TestServerTLSChoosesCertificate: serverTLS moves the choice of
// certificate after a wait (GetCertificate); the choice stays what
// crypto/tls would have made.
func TestServerTLSChoosesCertificate(t *testing.T) {
	a, err := transport.SelfSigned("a.test")
	if err != nil {
		t.Fatal(err)
	}
	b, err := transport.SelfSigned("b.test")
	if err != nil {
		t.Fatal(err)
	}
	pick := func(c *tls.Certificate) func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		return func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return c, nil }
	}
	for _, tc := range []struct {
		name string
		conf *tls.Config
		sni  string
		want string
	}{
		{"first certificate", &tls.Config{Certificates: []tls.Certificate{a, b}}, "", "a.test"},
		{"by server name", &tls.Config{Certificates: []tls.Certificate{a, b}}, "b.test", "b.test"},
		{"GetCertificate", &tls.Config{GetCertificate: pick(&b)}, "a.test", "b.test"},
		{"GetCertificate declines", &tls.Config{GetCertificate: pick(nil), Certificates: []tls.Certificate{a}}, "", "a.test"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c1, c2 := net.Pipe()
			defer c1.Close()
			defer c2.Close()
			srv := tls.Server(c2, serverTLS(tc.conf))
			go srv.Handshake()
			cl := tls.Client(c1, &tls.Config{InsecureSkipVerify: true, ServerName: tc.sni, NextProtos: []string{wire.ALPN}, MinVersion: tls.VersionTLS13})
			if err := cl.Handshake(); err != nil {
				t.Fatal(err)
			}
			if got := cl.ConnectionState().PeerCertificates[0].DNSNames; len(got) != 1 || got[0] != tc.want {
				t.Fatalf("server presented %v, want %s", got, tc.want)
			}
		})
	}
	t.Run("none", func(t *testing.T) {
		c1, c2 := net.Pipe()
		defer c1.Close()
		defer c2.Close()
		srv := tls.Server(c2, serverTLS(&tls.Config{GetCertificate: pick(nil)}))
		go srv.Handshake()
		cl := tls.Client(c1, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{wire.ALPN}, MinVersion: tls.VersionTLS13})
		if err := cl.Handshake(); err == nil {
			t.Fatal("handshake with no certificate succeeded")
		}
	})
}

// TestListenerResetKey: the QUIC transport's stateless-reset key comes
// from the certificate given, although serverTLS moves the certificates
// behind GetCertificate.
func TestListenerResetKey(t *testing.T) {
	cert, err := transport.SelfSigned("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	l, err := ListenAdmit("127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}}, &transport.Config{Network: transport.NetworkQUIC}, Admission{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	want, err := resetKey(cert)
	if err != nil {
		t.Fatal(err)
	}
	if l.tr == nil || l.tr.StatelessResetKey == nil || *l.tr.StatelessResetKey != *want {
		t.Fatal("the listener's QUIC transport has no stateless-reset key derived from its certificate")
	}
	if l.tlsConf.Certificates != nil || l.tlsConf.GetCertificate == nil {
		t.Fatal("serverTLS left the certificates in place of GetCertificate")
	}
}
