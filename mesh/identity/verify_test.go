package identity

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		alg  Algorithm
		role Role
	}{
		{"EdDSA agent", EdDSA, RoleAgent},
		{"EdDSA connector", EdDSA, RoleConnector},
		{"ES256 agent", ES256, RoleAgent},
		{"ES256 connector", ES256, RoleConnector},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := newKey(t, tt.alg)
			v := newVerifier(t, VerifierConfig{KeySet: jwks(t, k)})
			in := goodClaims(tt.role)
			tok := issue(t, k, in)

			got, err := v.Verify(tok, tt.role)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if got.ID == "" {
				t.Error("Issue did not set a jti")
			}
			in.ID = got.ID
			attrsIn, attrsGot := in.Attributes, got.Attributes
			in.Attributes, got.Attributes = nil, nil
			if !reflect.DeepEqual(got, &in) {
				t.Errorf("claims differ\n got %+v\nwant %+v", got, &in)
			}
			// Attributes come back with json.Number numbers: compare as JSON.
			a, _ := json.Marshal(attrsIn)
			b, _ := json.Marshal(attrsGot)
			if string(a) != string(b) {
				t.Errorf("attributes differ\n got %s\nwant %s", b, a)
			}
			if n, ok := attrsGot["level"].(json.Number); !ok || n.String() != "3" {
				t.Errorf("attributes[level] = %#v, want json.Number(\"3\")", attrsGot["level"])
			}
		})
	}
}

func TestIssueDefaults(t *testing.T) {
	k := newKey(t, EdDSA)
	c := goodClaims(RoleAgent)
	c.IssuedAt = time.Time{}
	c.Audience = []string{"a", "b"}
	before := time.Now().Truncate(time.Second)
	tok := issue(t, k, c)
	got, err := ParseUnverified(tok)
	if err != nil {
		t.Fatal(err)
	}
	if got.IssuedAt.Before(before) || got.IssuedAt.After(time.Now()) {
		t.Errorf("iat = %v, want about now", got.IssuedAt)
	}
	if len(got.ID) < 20 {
		t.Errorf("jti = %q, want 128 random bits", got.ID)
	}
	if other, _ := ParseUnverified(issue(t, k, c)); other.ID == got.ID {
		t.Error("two tokens share a jti")
	}
	if !slices.Equal(got.Audience, []string{"a", "b"}) {
		t.Errorf("aud = %q", got.Audience)
	}
}

func TestIssueRefuses(t *testing.T) {
	k := newKey(t, EdDSA)
	tests := []struct {
		name string
		edit func(*Claims)
		want string
	}{
		{"empty role", func(c *Claims) { c.Role = "" }, "role"},
		{"unknown role", func(c *Claims) { c.Role = "admin" }, "role"},
		{"services on an agent token", func(c *Claims) { c.Services = ServiceNames("prod-db") }, "services"},
		{"exp before 1970", func(c *Claims) { c.ExpiresAt = time.Unix(-5, 0) }, "exp"},
		{"attributes not JSON", func(c *Claims) { c.Attributes = map[string]any{"f": func() {}} }, "attributes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := goodClaims(RoleAgent)
			tt.edit(&c)
			tok, err := k.Issue(c)
			if err == nil {
				t.Fatalf("Issue succeeded: %s", tok)
			}
			if !strings.HasPrefix(err.Error(), "identity: ") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q: want prefix \"identity: \" and %q", err, tt.want)
			}
		})
	}
	var zero SigningKey
	if _, err := zero.Issue(goodClaims(RoleAgent)); err == nil {
		t.Error("a zero SigningKey issued a token")
	}
}

