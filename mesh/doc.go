// Package mesh is what an agent imports to reach private services through
// a Postern relay: a [Client] holding one session with a relay of one or
// several (QUIC, or TLS over TCP where UDP is blocked: see
// [Config].Transport), the agent's catalog of bindings, and a Dial with
// net.Dialer's signature.
//
// # Overview
//
// A [Client] connects lazily: the first [Client.Dial], [Client.Catalog] or
// [Client.Connect] dials the relay, presents the agent's identity token and
// receives the catalog, the bindings that policy lets this agent open. The
// relay pushes a new catalog when policy or connectors change, and
// [Client.CatalogChanged] tells a long-lived agent when. When the
// relay goes away (a restart, a crash, a network change), the next Dial
// reconnects by itself, to another relay when it has several (see
// Several relays). With a [Config].TokenSource, the client presents a
// fresh token on the live session before the current one expires. With a
// [Config].Key, the client proves that key in every handshake, which a
// token bound to it needs: a copy of such a token is useless without the
// key ([postern.ErrKeyNotProven]).
//
// [Client.Dial] opens one stream per use of a binding. The relay
// authorizes the open with Cedar, routes it to a connector, and the
// connector dials the private service; the returned net.Conn, a [*Conn],
// then carries raw bytes. Close closes both directions, [Conn.CloseWrite]
// is the half-close, and deadlines work as on any net.Conn.
// [Client.DialEarly] returns at once and sends the open with the first
// bytes written, saving a round trip for request/response protocols.
//
// [Client.Catalog] lists the bindings the agent may open; a
// [postern.Binding] with ReadOnly set is one on which its policy permits
// only reads (a hint for tools: the connector decides every statement and
// request). [WithDetail] attaches key/value details to the opens made
// with a context: policy reads them as context.details, and the relay's
// and connector's audit events name them, as the agent's own claims.
//
// # Errors
//
// A refused session or open is a [*postern.Error] naming the binding. It
// matches one of the sentinels of package postern with errors.Is:
// [postern.ErrUnauthenticated] (Error.Reason says which token check
// failed; [postern.ErrKeyNotProven] refines it for a bound token without
// its key), [postern.ErrDenied] (Error.Policies names the deciding
// policies), [postern.ErrUnknownBinding], [postern.ErrNoConnector],
// [postern.ErrUpstream], [postern.ErrTimeout], [postern.ErrLimitExceeded],
// [postern.ErrProtocol], [postern.ErrUnavailable], [postern.ErrRevoked] and
// [postern.ErrClosed] (which wraps net.ErrClosed).
//
// A stream already open can be taken away: when a policy reload or a
// token refresh means its open would now be denied, the relay cuts it,
// and its Read and Write return a [*postern.Error] matching
// [postern.ErrRevoked] whose Policies name the policies that deny it now;
// when the relay's revocation list names the token or its subject, every
// stream and the next connect fail with [postern.ErrRevoked] (Reason
// "token_revoked" or "subject_revoked"), and reconnecting does not help.
//
// # Traces and metrics
//
// The client reports through OpenTelemetry's global providers, when the
// program installs them (otel.SetTracerProvider, otel.SetMeterProvider),
// and costs a non-recording span otherwise; it imports the OpenTelemetry
// API only, never an SDK, an exporter or Prometheus. Each Dial and
// DialEarly is a span "postern.open", a child of the span in its context,
// whose W3C trace context goes to the relay in the Open and from there to
// the connector and an HTTP upstream (traceparent). Metrics:
// postern.client.opens (by postern.binding and postern.outcome) and
// postern.client.open.duration (seconds).
//
// # Usage
//
//	client, err := mesh.NewClient(mesh.Config{
//		Relay: "relay.example.com:7443",
//		Token: os.Getenv("POSTERN_TOKEN"),
//		Pin:   os.Getenv("POSTERN_RELAY_PIN"), // or RootCAs
//	})
//	if err != nil {
//		log.Fatal(err)
//	}
//	defer client.Close()
//	conn, err := client.Dial(ctx, "tcp", "staging-echo")
//	if err != nil {
//		log.Fatal(err) // a *postern.Error; errors.Is(err, postern.ErrDenied) names the policy
//	}
//	defer conn.Close()
//
// # Several relays
//
// A mesh may run several relays; connectors keep a session with every
// one. An agent lists them in [Config].Relays (POSTERN_RELAY takes them
// comma-separated), in order of preference:
//
//	client, err := mesh.NewClient(mesh.Config{
//		Relays: []string{"relay-a.example.com:7443", "relay-b.example.com:7443"},
//		Token:  os.Getenv("POSTERN_TOKEN"),
//		Pin:    os.Getenv("POSTERN_RELAY_PIN"), // one certificate on every relay, or RootCAs
//	})
//	if err != nil {
//		log.Fatal(err)
//	}
//	defer client.Close()
//
// The client holds a session with one relay at a time, rather than one
// with each: a relay carries each agent once, and the catalog is the one
// relay's in use. It connects to the first relay that answers (the first
// in order at once, each next one 250 ms later), and stays with it while
// it is healthy. A relay that falls silent for 1.25 s (the client sends a
// keep-alive every second, which a live relay answers) gets no new opens:
// the client moves to the next, with that relay's catalog
// ([Client.CatalogChanged] fires), and an open that had not been answered
// is made again there by itself, which is safe because nothing but the
// open had gone out (Dial's opens; not DialEarly's, whose first bytes
// went with it). The streams already open on the silent relay end with an
// error, never io.EOF, at the 5 s idle timeout, 5 to 6 s after the relay
// died, unless it is heard from again. A relay that failed is tried after
// the others for 30 s. While no relay answers, the client sends each a
// fresh handshake every 500 ms (rather than waiting out QUIC's
// retransmissions, which back off to seconds), so that a relay restarted
// on its address is in use again within half a second of being ready.
//
// Typed handles (*sql.DB, *http.Client) over a Client are in package
// binding. The relay and the connector are libraries too, in mesh/relay
// and mesh/connector, so that an agent binary does not compile them in.
package mesh
