package relay_test

import (
	"context"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/postern/postern/mesh/identity"
	"github.com/postern/postern/mesh/relay"
	"github.com/postern/postern/policy"
	"github.com/postern/postern/transport"
)

// A relay on a public UDP port, with a self-signed certificate whose pin
// agents and connectors trust, tokens verified against a JWK set, and the
// policies of a directory.
func ExampleListen() {
	cert, err := transport.SelfSigned("relay.example.com") // or tls.LoadX509KeyPair
	if err != nil {
		log.Fatal(err)
	}
	log.Println("relay pin:", transport.Pin(cert))
	jwks, err := os.ReadFile("/etc/postern/jwks.json") // postern keygen writes it
	if err != nil {
		log.Fatal(err)
	}
	verifier, err := identity.NewVerifier(context.Background(), identity.VerifierConfig{
		Audience: "postern",
		KeySet:   jwks,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer verifier.Close()
	set, err := policy.LoadDir("/etc/postern/policies")
	if err != nil {
		log.Fatal(err)
	}

	r, err := relay.Listen(relay.Config{
		Addr:        ":7443",
		Certificate: cert,
		Verifier:    verifier,              // identity.NewVerifier
		Policy:      policy.NewEngine(set), // policy.LoadDir
		Audit:       slog.New(slog.NewJSONHandler(os.Stdout, nil)),
	})
	if err != nil {
		log.Fatal(err)
	}
	log.Println("relay listening on", r.Addr())
	sig, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	<-sig.Done()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.Shutdown(ctx); err != nil { // drains open streams, bounded by ctx
		log.Print(err)
	}
}
