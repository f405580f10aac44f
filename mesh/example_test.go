package mesh_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/postern/postern/mesh"
)

// An agent that manages its own client dials a binding by name and gets a
// net.Conn to the private service.
func ExampleClient_Dial() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	client, err := mesh.NewClient(mesh.Config{
		Relay: "relay.example.com:7443",
		Token: os.Getenv("POSTERN_TOKEN"),
		Pin:   os.Getenv("POSTERN_RELAY_PIN"), // or RootCAs
	})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	conn, err := client.Dial(ctx, "tcp", "staging-echo")
	if err != nil {
		log.Fatal(err) // a *postern.Error; errors.Is(err, postern.ErrDenied) names the policy
	}
	defer conn.Close()
	fmt.Fprintln(conn, "hello")
}

// An agent of a mesh with several relays lists them all, in order of
// preference; the client moves to the next when the one in use goes away.
func ExampleConfig_relays() {
	client, err := mesh.NewClient(mesh.Config{
		Relays: []string{"relay-a.example.com:7443", "relay-b.example.com:7443"},
		Token:  os.Getenv("POSTERN_TOKEN"),
		Pin:    os.Getenv("POSTERN_RELAY_PIN"), // one certificate on every relay, or RootCAs
	})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
}
