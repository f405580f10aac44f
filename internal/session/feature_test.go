package session_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postern/postern"
	"github.com/postern/postern/internal/meshtest"
	"github.com/postern/postern/internal/session"
	"github.com/postern/postern/internal/wire"
	"github.com/postern/postern/mesh/identity"
	"github.com/postern/postern/transport"
)

// TestPolicyFrameOnlyWhenAsked: the relay sends Policy frames only to a
// connector whose Hello lists the feature; one that does not (a version 1
// connector that predates it) never reads a frame it does not know.
func TestPolicyFrameOnlyWhenAsked(t *testing.T) {
	m := meshtest.New(t, meshtest.Options{})
	tok := m.ConnectorToken("office-1", identity.Service{Name: "staging-api", Kind: postern.KindHTTP, Environment: "staging"})
	for _, tc := range []struct {
		name     string
		features []string
		want     bool
	}{
		{"without the feature", nil, false},
		{"with the feature", []string{wire.FeaturePolicy}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tlsConf, err := transport.Trust{Pin: m.Pin}.ClientTLS("127.0.0.1")
			if err != nil {
				t.Fatal(err)
			}
			var got atomic.Pointer[wire.Policy]
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			s, err := session.Dial(ctx, session.Config{
				Addr: m.Addr(), TLS: tlsConf, Role: wire.RoleConnector,
				Services: []*wire.Binding{{Name: "staging-api", Kind: postern.KindHTTP, Environment: "staging"}},
				Token:    func(context.Context) (string, error) { return tok, nil },
				Features: tc.features,
				OnPolicy: func(p *wire.Policy) { got.Store(p) },
			})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if tc.want {
				meshtest.WaitFor(t, "a Policy frame", func() bool { return got.Load() != nil })
				if p := got.Load(); p.Version == 0 || len(p.Sources) != 1 || p.Sources[0].Filename != "test.cedar" {
					t.Fatalf("policy frame %v", p)
				}
				return
			}
			time.Sleep(200 * time.Millisecond)
			if p := got.Load(); p != nil {
				t.Fatalf("a Policy frame to a connector that did not ask: %v", p)
			}
			if !s.Alive() {
				t.Fatalf("session ended: %v", s.Err())
			}
		})
	}
}
