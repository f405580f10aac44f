package pgpolicy_test

import (
	"context"
	"log/slog"
	"net"

	"github.com/postern/postern/internal/pgpolicy"
	"github.com/postern/postern/internal/sqlclass"
)

func ExampleServe() {
	ctx := context.Background()
	logger := slog.New(slog.DiscardHandler)
	subject, sessionID := "agent-1", "s-42"
	// agent is the agent's stream after its startup message, upstream the
	// server connection logged in and idle; here, two pipes already closed.
	agent, a := net.Pipe()
	upstream, u := net.Pipe()
	a.Close()
	u.Close()

	err := pgpolicy.Serve(ctx, agent, upstream, pgpolicy.Config{
		Decide: func(ctx context.Context, st sqlclass.Statement) pgpolicy.Verdict {
			if st.Class == sqlclass.ClassRead {
				return pgpolicy.Verdict{Allowed: true, Policies: []string{"reads"}}
			}
			return pgpolicy.Verdict{Reason: "no policy permits " + st.Class}
		},
		Audit: logger.With("agent", subject, "session", sessionID),
	})
	_ = err
}
