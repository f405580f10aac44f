package bench

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/postern/postern/internal/quicnet"
	"github.com/postern/postern/mesh/connector"
	"github.com/postern/postern/mesh/relay"
	"github.com/postern/postern/transport"
)

// The bare relay is the floor a QUIC relay costs: quic-go alone, the
// same topology as Postern (agent -> relay <- connector -> upstream, the
// connector dialing out), one stream per use on each leg, and a plain
// copy loop with a 64 KiB buffer per direction. No identity, no policy,
// no framing, no audit. Each of its endpoints runs with exactly the
// quic.Config its Postern counterpart runs with (windows, stream limits,
// keep-alives, timeouts), so that the difference between the two paths
// is Postern's code and not its tuning.

const (
	alpnBareAgent     = "postern-bench-agent"
	alpnBareConnector = "postern-bench-connector"
)

// The transport.Config each Postern endpoint derives from a nil
// Transport in its own Config: mesh/relay turns its keep-alives off
// (clients keep sessions alive), allows the per-agent stream limit and
// some room, and caps stream windows well below the connection's
// (relay.WindowedTransport); mesh/connector allows 16384 incoming streams
// (every agent's open is one), keeps sessions alive every 500ms and
// windows them alike (connector.RelaySessionTransport); mesh.Client takes
// transport's defaults. quicnet.QUICConfig turns each into the
// quic.Config Postern's endpoint runs.
var (
	relayTransport     = relay.WindowedTransport(transport.Config{KeepAlive: -1, MaxIncomingStreams: 1024 + 64})
	connectorTransport = connector.RelaySessionTransport(transport.Config{})
	agentTransport     = transport.Config{}
)

type bareRelayReady struct {
	Addr string `json:"addr"`
}

func startBareRelay([]byte) (any, func(), error) {
	cert, err := transport.SelfSigned("127.0.0.1")
	if err != nil {
		return nil, nil, err
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{alpnBareAgent, alpnBareConnector}, MinVersion: tls.VersionTLS13}
	ln, err := quic.ListenAddr("127.0.0.1:0", tc, quicnet.QUICConfig(&relayTransport))
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	var (
		mu        sync.Mutex
		connector *quic.Conn
		up        = make(chan struct{})
	)
	go func() {
		for {
			conn, err := ln.Accept(ctx)
			if err != nil {
				return
			}
			switch conn.ConnectionState().TLS.NegotiatedProtocol {
			case alpnBareConnector:
				mu.Lock()
				if connector == nil {
					close(up)
				}
				connector = conn
				mu.Unlock()
			default:
				go func() {
					for {
						st, err := conn.AcceptStream(ctx)
						if err != nil {
							return
						}
						go func() {
							select {
							case <-up:
							case <-ctx.Done():
								return
							}
							mu.Lock()
							cc := connector
							mu.Unlock()
							cs, err := cc.OpenStreamSync(ctx)
							if err != nil {
								abortStream(st)
								return
							}
							pipe(quicHalf{st}, quicHalf{cs})
						}()
					}
				}()
			}
		}
	}()
	stop := func() {
		cancel()
		ln.Close()
	}
	return bareRelayReady{Addr: ln.Addr().String()}, stop, nil
}

type bareConnectorConfig struct {
	Relay    string `json:"relay"`
	Upstream string `json:"upstream"`
}

func startBareConnector(b []byte) (any, func(), error) {
	var cfg bareConnectorConfig
	if err := decodeConfig(b, &cfg); err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	conn, err := dialBare(ctx, cfg.Relay, alpnBareConnector, &connectorTransport)
	if err != nil {
		cancel()
		return nil, nil, err
	}
	go func() {
		for {
			st, err := conn.AcceptStream(ctx)
			if err != nil {
				return
			}
			go func() {
				up, err := net.Dial("tcp", cfg.Upstream)
				if err != nil {
					abortStream(st)
					return
				}
				pipe(quicHalf{st}, tcpHalf{up.(*net.TCPConn)})
			}()
		}
	}()
	stop := func() {
		cancel()
		conn.CloseWithError(0, "")
	}
	return struct{}{}, stop, nil
}

func dialBare(ctx context.Context, addr, alpn string, tc *transport.Config) (*quic.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return quic.DialAddr(ctx, addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{alpn}, MinVersion: tls.VersionTLS13}, quicnet.QUICConfig(tc))
}

// halfConn is one end of a pipe.
type halfConn interface {
	io.ReadWriter
	CloseWrite() error
	Close() error
	abort()
}

type quicHalf struct{ *quic.Stream }

func (s quicHalf) CloseWrite() error { return s.Stream.Close() }
func (s quicHalf) Close() error      { s.CancelRead(0); return nil }
func (s quicHalf) abort()            { abortStream(s.Stream) }

func abortStream(s *quic.Stream) {
	s.CancelRead(1)
	s.CancelWrite(1)
}

type tcpHalf struct{ *net.TCPConn }

func (c tcpHalf) abort() { c.SetLinger(0); c.TCPConn.Close() }

// pipe copies both ways until both directions end, passing a clean end on
// as a half-close and an error as an abort of both.
func pipe(a, b halfConn) {
	var wg sync.WaitGroup
	var once sync.Once
	fail := func() { once.Do(func() { a.abort(); b.abort() }) }
	wg.Add(1)
	go func() {
		defer wg.Done()
		if copyHalf(b, a) != nil {
			fail()
		}
	}()
	if copyHalf(a, b) != nil {
		fail()
	}
	wg.Wait()
	a.Close()
	b.Close()
}

func copyHalf(dst, src halfConn) error {
	buf := make([]byte, ioSize)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if errors.Is(err, io.EOF) {
			return dst.CloseWrite()
		}
		if err != nil {
			return err
		}
	}
}
