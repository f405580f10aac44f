package pgpolicy

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/goleak"

	"github.com/postern/postern/internal/pgtest"
	"github.com/postern/postern/internal/sqlclass"
	"github.com/postern/postern/policy"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(pgtest.Main(m)) }

// testPolicies: reads are permitted, deletes and DDL forbidden, other
// writes permitted by nothing.
const testPolicies = `
@id("read-anything")
permit (principal, action in Action::"read", resource);

@id("no-deletes")
forbid (principal, action == Action::"sql:delete", resource);

@id("no-ddl-anywhere")
forbid (principal, action in Action::"ddl", resource);
`

// cedarDecide decides a statement as the connector does: each of its
// actions with Cedar, allowed only if every one is.
func cedarDecide(t testing.TB, src string) Decide {
	t.Helper()
	set, err := policy.Parse("test.cedar", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	engine := policy.NewEngine(set)
	agent, err := policy.NewPrincipal("agent-1", []string{"coding-agents"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	db := policy.NewResource("test-db", "postgres", "staging")
	return func(_ context.Context, st sqlclass.Statement) Verdict {
		return EngineDecide(engine, policy.Request{Principal: agent, Resource: db}, &st)
	}
}

// testDB makes a database with a table of three rows and returns the
// connection string of its superuser.
func testDB(t testing.TB) (*pgtest.Server, string) {
	t.Helper()
	s := pgtest.Shared(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db := fmt.Sprintf("pgpolicy_%d", time.Now().UnixNano())
	if err := s.Exec(ctx, "postgres", "CREATE DATABASE "+db); err != nil {
		t.Fatal(err)
	}
	if err := s.Exec(ctx, db, `CREATE TABLE items (id int PRIMARY KEY, name text);
		INSERT INTO items VALUES (1, 'one'), (2, 'two'), (3, 'three');`); err != nil {
		t.Fatal(err)
	}
	return s, s.ConnString(s.User, s.Password, db)
}

// proxy is a listener that serves each connection as the connector does:
// log in upstream, hijack, welcome the agent, then Serve.
type proxy struct {
	addr string
	mu   sync.Mutex
	errs []error
	wg   sync.WaitGroup
}

// startProxy proxies to the database of upstream with cfg (plain splice
// when cfg is nil) and stops when t ends.
func startProxy(t testing.TB, upstream string, cfg *Config) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{addr: ln.Addr().String()}
	ctx, cancel := context.WithCancel(context.Background())
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				err := serveOne(ctx, c, upstream, cfg)
				p.mu.Lock()
				p.errs = append(p.errs, err)
				p.mu.Unlock()
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		cancel()
		p.wg.Wait()
	})
	return p
}

// errors returns what Serve returned for each session that ended.
func (p *proxy) errors() []error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]error(nil), p.errs...)
}

func (p *proxy) connString(upstream string) string {
	host, port, _ := net.SplitHostPort(p.addr)
	cfg, _ := pgconn.ParseConfig(upstream)
	return fmt.Sprintf("host=%s port=%s user=%s password=ignored dbname=%s sslmode=disable", host, port, cfg.User, cfg.Database)
}

func serveOne(ctx context.Context, agent net.Conn, upstream string, cfg *Config) error {
	defer agent.Close()
	lctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	pc, err := pgconn.Connect(lctx, upstream)
	if err != nil {
		return err
	}
	hc, err := pc.Hijack()
	if err != nil {
		pc.Close(ctx)
		return err
	}
	up := hc.Conn
	up.SetDeadline(time.Time{})
	if err := welcome(agent, hc); err != nil {
		up.Close()
		return err
	}
	if cfg == nil {
		return splice(agent, up)
	}
	return Serve(ctx, agent, up, *cfg)
}

