package identity_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/postern/postern/mesh/identity"
)

// Issue a token for an agent, then verify it as the relay does.
func Example() {
	ctx := context.Background()
	key, err := identity.GenerateSigningKey(identity.EdDSA)
	if err != nil {
		log.Fatal(err)
	}
	token, err := key.Issue(identity.Claims{
		Issuer:    "https://postern.example.com",
		Subject:   "agent-42",
		Audience:  []string{"postern-mesh"},
		ExpiresAt: time.Now().Add(15 * time.Minute),
		Role:      identity.RoleAgent,
		Groups:    []string{"coding-agents", "staging"},
	})
	if err != nil {
		log.Fatal(err)
	}

	jwks, err := key.PublicJWKS() // what the relay is configured with
	if err != nil {
		log.Fatal(err)
	}
	v, err := identity.NewVerifier(ctx, identity.VerifierConfig{
		Audience: "postern-mesh",
		Issuer:   "https://postern.example.com",
		KeySet:   jwks, // or JWKSURL: "https://idp.example.com/jwks.json"
	})
	if err != nil {
		log.Fatal(err)
	}
	defer v.Close()
	claims, err := v.Verify(token, identity.RoleAgent)
	if err != nil {
		// errors.Is(err, identity.ErrExpired), ...; Reason is the wire code
		log.Fatalf("refused: %s: %v", identity.Reason(err), err)
	}
	fmt.Println(claims.Subject, claims.Groups)
	// Output: agent-42 [coding-agents staging]
}

// A connector's token grants its services and says what each is: the
// relay lets policy read the token's word, not the connector's Hello.
func ExampleSigningKey_Issue_connector() {
	key, err := identity.GenerateSigningKey(identity.EdDSA)
	if err != nil {
		log.Fatal(err)
	}
	token, err := key.Issue(identity.Claims{
		Subject:   "office-connector",
		Audience:  []string{"postern-mesh"},
		ExpiresAt: time.Now().Add(24 * time.Hour),
		Role:      identity.RoleConnector,
		Services: []identity.Service{
			{Name: "prod-finance", Kind: "postgres", Environment: "prod", Labels: []string{"financial"}},
			{Name: "staging-api"}, // the name alone: the relay must declare it
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	claims, _ := identity.ParseUnverified(token)
	for _, s := range claims.Services {
		fmt.Println(s.Name, s.Described(), s.Kind, s.Environment, s.Labels)
	}
	// Output:
	// prod-finance true postgres prod [financial]
	// staging-api false   []
}

// A refused token: branch with errors.Is, send Reason as the wire code.
func ExampleVerifier_Verify_expired() {
	now := time.Date(2026, 3, 14, 12, 0, 0, 0, time.UTC)
	key, _ := identity.GenerateSigningKey(identity.ES256)
	token, _ := key.Issue(identity.Claims{
		Subject:   "agent-42",
		Audience:  []string{"postern-mesh"},
		IssuedAt:  now.Add(-time.Hour),
		ExpiresAt: now.Add(-3 * time.Minute),
		Role:      identity.RoleAgent,
	})
	jwks, _ := key.PublicJWKS()
	v, _ := identity.NewVerifier(context.Background(), identity.VerifierConfig{
		Audience: "postern-mesh",
		KeySet:   jwks,
		Now:      func() time.Time { return now },
	})
	defer v.Close()

	_, err := v.Verify(token, identity.RoleAgent)
	fmt.Println(errors.Is(err, identity.ErrExpired))
	fmt.Println(identity.Reason(err))
	fmt.Println(err)
	fmt.Println(v.Counts()["token_expired"])
	// Output:
	// true
	// token_expired
	// identity: token expired 3m ago (exp 2026-03-14T11:57:00Z); get a new token
	// 1
}

// The relay checks each service a connector advertises against its token.
func ExampleClaims_MayAdvertise() {
	c := identity.Claims{
		Subject: "connector-office",
		Role:    identity.RoleConnector,
		Services: []identity.Service{
			{Name: "staging-db", Kind: "postgres", Environment: "staging", Labels: []string{"pii"}},
			{Name: "billing-api"}, // the name alone: the relay must declare it
		},
	}
	fmt.Println(c.MayAdvertise("staging-db"))
	err := c.MayAdvertise("prod-db")
	fmt.Println(errors.Is(err, identity.ErrServiceNotGranted))
	fmt.Println(err)
	// Output:
	// <nil>
	// true
	// identity: connector "connector-office" may not advertise service "prod-db": its token grants ["staging-db" "billing-api"]
}

// A client reads its own token's expiry to refresh it in time. Never
// authorize with ParseUnverified: it checks nothing.
func ExampleParseUnverified() {
	key, _ := identity.GenerateSigningKey(identity.EdDSA)
	token, _ := key.Issue(identity.Claims{
		Subject:   "agent-42",
		Role:      identity.RoleAgent,
		ExpiresAt: time.Date(2026, 3, 14, 12, 15, 0, 0, time.UTC),
	})
	claims, err := identity.ParseUnverified(token)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("refresh before", claims.ExpiresAt.Add(-time.Minute).Format(time.RFC3339))
	// Output: refresh before 2026-03-14T12:14:00Z
}
