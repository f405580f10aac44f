package relay_test

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/qlog"
	"github.com/quic-go/quic-go/qlogwriter"

	"github.com/postern/postern/internal/meshtest"
	"github.com/postern/postern/internal/wire"
	"github.com/postern/postern/mesh/relay"
	"github.com/postern/postern/transport"
)

// grantTrace records the transport parameters a QUIC client's peer sent:
// the flow-control credit the relay granted it at the handshake.
type grantTrace struct {
	mu  sync.Mutex
	got *qlog.ParametersSet
}

func (g *grantTrace) AddProducer() qlogwriter.Recorder { return g }
func (g *grantTrace) Close() error                     { return nil }

func (g *grantTrace) RecordEvent(ev qlogwriter.Event) {
	if p, ok := ev.(qlog.ParametersSet); ok && p.Initiator == qlog.InitiatorRemote {
		g.mu.Lock()
		g.got = &p
		g.mu.Unlock()
	}
}

func (g *grantTrace) params() *qlog.ParametersSet {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.got
}

// dialFrom completes a QUIC handshake with the relay from a UDP socket on
// local (a loopback address: all of 127/8 is this host's), sends nothing,
// and returns the connection with what the relay granted it.
func dialFrom(t *testing.T, m *meshtest.Mesh, local string) (*quic.Conn, *qlog.ParametersSet) {
	t.Helper()
	g := new(grantTrace)
	conn, err := dialLocal(t, m, local, &quic.Config{
		Tracer: func(context.Context, bool, quic.ConnectionID) qlogwriter.Trace { return g },
	})
	if err != nil {
		t.Fatal(err)
	}
	p := g.params()
	if p == nil {
		t.Fatal("no transport parameters from the relay")
	}
	return conn, p
}

// TestWindowsGranted: what a relay grants a new QUIC connection, seen on
// the wire by the client: 32 KiB per stream (the streams it opens, the
// control stream among them, and the relay's), and 64 MiB per connection
// from the start; with ConnectorNetworks, 64 MiB to sources in them and
// 128 KiB to the others, or InitialConnWindow.
func TestWindowsGranted(t *testing.T) {
	connectors := []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}
	for _, tt := range []struct {
		name         string
		limits       relay.Limits
		from         string
		stream, conn int64
	}{
		{"default", relay.Limits{}, "127.0.0.1", 32 << 10, 64 << 20},
		{"outside connector networks", relay.Limits{ConnectorNetworks: connectors}, "127.0.0.1", 32 << 10, 128 << 10},
		{"from a connector network", relay.Limits{ConnectorNetworks: connectors}, "127.0.0.2", 32 << 10, 64 << 20},
		{"outside, configured", relay.Limits{ConnectorNetworks: connectors, InitialConnWindow: 256 << 10, InitialStreamWindow: 16 << 10}, "127.0.0.1", 16 << 10, 256 << 10},
		{"configured for all", relay.Limits{InitialConnWindow: 256 << 10}, "127.0.0.2", 32 << 10, 256 << 10},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m := meshtest.New(t, meshtest.Options{Network: transport.NetworkQUIC, Limits: tt.limits})
			_, p := dialFrom(t, m, tt.from)
			if int64(p.InitialMaxStreamDataBidiRemote) != tt.stream || int64(p.InitialMaxStreamDataBidiLocal) != tt.stream {
				t.Errorf("stream windows %d (streams the client opens), %d (the relay's), want %d", p.InitialMaxStreamDataBidiRemote, p.InitialMaxStreamDataBidiLocal, tt.stream)
			}
			if int64(p.InitialMaxData) != tt.conn {
				t.Errorf("connection window %d, want %d", p.InitialMaxData, tt.conn)
			}
		})
	}
}

