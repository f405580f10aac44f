package pgpolicy

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/postern/postern/internal/sqlclass"
)

// A Verdict is the decision on one statement.
type Verdict struct {
	Allowed bool
	// Policies are the ids of the policies that decided: the permits that
	// matched when allowed, the forbids that matched when denied.
	Policies []string
	// Reason says why a statement was denied when no policy is to blame,
	// e.g. "no policy permits sql:delete". It is shown to the agent and
	// logged, so it must hold no literal of the statement.
	Reason string
}

// Decide decides one statement. It is called from the session's goroutine,
// once per statement of a Query and once per Parse, with the context given
// to [Serve]. A Decide that is slow makes every statement slow: cache
// decisions by [sqlclass.Statement.Fingerprint] and the fields the
// policies read.
// st and its slices may be shared with other sessions: Decide must not
// modify them.
type Decide func(ctx context.Context, st sqlclass.Statement) Verdict

// Config configures [Serve]. The zero Config denies every statement and
// logs nothing.
type Config struct {
	// Decide decides every statement; nil denies them all.
	Decide Decide
	// Audit receives one Info record per statement, "pgpolicy: statement",
	// with the attributes listed under "Audit" in the package
	// documentation; nil logs nothing. Add the agent and the session with
	// [slog.Logger.With].
	Audit *slog.Logger
	// MaxMessage caps the body of a message from the agent, in bytes; a
	// longer message ends the session (SQLSTATE 08P01) before anything is
	// allocated for it. Zero means [DefaultMaxMessage] (1 MiB).
	MaxMessage int
}

// ErrProtocol is wrapped by the error [Serve] returns when the agent sent a
// malformed message.
var ErrProtocol = errors.New("pgpolicy: protocol violation")

func (e *protocolError) Unwrap() error { return ErrProtocol }

// Serve proxies one PostgreSQL session between agent, a client past its
// startup phase, and upstream, a server connection logged in and idle
// (its last message was ReadyForQuery, already relayed to the agent). It
// decides every statement before the upstream sees it and returns when
// the session ends: nil when the agent terminated it or went away, an
// error wrapping [ErrProtocol] when the agent sent a malformed message, or
// the error that ended either connection. Serve closes both connections
// before it returns, and when ctx is done.
func Serve(ctx context.Context, agent, upstream net.Conn, cfg Config) error {
	s := newSession(agent, upstream, cfg)
	stop := context.AfterFunc(ctx, func() {
		agent.Close()
		upstream.Close()
	})
	defer stop()

	done := make(chan error, 1)
	var agentDone atomic.Bool
	upFirst := false
	go func() {
		err := s.fromUpstream()
		// The upstream ended the session (a FATAL error, a shutdown):
		// the agent's next read fails and fromAgent returns.
		upFirst = !agentDone.Load()
		agent.Close()
		done <- err
	}()
	err := s.fromAgent(ctx)
	agentDone.Store(true)
	// The agent is done (or gone): whatever the upstream still sends,
	// nobody reads.
	upstream.Close()
	upErr := <-done
	agent.Close()
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case errors.Is(err, ErrProtocol):
		return err
	case s.fatal.Load() != nil:
		return fmt.Errorf("pgpolicy: the upstream ended the session (SQLSTATE %s)", *s.fatal.Load())
	case upFirst:
		if errors.Is(upErr, io.EOF) || errors.Is(upErr, io.ErrUnexpectedEOF) {
			return errors.New("pgpolicy: the upstream closed the session")
		}
		return fmt.Errorf("pgpolicy: upstream: %w", upErr)
	}
	return err
}

// session is the state of one proxied session.
type session struct {
	cfg      Config
	agent    net.Conn
	upstream net.Conn
	marker   string // "postern_denied_<random>_": the name in a refusal's substitute

	// Owned by fromAgent.
	ar         reader
	uw         *bufio.Writer
	prepared   map[string]*prepared // by statement name
	portals    map[string]*prepared // by portal name
	syncs      uint64               // Query, FunctionCall and Sync messages sent upstream
	nextID     uint64
	inCopy     bool
	terminated bool

	// Owned by fromUpstream.
	ur reader
	aw *bufio.Writer
	mu sync.Mutex // serializes writes to the agent

	// Shared, under qmu.
	qmu     sync.Mutex
	refused []refusal  // in the order sent
	running []*running // statements forwarded, in order
	ready   uint64     // ReadyForQuery messages received

	fatal atomic.Pointer[string] // the SQLSTATE of a FATAL error from the upstream
}

