package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/postern/postern/mesh"
	"github.com/postern/postern/transport"
)

// A path is one way for the agent (this process) to reach the upstream.
type path struct {
	name  string
	procs []*proc // every process on the path, the driver first
	// dial opens a connection (stream) for the warm tests.
	dial func(ctx context.Context) (benchConn, error)
	// open is the cheapest way to open a connection and send its first
	// bytes: the open-latency test times open + first byte back. For
	// Postern it is DialEarly, so that the open costs no round trip of
	// its own.
	open func(ctx context.Context) (benchConn, error)
	// client is the agent's mesh client, on the Postern path.
	client *mesh.Client
	// remote, when set, is the measuring child that runs the tests
	// instead of the driver (dial and open are unused): the agent side of
	// a path in another network namespace.
	remote *proc
	// bindingsOnly keeps the path out of the stream tests (bulk, rtt,
	// open), in which it would measure what postern does.
	bindingsOnly bool
	close        func()
}

// benchConn is a connection as the tests use it.
type benchConn interface {
	io.ReadWriteCloser
}

// Path names, in the order of the table.
const (
	pathDirect  = "direct"
	pathBare    = "bare-quic"
	pathPostern = "postern"
	// pathUngated is the postern path with the connector's statement and
	// request gate off (measure.Connector.Ungated), measured in the
	// binding tests only: what deciding costs is its difference from
	// postern.
	pathUngated = "postern-nogate"
	// pathObserved is the postern path with metrics and tracing (1%)
	// on (observe.go); not measured unless -paths names it.
	pathObserved = "postern-observed"
	// pathPosternTCP is the postern path over TLS/TCP (yamux streams)
	// instead of QUIC, with a relay listening on TCP only and a connector
	// of its own, in the stream tests only.
	pathPosternTCP = "postern-tcp"
	pathSSH        = "ssh"
	pathWireGuard  = "wireguard"
)

func tcpPath(name, addr string, procs []*proc) *path {
	d := func(ctx context.Context) (benchConn, error) {
		var nd net.Dialer
		return nd.DialContext(ctx, "tcp", addr)
	}
	return &path{name: name, procs: procs, dial: d, open: d, close: func() {}}
}

func barePath(addr string, procs []*proc) (*path, error) {
	conn, err := dialBare(context.Background(), addr, alpnBareAgent, &agentTransport)
	if err != nil {
		return nil, fmt.Errorf("bare relay: %w", err)
	}
	d := func(ctx context.Context) (benchConn, error) {
		st, err := conn.OpenStreamSync(ctx)
		if err != nil {
			return nil, err
		}
		return bareStream{st}, nil
	}
	return &path{name: pathBare, procs: procs, dial: d, open: d, close: func() { conn.CloseWithError(0, "") }}, nil
}

// bareStream closes both directions on Close, as a net.Conn does.
type bareStream struct{ *quic.Stream }

func (s bareStream) Close() error {
	s.CancelRead(0)
	return s.Stream.Close()
}

func posternPath(name, relayAddr, pin, token, network string, procs []*proc) (*path, error) {
	c, err := mesh.NewClient(mesh.Config{Relay: relayAddr, Token: token, Pin: pin, Transport: &transport.Config{Network: network}})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Connect(ctx); err != nil {
		c.Close()
		return nil, err
	}
	if _, err := c.Lookup(ctx, bindEcho); err != nil {
		c.Close()
		return nil, err
	}
	return &path{
		name:  name,
		procs: procs,
		dial: func(ctx context.Context) (benchConn, error) {
			return c.Dial(ctx, "tcp", bindEcho)
		},
		open: func(ctx context.Context) (benchConn, error) {
			return c.DialEarly(ctx, "tcp", bindEcho)
		},
		client: c,
		close:  func() { c.Close() },
	}, nil
}
