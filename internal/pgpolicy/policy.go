package pgpolicy

import (
	"github.com/postern/postern/internal/sqlclass"
	"github.com/postern/postern/policy"
)

// SQLOf is the context.sql of a statement, for [policy.Request].
func SQLOf(st *sqlclass.Statement) *policy.SQL {
	return &policy.SQL{Kinds: st.Kinds, TablesRead: st.TablesRead, TablesWritten: st.TablesWritten,
		Functions: st.Functions, Fingerprint: st.Fingerprint}
}

// EngineDecide decides a statement with engine as the connector does:
// req (principal, resource, time, source; its Action and SQL are set
// here) once per action of the statement, allowed only if every action is
// ([policy.Engine.AuthorizeStatement]).
func EngineDecide(engine *policy.Engine, req policy.Request, st *sqlclass.Statement) Verdict {
	req.SQL = SQLOf(st)
	d, action := engine.AuthorizeStatement(req, st.Actions)
	switch {
	case d.Allowed:
		return Verdict{Allowed: true, Policies: d.Policies}
	case len(d.Policies) > 0:
		return Verdict{Policies: d.Policies}
	case action == "":
		return Verdict{Reason: "the statement performs no action policy knows"}
	case len(d.Errors) > 0 && d.Errors[0].PolicyID == "":
		return Verdict{Reason: "invalid request: " + d.Errors[0].Message}
	}
	return Verdict{Reason: "no policy permits " + action}
}

// DenialMessage is the message of the 42501 error an agent receives when
// v denies st.
func DenialMessage(st *sqlclass.Statement, v Verdict) string { return denial(st, v) }
