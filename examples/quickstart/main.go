// Command quickstart runs a whole Postern mesh in one process and shows,
// in a few lines, what it does: two agents with different identities ask
// for private services through a relay; Cedar policy allows one open and
// denies others, naming the policy that decided; the relay audits each
// decision.
//
//	go run ./examples/quickstart
//
// Everything here is the public Go API (mesh/relay, mesh/connector,
// mesh/identity, policy, mesh, binding) over real QUIC on 127.0.0.1, but
// for the throwaway PostgreSQL server it starts when PostgreSQL is
// installed (internal/pgserver). In a real
// deployment each part is its own process, on its own machine: see the
// README's walkthrough with the postern command.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/postern/postern"
	"github.com/postern/postern/binding"
	"github.com/postern/postern/examples/policies"
	"github.com/postern/postern/internal/pgserver"
	"github.com/postern/postern/mesh"
	"github.com/postern/postern/mesh/connector"
	"github.com/postern/postern/mesh/identity"
	"github.com/postern/postern/mesh/relay"
	"github.com/postern/postern/policy"
	"github.com/postern/postern/transport"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := run(ctx, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

const audience = "postern-quickstart"

func run(ctx context.Context, w io.Writer) error {
	fmt.Fprintln(w, "Postern quickstart: a relay, a connector, private services and two agents, in one process.")
	fmt.Fprintln(w)

	// 1. Private services. They listen on loopback only: in a real network
	// they are the staging API and the systems behind your firewall, and
	// only the connector can reach them.
	api, err := listen(http.HandlerFunc(ordersAPI))
	if err != nil {
		return err
	}
	defer api.Close()
	status, err := listen(http.HandlerFunc(statusAPI))
	if err != nil {
		return err
	}
	defer status.Close()
	ledger, err := listenTCP(func(c net.Conn) { io.WriteString(c, "account 4000-revenue balance 1254300.00\n") })
	if err != nil {
		return err
	}
	defer ledger.Close()
	// A PostgreSQL database with an orders table, when PostgreSQL is
	// installed: a throwaway server (internal/pgserver; any server the
	// connector can reach will do), which the connector logs in to.
	pg, err := startPostgres(ctx)
	if err != nil {
		return err
	}
	if pg != nil {
		defer pg.Stop()
	}

	// 2. Identity: a signing key issues a token per agent and per
	// connector; the relay verifies them with the public key set.
	key, err := identity.GenerateSigningKey(identity.EdDSA)
	if err != nil {
		return err
	}
	jwks, err := key.PublicJWKS()
	if err != nil {
		return err
	}
	issue := func(c identity.Claims) (string, error) {
		c.Audience, c.ExpiresAt = []string{audience}, time.Now().Add(10*time.Minute)
		return key.Issue(c)
	}
	verifier, err := identity.NewVerifier(ctx, identity.VerifierConfig{Audience: audience, KeySet: jwks})
	if err != nil {
		return err
	}
	defer verifier.Close()

	// 3. Policy: the example policies, the product's sentence among them:
	// group coding-agents may connect to Environment staging; forbid
	// anything labelled financial.
	set, err := policy.Parse("examples/policies", policies.Source())
	if err != nil {
		return err
	}
	if errs := set.Validate(policy.ValidateOptions{}); len(errs) > 0 {
		return errors.Join(errs...)
	}

	// 4. The relay: the only part with a public address. Its audit log is
	// collected here to be shown at the end.
	cert, err := transport.SelfSigned("127.0.0.1")
	if err != nil {
		return err
	}
	audit := &auditLog{}
	r, err := relay.Listen(relay.Config{
		Addr:        "127.0.0.1:0",
		Certificate: cert,
		Verifier:    verifier,
		Policy:      policy.NewEngine(set),
		Audit:       slog.New(slog.NewJSONHandler(audit, nil)),
	})
	if err != nil {
		return err
	}
	defer r.Close() // on an early return; step 7 stops it cleanly
	relayAddr, pin := r.Addr().String(), transport.Pin(cert)
	fmt.Fprintf(w, "relay      %s (QUIC), certificate pin %s...\n", relayAddr, pin[:19])
	fmt.Fprintf(w, "policies   %s\n", strings.Join(set.IDs(), ", "))

	// 5. The connector: inside the private network, it dials OUT to the
	// relay and serves the services its token grants. It never listens.
	services := []connector.Service{
		{Name: "staging-api", Kind: postern.KindHTTP, Upstream: api.Addr().String(), Environment: "staging"},
		{Name: "prod-status", Kind: postern.KindHTTP, Upstream: status.Addr().String(), Environment: "prod"},
		{Name: "prod-ledger", Kind: postern.KindTCP, Upstream: ledger.Addr().String(), Environment: "prod", Labels: []string{"financial"}},
	}
	granted := []identity.Service{
		{Name: "staging-api", Kind: postern.KindHTTP, Environment: "staging"},
		{Name: "prod-status", Kind: postern.KindHTTP, Environment: "prod"},
		{Name: "prod-ledger", Kind: postern.KindTCP, Environment: "prod", Labels: []string{"financial"}},
	}
	served := "staging-api (http, staging), prod-status (http, prod), prod-ledger (tcp, prod, labels: financial)"
	if pg != nil {
		services = append(services, connector.Service{Name: "staging-db", Kind: postern.KindPostgres, Upstream: pg.Addr, Environment: "staging",
			Postgres: &connector.Postgres{User: "app", Database: "staging", Password: connector.Secret{Value: pgPassword}, SSLMode: "disable"}})
		granted = append(granted, identity.Service{Name: "staging-db", Kind: postern.KindPostgres, Environment: "staging"})
		served += ", staging-db (postgres, staging)"
	}
	// Its token grants each service and says what it is: the relay lets
	// policy read the issuer's word (kind, environment, labels), and
	// refuses a connector that advertises a service otherwise.
	connTok, err := issue(identity.Claims{Subject: "office-connector", Role: identity.RoleConnector,
		Services: granted})
	if err != nil {
		return err
	}
	// It decides each HTTP request with the relay's policies (sent to it
	// on its session), and audits each into the same log.
	conn, err := connector.New(connector.Config{Relays: []string{relayAddr}, Token: connTok, Pin: pin, Services: services,
		Audit: slog.New(slog.NewJSONHandler(audit, nil))})
	if err != nil {
		return err
	}
	cctx, stopConnector := context.WithCancel(context.Background())
	defer stopConnector()
	connDone := make(chan error, 1)
	go func() { connDone <- conn.Run(cctx) }()
	select {
	case <-conn.Ready():
	case err := <-connDone:
		return fmt.Errorf("connector: %w", err)
	case <-ctx.Done():
		return ctx.Err()
	}
	fmt.Fprintln(w, "connector  office-connector serves "+served)

	// 6. Two agents with different identities try the same bindings.
	for _, a := range []struct{ sub, group string }{{"coding-agent", "coding-agents"}, {"oncall-agent", "oncall"}} {
		tok, err := issue(identity.Claims{Subject: a.sub, Role: identity.RoleAgent, Groups: []string{a.group}})
		if err != nil {
			return err
		}
		if err := agent(ctx, w, relayAddr, pin, tok, a.sub, a.group); err != nil {
			return err
		}
	}

	// 7. Stop everything, then show what the relay audited.
	stopConnector()
	<-connDone
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := r.Shutdown(sctx); err != nil {
		return err
	}
	fmt.Fprintln(w, "\naudit      (the relay's and the connector's log: one JSON event per decision, summarized)")
	audit.print(w)
	fmt.Fprintln(w, "\nNext: the README's walkthrough runs the same with the postern command, each part its own process.")
	return nil
}

// agent is what an agent program does: a client with its token, its
// catalog (the bindings policy lets it open), and an open of each binding.
func agent(ctx context.Context, w io.Writer, relayAddr, pin, token, sub, group string) error {
	c, err := mesh.NewClient(mesh.Config{Relay: relayAddr, Pin: pin, Token: token})
	if err != nil {
		return err
	}
	defer c.Close()
	cat, err := c.Catalog(ctx)
	if err != nil {
		return err
	}
	var names []string
	for _, b := range cat {
		names = append(names, b.Name)
	}
	fmt.Fprintf(w, "\n%s (group %s) may open: %s\n", sub, group, orNothing(names))

	// An HTTP binding: the binding's name is the host.
	hc := &http.Client{Transport: &http.Transport{DialContext: c.Dial}}
	defer hc.CloseIdleConnections()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://staging-api/orders", nil)
	if resp, err := hc.Do(req); err != nil {
		fmt.Fprintf(w, "  %-12s %s\n", "staging-api", refusal(err))
	} else {
		var body struct{ Orders []any }
		json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		fmt.Fprintf(w, "  %-12s allowed: GET /orders -> %s, %d orders\n", "staging-api", resp.Status, len(body.Orders))
		// The connector decides each request: reading staging is
		// permitted, writing is not, and the upstream never sees it.
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://staging-api/orders", strings.NewReader(`{"item":"x"}`))
		if resp, err := hc.Do(req); err != nil {
			fmt.Fprintf(w, "  %-12s POST failed: %v\n", "staging-api", err)
		} else {
			var denial struct{ Message string }
			json.NewDecoder(resp.Body).Decode(&denial)
			resp.Body.Close()
			fmt.Fprintf(w, "  %-12s refused: POST /orders -> %s: %s\n", "staging-api", resp.Status, denial.Message)
		}
	}
	// The production status API: on-call may read it, and may write to it
	// under /v1/incidents/ only (oncall-writes-prod-status reads the
	// request's path); the connector decides each request.
	for _, r := range []struct{ method, path string }{
		{http.MethodGet, "/v1/status"}, {http.MethodPost, "/v1/incidents/42"}, {http.MethodPost, "/v1/config"},
	} {
		req, _ := http.NewRequestWithContext(ctx, r.method, "http://prod-status"+r.path, strings.NewReader(`{}`))
		resp, err := hc.Do(req)
		if err != nil {
			fmt.Fprintf(w, "  %-12s %s\n", "prod-status", refusal(err))
			break // refused at the open: every request would be
		}
		var answer struct{ Status, Message string }
		json.NewDecoder(resp.Body).Decode(&answer)
		resp.Body.Close()
		if resp.StatusCode == http.StatusForbidden {
			fmt.Fprintf(w, "  %-12s refused: %s %s -> %s: %s\n", "prod-status", r.method, r.path, resp.Status, answer.Message)
			continue
		}
		fmt.Fprintf(w, "  %-12s allowed: %s %s -> %s: %s\n", "prod-status", r.method, r.path, resp.Status, answer.Status)
	}
	// A TCP binding: a net.Conn to the private service.
	for _, name := range []string{"prod-ledger"} {
		conn, err := c.Dial(ctx, "tcp", name)
		if err != nil {
			fmt.Fprintf(w, "  %-12s %s\n", name, refusal(err))
			continue
		}
		line, _ := bufio.NewReader(conn).ReadString('\n')
		conn.Close()
		fmt.Fprintf(w, "  %-12s allowed: read %q\n", name, strings.TrimSpace(line))
	}
	hc.CloseIdleConnections()
	for _, n := range names {
		if n == "staging-db" {
			return database(ctx, w, c)
		}
	}
	return nil
}

// database reads and tries to delete through the postgres binding: the
// connector decides each statement, and answers a denied one with
// SQLSTATE 42501.
func database(ctx context.Context, w io.Writer, c *mesh.Client) error {
	b, err := binding.OpenWith(c, "staging-db")
	if err != nil {
		return err
	}
	defer b.Close()
	db, err := b.SQL()
	if err != nil {
		return err
	}
	var n int
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM orders").Scan(&n); err != nil {
		fmt.Fprintf(w, "  %-12s SELECT failed: %v\n", "staging-db", err)
	} else {
		fmt.Fprintf(w, "  %-12s allowed: SELECT count(*) FROM orders -> %d\n", "staging-db", n)
	}
	_, err = db.ExecContext(ctx, "DELETE FROM orders WHERE id = 1")
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		fmt.Fprintf(w, "  %-12s refused: DELETE FROM orders WHERE id = 1 -> SQLSTATE %s: %s\n", "staging-db", pgErr.Code, pgErr.Message)
	} else {
		fmt.Fprintf(w, "  %-12s DELETE: %v\n", "staging-db", err)
	}
	return nil
}

