// Package forward carries local TCP connections over binding streams, so
// that programs nobody here wrote (psql, pgbench, curl, any TCP client)
// reach a binding unchanged. It is the machinery of `postern forward`.
//
// # Overview
//
// A [Forwarder] holds one agent client (a *mesh.Client). [Forwarder.Serve]
// accepts connections on a listener and carries each over its own binding
// stream, opened with mesh.Client.DialEarly: the open goes out at once and
// the client's first bytes follow it without waiting for the relay's
// answer, which is a round trip saved on every connection. A binding not
// in the agent's catalog (policy will most likely refuse it, and its kind
// is unknown) is opened with Dial instead, so that on a refusal nothing has
// been read from the local client and forward can still answer it in its
// own protocol.
//
// What a local client sees, by kind:
//
//   - postgres: forward answers the startup phase itself (SSLRequest and
//     GSSENCRequest with 'N': the mesh encrypts) and sends the
//     StartupMessage with the open. The connector logs in to PostgreSQL
//     with its own credentials, so any user and password work. A refused
//     open is answered with an ErrorResponse, severity FATAL, whose
//     message is the *postern.Error: SQLSTATE 28000 for a denial, an
//     unauthenticated agent or an unknown binding, 53300 for a limit, and
//     08001 for everything else (no connector, the upstream, a timeout).
//   - http: plain HTTP/1.1 to the connector's proxy, which sets the Host
//     header and the credentials itself. A refused open is answered with
//     an HTTP error (403 denied or unauthenticated, 404 unknown binding,
//     502 upstream, 503 no connector or a limit, 504 timeout).
//   - tcp: raw bytes; a refused open resets the connection.
//
// For a binding not in the catalog, forward looks at the first bytes the
// client sends after a refusal (for at most [SniffTimeout]) and answers as
// a PostgreSQL or HTTP server would when they are one of those.
//
// Half-closes are carried both ways (CloseWrite), and an error in either
// direction ends both: the local connection with a TCP reset.
//
// Every connection ends with one log line: binding, local peer, bytes
// each way, duration and outcome (ok, refused, failed or cut), and for a
// refusal the error, its reason and the deciding policies.
//
// # Usage
//
//	f := &forward.Forwarder{Client: client, Logger: logger}
//	ln, err := net.Listen("tcp", "127.0.0.1:5432")
//	if err != nil {
//		log.Fatal(err)
//	}
//	go f.Serve(ln, "staging-db")
//	// At SIGTERM: stop accepting, let connections finish, cut them at ctx's end.
//	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
//	defer cancel()
//	f.Shutdown(ctx)
package forward
