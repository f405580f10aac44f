package connector

import (
	"context"
	"net"
	"sync/atomic"
	"time"

	"github.com/postern/postern/internal/pgpolicy"
	"github.com/postern/postern/internal/sqlclass"
	"github.com/postern/postern/internal/wire"
	"github.com/postern/postern/policy"
)

// Each SQL statement through a binding is decided here, before the
// upstream sees it (internal/pgpolicy): the agent the relay attested in
// the Dial as principal, the service as the connector serves it as
// resource, one decision per action of the statement (its context.sql the
// statement's kinds, tables, functions and fingerprint), allowed only if
// every action is. A denied statement is answered with SQLSTATE 42501 and
// a message naming the policy or saying that none permits it; while the
// connector holds no policy set from the relay, every statement is
// refused with [NoPolicyMessage]. Each statement is an audit event
// ("pgpolicy: statement") of the connector's audit logger, with subject,
// session and binding.

// pgGate decides the statements of one stream.
type pgGate struct {
	streamPolicy
	c       *Connector
	binding string
}

func newPGGate(c *Connector, svc *Service, dial *wire.Dial, pol *relayPolicy) (*pgGate, error) {
	sp, err := newStreamPolicy(c, svc, dial, pol)
	if err != nil {
		return nil, err
	}
	return &pgGate{streamPolicy: sp, c: c, binding: svc.Name}, nil
}

// decide is the stream's pgpolicy.Decide.
func (g *pgGate) decide(ctx context.Context, st sqlclass.Statement) (v pgpolicy.Verdict) {
	start := time.Now()
	done := g.c.startStatement(ctx, &st)
	outcome := "deny"
	defer func() {
		if v.Allowed {
			outcome = "allow"
		}
		g.c.m.decided(g.binding, "sql", st.Actions, outcome, time.Since(start))
		done(outcome, v.Policies)
	}()
	eng, why := g.pol.current(ctx)
	if eng == nil {
		outcome = "no_policy"
		return pgpolicy.Verdict{Reason: why}
	}
	return pgpolicy.EngineDecide(eng, policy.Request{
		Principal: g.principal,
		Resource:  g.resource,
		Time:      time.Now(),
		SourceIP:  g.source,
		Details:   g.details,
	}, &st)
}

// mayWrite reports whether the stream's agent might write through the
// binding (policy.Engine.MayWrite): false, so that the read-only login is
// used, when the connector holds no policy set.
func (g *pgGate) mayWrite(ctx context.Context) bool {
	eng, _ := g.pol.current(ctx)
	if eng == nil {
		return false
	}
	return eng.MayWrite(policy.Request{
		Principal: g.principal,
		Resource:  g.resource,
		Time:      time.Now(),
		SourceIP:  g.source,
		Details:   g.details,
	})
}

func (g *pgGate) config() pgpolicy.Config {
	return pgpolicy.Config{Decide: g.decide, Audit: g.audit}
}

// countingConn counts the bytes read from and written to a connection.
type countingConn struct {
	net.Conn
	in, out atomic.Int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.in.Add(int64(n))
	return n, err
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.out.Add(int64(n))
	return n, err
}