// pgPassword is the database password only the connector holds.
const pgPassword = "quickstart-connector-only"

// startPostgres starts a PostgreSQL server with a staging database, or
// returns nil when PostgreSQL is not installed.
func startPostgres(ctx context.Context) (*pgserver.Server, error) {
	srv, err := pgserver.Start("")
	if errors.Is(err, pgserver.ErrNotInstalled) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for _, step := range []func() error{
		func() error { return srv.CreateRole(ctx, "app", pgPassword) },
		func() error { return srv.CreateDatabase(ctx, "staging", "app") },
		func() error {
			return srv.Exec(ctx, "staging", `CREATE TABLE orders (id int PRIMARY KEY, item text NOT NULL);
INSERT INTO orders VALUES (1, 'keyboard'), (2, 'monitor'), (3, 'cable');
ALTER TABLE orders OWNER TO app;`)
		},
	} {
		if err := step(); err != nil {
			srv.Stop()
			return nil, fmt.Errorf("postgres: %w", err)
		}
	}
	return srv, nil
}

// refusal says why an open was refused: a denial names its policies.
func refusal(err error) string {
	var me *postern.Error
	switch {
	case errors.Is(err, postern.ErrDenied) && errors.As(err, &me) && len(me.Policies) > 0:
		return "DENIED by " + strings.Join(me.Policies, ", ")
	case errors.Is(err, postern.ErrDenied):
		return "DENIED: no policy permits it (default deny)"
	}
	return "failed: " + err.Error()
}

