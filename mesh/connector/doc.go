// Package connector is the Postern connector as a library: it runs inside
// a private network, dials out to one or more relays, advertises the
// services its token grants, and for each stream a relay opens dials that
// service's upstream.
//
// # Overview
//
// Nothing listens: the connector only dials out, so no private address is
// reachable from the internet. It keeps a session with every relay in
// Config.Relays and, when one goes away, reconnects by itself with
// exponential backoff and jitter, serving again as soon as the relay is
// back. A refusal that retrying cannot fix (a service its token does not
// grant, a token for another role) stops Run with that error.
//
// A connector dials nothing it did not advertise: the relay names a
// service, never an address, and a name that is not one of the connector's
// services is refused without a dial. Upstream failures are reported to
// the agent with a code and a message that do not reveal the upstream's
// address.
//
// # Usage
//
//	c, err := connector.New(connector.Config{
//		Relays: []string{"relay.example.com:7443"},
//		Token:  token, // role connector, services: [staging-db]
//		Pin:    "sha256:4f1c...",
//		Services: []connector.Service{{
//			Name: "staging-db", Kind: postern.KindPostgres,
//			Upstream: "10.0.3.7:5432", Environment: "staging",
//		}},
//	})
//	if err != nil { ... }
//	err = c.Run(ctx) // until ctx is done
package connector
