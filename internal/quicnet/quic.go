package quicnet

import (
	"context"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/postern/postern/internal/wire"
	"github.com/postern/postern/transport"
)

// QUICConfig is the quic-go configuration that c stands for, with every
// zero field at its documented default. A nil c means all defaults.
func QUICConfig(c *transport.Config) *quic.Config {
	var z transport.Config
	if c == nil {
		c = &z
	}
	q := &quic.Config{
		HandshakeIdleTimeout:           or(c.HandshakeTimeout, 10*time.Second) / 2, // quic-go aborts at twice this
		MaxIdleTimeout:                 or(c.IdleTimeout, 60*time.Second),
		KeepAlivePeriod:                or(c.KeepAlive, 15*time.Second),
		MaxIncomingStreams:             or(c.MaxIncomingStreams, 1024),
		MaxIncomingUniStreams:          -1, // the protocol uses none
		InitialStreamReceiveWindow:     or(c.StreamWindow, 1<<20),
		MaxStreamReceiveWindow:         or(c.MaxStreamWindow, 16<<20),
		InitialConnectionReceiveWindow: or(c.ConnWindow, 2<<20),
		MaxConnectionReceiveWindow:     or(c.MaxConnWindow, 64<<20),
	}
	if c.KeepAlive < 0 {
		q.KeepAlivePeriod = 0
	}
	return q
}

func or[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Listener accepts QUIC connections that negotiated ALPN.
type Listener struct {
	udp *net.UDPConn
	tr  *quic.Transport
	ln  *quic.Listener
}

// Listen listens on the UDP address addr ("127.0.0.1:0" picks a free port).
// tlsConf must carry the server certificate; Listen copies it and sets
// TLS 1.3 and ALPN. The stateless-reset key is derived from the
// certificate's private key, so that a relay restarted with the same
// certificate tells clients of its previous life at once that their
// connections are gone, instead of leaving them to time out.
func Listen(addr string, tlsConf *tls.Config, cfg *transport.Config) (*Listener, error) {
	if tlsConf == nil || (len(tlsConf.Certificates) == 0 && tlsConf.GetCertificate == nil) {
		return nil, errors.New("quicnet: listen: no TLS certificate")
	}
	uaddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("quicnet: listen: %w", err)
	}
	udp, err := net.ListenUDP("udp", uaddr)
	if err != nil {
		return nil, fmt.Errorf("quicnet: listen: %w", err)
	}
	tr := &quic.Transport{Conn: udp}
	if len(tlsConf.Certificates) > 0 {
		if key, err := resetKey(tlsConf.Certificates[0]); err == nil {
			tr.StatelessResetKey = key
		}
	}
	ln, err := tr.Listen(serverTLS(tlsConf), QUICConfig(cfg))
	if err != nil {
		tr.Close()
		udp.Close()
		return nil, fmt.Errorf("quicnet: listen: %w", err)
	}
	return &Listener{udp: udp, tr: tr, ln: ln}, nil
}

// Accept waits for the next connection whose handshake completed.
func (l *Listener) Accept(ctx context.Context) (Session, error) {
	conn, err := l.ln.Accept(ctx)
	if err != nil {
		return nil, err
	}
	return QUICSession{conn}, nil
}

// Addr is the UDP address the listener is bound to.
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

// Close stops accepting and closes the UDP socket. Connections already
// accepted are closed by their owners first (see Session.CloseWithError);
// those still open are torn down.
func (l *Listener) Close() error {
	err := l.ln.Close()
	if err2 := l.tr.Close(); err == nil {
		err = err2
	}
	// The transport does not close a socket it was handed.
	if err2 := l.udp.Close(); err == nil {
		err = err2
	}
	return err
}

// resetKey derives a stateless-reset key from the certificate's private
// key: stable across restarts, secret, and unrelated to any other use of
// the key.
func resetKey(cert tls.Certificate) (*quic.StatelessResetKey, error) {
	der, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		return nil, err
	}
	b, err := hkdf.Key(sha256.New, der, nil, "postern quic stateless reset v1", 32)
	if err != nil {
		return nil, err
	}
	var k quic.StatelessResetKey
	copy(k[:], b)
	return &k, nil
}

func serverTLS(c *tls.Config) *tls.Config {
	c = c.Clone()
	c.MinVersion = tls.VersionTLS13
	c.NextProtos = []string{wire.ALPN}
	return c
}

// Dial connects to a QUIC listener at addr. tlsConf says how to trust the
// server (see ClientTLS); Dial copies it and sets TLS 1.3 and ALPN. ctx
// bounds the handshake.
func Dial(ctx context.Context, addr string, tlsConf *tls.Config, cfg *transport.Config) (Session, error) {
	if tlsConf == nil {
		return nil, errors.New("quicnet: dial: no TLS configuration (trust a CA or pin the relay's certificate)")
	}
	c := tlsConf.Clone()
	c.MinVersion = tls.VersionTLS13
	c.NextProtos = []string{wire.ALPN}
	conn, err := quic.DialAddr(ctx, addr, c, QUICConfig(cfg))
	if err != nil {
		return nil, fmt.Errorf("quicnet: dial %s: %w", addr, err)
	}
	return QUICSession{conn}, nil
}

// IsConnClosed reports whether err says the QUIC connection itself is gone
// (closed by either side, timed out, reset), as opposed to one stream
// failing. A client reconnects on such errors.
func IsConnClosed(err error) bool {
	var (
		appErr   *quic.ApplicationError
		idleErr  *quic.IdleTimeoutError
		hsErr    *quic.HandshakeTimeoutError
		resetErr *quic.StatelessResetError
		trErr    *quic.TransportError
	)
	return errors.As(err, &appErr) || errors.As(err, &idleErr) || errors.As(err, &hsErr) ||
		errors.As(err, &resetErr) || errors.As(err, &trErr) || errors.Is(err, net.ErrClosed)
}