// prepared is a prepared statement or portal, and its decision.
type prepared struct {
	st      *sqlclass.Statement // nil for an empty statement or a parse error
	verdict Verdict
	message string // the denial's message, when denied
}

// refusal is a message the proxy did not forward, replaced by one that
// makes the upstream fail with the id in its error.
type refusal struct {
	id      uint64
	sync    uint64 // the number of the ReadyForQuery that ends its cycle
	message string
}

// running is a statement on its way through the upstream.
type running struct {
	sync     uint64
	st       *sqlclass.Statement
	verdict  Verdict
	protocol string
	start    time.Time
}

func newSession(agent, upstream net.Conn, cfg Config) *session {
	if cfg.MaxMessage <= 0 {
		cfg.MaxMessage = DefaultMaxMessage
	}
	var nonce [6]byte
	rand.Read(nonce[:])
	return &session{
		cfg:      cfg,
		agent:    agent,
		upstream: upstream,
		marker:   "postern_denied_" + hex.EncodeToString(nonce[:]) + "_",
		ar:       reader{r: bufio.NewReaderSize(agent, 16<<10), max: cfg.MaxMessage},
		uw:       bufio.NewWriterSize(upstream, 16<<10),
		prepared: make(map[string]*prepared),
		portals:  make(map[string]*prepared),
		ur:       reader{r: bufio.NewReaderSize(upstream, 32<<10)},
		aw:       bufio.NewWriterSize(agent, 32<<10),
	}
}

// fromAgent reads, decides and forwards the agent's messages until the
// session ends.
func (s *session) fromAgent(ctx context.Context) error {
	var out []byte
	for {
		if s.ar.r.Buffered() == 0 {
			// Nothing more to read without waiting: what was decided goes
			// out in one write.
			if err := s.uw.Flush(); err != nil {
				return err
			}
		}
		typ, body, err := s.ar.next()
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				// The agent went away; a message it did not finish is
				// not forwarded.
				s.terminate()
				return nil
			}
			return s.fail(err)
		}
		m, err := frontendMessage(typ, body)
		if err != nil {
			return s.fail(err)
		}
		out = out[:0]
		switch typ {
		case msgQuery:
			s.inCopy = false
			out = s.query(ctx, out, typ, body, m.(*pgproto3.Query))
		case msgParse:
			s.inCopy = false
			out = s.parse(ctx, out, typ, body, m.(*pgproto3.Parse))
		case msgBind:
			b := m.(*pgproto3.Bind)
			p := s.prepared[b.PreparedStatement]
			switch {
			case p == nil:
				delete(s.portals, b.DestinationPortal)
				msg := fmt.Sprintf("postern: denied: prepared statement %q was not prepared through the policy proxy", b.PreparedStatement)
				s.auditRefusal("extended", nil, Verdict{Reason: "statement not prepared"})
				out = s.refuseExtended(out, msg)
			case p.message != "":
				// The portal stands for the denied statement, so that its
				// Execute is refused as part of the same denial (audited
				// once, at the Parse) rather than as a portal never bound.
				s.portals[b.DestinationPortal] = p
				out = s.refuseExtended(out, p.message)
			default:
				s.portals[b.DestinationPortal] = p
				out = appendMessage(out, typ, body)
			}
		case msgExecute:
			e := m.(*pgproto3.Execute)
			p := s.portals[e.Portal]
			switch {
			case p == nil:
				msg := fmt.Sprintf("postern: denied: portal %q was not bound through the policy proxy", e.Portal)
				s.auditRefusal("extended", nil, Verdict{Reason: "portal not bound"})
				out = s.refuseExtended(out, msg)
			case p.message != "":
				out = s.refuseExtended(out, p.message)
			default:
				if p.st != nil && slices.Contains(p.st.Actions, "sql:copy_from") {
					s.inCopy = true
				}
				s.start(&running{sync: s.syncs, st: p.st, verdict: p.verdict, protocol: "extended"})
				out = appendMessage(out, typ, body)
			}
		case msgClose:
			c := m.(*pgproto3.Close)
			if c.ObjectType == 'S' {
				delete(s.prepared, c.Name)
			} else {
				delete(s.portals, c.Name)
			}
			out = appendMessage(out, typ, body)
		case msgSync:
			s.inCopy = false
			s.syncs++
			out = appendMessage(out, typ, body)
		case msgFunctionCall:
			msg := "postern: denied: the FunctionCall protocol message is not allowed"
			s.auditRefusal("function_call", nil, Verdict{Reason: "FunctionCall message"})
			out = s.refuseSimple(out, msg)
		case msgCopyData, msgCopyDone, msgCopyFail:
			if !s.inCopy {
				continue // PostgreSQL too ignores these outside a COPY
			}
			if typ != msgCopyData {
				s.inCopy = false
			}
			out = appendMessage(out, typ, body)
		case msgTerminate:
			s.terminate()
			return nil
		default: // Describe, Flush
			out = appendMessage(out, typ, body)
		}
		if _, err := s.uw.Write(out); err != nil {
			return err
		}
	}
}

