package connector_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"os/signal"
	"time"

	"github.com/postern/postern"
	"github.com/postern/postern/mesh/connector"
	"github.com/postern/postern/mesh/identity"
	"github.com/postern/postern/transport"
)

// A connector serving a PostgreSQL database: it logs in with a password
// read from the environment at each login, so the agents never hold it.
// New checks the configuration and dials nothing.
func ExampleNew() {
	// The relay's certificate pin, as "postern pin relay.crt" prints it.
	cert, err := transport.SelfSigned("relay.example.com")
	if err != nil {
		log.Fatal(err)
	}
	pin := transport.Pin(cert)
	// The connector's token, as "postern token issue --role connector
	// --service staging-db:postgres:staging" issues it: the relay lets
	// policy read what the token says the service is.
	key, err := identity.GenerateSigningKey(identity.EdDSA)
	if err != nil {
		log.Fatal(err)
	}
	token, err := key.Issue(identity.Claims{
		Subject:   "office-connector",
		Audience:  []string{"postern"},
		ExpiresAt: time.Now().Add(24 * time.Hour),
		Role:      identity.RoleConnector,
		Services:  []identity.Service{{Name: "staging-db", Kind: postern.KindPostgres, Environment: "staging"}},
	})
	if err != nil {
		log.Fatal(err)
	}

	c, err := connector.New(connector.Config{
		Relays: []string{"relay.example.com:7443"},
		Token:  token, // role connector, services: [staging-db]
		Pin:    pin,   // the relay certificate's pin
		Services: []connector.Service{{
			Name:        "staging-db",
			Kind:        postern.KindPostgres,
			Upstream:    "10.0.3.7:5432", // never sent to agents
			Environment: "staging",
			Postgres: &connector.Postgres{ // the connector logs in, not the agent
				User:     "app",
				Database: "app",
				Password: connector.Secret{Env: "STAGING_DB_PASSWORD"}, // or File
				// for agents that may not write: granted only SELECT
				ReadOnly: &connector.PostgresLogin{User: "app_reader", Password: connector.Secret{Env: "STAGING_DB_READER_PASSWORD"}},
			},
		}},
	})
	if err != nil {
		log.Fatal(err)
	}
	select {
	case <-c.Ready():
	default:
		fmt.Println("configured; not connected until Run dials the relay")
	}
	// Output: configured; not connected until Run dials the relay
}

// A postgres service without its login is refused at New, not at the
// first agent's connect.
func ExampleNew_noCredentials() {
	cert, _ := transport.SelfSigned("relay.example.com")
	_, err := connector.New(connector.Config{
		Relays: []string{"relay.example.com:7443"},
		Token:  "a connector token",
		Pin:    transport.Pin(cert),
		Services: []connector.Service{{
			Name: "staging-db", Kind: postern.KindPostgres, Upstream: "10.0.3.7:5432",
		}},
	})
	fmt.Println(err)
	// Output: connector: config: service "staging-db": kind postgres needs Postgres: the login the connector uses upstream
}

// Run serves until its context is done, reconnecting to each relay with
// backoff; it stops early only for a refusal that retrying cannot fix.
func ExampleConnector_Run() {
	c, err := connector.New(connector.Config{
		Relays:   []string{"relay.example.com:7443"},
		Token:    os.Getenv("POSTERN_TOKEN"),
		Pin:      os.Getenv("POSTERN_RELAY_PIN"),
		Services: []connector.Service{{Name: "staging-echo", Upstream: "127.0.0.1:7"}},
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := c.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		log.Fatal(err) // the relay refused the token or a service
	}
}
