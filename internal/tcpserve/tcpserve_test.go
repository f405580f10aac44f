package tcpserve

import (
	"bufio"
	"net"
	"testing"
	"time"
)

// TestServe: each connection gets its handler; stop closes the listener
// and the connections still open, and returns only once every handler
// has; a second stop does nothing.
func TestServe(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	returned := make(chan struct{}, 2)
	stop := Serve(ln, func(c net.Conn) {
		defer func() { returned <- struct{}{} }()
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return
		}
		c.Write([]byte("echo " + line))
		c.Read(make([]byte, 1)) // until the client or stop closes it
	})
	var clients []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte("hi\n"))
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if got, err := bufio.NewReader(c).ReadString('\n'); err != nil || got != "echo hi\n" {
			t.Fatalf("got %q, %v", got, err)
		}
		clients = append(clients, c)
	}
	stop()
	if len(returned) != 2 {
		t.Fatalf("stop returned with %d of 2 handlers done", len(returned))
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Error("the listener still accepts after stop")
	}
	for _, c := range clients {
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Error("a connection is still open after stop")
		}
	}
	stop()
}
