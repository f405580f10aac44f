package connector_test

import (
	"context"
	"crypto/tls"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postern/postern/internal/quicnet"

	"go.uber.org/goleak"

	"github.com/postern/postern/internal/meshtest"
	"github.com/postern/postern/internal/wire"
	"github.com/postern/postern/mesh/connector"
	"github.com/postern/postern/transport"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestNeverDialsWhatItDidNotAdvertise plays a hostile relay: it welcomes
// the connector, then asks it to dial names it never advertised, among
// them an address. The connector must refuse each without dialing.
func TestNeverDialsWhatItDidNotAdvertise(t *testing.T) {
	var dialed atomic.Int32
	trap := meshtest.Server(t, func(c net.Conn) { dialed.Add(1) })
	advertised := meshtest.EchoServer(t)

	cert, err := transport.SelfSigned("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := quicnet.Listen("127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	c, err := connector.New(connector.Config{
		Relays:   []string{ln.Addr().String()},
		Pin:      transport.Pin(cert),
		Token:    "opaque-to-the-connector",
		Services: []connector.Service{{Name: "staging-db", Upstream: advertised}},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()

	conn, err := ln.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ctrl, err := conn.AcceptStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var hello wire.Hello
	if err := wire.ReadExpected(ctrl, 0, &hello); err != nil {
		t.Fatal(err)
	}
	if len(hello.Services) != 1 || hello.Services[0].Name != "staging-db" {
		t.Fatalf("advertised %+v", hello.Services)
	}
	if err := wire.WriteFrame(ctrl, &wire.Welcome{Session: "s", Identity: &wire.Identity{Subject: "office-1", Role: wire.RoleConnector}}); err != nil {
		t.Fatal(err)
	}
	dial := func(name string) *wire.Result {
		t.Helper()
		st, err := conn.OpenStreamSync(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer st.CancelRead(0)
		if err := wire.WriteFrame(st, &wire.Dial{Binding: name, Session: "s", Identity: &wire.Identity{Subject: "agent"}}); err != nil {
			t.Fatal(err)
		}
		res := new(wire.Result)
		if err := wire.ReadExpected(st, 0, res); err != nil {
			t.Fatal(err)
		}
		st.Close()
		return res
	}
	for _, name := range []string{"prod-db", "127.0.0.1", "localhost"} {
		if res := dial(name); res.Code != wire.CodeUnknownBinding {
			t.Fatalf("dial %q: result %+v, want unknown binding", name, res)
		}
	}
	// An address where a name should be is not even a valid dial.
	if res := dial(trap); res.Code == wire.CodeOK {
		t.Fatalf("dial %q: result %+v, want a refusal", trap, res)
	}
	if res := dial("staging-db"); res.Code != wire.CodeOK {
		t.Fatalf("dial of the advertised service: %+v", res)
	}
	if n := dialed.Load(); n != 0 {
		t.Fatalf("the connector dialed something it did not advertise (%d connections)", n)
	}
	cancel()
	conn.CloseWithError(0, "")
	<-done
}

func TestConfigErrors(t *testing.T) {
	ok := connector.Service{Name: "db", Upstream: "127.0.0.1:5432"}
	tests := []struct {
		name string
		cfg  connector.Config
	}{
		{"no relays", connector.Config{Token: "t", Pin: "sha256:" + zeros, Services: []connector.Service{ok}}},
		{"no token", connector.Config{Relays: []string{"127.0.0.1:1"}, Pin: "sha256:" + zeros, Services: []connector.Service{ok}}},
		{"token and token source", connector.Config{Relays: []string{"127.0.0.1:1"}, Token: "t", TokenSource: func(context.Context) (string, error) { return "t", nil }, Pin: "sha256:" + zeros, Services: []connector.Service{ok}}},
		{"no services", connector.Config{Relays: []string{"127.0.0.1:1"}, Token: "t", Pin: "sha256:" + zeros}},
		{"no trust", connector.Config{Relays: []string{"127.0.0.1:1"}, Token: "t", Services: []connector.Service{ok}}},
		{"bad pin", connector.Config{Relays: []string{"127.0.0.1:1"}, Token: "t", Pin: "abc", Services: []connector.Service{ok}}},
		{"bad relay address", connector.Config{Relays: []string{"relay"}, Token: "t", Pin: "sha256:" + zeros, Services: []connector.Service{ok}}},
		{"bad upstream", connector.Config{Relays: []string{"127.0.0.1:1"}, Token: "t", Pin: "sha256:" + zeros, Services: []connector.Service{{Name: "db", Upstream: "nowhere"}}}},
		{"bad kind", connector.Config{Relays: []string{"127.0.0.1:1"}, Token: "t", Pin: "sha256:" + zeros, Services: []connector.Service{{Name: "db", Kind: "udp", Upstream: "127.0.0.1:1"}}}},
		{"bad name", connector.Config{Relays: []string{"127.0.0.1:1"}, Token: "t", Pin: "sha256:" + zeros, Services: []connector.Service{{Name: "a b", Upstream: "127.0.0.1:1"}}}},
		{"duplicate", connector.Config{Relays: []string{"127.0.0.1:1"}, Token: "t", Pin: "sha256:" + zeros, Services: []connector.Service{ok, ok}}},
		{"bad transport", connector.Config{Relays: []string{"127.0.0.1:1"}, Token: "t", Pin: "sha256:" + zeros, Services: []connector.Service{ok}, Transport: &transport.Config{Network: "udp"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := connector.New(tt.cfg); err == nil {
				t.Fatal("New accepted a bad config")
			}
		})
	}
}

const zeros = "0000000000000000000000000000000000000000000000000000000000000000"