// TestVerifyRefuses is the list of attacks and mistakes: each must be refused
// with its own sentinel, its reason, and a message that leaks nothing.
func TestVerifyRefuses(t *testing.T) {
	ed := newKey(t, EdDSA)
	ec := newKey(t, ES256)
	other := newKey(t, EdDSA)
	set, err := MergeJWKS(jwks(t, ed), jwks(t, ec))
	if err != nil {
		t.Fatal(err)
	}
	v := newVerifier(t, VerifierConfig{KeySet: set})

	// impostor is another key that claims ed's kid.
	impostor := func(t *testing.T) *SigningKey {
		t.Helper()
		var j map[string]any
		b, _ := other.MarshalJWK()
		_ = json.Unmarshal(b, &j)
		j["kid"] = ed.KeyID()
		b, _ = json.Marshal(j)
		k, err := ParseSigningKey(b)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	signed := func(t *testing.T, edit func(map[string]any)) string {
		t.Helper()
		p := payloadOf(t, RoleAgent)
		edit(p)
		return craft(t, header(ed), p, signWith(t, ed))
	}
	valid := func(t *testing.T) string { return issue(t, ed, goodClaims(RoleAgent)) }
	withClaims := func(edit func(*Claims)) func(t *testing.T) string {
		return func(t *testing.T) string {
			c := goodClaims(RoleAgent)
			edit(&c)
			return issue(t, ed, c)
		}
	}
	parts := func(tok string) []string { return strings.Split(tok, ".") }

	tests := []struct {
		name    string
		token   func(t *testing.T) string
		want    Role // RoleAgent when empty
		wantErr error
		reason  string
		msg     string // part of the message, when it matters
	}{
		// Size and structure.
		{name: "oversized garbage", token: func(t *testing.T) string { return strings.Repeat("a", DefaultMaxTokenSize+1) },
			wantErr: ErrTooLarge, reason: "token_too_large", msg: "8193 bytes"},
		{name: "oversized but validly signed", token: withClaims(func(c *Claims) { c.Attributes = map[string]any{"pad": strings.Repeat("x", 9000)} }),
			wantErr: ErrTooLarge, reason: "token_too_large"},
		{name: "empty", token: func(t *testing.T) string { return "" }, wantErr: ErrMalformed, reason: "malformed_token"},
		{name: "garbage", token: func(t *testing.T) string { return "hello world" }, wantErr: ErrMalformed, reason: "malformed_token", msg: "got 1"},
		{name: "two parts", token: func(t *testing.T) string { p := parts(valid(t)); return p[0] + "." + p[1] }, wantErr: ErrMalformed, reason: "malformed_token", msg: "got 2"},
		{name: "four parts", token: func(t *testing.T) string { return valid(t) + ".e30" }, wantErr: ErrMalformed, reason: "malformed_token", msg: "got 4"},
		{name: "non-base64 header", token: func(t *testing.T) string { return "!!!." + parts(valid(t))[1] + "." }, wantErr: ErrMalformed, reason: "malformed_token", msg: "header is not base64url"},
		{name: "padded base64", token: func(t *testing.T) string { p := parts(valid(t)); return p[0] + "=." + p[1] + "." + p[2] }, wantErr: ErrMalformed, reason: "malformed_token"},
		{name: "newline in signature", token: func(t *testing.T) string {
			p := parts(valid(t))
			return p[0] + "." + p[1] + "." + p[2][:10] + "\n" + p[2][10:]
		}, wantErr: ErrMalformed, reason: "malformed_token"},
		{name: "non-canonical base64 signature", token: func(t *testing.T) string {
			tok := valid(t)
			// 64 bytes encode to 86 chars; the last one carries 4 unused bits.
			last := tok[len(tok)-1]
			i := strings.IndexByte(base64URLAlphabet, last)
			return tok[:len(tok)-1] + string(base64URLAlphabet[i^1])
		}, wantErr: ErrMalformed, reason: "malformed_token"},
		{name: "header not JSON", token: func(t *testing.T) string { return craft(t, "not json", payloadOf(t, RoleAgent), signWith(t, ed)) }, wantErr: ErrMalformed, reason: "malformed_token"},
		{name: "header is an array", token: func(t *testing.T) string { return craft(t, `["EdDSA"]`, payloadOf(t, RoleAgent), signWith(t, ed)) }, wantErr: ErrMalformed, reason: "malformed_token"},
		{name: "header without alg", token: func(t *testing.T) string {
			return craft(t, map[string]any{"kid": ed.KeyID()}, payloadOf(t, RoleAgent), signWith(t, ed))
		}, wantErr: ErrMalformed, reason: "malformed_token", msg: `no "alg"`},
		{name: "duplicate alg in header", token: func(t *testing.T) string {
			return craft(t, `{"alg":"EdDSA","kid":"`+ed.KeyID()+`","alg":"none"}`, payloadOf(t, RoleAgent), signWith(t, ed))
		}, wantErr: ErrMalformed, reason: "malformed_token"},
		{name: "crit header", token: func(t *testing.T) string {
			h := header(ed)
			h["crit"] = []string{"b64"}
			h["b64"] = false
			return craft(t, h, payloadOf(t, RoleAgent), signWith(t, ed))
		}, wantErr: ErrMalformed, reason: "malformed_token", msg: "crit"},
		{name: "typ of another kind of JWT", token: func(t *testing.T) string {
			h := header(ed)
			h["typ"] = "at+jwt"
			return craft(t, h, payloadOf(t, RoleAgent), signWith(t, ed))
		}, wantErr: ErrMalformed, reason: "malformed_token", msg: "typ"},

		// Algorithm, before any key.
		{name: "alg none", token: func(t *testing.T) string {
			return craft(t, map[string]any{"alg": "none"}, payloadOf(t, RoleAgent), nil)
		},
			wantErr: ErrAlgorithm, reason: "alg_not_allowed", msg: `"none"`},
		{name: "alg none with a valid kid", token: func(t *testing.T) string {
			return craft(t, map[string]any{"alg": "none", "kid": ed.KeyID()}, payloadOf(t, RoleAgent), nil)
		}, wantErr: ErrAlgorithm, reason: "alg_not_allowed"},
		{name: "alg NoNe", token: func(t *testing.T) string {
			return craft(t, map[string]any{"alg": "NoNe"}, payloadOf(t, RoleAgent), nil)
		},
			wantErr: ErrAlgorithm, reason: "alg_not_allowed"},
		{name: "HS256 keyed with the public JWKS", token: func(t *testing.T) string {
			return craft(t, map[string]any{"alg": "HS256", "kid": ed.KeyID()}, payloadOf(t, RoleAgent), hmacSHA256(jwks(t, ed)))
		}, wantErr: ErrAlgorithm, reason: "alg_not_allowed", msg: `"HS256"`},
		{name: "HS256 keyed with the raw public key", token: func(t *testing.T) string {
			return craft(t, map[string]any{"alg": "HS256", "kid": ed.KeyID()}, payloadOf(t, RoleAgent), hmacSHA256(ed.pub.ed))
		}, wantErr: ErrAlgorithm, reason: "alg_not_allowed"},
		{name: "RS256", token: func(t *testing.T) string {
			return craft(t, map[string]any{"alg": "RS256", "kid": ed.KeyID()}, payloadOf(t, RoleAgent), signWith(t, ed))
		}, wantErr: ErrAlgorithm, reason: "alg_not_allowed"},
		{name: "alg does not match the key", token: func(t *testing.T) string {
			return craft(t, map[string]any{"alg": "ES256", "kid": ed.KeyID()}, payloadOf(t, RoleAgent), signWith(t, ed))
		}, wantErr: ErrAlgorithm, reason: "alg_not_allowed", msg: "does not match key"},
		{name: "alg not a string", token: func(t *testing.T) string {
			return craft(t, map[string]any{"alg": 1, "kid": ed.KeyID()}, payloadOf(t, RoleAgent), signWith(t, ed))
		}, wantErr: ErrMalformed, reason: "malformed_token"},

		// Signature.
		{name: "signed by another key under our kid", token: func(t *testing.T) string { return issue(t, impostor(t), goodClaims(RoleAgent)) },
			wantErr: ErrSignature, reason: "bad_signature", msg: "does not verify"},
		{name: "unknown kid", token: func(t *testing.T) string { return issue(t, other, goodClaims(RoleAgent)) },
			wantErr: ErrSignature, reason: "bad_signature", msg: "not in the key set"},
		{name: "no kid", token: func(t *testing.T) string {
			return craft(t, map[string]any{"alg": "EdDSA"}, payloadOf(t, RoleAgent), signWith(t, ed))
		}, wantErr: ErrSignature, reason: "bad_signature", msg: "kid"},
		{name: "tampered payload", token: func(t *testing.T) string {
			p := parts(valid(t))
			claims := payloadOf(t, RoleAgent)
			claims["groups"] = []string{"admins"}
			b, _ := json.Marshal(claims)
			return p[0] + "." + b64.EncodeToString(b) + "." + p[2]
		}, wantErr: ErrSignature, reason: "bad_signature"},
		{name: "tampered signature", token: func(t *testing.T) string {
			p := parts(valid(t))
			sig, _ := b64.DecodeString(p[2])
			sig[5] ^= 1
			return p[0] + "." + p[1] + "." + b64.EncodeToString(sig)
		}, wantErr: ErrSignature, reason: "bad_signature"},
		{name: "empty signature", token: func(t *testing.T) string { p := parts(valid(t)); return p[0] + "." + p[1] + "." },
			wantErr: ErrSignature, reason: "bad_signature"},
		{name: "ES256 tampered payload", token: func(t *testing.T) string {
			p := parts(issue(t, ec, goodClaims(RoleAgent)))
			return p[0] + "." + parts(valid(t))[1] + "." + p[2]
		}, wantErr: ErrSignature, reason: "bad_signature"},
		{name: "signed payload not JSON", token: func(t *testing.T) string { return craft(t, header(ed), "not json", signWith(t, ed)) },
			wantErr: ErrMalformed, reason: "malformed_token"},
		{name: "signed payload with two subjects", token: func(t *testing.T) string {
			return craft(t, header(ed), `{"sub":"agent-1","sub":"admin","aud":"postern-mesh"}`, signWith(t, ed))
		}, wantErr: ErrMalformed, reason: "malformed_token"},

		// Claims, in order.
		{name: "wrong issuer", token: withClaims(func(c *Claims) { c.Issuer = "https://evil.test" }),
			wantErr: ErrIssuer, reason: "wrong_issuer", msg: `"https://evil.test" is not "https://issuer.test"`},
		{name: "no issuer", token: withClaims(func(c *Claims) { c.Issuer = "" }), wantErr: ErrIssuer, reason: "wrong_issuer"},
		{name: "wrong audience", token: withClaims(func(c *Claims) { c.Audience = []string{"x"} }),
			wantErr: ErrAudience, reason: "wrong_audience", msg: `token audience ["x"] does not include "postern-mesh"`},
		{name: "no audience", token: withClaims(func(c *Claims) { c.Audience = nil }), wantErr: ErrAudience, reason: "wrong_audience"},
		{name: "audience is a number", token: func(t *testing.T) string { return signed(t, func(p map[string]any) { p["aud"] = 7 }) },
			wantErr: ErrInvalidClaim, reason: "invalid_claim", msg: `"aud"`},
		{name: "expired", token: withClaims(func(c *Claims) { c.ExpiresAt = testNow.Add(-2 * time.Minute) }),
			wantErr: ErrExpired, reason: "token_expired", msg: "token expired 2m ago"},
		{name: "expired long ago", token: withClaims(func(c *Claims) { c.ExpiresAt = testNow.Add(-26 * time.Hour) }),
			wantErr: ErrExpired, reason: "token_expired", msg: "26h ago"},
		{name: "no expiry", token: withClaims(func(c *Claims) { c.ExpiresAt = time.Time{} }), wantErr: ErrNoExpiry, reason: "missing_expiry"},
		{name: "exp is a string", token: func(t *testing.T) string { return signed(t, func(p map[string]any) { p["exp"] = "9999999999" }) },
			wantErr: ErrInvalidClaim, reason: "invalid_claim", msg: `"exp"`},
		{name: "exp out of range", token: func(t *testing.T) string { return signed(t, func(p map[string]any) { p["exp"] = 1e300 }) },
			wantErr: ErrInvalidClaim, reason: "invalid_claim"},
		{name: "not yet valid", token: withClaims(func(c *Claims) { c.NotBefore = testNow.Add(2 * time.Minute) }),
			wantErr: ErrNotYetValid, reason: "token_not_yet_valid", msg: "not valid for another 2m"},
		{name: "issued in the future", token: withClaims(func(c *Claims) { c.IssuedAt = testNow.Add(5 * time.Minute) }),
			wantErr: ErrNotYetValid, reason: "token_not_yet_valid", msg: "issued 5m in the future"},
		{name: "no subject", token: withClaims(func(c *Claims) { c.Subject = "" }), wantErr: ErrNoSubject, reason: "missing_subject"},
		{name: "subject is a number", token: func(t *testing.T) string { return signed(t, func(p map[string]any) { p["sub"] = 42 }) },
			wantErr: ErrInvalidClaim, reason: "invalid_claim"},
		{name: "connector token used as agent", token: func(t *testing.T) string { return issue(t, ed, goodClaims(RoleConnector)) },
			wantErr: ErrRole, reason: "wrong_role", msg: `role "connector", not "agent"`},
		{name: "agent token used as connector", token: valid, want: RoleConnector, wantErr: ErrRole, reason: "wrong_role"},
		{name: "no role", token: func(t *testing.T) string { return signed(t, func(p map[string]any) { delete(p, "role") }) },
			wantErr: ErrRole, reason: "wrong_role"},
		{name: "Verify asked for no role", token: valid, want: "nobody", wantErr: ErrRole, reason: "wrong_role"},
		{name: "groups not strings", token: func(t *testing.T) string { return signed(t, func(p map[string]any) { p["groups"] = []any{1, 2} }) },
			wantErr: ErrInvalidClaim, reason: "invalid_claim", msg: `"groups" must be an array of strings`},
		{name: "groups with null", token: func(t *testing.T) string { return signed(t, func(p map[string]any) { p["groups"] = []any{"a", nil} }) },
			wantErr: ErrInvalidClaim, reason: "invalid_claim"},
		{name: "groups a string", token: func(t *testing.T) string { return signed(t, func(p map[string]any) { p["groups"] = "admins" }) },
			wantErr: ErrInvalidClaim, reason: "invalid_claim"},
		{name: "attributes an array", token: func(t *testing.T) string { return signed(t, func(p map[string]any) { p["attributes"] = []any{1} }) },
			wantErr: ErrInvalidClaim, reason: "invalid_claim"},
		{name: "services on an agent token", token: func(t *testing.T) string {
			return signed(t, func(p map[string]any) { p["services"] = []string{"prod-db"} })
		}, wantErr: ErrInvalidClaim, reason: "invalid_claim", msg: "only connector tokens"},
		{name: "services not strings", token: func(t *testing.T) string {
			p := payloadOf(t, RoleConnector)
			p["services"] = map[string]any{"prod-db": true}
			return craft(t, header(ed), p, signWith(t, ed))
		}, want: RoleConnector, wantErr: ErrInvalidClaim, reason: "invalid_claim"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := tt.token(t)
			want := tt.want
			if want == "" {
				want = RoleAgent
			}
			c, err := v.Verify(tok, want)
			if err == nil {
				t.Fatalf("Verify accepted it: %+v", c)
			}
			t.Logf("%s: %v", Reason(err), err)
			if c != nil {
				t.Errorf("Verify returned claims with an error")
			}
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("error %q is not %v", err, tt.wantErr)
			}
			if got := Reason(err); got != tt.reason {
				t.Errorf("Reason = %q, want %q (error %q)", got, tt.reason, err)
			}
			if !strings.HasPrefix(err.Error(), "identity: ") {
				t.Errorf("error %q does not start with \"identity: \"", err)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not say %q", err, tt.msg)
			}
			assertNoLeak(t, err.Error(), tok)
		})
	}
}

