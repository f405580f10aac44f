package pgpolicy

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/postern/postern/internal/sqlclass"
)

// readOnly allows reads and nothing else.
func readOnly(_ context.Context, st sqlclass.Statement) Verdict {
	if st.Class == sqlclass.ClassRead {
		return Verdict{Allowed: true, Policies: []string{"reads"}}
	}
	return Verdict{Reason: "not a read"}
}

func encode(msgs ...pgproto3.FrontendMessage) []byte {
	var b []byte
	for _, m := range msgs {
		b, _ = m.Encode(b)
	}
	return b
}

// FuzzServe feeds random bytes from the agent to a proxy whose upstream
// records what it receives and never answers. The proxy must not panic,
// and the upstream must receive only well-formed messages: statements a
// read-only Decide allows, the proxy's own refusals, and no COPY data.
func FuzzServe(f *testing.F) {
	f.Add(encode(&pgproto3.Query{String: "SELECT 1"}, &pgproto3.Terminate{}))
	f.Add(encode(&pgproto3.Query{String: "DELETE FROM t; SELECT 1"}))
	f.Add(encode(&pgproto3.Parse{Name: "s", Query: "SELECT $1::int"}, &pgproto3.Bind{PreparedStatement: "s", Parameters: [][]byte{[]byte("1")}},
		&pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{}))
	f.Add(encode(&pgproto3.Parse{Name: "d", Query: "DELETE FROM t"}, &pgproto3.Bind{PreparedStatement: "d"}, &pgproto3.Execute{}, &pgproto3.Sync{}))
	f.Add(encode(&pgproto3.Query{String: "COPY t FROM STDIN"}, &pgproto3.CopyData{Data: []byte("1\n")}, &pgproto3.CopyDone{}))
	f.Add(encode(&pgproto3.FunctionCall{Function: 1}, &pgproto3.Close{ObjectType: 'S', Name: "s"}, &pgproto3.Flush{}))
	f.Add([]byte{'Q', 0, 0, 0, 2})
	f.Add([]byte{'Q', 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		agent, agentPeer := net.Pipe()
		upstream, upstreamPeer := net.Pipe()
		got := make(chan []byte)
		go func() {
			b, _ := io.ReadAll(upstreamPeer)
			got <- b
		}()
		go io.Copy(io.Discard, agent)
		go func() {
			agent.Write(data)
			agent.Close()
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		Serve(ctx, agentPeer, upstream, Config{Decide: readOnly, MaxMessage: 1 << 16})
		checkUpstream(t, <-got)
	})
}

func checkUpstream(t *testing.T, b []byte) {
	t.Helper()
	r := reader{r: bufio.NewReader(bytes.NewReader(b))}
	for {
		typ, body, err := r.next()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatalf("upstream received a broken message: %v", err)
		}
		m, err := frontendMessage(typ, body)
		if err != nil {
			t.Fatalf("upstream received %v", err)
		}
		var sql string
		switch m := m.(type) {
		case *pgproto3.Query:
			sql = m.String
		case *pgproto3.Parse:
			sql = m.Query
		case *pgproto3.FunctionCall:
			t.Fatal("upstream received a FunctionCall")
		case *pgproto3.Describe:
			continue
		}
		if typ == msgCopyData || typ == msgCopyDone || typ == msgCopyFail {
			t.Fatalf("upstream received %q outside an allowed COPY", typ)
		}
		if sql == "" || strings.HasPrefix(sql, "postern_denied_") {
			continue
		}
		stmts, err := sqlclass.Classify(sql)
		if err != nil {
			t.Fatalf("upstream received %q: %v", sql, err)
		}
		for _, st := range stmts {
			if st.Class != sqlclass.ClassRead {
				t.Fatalf("upstream received %q, a %s", sql, st.Class)
			}
		}
	}
}
