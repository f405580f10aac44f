// Package identity issues and verifies the signed identity tokens of a
// Postern mesh: one token per agent and per connector.
//
// # Overview
//
// A token is a compact JWT (RFC 7519) signed with EdDSA (Ed25519, the
// default) or ES256 (ECDSA P-256). A [SigningKey] issues tokens; a
// [Verifier] checks them against a static JWK set or a JWKS URL that it
// refreshes in the background. The relay verifies the token of every agent
// and connector that says Hello, with [Verifier.Verify] and the role it
// expects, and sends [Reason] of a refusal as the Reject code.
//
// Verification follows a fixed order and fails closed: size, structure,
// algorithm (before any key is looked up: "none", HS256 and every other alg
// are refused), signature, issuer, audience, expiry, not-before, issued-at,
// subject, role, claim types. Each failure wraps its own sentinel error
// ([ErrExpired], [ErrSignature], ...) for errors.Is, has a stable reason
// string ("token_expired", "bad_signature", ...) and is counted
// ([Verifier.Counts]). Error messages start with "identity: ", say what to
// fix, and never contain the token, its signature or key material; strings
// taken from a token (a kid, an issuer) are quoted and truncated.
//
// JOSE is github.com/lestrrat-go/jwx/v3: jws signs tokens and verifies
// their signatures, jwk reads and writes keys and computes their RFC 7638
// thumbprints. Around it the package keeps what jwx does not do: the checks
// that run before jwx sees a token (size, one canonical base64url spelling,
// a header without duplicate members, the alg allow-list, a kid), the key
// set that jws.Verify is given and nothing else, and the claims, read in
// the order above with their own errors. No jwx type appears in the API.
//
// # Claims
//
// The registered claims iss, sub (the agent's or connector's ID), aud (the
// mesh), exp (required), nbf, iat and jti, and four private claims:
//
//	role        "agent" or "connector"
//	groups      array of strings: Cedar groups the principal belongs to
//	attributes  JSON object: entity attributes that policies read
//	services    array, connector tokens only: the services it may
//	            advertise (see Claims.MayAdvertise), each a name
//	            ("staging-api") or a description of the service:
//	            {"name": "prod-finance", "kind": "postgres",
//	             "environment": "prod", "labels": ["financial"]}
//
// and one registered confirmation claim (RFC 7800):
//
//	cnf         {"jkt": "<RFC 7638 SHA-256 thumbprint>"}: the token is
//	            bound to that key (Claims.BoundKey, KeyThumbprint) and
//	            works only for a client that proves it (Claims.CheckKey)
//
// A cnf with any other member (x5t#S256, jwk) refuses the token rather
// than leaving it a bearer token.
//
// A description's members are exactly these four: name and kind are
// required (kind tcp, http or postgres), environment and labels optional;
// names, environments and labels are 1 to 128 letters, digits and . _ / -.
// A token lists at most [MaxServices] services, a service at most
// [MaxServiceLabels] labels, none twice. Anything else refuses the token
// (ErrInvalidClaim).
//
// Keep lifetimes short (minutes to hours): an unbound token is a bearer
// credential; an agent refreshes its token on its open session.
// [VerifierConfig.MaxLifetime] enforces it: a token whose exp is further
// than that from its iat is refused with [ErrLifetime], however valid its
// signature (postern relay sets it from tokens.max_ttl, 24h by default). A
// relay can also refuse a token by its ID (jti) or its subject before it
// expires, with its revocation list (package relay, Revocations). Leeway
// for clock skew is 30 seconds by default, a minute at most; a session
// holding a token lasts until exp plus the leeway ([Verifier.Leeway]),
// when Verify would start refusing it.
//
// [ParseUnverified] reads the claims of a token without checking anything.
// It is for a client that wants its own token's exp; never authorize with it.
//
// # Who may say what
//
// What policy reads of a binding (its kind, environment and labels) must
// come from someone allowed to say it, and a connector is not: its Hello
// is only its word. The issuer of its token is, and so is the relay's
// operator. So a connector token describes each service it grants
// ([Service]); the relay takes the description from its own configuration
// first, then from the token, and refuses a connector whose Hello says
// otherwise. A service granted by name alone is served only when the
// relay's configuration declares it. A connector token, issued:
//
//	token, err := key.Issue(identity.Claims{
//		Subject:   "office-connector",
//		Audience:  []string{"postern-mesh"},
//		ExpiresAt: time.Now().Add(24 * time.Hour),
//		Role:      identity.RoleConnector,
//		Services: []identity.Service{
//			{Name: "prod-finance", Kind: "postgres", Environment: "prod", Labels: []string{"financial"}},
//			{Name: "staging-api"}, // the name alone: the relay must declare it
//		},
//	})
//
// # Keys and rotation
//
// A key's ID (kid) is its RFC 7638 thumbprint unless its JWK file names
// another. Keep the private JWK ([SigningKey.MarshalJWK]) in a file of mode
// 0600; give verifiers the public set ([SigningKey.PublicJWKS]).
//
// To rotate without refusing valid tokens:
//
//  1. generate the new key and publish both public keys ([MergeJWKS]);
//  2. wait until every verifier has the merged set (a JWKS URL verifier
//     refreshes every RefreshInterval, 15 minutes by default, and also
//     fetches the set soon after it sees a token signed with an unknown
//     kid, at most once per 10 seconds);
//  3. issue with the new key;
//  4. when the last token of the old key has expired, publish the new key
//     alone.
//
// A verifier whose refresh fails keeps its previous keys and logs a warning;
// to revoke a key at once, restart the verifiers or use a static set.
//
// # Usage
//
// Issue a token:
//
//	key, err := identity.GenerateSigningKey(identity.EdDSA)
//	if err != nil {
//		log.Fatal(err)
//	}
//	token, err := key.Issue(identity.Claims{
//		Issuer:    "https://postern.example.com",
//		Subject:   "agent-42",
//		Audience:  []string{"postern-mesh"},
//		ExpiresAt: time.Now().Add(15 * time.Minute),
//		Role:      identity.RoleAgent,
//		Groups:    []string{"coding-agents", "staging"},
//	})
//	if err != nil {
//		log.Fatal(err)
//	}
//
// Verify it, on the relay:
//
//	jwks, err := key.PublicJWKS() // what the relay is configured with
//	if err != nil {
//		log.Fatal(err)
//	}
//	v, err := identity.NewVerifier(ctx, identity.VerifierConfig{
//		Audience: "postern-mesh",
//		Issuer:   "https://postern.example.com",
//		KeySet:   jwks, // or JWKSURL: "https://idp.example.com/jwks.json"
//	})
//	if err != nil {
//		log.Fatal(err)
//	}
//	defer v.Close()
//	claims, err := v.Verify(token, identity.RoleAgent)
//	if err != nil {
//		// errors.Is(err, identity.ErrExpired), ...; Reason is the wire code
//		log.Fatalf("refused: %s: %v", identity.Reason(err), err)
//	}
//	fmt.Println(claims.Subject, claims.Groups)
package identity