func orNothing(l []string) string {
	if len(l) == 0 {
		return "(nothing)"
	}
	return strings.Join(l, ", ")
}

// auditLog collects the relay's JSON audit events.
type auditLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (a *auditLog) Write(p []byte) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.buf.Write(p)
}

// print shows each event on one line: what happened, who, to what, and
// the deciding policies.
func (a *auditLog) print(w io.Writer) {
	a.mu.Lock()
	defer a.mu.Unlock()
	sc := bufio.NewScanner(bytes.NewReader(a.buf.Bytes()))
	for sc.Scan() {
		var ev map[string]any
		if json.Unmarshal(sc.Bytes(), &ev) != nil {
			continue
		}
		var b strings.Builder
		label := ev["msg"]
		if label == "pgpolicy: statement" {
			label = "sql.statement"
		}
		fmt.Fprintf(&b, "  %-14s %-17s", label, ev["subject"])
		switch ev["msg"] {
		case "session.start":
			if s, ok := ev["services"]; ok {
				fmt.Fprintf(&b, "connector, serving %v", list(s))
			} else {
				fmt.Fprintf(&b, "agent, groups %v, catalog of %v", list(ev["groups"]), ev["bindings"])
			}
		case "session.end":
			fmt.Fprintf(&b, "%v", ev["role"])
		case "open.allow":
			fmt.Fprintf(&b, "-> %-12s allowed by %s, via %v", ev["binding"], list(ev["policies"]), ev["connector"])
		case "open.deny":
			switch p := list(ev["policies"]); {
			case p != "":
				fmt.Fprintf(&b, "-> %-12s denied by %s", ev["binding"], p)
			case ev["code"] == "denied":
				fmt.Fprintf(&b, "-> %-12s denied: no policy permits it", ev["binding"])
			default:
				fmt.Fprintf(&b, "-> %-12s refused: %v", ev["binding"], ev["reason"])
			}
		case "http.request":
			why := "by " + list(ev["policies"])
			if why == "by " {
				why = "(no policy permits it)"
			}
			fmt.Fprintf(&b, "-> %-12s %v %v: %v %s, %v", ev["binding"], ev["method"], ev["path"], ev["decision"], why, ev["status"])
		case "pgpolicy: statement":
			why := "by " + list(ev["policies"])
			if why == "by " {
				why = fmt.Sprintf("(%v)", ev["reason"])
			}
			fmt.Fprintf(&b, "-> %-12s %v: %v %s", ev["binding"], ev["statement"], ev["decision"], why)
		case "stream.close":
			fmt.Fprintf(&b, "-> %-12s closed: %v bytes up, %v bytes down", ev["binding"], ev["bytes_up"], ev["bytes_down"])
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
}

func list(v any) string {
	l, _ := v.([]any)
	s := make([]string, len(l))
	for i, x := range l {
		s[i] = fmt.Sprint(x)
	}
	return strings.Join(s, ",")
}

// ordersAPI is the private staging API.
func ordersAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, `{"orders":[{"id":1,"item":"keyboard"},{"id":2,"item":"monitor"},{"id":3,"item":"cable"}]}`)
}

// statusAPI is the private production status API: a status to read, and
// incidents to open.
func statusAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	if r.Method == http.MethodPost {
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"status":"recorded"}`)
		return
	}
	io.WriteString(w, `{"status":"all systems operational"}`)
}

// server is a loopback listener serving until Close.
type server struct {
	net.Listener
	wg sync.WaitGroup
}

func (s *server) Close() error {
	err := s.Listener.Close()
	s.wg.Wait()
	return err
}

func listen(h http.Handler) (*server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &server{Listener: ln}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		srv.Serve(ln)
		srv.Close()
	}()
	return s, nil
}

func listenTCP(handle func(net.Conn)) (*server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &server{Listener: ln}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return s, nil
}