// welcome reads the agent's startup message and answers as if it had
// logged in to the upstream session (the connector's pgWelcome, minus
// protocol negotiation).
func welcome(agent net.Conn, hc *pgconn.HijackedConn) error {
	agent.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer agent.SetReadDeadline(time.Time{})
	var hdr [4]byte
	if _, err := io.ReadFull(agent, hdr[:]); err != nil {
		return err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n < 8 || n > 10000 {
		return fmt.Errorf("startup message of %d bytes", n)
	}
	if _, err := io.ReadFull(agent, make([]byte, n-4)); err != nil {
		return err
	}
	buf, _ := (&pgproto3.AuthenticationOk{}).Encode(nil)
	for k, v := range hc.ParameterStatuses {
		buf, _ = (&pgproto3.ParameterStatus{Name: k, Value: v}).Encode(buf)
	}
	buf, _ = (&pgproto3.BackendKeyData{ProcessID: hc.PID, SecretKey: hc.SecretKey}).Encode(buf)
	buf, _ = (&pgproto3.ReadyForQuery{TxStatus: hc.TxStatus}).Encode(buf)
	_, err := agent.Write(buf)
	return err
}

// splice is the connector's raw byte relay, for comparison.
func splice(a, b net.Conn) error {
	done := make(chan struct{})
	go func() {
		io.Copy(a, b)
		a.Close()
		close(done)
	}()
	io.Copy(b, a)
	b.Close()
	<-done
	return nil
}

// setup starts a database and a proxy with the test policies, and returns
// the connection strings of the upstream and of the proxy, and the audit log.
func setup(t *testing.T, mod func(*Config)) (up, proxied string, p *proxy, log *syncBuffer) {
	t.Helper()
	_, up = testDB(t)
	log = &syncBuffer{}
	cfg := &Config{Decide: cedarDecide(t, testPolicies), Audit: slog.New(slog.NewJSONHandler(log, nil))}
	if mod != nil {
		mod(cfg)
	}
	p = startProxy(t, up, cfg)
	return up, p.connString(up), p, log
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// events returns the audit records logged so far.
func (b *syncBuffer) events(t *testing.T) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(b.b.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("audit line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func connectPgx(t *testing.T, connString string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(testCtx(t), connString)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func connectPgconn(t *testing.T, connString string) *pgconn.PgConn {
	t.Helper()
	c, err := pgconn.Connect(testCtx(t), connString)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// wantDenied checks that err is a 42501 whose message contains want.
func wantDenied(t *testing.T, err error, want string) {
	t.Helper()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		t.Fatalf("error %v, want a denial", err)
	}
	if pe.Code != "42501" || !strings.Contains(pe.Message, want) {
		t.Fatalf("error %s %q, want 42501 containing %q", pe.Code, pe.Message, want)
	}
}

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != code {
		t.Fatalf("error %v, want SQLSTATE %s", err, code)
	}
}

func countItems(t *testing.T, up string) int {
	t.Helper()
	c := connectPgx(t, up)
	var n int
	if err := c.QueryRow(testCtx(t), "SELECT count(*) FROM items").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestSelectAndDenials(t *testing.T) {
	up, proxied, _, log := setup(t, nil)
	ctx := testCtx(t)
	c := connectPgx(t, proxied)

	// pgx prepares once and binds the cached statement on each run.
	for i := 1; i <= 3; i++ {
		var name string
		if err := c.QueryRow(ctx, "SELECT name FROM items WHERE id = $1", i).Scan(&name); err != nil {
			t.Fatalf("select %d: %v", i, err)
		}
	}

	_, err := c.Exec(ctx, "DELETE FROM items WHERE id = 1")
	wantDenied(t, err, "postern: denied by policy (no-deletes): DELETE FROM items WHERE id = $1")
	_, err = c.Exec(ctx, "INSERT INTO items VALUES (7, 'seven')")
	wantDenied(t, err, "postern: denied (no policy permits sql:insert)")
	_, err = c.Exec(ctx, "DROP TABLE items")
	wantDenied(t, err, "no-ddl-anywhere")
	_, err = c.Exec(ctx, "SELEC 1")
	wantDenied(t, err, "does not parse: syntax error")

	// The session is still usable, and nothing was changed.
	var n int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM items").Scan(&n); err != nil || n != 3 {
		t.Fatalf("count through the proxy: %d, %v", n, err)
	}
	if n := countItems(t, up); n != 3 {
		t.Fatalf("%d rows upstream, want 3", n)
	}

	// The simple protocol, as psql sends it.
	pc := connectPgconn(t, proxied)
	_, err = pc.Exec(ctx, "DELETE FROM items").ReadAll()
	wantDenied(t, err, "no-deletes")
	if pc.TxStatus() != 'I' {
		t.Fatalf("status %q after a denial outside a transaction, want I", pc.TxStatus())
	}
	res, err := pc.Exec(ctx, "SELECT 1; SELECT 2").ReadAll()
	if err != nil || len(res) != 2 {
		t.Fatalf("two selects: %v, %v", res, err)
	}

	// A literal never reaches the audit log.
	if _, err := c.Exec(ctx, "SELECT * FROM items WHERE name = 'hunter2'"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "DELETE FROM items WHERE name = 'hunter3'"); err == nil {
		t.Fatal("delete allowed")
	}
	if s := log.String(); strings.Contains(s, "hunter") {
		t.Fatalf("a literal in the audit log:\n%s", s)
	}
}

func TestMultiStatementAllOrNothing(t *testing.T) {
	up, proxied, _, _ := setup(t, nil)
	ctx := testCtx(t)
	pc := connectPgconn(t, proxied)
	res, err := pc.Exec(ctx, "SELECT 1; INSERT INTO items VALUES (9, 'nine'); SELECT 2").ReadAll()
	wantDenied(t, err, "no policy permits sql:insert")
	for _, r := range res {
		if r.Err == nil {
			t.Fatalf("a statement ran: %s", r.CommandTag)
		}
	}
	if n := countItems(t, up); n != 3 {
		t.Fatalf("%d rows, want 3", n)
	}
	// Inside one Query, a transaction the denial would have opened is
	// not left open.
	if _, err := pc.Exec(ctx, "BEGIN; DELETE FROM items; COMMIT").ReadAll(); err == nil {
		t.Fatal("allowed")
	}
	if pc.TxStatus() != 'I' {
		t.Fatalf("status %q, want I", pc.TxStatus())
	}
}

func TestDenialInTransaction(t *testing.T) {
	up, proxied, _, _ := setup(t, nil)
	ctx := testCtx(t)

	t.Run("simple", func(t *testing.T) {
		pc := connectPgconn(t, proxied)
		if _, err := pc.Exec(ctx, "BEGIN").ReadAll(); err != nil {
			t.Fatal(err)
		}
		_, err := pc.Exec(ctx, "DELETE FROM items WHERE id = 2").ReadAll()
		wantDenied(t, err, "no-deletes")
		if pc.TxStatus() != 'E' {
			t.Fatalf("status %q after a denial in a transaction, want E", pc.TxStatus())
		}
		_, err = pc.Exec(ctx, "SELECT 1").ReadAll()
		wantCode(t, err, "25P02")
		// A second denial in the failed transaction is still a denial.
		_, err = pc.Exec(ctx, "DELETE FROM items").ReadAll()
		wantDenied(t, err, "no-deletes")
		res, err := pc.Exec(ctx, "COMMIT").ReadAll()
		if err != nil || len(res) != 1 || res[0].CommandTag.String() != "ROLLBACK" {
			t.Fatalf("commit: %v, %v", res, err)
		}
		if pc.TxStatus() != 'I' {
			t.Fatalf("status %q, want I", pc.TxStatus())
		}
		if _, err := pc.Exec(ctx, "SELECT 1").ReadAll(); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("extended", func(t *testing.T) {
		c := connectPgx(t, proxied)
		tx, err := c.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var n int
		if err := tx.QueryRow(ctx, "SELECT count(*) FROM items").Scan(&n); err != nil {
			t.Fatal(err)
		}
		_, err = tx.Exec(ctx, "UPDATE items SET name = 'x'")
		wantDenied(t, err, "no policy permits sql:update")
		_, err = tx.Exec(ctx, "SELECT 1")
		wantCode(t, err, "25P02")
		if err := tx.Commit(ctx); !errors.Is(err, pgx.ErrTxCommitRollback) {
			t.Fatalf("commit: %v, want ErrTxCommitRollback", err)
		}
		if err := c.QueryRow(ctx, "SELECT count(*) FROM items").Scan(&n); err != nil || n != 3 {
			t.Fatalf("after the transaction: %d, %v", n, err)
		}
	})
	if n := countItems(t, up); n != 3 {
		t.Fatalf("%d rows, want 3", n)
	}
}

func TestExtendedProtocol(t *testing.T) {
	_, proxied, _, _ := setup(t, nil)
	ctx := testCtx(t)
	pc := connectPgconn(t, proxied)

	// A named statement, prepared once and run several times.
	if _, err := pc.Prepare(ctx, "sel", "SELECT name FROM items WHERE id = $1", nil); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"1", "2", "3"} {
		res := pc.ExecPrepared(ctx, "sel", [][]byte{[]byte(id)}, nil, nil).Read()
		if res.Err != nil || len(res.Rows) != 1 {
			t.Fatalf("run %s: %v, %v", id, res.Rows, res.Err)
		}
	}

	// A denied Parse, then a Bind and Execute of that name.
	_, err := pc.Prepare(ctx, "del", "DELETE FROM items WHERE id = $1", nil)
	wantDenied(t, err, "no-deletes")
	res := pc.ExecPrepared(ctx, "del", [][]byte{[]byte("1")}, nil, nil).Read()
	wantDenied(t, res.Err, "no-deletes")
	// A name never prepared, and one prepared outside the protocol.
	res = pc.ExecPrepared(ctx, "nothing", nil, nil, nil).Read()
	wantDenied(t, res.Err, "was not prepared through the policy proxy")
	// The session recovered at each Sync.
	if res := pc.ExecPrepared(ctx, "sel", [][]byte{[]byte("1")}, nil, nil).Read(); res.Err != nil {
		t.Fatal(res.Err)
	}
	if pc.TxStatus() != 'I' {
		t.Fatalf("status %q", pc.TxStatus())
	}
	// A closed statement is forgotten: binding its name again is refused
	// until it is prepared again.
	if err := pc.Deallocate(ctx, "sel"); err != nil {
		t.Fatal(err)
	}
	res = pc.ExecPrepared(ctx, "sel", [][]byte{[]byte("1")}, nil, nil).Read()
	wantDenied(t, res.Err, "was not prepared through the policy proxy")
	// So is a statement prepared by SQL, decided there as a PREPARE.
	if _, err := pc.Exec(ctx, "PREPARE bysql AS SELECT 1").ReadAll(); err != nil {
		t.Fatal(err)
	}
	res = pc.ExecPrepared(ctx, "bysql", nil, nil, nil).Read()
	wantDenied(t, res.Err, "was not prepared through the policy proxy")
	if _, err := pc.Exec(ctx, "EXECUTE bysql").ReadAll(); err == nil {
		t.Fatal("EXECUTE allowed: it is unclassified")
	}
}

// TestPipeline runs the same batches directly and through the proxy, with
// a statement that fails (directly: a missing table; proxied: a denied
// insert) in the middle, and wants the same outcome for each statement.
func TestPipeline(t *testing.T) {
	up, proxied, _, _ := setup(t, nil)
	ctx := testCtx(t)
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol} {
		t.Run(mode.String(), func(t *testing.T) {
			run := func(connString, failing string) []string {
				cfg, err := pgx.ParseConfig(connString)
				if err != nil {
					t.Fatal(err)
				}
				cfg.DefaultQueryExecMode = mode
				c, err := pgx.ConnectConfig(ctx, cfg)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close(ctx)
				b := &pgx.Batch{}
				b.Queue("SELECT count(*) FROM items")
				b.Queue(failing)
				b.Queue("SELECT name FROM items WHERE id = $1", 1)
				br := c.SendBatch(ctx, b)
				var outcome []string
				for range 3 {
					_, err := br.Exec()
					var pe *pgconn.PgError
					switch {
					case err == nil:
						outcome = append(outcome, "ok")
					case errors.As(err, &pe):
						outcome = append(outcome, "error "+map[bool]string{true: "denied", false: "other"}[pe.Code == "42501" || pe.Code == "42P01"])
					default:
						outcome = append(outcome, "failed")
					}
				}
				if err := br.Close(); err != nil {
					outcome = append(outcome, "close error")
				}
				// Then the session works.
				var n int
				if err := c.QueryRow(ctx, "SELECT count(*) FROM items").Scan(&n); err != nil {
					t.Fatalf("after the batch: %v", err)
				}
				return outcome
			}
			direct := run(up, "INSERT INTO missing_table VALUES (1)")
			through := run(proxied, "INSERT INTO items VALUES (8, 'eight')")
			if mode == pgx.QueryExecModeSimpleProtocol {
				// pgx sends the batch as one Query of three statements,
				// which runs all or nothing: the first does not run
				// either.
				direct[0] = "error denied"
			}
			if strings.Join(direct, ",") != strings.Join(through, ",") {
				t.Fatalf("through the proxy %v, directly %v", through, direct)
			}
			t.Logf("%v", through)
		})
	}
	if n := countItems(t, up); n != 3 {
		t.Fatalf("%d rows, want 3", n)
	}
}

func TestCopy(t *testing.T) {
	up, proxied, _, _ := setup(t, nil)
	ctx := testCtx(t)
	pc := connectPgconn(t, proxied)
	_, err := pc.CopyFrom(ctx, strings.NewReader("10\tten\n11\televen\n"), "COPY items FROM STDIN")
	wantDenied(t, err, "no policy permits sql:copy_from")
	var out bytes.Buffer
	tag, err := pc.CopyTo(ctx, &out, "COPY items TO STDOUT")
	if err != nil || tag.RowsAffected() != 3 || !strings.Contains(out.String(), "1\tone\n") {
		t.Fatalf("copy to: %s, %q, %v", tag, out.String(), err)
	}
	if n := countItems(t, up); n != 3 {
		t.Fatalf("%d rows, want 3", n)
	}
}

func TestCopyFromAllowed(t *testing.T) {
	up, proxied, _, _ := setup(t, func(c *Config) {
		c.Decide = cedarDecide(t, testPolicies+`
@id("copy-in")
permit (principal, action == Action::"sql:copy_from", resource);`)
	})
	ctx := testCtx(t)
	pc := connectPgconn(t, proxied)
	tag, err := pc.CopyFrom(ctx, strings.NewReader("10\tten\n11\televen\n"), "COPY items FROM STDIN")
	if err != nil || tag.RowsAffected() != 2 {
		t.Fatalf("copy from: %s, %v", tag, err)
	}
	if n := countItems(t, up); n != 5 {
		t.Fatalf("%d rows, want 5", n)
	}
}

// rawConn is a client speaking the protocol by hand, for what no driver
// sends.
type rawConn struct {
	t  *testing.T
	c  net.Conn
	fe *pgproto3.Frontend
}

func dialRaw(t *testing.T, p *proxy, upstream string) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	cfg, _ := pgconn.ParseConfig(upstream)
	r := &rawConn{t: t, c: c, fe: pgproto3.NewFrontend(c, c)}
	r.send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30,
		Parameters: map[string]string{"user": cfg.User, "database": cfg.Database}})
	r.untilReady()
	return r
}