// query decides a simple Query: it runs only if every statement in it is
// allowed.
func (s *session) query(ctx context.Context, out []byte, typ byte, body []byte, q *pgproto3.Query) []byte {
	stmts, err := classify(q.String)
	if err != nil {
		msg := parseDenial(err)
		s.auditRefusal("simple", nil, Verdict{Reason: "cannot parse"})
		return s.refuseSimple(out, msg)
	}
	verdicts := make([]Verdict, len(stmts))
	msg := ""
	for i := range stmts {
		verdicts[i] = s.decide(ctx, &stmts[i])
		if !verdicts[i].Allowed && msg == "" {
			msg = denial(&stmts[i], verdicts[i])
		}
	}
	if msg != "" {
		for i := range stmts {
			if verdicts[i].Allowed {
				s.audit("simple", &stmts[i], verdicts[i], "not_run", slog.String("reason", "another statement of the query was denied"))
			} else {
				s.auditRefusal("simple", &stmts[i], verdicts[i])
			}
		}
		return s.refuseSimple(out, msg)
	}
	for i := range stmts {
		if slices.Contains(stmts[i].Actions, "sql:copy_from") {
			s.inCopy = true
		}
		s.start(&running{sync: s.syncs, st: &stmts[i], verdict: verdicts[i], protocol: "simple"})
	}
	s.syncs++
	return appendMessage(out, typ, body)
}

// parse decides a Parse; the prepared statement keeps the decision.
func (s *session) parse(ctx context.Context, out []byte, typ byte, body []byte, p *pgproto3.Parse) []byte {
	stmts, err := classify(p.Query)
	if err != nil {
		msg := parseDenial(err)
		s.prepared[p.Name] = &prepared{verdict: Verdict{Reason: "cannot parse"}, message: msg}
		s.auditRefusal("extended", nil, Verdict{Reason: "cannot parse"})
		return s.refuseExtended(out, msg)
	}
	ps := &prepared{verdict: Verdict{Allowed: true}}
	for i := range stmts {
		// More than one statement is an error the upstream reports, if
		// they are all allowed.
		v := s.decide(ctx, &stmts[i])
		if i == 0 || !v.Allowed && ps.verdict.Allowed {
			ps.st, ps.verdict = &stmts[i], v
		}
	}
	if !ps.verdict.Allowed {
		ps.message = denial(ps.st, ps.verdict)
		s.prepared[p.Name] = ps
		s.auditRefusal("extended", ps.st, ps.verdict)
		return s.refuseExtended(out, ps.message)
	}
	s.prepared[p.Name] = ps
	return appendMessage(out, typ, body)
}

func (s *session) decide(ctx context.Context, st *sqlclass.Statement) Verdict {
	if s.cfg.Decide == nil {
		return Verdict{Reason: "no Decide configured"}
	}
	return s.cfg.Decide(ctx, *st)
}

// denial is the message an agent receives for a denied statement.
func denial(st *sqlclass.Statement, v Verdict) string {
	var b strings.Builder
	switch {
	case len(v.Policies) > 0:
		b.WriteString("postern: denied by policy (")
		b.WriteString(strings.Join(v.Policies, ", "))
		b.WriteString(")")
	case v.Reason != "":
		b.WriteString("postern: denied (")
		b.WriteString(v.Reason)
		b.WriteString(")")
	default:
		b.WriteString("postern: denied")
	}
	if st != nil && st.Normalized != "" {
		b.WriteString(": ")
		b.WriteString(st.Normalized)
	}
	return b.String()
}

func parseDenial(err error) string {
	return "postern: denied, the statement does not parse: " + strings.TrimPrefix(err.Error(), sqlclass.ErrParse.Error()+": ")
}

