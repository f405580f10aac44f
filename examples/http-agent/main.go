// Command http-agent calls a private HTTP API through Postern. Requests
// name only a path; the connector adds the API's Authorization header,
// which this program never holds.
//
// Run it against `postern dev`: start the mesh in one terminal, export the
// variables it prints, and run the agent in another:
//
//	go run ./cmd/postern dev
//	export POSTERN_RELAY=127.0.0.1:7443 POSTERN_RELAY_PIN=sha256:... POSTERN_TOKEN_FILE=...
//	go run ./examples/http-agent
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"time"

	"github.com/postern/postern/binding"
)

func main() {
	// End the session with the relay when done, so its audit trail
	// records the end now rather than at the relay's idle timeout.
	defer binding.CloseDefault()

	api, err := binding.Open("staging-api")
	if err != nil {
		log.Fatal(err)
	}
	defer api.Close()
	hc, err := api.HTTPClient()
	if err != nil {
		log.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", "/orders", nil) // the binding is the host
	if err != nil {
		log.Fatal(err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		log.Fatal(err) // a refused open is a *postern.Error inside the *url.Error
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		log.Fatalf("GET /orders: %s", resp.Status)
	}
	var body struct {
		Orders []struct {
			ID     int    `json:"id"`
			Item   string `json:"item"`
			Status string `json:"status"`
		} `json:"orders"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		log.Fatal(err)
	}
	fmt.Println("staging-api orders:")
	for _, o := range body.Orders {
		fmt.Printf("  %d  %-10s %s\n", o.ID, o.Item, o.Status)
	}
}