// TestUnverifiedStreamCredit: a peer that has shown no token can put no
// more than the initial stream window on a stream the relay does not read
// (here one it opens before the Hello, which closes its connection), and
// no more than the connection window on all of its streams.
func TestUnverifiedStreamCredit(t *testing.T) {
	m := meshtest.New(t, meshtest.Options{Network: transport.NetworkQUIC,
		Limits: relay.Limits{ConnectorNetworks: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}})
	conn, p := dialFrom(t, m, "127.0.0.1")
	if p.InitialMaxData != 128<<10 {
		t.Fatalf("connection window %d, want 128 KiB", p.InitialMaxData)
	}
	ctrl, err := conn.OpenStreamSync(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ctrl.Write(helloHeader(60 << 10)) // a Hello that never ends
	var wg sync.WaitGroup
	var mu sync.Mutex
	var total int
	var most int
	for range 8 {
		st, err := conn.OpenStreamSync(context.Background())
		if err != nil {
			break // closed already
		}
		wg.Go(func() {
			st.SetWriteDeadline(time.Now().Add(10 * time.Second))
			n, _ := st.Write(make([]byte, 1<<20))
			mu.Lock()
			total += n
			most = max(most, n)
			mu.Unlock()
		})
	}
	wg.Wait()
	select {
	case <-conn.Context().Done():
	case <-time.After(10 * time.Second):
		t.Fatal("streams before the hello did not close the connection")
	}
	var ae *quic.ApplicationError
	if err := context.Cause(conn.Context()); !errors.As(err, &ae) || !strings.Contains(ae.ErrorMessage, "stream_before_hello") {
		t.Fatalf("close: %v, want stream_before_hello", err)
	}
	if most > 32<<10 {
		t.Errorf("the relay took %d bytes on one unread stream of an unverified peer, want at most its 32 KiB window", most)
	}
	if total > 128<<10 {
		t.Errorf("the relay took %d bytes on the unread streams of an unverified peer, want at most its 128 KiB connection window", total)
	}
	t.Logf("%d bytes taken on unread streams before the close, at most %d on one", total, most)
}

// TestUnverifiedControlCredit: what a peer that has shown no token can put
// on its control stream beyond the Hello the relay reads is the initial
// 32 KiB stream window, doubled at most twice by quic-go's auto-tuning
// while the relay reads a Hello of the largest frame size: the bytes
// after a Hello the relay refuses stay unread until it closes the
// connection a second later.
func TestUnverifiedControlCredit(t *testing.T) {
	m := meshtest.New(t, meshtest.Options{Network: transport.NetworkQUIC})
	conn, _ := dialFrom(t, m, "127.0.0.1")
	ctrl, err := conn.OpenStreamSync(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	const frame = wire.DefaultMaxFrameSize
	b := append(helloHeader(frame), make([]byte, frame+4<<20)...) // a malformed Hello, and more
	ctrl.SetWriteDeadline(time.Now().Add(10 * time.Second))
	n, _ := ctrl.Write(b)
	select {
	case <-conn.Context().Done():
	case <-time.After(10 * time.Second):
		t.Fatal("a malformed hello did not close the connection")
	}
	extra := n - wire.FrameHeaderLen - frame
	if extra < 0 {
		t.Fatalf("the relay took %d bytes, less than the hello", n)
	}
	if extra > 128<<10 {
		t.Errorf("the relay took %d bytes after the hello on the control stream of an unverified peer, want at most 128 KiB", extra)
	}
	t.Logf("%d bytes taken after the hello", extra)
}

// TestConnectorNetworksInvalid: a zero prefix among ConnectorNetworks is
// refused at Listen, with the field named.
func TestConnectorNetworksInvalid(t *testing.T) {
	m := meshtest.New(t, meshtest.Options{Network: transport.NetworkQUIC})
	_, err := relay.Listen(relay.Config{Addr: "127.0.0.1:0", Certificate: m.Cert, Verifier: m.Verifier,
		Limits: relay.Limits{ConnectorNetworks: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), {}}}})
	if err == nil || !strings.Contains(err.Error(), "ConnectorNetworks[1]") {
		t.Fatalf("Listen with an invalid connector network: %v, want an error naming ConnectorNetworks[1]", err)
	}
}
