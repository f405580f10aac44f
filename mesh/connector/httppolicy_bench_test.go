package connector

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/internal/wire"
)

// BenchmarkHTTPGate is what request policy adds to each HTTP request at
// the connector: normalizing the target, deciding it, and its audit event
// (JSON, discarded). The bound is 30 us on top of a GET through a binding.
func BenchmarkHTTPGate(b *testing.B) {
	for _, bc := range []struct {
		name, policies string
	}{
		{"cached", `@id("read-staging") permit (principal in Group::"coding-agents", action in Action::"read", resource in Environment::"staging");`},
		{"reads-path", `@id("read-staging") permit (principal in Group::"coding-agents", action in Action::"read", resource in Environment::"staging")
when { context has http && context.http.path like "/v1/*" };`},
	} {
		b.Run(bc.name, func(b *testing.B) {
			c, err := New(Config{Relays: []string{"127.0.0.1:1"}, Token: "t", Pin: "sha256:" + strings.Repeat("0", 64),
				Audit:    slog.New(slog.NewJSONHandler(io.Discard, nil)),
				Services: []Service{{Name: "staging-api", Kind: "http", Environment: "staging", Upstream: "127.0.0.1:1"}}})
			if err != nil {
				b.Fatal(err)
			}
			pol := newRelayPolicy("relay:1")
			pol.apply(&wire.Policy{Version: 1, Hash: strings.Repeat("0", 64), Sources: []*wire.PolicySource{{Filename: "p.cedar", Text: bc.policies}}}, slog.New(slog.DiscardHandler))
			g, err := newHTTPGate(c, c.services["staging-api"], &wire.Dial{Binding: "staging-api", Session: "s", Source: "127.0.0.1:4000",
				Identity: &wire.Identity{Subject: "coding-agent", Groups: []string{"coding-agents"}}}, pol)
			if err != nil {
				b.Fatal(err)
			}
			r := httptest.NewRequest("GET", "/v1/items?owner=a", nil)
			w := &countingWriter{ResponseWriter: discardWriter{}}
			b.ReportAllocs()
			for b.Loop() {
				start := time.Now()
				var v verdict
				if !g.decide(w, r, &v) {
					b.Fatal("denied")
				}
				g.auditRequest(r, &v, w, nil, start)
			}
		})
	}
}

type discardWriter struct{}

func (discardWriter) Header() http.Header         { return http.Header{} }
func (discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (discardWriter) WriteHeader(int)             {}
