// Package binding gives agent code typed handles to private services
// reached through a Postern relay: a *sql.DB or pgx pool for a PostgreSQL
// database, an *http.Client for an internal HTTP API, a net.Conn for any
// TCP service. The agent never holds the service's credentials.
//
// # Overview
//
// [Open] takes a binding's name and returns a [Binding] on a process-wide
// mesh client configured from the environment (see [ConfigFromEnv]):
//
//	POSTERN_RELAY=relay.example.com:7443
//	POSTERN_TOKEN=eyJ...              or POSTERN_TOKEN_FILE=/run/postern/token
//	POSTERN_RELAY_PIN=sha256:4f1c...  or POSTERN_RELAY_CA=/etc/postern/relay-ca.pem
//
// A missing or malformed variable is an [*EnvError] that names it.
// [OpenWith] takes a [mesh.Client] the program manages itself.
//
// Like sql.Open, Open is cheap and lazy: the first use of a handle
// connects to the relay, receives the agent's catalog (the bindings policy
// lets it open) and checks the binding's kind there, as the connector
// advertised it:
//
//   - postgres: [Binding.SQL], [Binding.PgxPool], [Binding.PgxConfig]
//   - http: [Binding.HTTPClient], [Binding.RoundTripper]
//   - tcp: [Binding.Dial]
//
// Asking for a handle of the wrong kind is a [*KindError]
// ("binding: staging-api is an http binding, not postgres"). A binding
// that is not in the catalog is opened anyway, so that the relay says why:
// the error matches [postern.ErrDenied] and names the deciding policies, or
// matches [postern.ErrUnknownBinding]. [Binding.Kind] reads the catalog
// alone. Every refused open is a [*postern.Error]; test it with errors.Is.
//
// # Credentials
//
// The connector serving a binding holds the credentials. For PostgreSQL it
// logs in to the database itself (SCRAM-SHA-256, MD5 or a password, with
// the user, database and password of its configuration) and hands the
// agent the logged-in session; the user and password pgx sends are
// placeholders that never reach the database. A login the database
// refuses fails the agent's connect with an error matching
// [postern.ErrUpstream], which names no secret. Runtime parameters in the
// agent's startup message (application_name, search_path) are not
// applied; use SET. The session's application_name is
// "postern:<agent>", so that pg_stat_activity shows which agent a session
// serves. For HTTP the connector sets the configured headers, replacing
// any the agent sent under the same names.
//
// # Usage
//
//	db, err := binding.Open("staging-db")
//	if err != nil {
//		log.Fatal(err) // e.g. binding: POSTERN_RELAY: not set: ...
//	}
//	defer db.Close()
//	sqlDB, _ := db.SQL()
//	rows, err := sqlDB.QueryContext(ctx, "select id, name from items")
//	var me *postern.Error
//	if errors.As(err, &me) && errors.Is(err, postern.ErrDenied) {
//		log.Printf("denied by %v", me.Policies)
//	}
//
//	api, _ := binding.Open("staging-api")
//	hc, _ := api.HTTPClient()
//	resp, err := hc.Get("/v1/items") // the binding is the host
//
// Handles are safe for concurrent use. [Binding.Close] closes the handles
// the binding made; it does not close the mesh client.
package binding
