package forward_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/postern/postern"
	"github.com/postern/postern/internal/forward"
	"github.com/postern/postern/internal/meshtest"
	"github.com/postern/postern/mesh/connector"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// setup starts a mesh with a connector serving an echo (tcp, staging),
// an HTTP API (http, staging), and a financial echo (tcp, prod), and a
// Forwarder for a coding agent. serve returns a local address forwarding
// to the named binding.
func setup(t *testing.T, log *meshtest.Log) (serve func(name string) string, f *forward.Forwarder) {
	t.Helper()
	m := meshtest.New(t, meshtest.Options{})
	echo := meshtest.EchoServer(t)
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "orders for "+r.URL.Path+" host "+r.Host)
	}))
	t.Cleanup(api.Close)
	m.Connector("office",
		connector.Service{Name: "staging-echo", Kind: postern.KindTCP, Upstream: echo, Environment: "staging"},
		connector.Service{Name: "staging-api", Kind: postern.KindHTTP, Upstream: api.Listener.Addr().String(), Environment: "staging"},
		connector.Service{Name: "prod-ledger", Kind: postern.KindTCP, Upstream: echo, Environment: "prod", Labels: []string{"financial"}},
		connector.Service{Name: "prod-api", Kind: postern.KindHTTP, Upstream: api.Listener.Addr().String(), Environment: "prod", Labels: []string{"financial"}},
	)
	c := m.Client(m.AgentToken("coding-agent", "coding-agents"))
	f = &forward.Forwarder{Client: c, Logger: slog.New(slog.NewJSONHandler(log, nil))}
	done := make(chan struct{})
	var serving int
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := f.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		for range serving {
			<-done
		}
	})
	return func(name string) string {
		t.Helper()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		serving++
		go func() {
			if err := f.Serve(ln, name); err != nil {
				t.Errorf("Serve: %v", err)
			}
			done <- struct{}{}
		}()
		return ln.Addr().String()
	}, f
}

func TestForward(t *testing.T) {
	var log meshtest.Log
	serve, _ := setup(t, &log)
	echo, api, ledger, prodAPI := serve("staging-echo"), serve("staging-api"), serve("prod-ledger"), serve("prod-api")

	t.Run("tcp echo with half-close", func(t *testing.T) {
		c, err := net.Dial("tcp", echo)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "hello through forward\n")
		c.(*net.TCPConn).CloseWrite()
		got, err := io.ReadAll(c)
		if err != nil || string(got) != "hello through forward\n" {
			t.Fatalf("echo: %q, %v", got, err)
		}
	})
	t.Run("http", func(t *testing.T) {
		hc := &http.Client{Transport: &http.Transport{}}
		defer hc.CloseIdleConnections()
		for range 3 { // a kept-alive connection carries several requests
			resp, err := hc.Get("http://" + api + "/orders")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || !strings.HasPrefix(string(b), "orders for /orders host 127.0.0.1:") {
				t.Fatalf("GET /orders: %s %q", resp.Status, b)
			}
		}
	})
	t.Run("tcp denied is a reset", func(t *testing.T) {
		c, err := net.Dial("tcp", ledger)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		_, err = io.ReadAll(c)
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("read on a denied tcp binding: %v, want a reset", err)
		}
	})
	t.Run("http denied is a 403 naming the policy", func(t *testing.T) {
		resp, err := http.Get("http://" + prodAPI + "/orders")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(b), "(policy forbid-financial)") {
			t.Fatalf("GET on a denied binding: %s %q", resp.Status, b)
		}
	})

	meshtest.WaitFor(t, "the log lines", func() bool { return len(log.Events("forward: open refused")) >= 2 })
	for _, ev := range log.Events("forward: open refused") {
		if ev["outcome"] != "refused" || !strings.Contains(ev["err"].(string), "denied by policy") || strings.Join(toStrings(ev["policies"]), ",") != "forbid-financial" {
			t.Errorf("refusal line: %v", ev)
		}
	}
	meshtest.WaitFor(t, "the echo line", func() bool {
		for _, ev := range log.Events("forward: connection closed") {
			if ev["binding"] == "staging-echo" && ev["bytes_up"] == float64(22) && ev["bytes_down"] == float64(22) && ev["outcome"] == "ok" {
				return true
			}
		}
		return false
	})
}

func toStrings(v any) []string {
	var out []string
	l, _ := v.([]any)
	for _, x := range l {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}

// TestForwardUnknownKind: a binding not in the catalog is denied, and the
// client is answered in the protocol its first bytes show.
func TestForwardUnknownKind(t *testing.T) {
	var log meshtest.Log
	serve, _ := setup(t, &log)
	addr := serve("no-such-binding")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusForbidden {
		t.Errorf("status %s, want 404 or 403", resp.Status)
	}
}

// TestShutdown: Shutdown lets a connection finish, then cuts one that
// outlives its context.
func TestShutdown(t *testing.T) {
	var log meshtest.Log
	serve, f := setup(t, &log)
	echo := serve("staging-echo")
	c, err := net.Dial("tcp", echo)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "ping")
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	// Drain while the connection is open: it still works, then ends
	// cleanly when the client is done.
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- f.Shutdown(ctx)
	}()
	meshtest.WaitFor(t, "the listener to close", func() bool {
		c2, err := net.Dial("tcp", echo)
		if err == nil {
			c2.Close()
		}
		return err != nil
	})
	io.WriteString(c, "pong")
	c.(*net.TCPConn).CloseWrite()
	rest, err := io.ReadAll(c)
	if err != nil || string(rest) != "pong" {
		t.Fatalf("after Shutdown started: %q, %v", rest, err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}

	// A connection still open when the context ends is cut.
	serve2, f2 := setup(t, &log)
	echo2 := serve2("staging-echo")
	c3, err := net.Dial("tcp", echo2)
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	io.WriteString(c3, "ping")
	if _, err := io.ReadFull(c3, buf); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := f2.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown with a connection open: %v", err)
	}
	if _, err := io.ReadAll(c3); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("read on a cut connection: %v, want a reset", err)
	}
	meshtest.WaitFor(t, "the cut line", func() bool { return len(log.Events("forward: connection cut at the end of the drain")) == 1 })
}