// Denials. A refused message is replaced by one that fails in the
// upstream, harmlessly, with an error naming s.marker and an id: the
// upstream's own error handling then does what PostgreSQL does after any
// error (aborts a transaction block, rolls back an implicit transaction,
// skips the extended-protocol messages up to Sync), and its later answers
// are genuine. fromUpstream replaces the error with the denial.

// refuseSimple replaces a Query or FunctionCall: a statement that is a
// syntax error, which PostgreSQL reports (rather than 25P02) even in a
// failed transaction, then ReadyForQuery.
func (s *session) refuseSimple(out []byte, message string) []byte {
	id := s.refuse(message)
	out = appendMessage(out, msgQuery, []byte(s.marker+strconv.FormatUint(id, 10)+"\x00"))
	s.syncs++
	return out
}

// refuseExtended replaces a Parse, Bind or Execute: a Describe of a
// prepared statement that does not exist (SQLSTATE 26000, reported before
// PostgreSQL checks for a failed transaction), which leaves the unnamed
// statement and portal alone.
func (s *session) refuseExtended(out []byte, message string) []byte {
	id := s.refuse(message)
	body := append([]byte{'S'}, s.marker...)
	body = strconv.AppendUint(body, id, 10)
	body = append(body, 0)
	return appendMessage(out, msgDescribe, body)
}

func (s *session) refuse(message string) uint64 {
	s.nextID++
	s.qmu.Lock()
	s.refused = append(s.refused, refusal{id: s.nextID, sync: s.syncs + 1, message: message})
	s.qmu.Unlock()
	return s.nextID
}

func (s *session) start(r *running) {
	r.start = time.Now()
	s.qmu.Lock()
	s.running = append(s.running, r)
	s.qmu.Unlock()
}

// fail ends the session on an error reading the agent: a malformed
// message gets a FATAL ErrorResponse.
func (s *session) fail(err error) error {
	var pe *protocolError
	if errors.As(err, &pe) {
		if s.cfg.Audit != nil {
			s.cfg.Audit.Warn("pgpolicy: session ended on a protocol violation", "err", err)
		}
		// The agent is told first: once the upstream has gone, the
		// agent's connection is closed.
		buf, _ := (&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: "08P01", Message: "postern: " + pe.msg}).Encode(nil)
		s.mu.Lock()
		s.agent.SetWriteDeadline(time.Now().Add(5 * time.Second))
		s.aw.Write(buf)
		s.aw.Flush()
		s.mu.Unlock()
		s.terminate()
	}
	return err
}

// terminate ends the upstream session politely, so that the server logs
// no "unexpected EOF". What was decided before is sent first.
func (s *session) terminate() {
	s.upstream.SetWriteDeadline(time.Now().Add(time.Second))
	s.uw.Write([]byte{msgTerminate, 0, 0, 0, 4})
	s.uw.Flush()
	s.terminated = true
}

// fromUpstream relays the upstream's messages to the agent, replacing the
// errors of refusals and completing the audit of each statement.
func (s *session) fromUpstream() error {
	var out []byte
	for {
		typ, body, err := s.ur.next()
		if err != nil {
			s.mu.Lock()
			s.aw.Flush()
			s.mu.Unlock()
			return err
		}
		out = out[:0]
		switch typ {
		case msgErrorResponse:
			var e pgproto3.ErrorResponse
			if err := e.Decode(body); err != nil {
				return fmt.Errorf("pgpolicy: upstream: %w", err)
			}
			if i := strings.Index(e.Message, s.marker); i >= 0 {
				out, _ = (&pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: "42501",
					Message: s.refusalMessage(e.Message[i+len(s.marker):])}).Encode(out)
				break
			}
			if e.Severity == "FATAL" || e.Severity == "PANIC" {
				s.fatal.Store(&e.Code)
			}
			s.finish("error", slog.String("sqlstate", e.Code))
			out = appendMessage(out, typ, body)
		case msgCommandComplete:
			tag := body
			if n := len(tag); n > 0 && tag[n-1] == 0 {
				tag = tag[:n-1]
			}
			s.finish("ok", tagAttrs(string(tag))...)
			out = appendMessage(out, typ, body)
		case msgEmptyQuery:
			s.finish("ok")
			out = appendMessage(out, typ, body)
		case msgPortalSuspended:
			s.finish("suspended")
			out = appendMessage(out, typ, body)
		case msgReadyForQuery:
			s.readyForQuery()
			out = appendMessage(out, typ, body)
		default:
			out = appendMessage(out, typ, body)
		}
		s.mu.Lock()
		_, err = s.aw.Write(out)
		if err == nil && s.ur.r.Buffered() == 0 {
			err = s.aw.Flush()
		}
		s.mu.Unlock()
		if err != nil {
			return err
		}
		if cap(out) > 64<<10 {
			out = nil
		}
	}
}

