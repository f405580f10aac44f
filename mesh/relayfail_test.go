package mesh_test

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern"
	"github.com/postern/postern/internal/meshtest"
	"github.com/postern/postern/mesh"
	"github.com/postern/postern/mesh/connector"
)

// patternByte is the byte at offset i of the bulk server's stream.
func patternByte(i int64) byte { return byte(i % 251) }

// patternServer writes patternByte bytes to each connection until it closes.
func patternServer(t *testing.T) string {
	return meshtest.Server(t, func(c net.Conn) {
		buf := make([]byte, 32<<10)
		var off int64
		for {
			for i := range buf {
				buf[i] = patternByte(off + int64(i))
			}
			n, err := c.Write(buf)
			off += int64(n)
			if err != nil {
				return
			}
		}
	})
}

// TestConfigRelays: Relay and Relays, and what is wrong with them.
func TestConfigRelays(t *testing.T) {
	m := meshtest.New(t, meshtest.Options{})
	tok := m.AgentToken("coding-agent", "coding-agents")
	tests := []struct {
		name string
		cfg  mesh.Config
		err  string // empty: valid
	}{
		{name: "one relay", cfg: mesh.Config{Relay: "relay-a.example.com:7443"}},
		{name: "relays", cfg: mesh.Config{Relays: []string{"relay-a.example.com:7443", "relay-b.example.com:7443"}}},
		{name: "none", cfg: mesh.Config{}, err: "a Relay address is required"},
		{name: "both", cfg: mesh.Config{Relay: "relay-a.example.com:7443", Relays: []string{"relay-b.example.com:7443"}}, err: "set Relay or Relays, not both"},
		{name: "no port", cfg: mesh.Config{Relays: []string{"relay-a.example.com:7443", "relay-b"}}, err: `relay "relay-b": want host:port`},
		{name: "no host", cfg: mesh.Config{Relays: []string{":7443"}}, err: "want host:port"},
		{name: "twice", cfg: mesh.Config{Relays: []string{"relay-a.example.com:7443", "relay-a.example.com:7443"}}, err: "listed twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Token, tt.cfg.Pin = tok, m.Pin
			c, err := mesh.NewClient(tt.cfg)
			switch {
			case tt.err == "" && err != nil:
				t.Fatal(err)
			case tt.err == "":
				c.Close()
			case err == nil || !strings.Contains(err.Error(), tt.err) || !strings.HasPrefix(err.Error(), "mesh: config: "):
				t.Fatalf("err = %v, want mesh: config: ...%s", err, tt.err)
			}
		})
	}
}

// TestFailoverToOtherRelay: two relays, a connector on both, an agent
// configured with both. When the agent's relay falls silent (every
// datagram dropped, as when it is killed), an open sent just then is made
// again through the other relay by itself, the catalog is the other
// relay's, and a download through the silent relay ends with an error,
// not io.EOF, every byte before it right.
func TestFailoverToOtherRelay(t *testing.T) {
	m := meshtest.New(t, meshtest.Options{})
	other := m.OtherRelay()
	services := []connector.Service{
		{Name: "staging-db", Upstream: meshtest.EchoServer(t), Environment: "staging"},
		{Name: "staging-bulk", Upstream: patternServer(t), Environment: "staging"},
	}
	m.ConnectorWith(connector.Config{
		Relays:   []string{m.Addr(), other.Addr().String()},
		Token:    m.ConnectorToken("office-1", meshtest.Describe(services...)...),
		Services: services,
	})
	bh := meshtest.NewBlackhole(t, m.Addr())
	var log meshtest.Log
	agent, err := mesh.NewClient(mesh.Config{
		Relays: []string{bh.Addr(), other.Addr().String()},
		Token:  m.AgentToken("coding-agent", "coding-agents"),
		Pin:    m.Pin,
		Logger: slog.New(slog.NewTextHandler(&log, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer agent.Close()

	download, err := agent.Dial(ctx(t), "tcp", "staging-bulk")
	if err != nil {
		t.Fatal(err)
	}
	defer download.Close()
	if m.Relay().Stats().Agents != 1 || other.Stats().Agents != 0 {
		t.Fatalf("the agent is not on the first relay: %+v, %+v", m.Relay().Stats(), other.Stats())
	}
	buf := make([]byte, 32<<10)
	var off int64
	read := func() error {
		n, err := download.Read(buf)
		for i := range n {
			if buf[i] != patternByte(off+int64(i)) {
				t.Fatalf("byte %d is %d, want %d", off+int64(i), buf[i], patternByte(off+int64(i)))
			}
		}
		off += int64(n)
		return err
	}
	for off < 1<<20 {
		if err := read(); err != nil {
			t.Fatal(err)
		}
	}
	changed := agent.CatalogChanged()

	bh.Cut()
	cut := time.Now()
	conn, err := agent.Dial(ctx(t), "tcp", "staging-db")
	if err != nil {
		t.Fatalf("open after the relay fell silent: %v", err)
	}
	took := time.Since(cut)
	defer conn.Close()
	echoOnce(t, conn, "through the other relay")
	t.Logf("open answered through the other relay %s after the cut", took.Round(time.Millisecond))
	if took > 10*time.Second {
		t.Fatalf("the open took %s; want about 2s", took)
	}
	// The silence, not the idle timeout, moved it.
	if !strings.Contains(log.String(), "relay silent") || !strings.Contains(log.String(), "opening again") {
		t.Fatalf("the open was not made again when the relay fell silent:\n%s", log.String())
	}
	if other.Stats().Agents != 1 {
		t.Fatalf("the agent is not on the other relay: %+v", other.Stats())
	}
	select {
	case <-changed:
	default:
		t.Fatal("CatalogChanged did not fire for the new relay's catalog")
	}
	cat, err := agent.Catalog(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, b := range cat {
		names = append(names, b.Name)
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"staging-bulk", "staging-db"}) {
		t.Fatalf("catalog after the switch = %v", names)
	}

	// The download through the silent relay ends with an error once the
	// agent's idle timeout (5s) has passed.
	for err == nil {
		err = read()
		if time.Since(cut) > 30*time.Second {
			t.Fatal("the download through the silent relay still runs after 30s")
		}
	}
	if errors.Is(err, io.EOF) {
		t.Fatalf("the download ended with io.EOF after %d bytes; want an error", off)
	}
	t.Logf("download ended %s after the cut: %v", time.Since(cut).Round(time.Millisecond), err)
}

// TestAllRelaysRefuse: when every relay refuses the token, Connect says
// so as soon as they have answered, not at the connect timeout.
func TestAllRelaysRefuse(t *testing.T) {
	m := meshtest.New(t, meshtest.Options{})
	other := m.OtherRelay()
	agent, err := mesh.NewClient(mesh.Config{
		Relays:         []string{m.Addr(), other.Addr().String()},
		Token:          m.AgentToken(""), // no subject: refused
		Pin:            m.Pin,
		ConnectTimeout: 20 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer agent.Close()
	start := time.Now()
	err = agent.Connect(ctx(t))
	if !meshtest.IsMeshError(err, postern.ErrUnauthenticated) {
		t.Fatalf("err = %v, want postern.ErrUnauthenticated", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("the refusal took %s: DialAny waited for the timeout", took)
	}
}
