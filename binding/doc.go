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
//	POSTERN_RELAY=relay.example.com:7443   or several: relay-a.example.com:7443,relay-b.example.com:7443
//	POSTERN_TOKEN=eyJ...              or POSTERN_TOKEN_FILE=/run/postern/token
//	POSTERN_RELAY_PIN=sha256:4f1c...  or POSTERN_RELAY_CA=/etc/postern/relay-ca.pem
//	POSTERN_KEY_FILE=/run/postern/agent.key   (optional: the key a bound token needs)
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
// A PostgreSQL database is a *sql.DB (or a pgx pool, [Binding.PgxPool]):
//
//	db, err := binding.Open("staging-db") // cheap and lazy, like sql.Open
//	if err != nil {
//		log.Fatal(err) // a missing or malformed POSTERN_* variable, named
//	}
//	defer db.Close()
//	sqlDB, err := db.SQL() // the connector holds the password
//	if err != nil {
//		log.Fatal(err)
//	}
//	rows, err := sqlDB.QueryContext(ctx, "SELECT id, item FROM orders ORDER BY id")
//
// A refused open says why:
//
//	err = sqlDB.PingContext(ctx)
//	var me *postern.Error
//	switch {
//	case errors.Is(err, postern.ErrDenied) && errors.As(err, &me):
//		fmt.Println("denied by policy", me.Policies)
//	case errors.Is(err, postern.ErrUnknownBinding):
//		fmt.Println("no such binding for this agent")
//	}
//
// An HTTP API is an *http.Client whose requests name only a path:
//
//	api, err := binding.Open("staging-api")
//	if err != nil {
//		log.Fatal(err)
//	}
//	defer api.Close()
//	hc, err := api.HTTPClient()
//	if err != nil {
//		log.Fatal(err)
//	}
//	resp, err := hc.Get("/orders") // the binding is the host
//
// Handles are safe for concurrent use. [Binding.Close] closes the handles
// the binding made; it does not close the mesh client.
package binding