func (r *rawConn) send(msgs ...pgproto3.FrontendMessage) {
	r.t.Helper()
	for _, m := range msgs {
		r.fe.Send(m)
	}
	if err := r.fe.Flush(); err != nil {
		r.t.Fatal(err)
	}
}

// untilReady reads up to ReadyForQuery and returns the errors on the way
// and the transaction status.
func (r *rawConn) untilReady() (errs []*pgproto3.ErrorResponse, status byte) {
	r.t.Helper()
	for {
		m, err := r.fe.Receive()
		if err != nil {
			r.t.Fatal(err)
		}
		switch m := m.(type) {
		case *pgproto3.ErrorResponse:
			e := *m
			errs = append(errs, &e)
		case *pgproto3.ReadyForQuery:
			return errs, m.TxStatus
		}
	}
}

func TestRefusedMessages(t *testing.T) {
	up, _, p, _ := setup(t, nil)
	r := dialRaw(t, p, up)

	r.send(&pgproto3.FunctionCall{Function: 1598 /* random() */, ResultFormatCode: 0})
	errs, status := r.untilReady()
	if len(errs) != 1 || errs[0].Code != "42501" || !strings.Contains(errs[0].Message, "FunctionCall") || status != 'I' {
		t.Fatalf("function call: %+v, %q", errs, status)
	}

	// An Execute of a portal never bound, then messages skipped to Sync.
	r.send(&pgproto3.Execute{Portal: "nope"},
		&pgproto3.Parse{Query: "SELECT 1"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
	errs, status = r.untilReady()
	if len(errs) != 1 || errs[0].Code != "42501" || status != 'I' {
		t.Fatalf("execute: %+v, %q", errs, status)
	}

	// CopyData outside a COPY is dropped, as PostgreSQL would ignore it.
	r.send(&pgproto3.CopyData{Data: []byte("x")}, &pgproto3.CopyDone{}, &pgproto3.Query{String: "SELECT 1"})
	if errs, _ := r.untilReady(); len(errs) != 0 {
		t.Fatalf("%+v", errs)
	}
}

func TestMalformed(t *testing.T) {
	tests := []struct {
		name string
		msg  []byte
		want string
	}{
		{"short length", []byte{'Q', 0, 0, 0, 2}, "length 2"},
		{"over the limit", appendMessage(nil, 'Q', append(bytes.Repeat([]byte("x"), 5000), 0)), "over the limit of 4096"},
		{"unknown type", appendMessage(nil, 'z', nil), "unexpected message type"},
		{"password", appendMessage(nil, 'p', []byte("secret\x00")), "unexpected message type"},
		{"query without NUL", appendMessage(nil, 'Q', []byte("SELECT 1")), "malformed"},
		{"sync with a body", appendMessage(nil, 'S', []byte{1}), "body"},
	}
	up, _, p, _ := setup(t, func(c *Config) { c.MaxMessage = 4096 })
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := dialRaw(t, p, up)
			if _, err := r.c.Write(tt.msg); err != nil {
				t.Fatal(err)
			}
			m, err := r.fe.Receive()
			if err != nil {
				t.Fatal(err)
			}
			e, ok := m.(*pgproto3.ErrorResponse)
			if !ok || e.Code != "08P01" || e.Severity != "FATAL" || !strings.Contains(e.Message, tt.want) {
				t.Fatalf("got %#v, want FATAL 08P01 %q", m, tt.want)
			}
			if _, err := r.fe.Receive(); err == nil {
				t.Fatal("the session went on")
			}
		})
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(p.errors()) < len(tests) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	n := 0
	for _, err := range p.errors() {
		if errors.Is(err, ErrProtocol) {
			n++
		}
	}
	if n != len(tests) {
		t.Fatalf("Serve returned %v, want %d ErrProtocol", p.errors(), len(tests))
	}
}

