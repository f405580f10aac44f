package mesh_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/postern/postern/mesh"
	"github.com/postern/postern/mesh/identity"
	"github.com/postern/postern/transport"
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

// requestToken stands for the deployment's token service: it asks for an
// agent token bound to the key whose thumbprint is jkt (an issuer with a
// signing key sets identity.Claims.BoundKey to it).
func requestToken(ctx context.Context, jkt string) (string, error) {
	return "", fmt.Errorf("no token service in this example (key %s)", jkt)
}

// A program that asks for its own token makes a key at start, keeps it in
// memory only and has its token bound to it: a copy of the token, from the
// environment or a log, is refused by the relay without the key.
func ExampleConfig_key() {
	ctx := context.Background()
	key, err := transport.GenerateClientKey() // never written anywhere
	if err != nil {
		log.Fatal(err)
	}
	jkt, err := identity.KeyThumbprint(key.Public())
	if err != nil {
		log.Fatal(err)
	}
	client, err := mesh.NewClient(mesh.Config{
		Relay:       "relay.example.com:7443",
		Pin:         os.Getenv("POSTERN_RELAY_PIN"),
		Key:         key, // proved in every handshake
		TokenSource: func(ctx context.Context) (string, error) { return requestToken(ctx, jkt) },
	})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	if err := client.Connect(ctx); err != nil {
		log.Fatal(err) // errors.Is(err, postern.ErrKeyNotProven) for a token bound to another key
	}
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