// refusalMessage finds the denial of the refusal whose id begins rest,
// and forgets it and the refusals before it (which the upstream skipped).
func (s *session) refusalMessage(rest string) string {
	end := 0
	for end < len(rest) && rest[end] >= '0' && rest[end] <= '9' {
		end++
	}
	id, err := strconv.ParseUint(rest[:end], 10, 64)
	s.qmu.Lock()
	defer s.qmu.Unlock()
	for len(s.refused) > 0 && s.refused[0].id <= id {
		r := s.refused[0]
		s.refused = s.refused[1:]
		if err == nil && r.id == id {
			return r.message
		}
	}
	return "postern: denied"
}

// readyForQuery ends a cycle: the refusals and statements of it that got
// no answer were skipped by the upstream after an error.
func (s *session) readyForQuery() {
	s.qmu.Lock()
	s.ready++
	for len(s.refused) > 0 && s.refused[0].sync <= s.ready {
		s.refused = s.refused[1:]
	}
	var skipped []*running
	for len(s.running) > 0 && s.running[0].sync < s.ready {
		skipped = append(skipped, s.running[0])
		s.running = s.running[1:]
	}
	s.qmu.Unlock()
	for _, r := range skipped {
		s.audit(r.protocol, r.st, r.verdict, "not_run", slog.Duration("duration", time.Since(r.start)))
	}
}

// finish completes the audit of the oldest statement of the current cycle.
func (s *session) finish(outcome string, attrs ...slog.Attr) {
	s.qmu.Lock()
	var r *running
	if len(s.running) > 0 && s.running[0].sync == s.ready {
		r = s.running[0]
		s.running = s.running[1:]
	}
	s.qmu.Unlock()
	if r == nil {
		return
	}
	s.audit(r.protocol, r.st, r.verdict, outcome, append(attrs, slog.Duration("duration", time.Since(r.start)))...)
}

// tagAttrs gives the command and the row count of a CommandComplete tag:
// "SELECT 5", "INSERT 0 5", "UPDATE 3", "COPY 10", "CREATE TABLE".
func tagAttrs(tag string) []slog.Attr {
	attrs := []slog.Attr{slog.String("command", tag)}
	if i := strings.LastIndexByte(tag, ' '); i >= 0 {
		if n, err := strconv.ParseInt(tag[i+1:], 10, 64); err == nil {
			attrs = append(attrs, slog.Int64("rows", n))
		}
	}
	return attrs
}

// auditRefusal logs a denied statement.
func (s *session) auditRefusal(protocol string, st *sqlclass.Statement, v Verdict) {
	var attrs []slog.Attr
	if v.Reason != "" {
		attrs = append(attrs, slog.String("reason", v.Reason))
	}
	s.audit(protocol, st, v, "denied", attrs...)
}

// audit logs one statement; see "Audit" in the package documentation.
func (s *session) audit(protocol string, st *sqlclass.Statement, v Verdict, outcome string, extra ...slog.Attr) {
	if s.cfg.Audit == nil {
		return
	}
	decision := "deny"
	if v.Allowed {
		decision = "allow"
	}
	attrs := make([]slog.Attr, 0, 12+len(extra))
	attrs = append(attrs, slog.String("protocol", protocol), slog.String("decision", decision), slog.Any("policies", nonNil(v.Policies)))
	if st != nil {
		attrs = append(attrs,
			slog.String("fingerprint", st.Fingerprint),
			slog.String("statement", st.Normalized),
			slog.String("class", st.Class),
			slog.Any("actions", nonNil(st.Actions)),
			slog.Any("kinds", nonNil(st.Kinds)),
			slog.Any("tables_read", nonNil(st.TablesRead)),
			slog.Any("tables_written", nonNil(st.TablesWritten)),
		)
	}
	attrs = append(attrs, slog.String("outcome", outcome))
	attrs = append(attrs, extra...)
	s.cfg.Audit.LogAttrs(context.Background(), slog.LevelInfo, "pgpolicy: statement", attrs...)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