func TestAudit(t *testing.T) {
	_, proxied, _, log := setup(t, nil)
	ctx := testCtx(t)
	pc := connectPgconn(t, proxied)
	if _, err := pc.Exec(ctx, "SELECT * FROM items WHERE id < 3").ReadAll(); err != nil {
		t.Fatal(err)
	}
	pc.Exec(ctx, "DELETE FROM items WHERE id = 1").ReadAll()
	c := connectPgx(t, proxied)
	if _, err := c.Exec(ctx, "SELECT name FROM items WHERE id = $1", 1); err != nil {
		t.Fatal(err)
	}
	// A denied statement in the extended protocol is one event: the
	// Bind and Execute that follow its Parse are part of its refusal.
	if _, err := c.Exec(ctx, "DELETE FROM items WHERE id = $1", pgx.QueryExecModeExec, 1); err == nil {
		t.Fatal("an extended DELETE went through")
	}
	pc.Exec(ctx, "SELECT * FROM missing").ReadAll()
	ev := log.events(t)
	if len(ev) != 5 {
		t.Fatalf("%d events: %v", len(ev), ev)
	}
	want := []map[string]any{
		{"msg": "pgpolicy: statement", "protocol": "simple", "decision": "allow", "outcome": "ok", "rows": 2.0,
			"command": "SELECT 2", "statement": "SELECT * FROM items WHERE id < $1", "class": "read"},
		{"protocol": "simple", "decision": "deny", "outcome": "denied", "statement": "DELETE FROM items WHERE id = $1"},
		{"protocol": "extended", "decision": "allow", "outcome": "ok", "rows": 1.0, "statement": "SELECT name FROM items WHERE id = $1"},
		{"protocol": "extended", "decision": "deny", "outcome": "denied", "statement": "DELETE FROM items WHERE id = $1"},
		{"protocol": "simple", "decision": "allow", "outcome": "error", "sqlstate": "42P01"},
	}
	for i, w := range want {
		for k, v := range w {
			if ev[i][k] != v {
				t.Errorf("event %d: %s = %v, want %v (%v)", i, k, ev[i][k], v, ev[i])
			}
		}
		if ev[i]["fingerprint"] == "" || ev[i]["fingerprint"] == nil {
			t.Errorf("event %d without a fingerprint", i)
		}
	}
	if p := ev[1]["policies"].([]any); len(p) != 1 || p[0] != "no-deletes" {
		t.Errorf("deny policies %v", p)
	}
	if tw := ev[1]["tables_written"].([]any); len(tw) != 1 || tw[0] != "items" {
		t.Errorf("tables_written %v", tw)
	}
	if _, ok := ev[0]["duration"].(float64); !ok {
		t.Errorf("no duration: %v", ev[0])
	}
}

