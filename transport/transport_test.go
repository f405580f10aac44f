package transport_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/postern/postern/internal/quicnet"
	"github.com/postern/postern/transport"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// pair returns the two ends of a fresh QUIC stream over loopback, for
// tests and benchmarks.
func TestPinMismatchRefused(t *testing.T) {
	cert, _ := transport.SelfSigned("127.0.0.1")
	other, _ := transport.SelfSigned("127.0.0.1")
	ln, err := quicnet.Listen("127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go ln.Accept(context.Background())
	tlsConf, err := transport.Trust{Pin: transport.Pin(other)}.ClientTLS("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = quicnet.Dial(ctx, ln.Addr().String(), tlsConf, nil)
	if err == nil || !strings.Contains(err.Error(), "does not match the pinned") {
		t.Fatalf("dial with the wrong pin: %v", err)
	}
}

func TestCATrust(t *testing.T) {
	cert, _ := transport.SelfSigned("127.0.0.1")
	ln, err := quicnet.Listen("127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept(context.Background())
			if err != nil {
				return
			}
			defer c.CloseWithError(0, "")
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	pool := x509.NewCertPool()
	pool.AddCert(cert.Leaf)
	tlsConf, _ := transport.Trust{RootCAs: pool}.ClientTLS("127.0.0.1")
	conn, err := quicnet.Dial(ctx, ln.Addr().String(), tlsConf, nil)
	if err != nil {
		t.Fatalf("dial trusting the cert as a CA: %v", err)
	}
	conn.CloseWithError(0, "")
	_, err = quicnet.Dial(ctx, ln.Addr().String(), &tls.Config{RootCAs: x509.NewCertPool(), ServerName: "127.0.0.1"}, nil)
	if err == nil {
		t.Fatal("an untrusted certificate was accepted")
	}
}

func TestTrustConfig(t *testing.T) {
	pool := x509.NewCertPool()
	for _, tt := range []struct {
		name  string
		trust transport.Trust
		ok    bool
	}{
		{"nothing", transport.Trust{}, false},
		{"both", transport.Trust{RootCAs: pool, Pin: "sha256:" + strings.Repeat("0", 64)}, false},
		{"short pin", transport.Trust{Pin: "sha256:abcd"}, false},
		{"bare hex pin", transport.Trust{Pin: strings.Repeat("ab", 32)}, true},
		{"colon pin", transport.Trust{Pin: strings.TrimSuffix(strings.Repeat("AB:", 32), ":")}, true},
		{"ca", transport.Trust{RootCAs: pool}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.trust.ClientTLS("relay.example")
			if (err == nil) != tt.ok {
				t.Fatalf("ClientTLS = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestFrameLimits(t *testing.T) {
	frame := transport.AppendFrame(nil, 7, []byte("payload"))
	typ, p, err := transport.ReadFrame(bytes.NewReader(frame), 7, nil)
	if err != nil || typ != 7 || string(p) != "payload" {
		t.Fatalf("ReadFrame = %d %q %v", typ, p, err)
	}
	if _, _, err := transport.ReadFrame(bytes.NewReader(frame), 6, nil); !errors.Is(err, transport.ErrFrameTooLarge) {
		t.Fatalf("over the cap: %v", err)
	}
	if _, _, err := transport.ReadFrame(bytes.NewReader(frame[:6]), 0, nil); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated: %v", err)
	}
}

func FuzzReadFrame(f *testing.F) {
	f.Add(transport.AppendFrame(nil, 1, []byte("hello")))
	f.Add(transport.AppendFrame(nil, 0x12, nil))
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		typ, p, err := transport.ReadFrame(bytes.NewReader(data), 1024, nil)
		if err != nil {
			return
		}
		if len(p) > 1024 {
			t.Fatalf("payload of %d bytes passed a 1024-byte cap", len(p))
		}
		again := transport.AppendFrame(nil, typ, p)
		if !bytes.Equal(again, data[:len(again)]) {
			t.Fatal("re-encoding a decoded frame changed it")
		}
	})
}
