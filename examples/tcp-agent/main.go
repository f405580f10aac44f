// Command tcp-agent reaches a private TCP service through Postern: the
// binding's Dial returns a net.Conn carrying raw bytes.
//
// Run it against `postern dev`, whose staging-echo service echoes what it
// receives: start the mesh in one terminal, export the variables it
// prints, and run the agent in another:
//
//	go run ./cmd/postern dev
//	export POSTERN_RELAY=127.0.0.1:7443 POSTERN_RELAY_PIN=sha256:... POSTERN_TOKEN_FILE=...
//	go run ./examples/tcp-agent
package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"time"

	"github.com/postern/postern/binding"
)

func main() {
	defer binding.CloseDefault() // end the relay session now, not at its idle timeout

	echo, err := binding.Open("staging-echo")
	if err != nil {
		log.Fatal(err)
	}
	defer echo.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := echo.Dial(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	// ctx bounded the open; the deadline bounds the exchange that follows.
	if d, ok := ctx.Deadline(); ok {
		conn.SetDeadline(d)
	}

	if _, err := io.WriteString(conn, "hello through the mesh\n"); err != nil {
		log.Fatal(err)
	}
	// Half-close: the service reads EOF, and its answer still comes back.
	if err := conn.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		log.Fatal(err)
	}
	reply, err := io.ReadAll(conn)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("staging-echo answered: %s", reply)
}