func TestUpstreamEndsSession(t *testing.T) {
	up, proxied, p, _ := setup(t, nil)
	ctx := testCtx(t)
	pc := connectPgconn(t, proxied)
	direct := connectPgconn(t, up)
	if _, err := direct.Exec(ctx, fmt.Sprintf("SELECT pg_terminate_backend(%d)", pc.PID())).ReadAll(); err != nil {
		t.Fatal(err)
	}
	_, err := pc.Exec(ctx, "SELECT 1").ReadAll()
	if err == nil {
		t.Fatal("the session outlived its upstream")
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(p.errors()) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if errs := p.errors(); len(errs) != 1 || errs[0] == nil || !strings.Contains(errs[0].Error(), "upstream") {
		t.Fatalf("Serve returned %v", errs)
	}
}

func TestServeContext(t *testing.T) {
	agent, a := net.Pipe()
	upstream, u := net.Pipe()
	defer a.Close()
	defer u.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := Serve(ctx, agent, upstream, Config{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Serve returned %v, want the context's error", err)
	}
	if _, err := a.Write([]byte{0}); err == nil {
		t.Fatal("the agent's connection is still open")
	}
}

// TestPipelineRollsBack: a denial in a pipeline rolls back the implicit
// transaction, undoing an allowed insert before it, as any error would.
func TestPipelineRollsBack(t *testing.T) {
	up, proxied, _, _ := setup(t, func(c *Config) {
		c.Decide = cedarDecide(t, testPolicies+`
@id("inserts")
permit (principal, action == Action::"sql:insert", resource);`)
	})
	ctx := testCtx(t)
	cfg, err := pgx.ParseConfig(proxied)
	if err != nil {
		t.Fatal(err)
	}
	cfg.DefaultQueryExecMode = pgx.QueryExecModeExec
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	b := &pgx.Batch{}
	b.Queue("INSERT INTO items VALUES (20, 'twenty')")
	b.Queue("DELETE FROM items WHERE id = 1")
	br := c.SendBatch(ctx, b)
	if _, err := br.Exec(); err != nil {
		t.Fatalf("insert: %v", err)
	}
	_, err = br.Exec()
	wantDenied(t, err, "no-deletes")
	br.Close()
	if n := countItems(t, up); n != 3 {
		t.Fatalf("%d rows, want 3: the insert was not rolled back", n)
	}
	// Alone, the insert is allowed and stays.
	if _, err := c.Exec(ctx, "INSERT INTO items VALUES (20, 'twenty')"); err != nil {
		t.Fatal(err)
	}
	if n := countItems(t, up); n != 4 {
		t.Fatalf("%d rows, want 4", n)
	}
}