const base64URLAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

func TestReasonsAreDistinct(t *testing.T) {
	all := []error{ErrTooLarge, ErrMalformed, ErrAlgorithm, ErrSignature, ErrIssuer, ErrAudience, ErrExpired,
		ErrNoExpiry, ErrNotYetValid, ErrNoSubject, ErrRole, ErrInvalidClaim, ErrServiceNotGranted, ErrKeyNotProven, ErrKeyMismatch}
	snake := regexp.MustCompile(`^[a-z]+(_[a-z]+)*$`)
	seen := map[string]error{"ok": nil, "invalid_token": nil}
	for _, err := range all {
		r := Reason(err)
		if !snake.MatchString(r) {
			t.Errorf("Reason(%v) = %q, not snake_case", err, r)
		}
		if _, dup := seen[r]; dup {
			t.Errorf("Reason %q used twice", r)
		}
		seen[r] = err
		if !strings.HasPrefix(err.Error(), "identity: ") {
			t.Errorf("%q does not start with \"identity: \"", err)
		}
	}
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"nil", nil, "ok"},
		{"foreign", errors.New("boom"), "invalid_token"},
		{"wrapped", errors.Join(errors.New("x"), reject(ErrExpired, "late")), "token_expired"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Reason(tt.err); got != tt.want {
				t.Errorf("Reason = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestLeeway(t *testing.T) {
	k := newKey(t, EdDSA)
	tests := []struct {
		name    string
		leeway  time.Duration
		edit    func(*Claims)
		wantErr error
	}{
		{"expired 10s ago, default 30s leeway", 0, func(c *Claims) { c.ExpiresAt = testNow.Add(-10 * time.Second) }, nil},
		{"expired 2m ago, default leeway", 0, func(c *Claims) { c.ExpiresAt = testNow.Add(-2 * time.Minute) }, ErrExpired},
		{"expired 30s ago, exactly the leeway", 0, func(c *Claims) { c.ExpiresAt = testNow.Add(-30 * time.Second) }, ErrExpired},
		{"expires now, no leeway", -1, func(c *Claims) { c.ExpiresAt = testNow }, ErrExpired},
		{"expires in 1s, no leeway", -1, func(c *Claims) { c.ExpiresAt = testNow.Add(time.Second) }, nil},
		{"expired 50s ago, 1m leeway", time.Minute, func(c *Claims) { c.ExpiresAt = testNow.Add(-50 * time.Second) }, nil},
		{"nbf in 10s", 0, func(c *Claims) { c.NotBefore = testNow.Add(10 * time.Second) }, nil},
		{"nbf in 2m", 0, func(c *Claims) { c.NotBefore = testNow.Add(2 * time.Minute) }, ErrNotYetValid},
		{"nbf in 10s, no leeway", -1, func(c *Claims) { c.NotBefore = testNow.Add(10 * time.Second) }, ErrNotYetValid},
		{"iat in 20s", 0, func(c *Claims) { c.IssuedAt = testNow.Add(20 * time.Second) }, nil},
		{"iat in 2m", 0, func(c *Claims) { c.IssuedAt = testNow.Add(2 * time.Minute) }, ErrNotYetValid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := newVerifier(t, VerifierConfig{KeySet: jwks(t, k), Leeway: tt.leeway})
			c := goodClaims(RoleAgent)
			tt.edit(&c)
			_, err := v.Verify(issue(t, k, c), RoleAgent)
			if tt.wantErr == nil && err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Verify = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestMayAdvertise(t *testing.T) {
	connector := goodClaims(RoleConnector) // services staging-db, billing-api
	agent := goodClaims(RoleAgent)
	tests := []struct {
		name    string
		claims  *Claims
		service string
		ok      bool
	}{
		{"granted", &connector, "staging-db", true},
		{"second granted", &connector, "billing-api", true},
		{"not granted", &connector, "prod-db", false},
		{"prefix is not a match", &connector, "staging", false},
		{"case matters", &connector, "Staging-DB", false},
		{"empty name", &connector, "", false},
		{"agent", &agent, "staging-db", false},
		{"agent with services", &Claims{Role: RoleAgent, Services: ServiceNames("staging-db")}, "staging-db", false},
		{"nil claims", nil, "staging-db", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.claims.MayAdvertise(tt.service)
			if tt.ok {
				if err != nil {
					t.Fatalf("MayAdvertise(%q) = %v", tt.service, err)
				}
				return
			}
			if !errors.Is(err, ErrServiceNotGranted) || Reason(err) != "service_not_granted" {
				t.Fatalf("MayAdvertise(%q) = %v, want ErrServiceNotGranted", tt.service, err)
			}
			if !strings.HasPrefix(err.Error(), "identity: ") {
				t.Errorf("error %q", err)
			}
		})
	}
}

func TestCounts(t *testing.T) {
	k := newKey(t, EdDSA)
	v := newVerifier(t, VerifierConfig{KeySet: jwks(t, k)})
	good := issue(t, k, goodClaims(RoleAgent))
	expired := goodClaims(RoleAgent)
	expired.ExpiresAt = testNow.Add(-time.Hour)
	bad := issue(t, k, expired)
	for range 3 {
		v.Verify(good, RoleAgent)
	}
	v.Verify(bad, RoleAgent)
	v.Verify(bad, RoleAgent)
	v.Verify("x", RoleAgent)
	v.Verify(good, RoleConnector)

	got := v.Counts()
	want := map[string]uint64{}
	for _, r := range countedReasons {
		want[r] = 0
	}
	want["ok"], want["token_expired"], want["malformed_token"], want["wrong_role"] = 3, 2, 1, 1
	if !maps.Equal(got, want) {
		t.Errorf("Counts = %v\nwant %v", got, want)
	}
	if _, ok := got["service_not_granted"]; ok {
		t.Error("Counts reports service_not_granted, which Verify never returns")
	}
}

func TestParseUnverified(t *testing.T) {
	k := newKey(t, ES256)
	c := goodClaims(RoleConnector)
	c.ExpiresAt = testNow.Add(-time.Hour) // expired: still readable
	tok := issue(t, k, c)
	got, err := ParseUnverified(tok)
	if err != nil {
		t.Fatal(err)
	}
	if !got.ExpiresAt.Equal(c.ExpiresAt) || got.Subject != c.Subject || !reflect.DeepEqual(got.Services, c.Services) {
		t.Errorf("ParseUnverified = %+v", got)
	}
	tests := []struct {
		name    string
		token   string
		wantErr error
	}{
		{"garbage", "garbage", ErrMalformed},
		{"oversized", strings.Repeat("a", DefaultMaxTokenSize+1), ErrTooLarge},
		{"payload not an object", craft(t, header(k), `[1]`, nil), ErrMalformed},
		{"exp a string", craft(t, header(k), `{"exp":"soon"}`, nil), ErrInvalidClaim},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseUnverified(tt.token); !errors.Is(err, tt.wantErr) {
				t.Fatalf("ParseUnverified = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestNewVerifierConfig(t *testing.T) {
	k := newKey(t, EdDSA)
	set := jwks(t, k)
	priv, _ := k.MarshalJWK()
	tests := []struct {
		name string
		cfg  VerifierConfig
		want string // part of the error
	}{
		{"no audience", VerifierConfig{KeySet: set}, "Audience is required"},
		{"no keys", VerifierConfig{Audience: "a"}, "exactly one"},
		{"both key sources", VerifierConfig{Audience: "a", KeySet: set, JWKSURL: "https://x.test/jwks"}, "exactly one"},
		{"leeway too large", VerifierConfig{Audience: "a", KeySet: set, Leeway: 2 * time.Minute}, "Leeway"},
		{"negative size", VerifierConfig{Audience: "a", KeySet: set, MaxTokenSize: -1}, "MaxTokenSize"},
		{"key set not JSON", VerifierConfig{Audience: "a", KeySet: []byte("nope")}, "KeySet"},
		{"private key in set", VerifierConfig{Audience: "a", KeySet: []byte(`{"keys":[` + string(priv) + `]}`)}, "private key"},
		{"no usable key", VerifierConfig{Audience: "a", KeySet: []byte(`{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]}`)}, "no EdDSA"},
		{"empty set", VerifierConfig{Audience: "a", KeySet: []byte(`{"keys":[]}`)}, "no EdDSA"},
		{"point off the curve", VerifierConfig{Audience: "a", KeySet: []byte(`{"keys":[{"kty":"EC","crv":"P-256","x":"` +
			b64.EncodeToString(make([]byte, 32)) + `","y":"` + b64.EncodeToString(make([]byte, 32)) + `"}]}`)}, "not a point"},
		{"plain http URL", VerifierConfig{Audience: "a", JWKSURL: "http://idp.example.com/jwks"}, "plain http"},
		{"relative URL", VerifierConfig{Audience: "a", JWKSURL: "/jwks"}, "not an absolute"},
		{"ftp URL", VerifierConfig{Audience: "a", JWKSURL: "ftp://idp.example.com/jwks"}, "not an absolute"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := NewVerifier(context.Background(), tt.cfg)
			if err == nil {
				v.Close()
				t.Fatal("NewVerifier accepted the config")
			}
			if !strings.HasPrefix(err.Error(), "identity: ") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q: want %q", err, tt.want)
			}
			if strings.Contains(err.Error(), `"d"`) && strings.Contains(err.Error(), string(priv)) {
				t.Errorf("error leaks the private key: %q", err)
			}
		})
	}
}

func TestVerifierSkipsForeignKeys(t *testing.T) {
	k := newKey(t, EdDSA)
	var set struct{ Keys []json.RawMessage }
	_ = json.Unmarshal(jwks(t, k), &set)
	mixed := `{"keys":[{"kty":"RSA","kid":"r1","n":"AQAB","e":"AQAB"},` +
		`{"kty":"OKP","crv":"X25519","kid":"x","x":"AAAA"},` + string(set.Keys[0]) + `]}`
	v := newVerifier(t, VerifierConfig{KeySet: []byte(mixed)})
	if _, err := v.Verify(issue(t, k, goodClaims(RoleAgent)), RoleAgent); err != nil {
		t.Fatal(err)
	}
}

func TestMaxTokenSize(t *testing.T) {
	k := newKey(t, EdDSA)
	tok := issue(t, k, goodClaims(RoleAgent))
	tests := []struct {
		name    string
		max     int
		wantErr error
	}{
		{"exactly the token", len(tok), nil},
		{"one byte short", len(tok) - 1, ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := newVerifier(t, VerifierConfig{KeySet: jwks(t, k), MaxTokenSize: tt.max})
			if _, err := v.Verify(tok, RoleAgent); !errors.Is(err, tt.wantErr) {
				t.Fatalf("Verify = %v, want %v", err, tt.wantErr)
			}
		})
	}
}
