package relay

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/postern/postern/internal/wire"
	"github.com/postern/postern/mesh/identity"
)

// FuzzHello feeds arbitrary bytes to the relay as a client's first message.
// Whatever they are, the relay must not panic, and it must accept only a
// Hello whose token was really signed by the mesh's key: the seeds hold
// the only such tokens, so an accepted token that is not a seed's is a
// forgery that got through.
func FuzzHello(f *testing.F) {
	key, err := identity.GenerateSigningKey(identity.EdDSA)
	if err != nil {
		f.Fatal(err)
	}
	jwks, err := key.PublicJWKS()
	if err != nil {
		f.Fatal(err)
	}
	v, err := identity.NewVerifier(context.Background(), identity.VerifierConfig{Audience: "fuzz", KeySet: jwks})
	if err != nil {
		f.Fatal(err)
	}
	defer v.Close()
	exp := time.Now().Add(24 * time.Hour)
	agentTok, _ := key.Issue(identity.Claims{Subject: "a", Role: identity.RoleAgent, Audience: []string{"fuzz"}, ExpiresAt: exp})
	connTok, _ := key.Issue(identity.Claims{Subject: "c", Role: identity.RoleConnector, Audience: []string{"fuzz"}, ExpiresAt: exp, Services: []identity.Service{{Name: "db", Kind: "tcp"}}})
	boundTok, _ := key.Issue(identity.Claims{Subject: "b", Role: identity.RoleAgent, Audience: []string{"fuzz"}, ExpiresAt: exp, BoundKey: "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"})
	minted := map[string]bool{agentTok: true, connTok: true, boundTok: true}

	for _, m := range []wire.Message{
		&wire.Hello{Version: wire.Version, Role: wire.RoleAgent, Token: agentTok},
		&wire.Hello{Version: wire.Version, Role: wire.RoleConnector, Token: connTok, Services: []*wire.Binding{{Name: "db", Kind: "tcp"}}},
		&wire.Hello{Version: 2, Role: wire.RoleAgent, Token: agentTok},
		&wire.Hello{Version: wire.Version, Role: wire.RoleAgent, Token: boundTok},
		&wire.Open{Binding: "db"},
	} {
		frame, err := wire.AppendFrame(nil, m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(frame)
	}

	r := &Relay{cfg: Config{Verifier: v}}
	r.limits.fill()
	f.Fuzz(func(t *testing.T, data []byte) {
		// No key is proven here: a bound token must never be accepted.
		hello, claims, rej := r.handshake(context.Background(), bytes.NewReader(data), "")
		if rej == nil {
			if claims == nil {
				t.Fatal("accepted without claims")
			}
			if claims.BoundKey != "" {
				t.Fatal("accepted a bound token without proof of its key")
			}
			if !minted[hello.Token] {
				t.Fatalf("accepted a token the key never signed: %q", hello.Token)
			}
			if string(claims.Role) != hello.Role {
				t.Fatalf("accepted role %q with a %q token", hello.Role, claims.Role)
			}
			return
		}
		if rej.Code == wire.CodeOK || rej.Reason == "" || rej.Message == "" {
			t.Fatalf("a refusal without code, reason or message: %+v", rej)
		}
	})
}
