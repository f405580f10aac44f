package identity

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v3/jws"
)

// b64 is base64url without padding, refusing non-canonical trailing bits.
var b64 = base64.RawURLEncoding.Strict()

// canonicalBase64URL reports whether s is base64url without padding in its
// one canonical spelling: only the alphabet A-Z a-z 0-9 - _, a length that
// encodes whole bytes, and zero unused bits in the last character.
//
// jwx decodes leniently (padding, the standard alphabet, any unused bits)
// and re-encodes what it decoded to rebuild the signing input, so without
// this check one signed token would have several spellings that verify.
func canonicalBase64URL(s string) bool {
	var last byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'A' <= c && c <= 'Z':
			last = c - 'A'
		case 'a' <= c && c <= 'z':
			last = c - 'a' + 26
		case '0' <= c && c <= '9':
			last = c - '0' + 52
		case c == '-':
			last = 62
		case c == '_':
			last = 63
		default:
			return false
		}
	}
	switch len(s) % 4 {
	case 1:
		return false
	case 2: // one byte: 4 unused bits
		return last&0x0f == 0
	case 3: // two bytes: 2 unused bits
		return last&0x03 == 0
	}
	return true
}

// decodeObject decodes a JSON object into its members. Unlike json.Unmarshal
// into a struct, and unlike jwx, it refuses duplicate member names (RFC 7515
// 4: a header with two "alg" members is ambiguous, and two JSON parsers may
// pick different ones; jwx keeps the last) and it matches names exactly
// ("ALG" is not "alg").
func decodeObject(data []byte) (claimMap, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("not a JSON object")
	}
	m := make(claimMap)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		name, ok := tok.(string)
		if !ok {
			return nil, errors.New("not a JSON object")
		}
		if _, dup := m[name]; dup {
			return nil, fmt.Errorf("duplicate member %s", quote(name))
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, err
		}
		m[name] = raw
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON object")
	}
	return m, nil
}

// compact is a token that passed the structure step: its protected header
// read, its other parts checked but still encoded.
type compact struct {
	alg       string
	kid       string
	payload   string // base64url, as received
	signature string // base64url, as received
}

// parseCompact is the structure step, run before jwx sees the token: three
// canonical base64url parts, a JSON object header without duplicate members,
// a string alg, no "crit" and no "b64". It judges nothing else.
func parseCompact(token string) (*compact, error) {
	if token == "" {
		return nil, reject(ErrMalformed, "empty token")
	}
	if n := strings.Count(token, "."); n != 2 {
		return nil, reject(ErrMalformed, "token is not a JWT: want 3 dot-separated parts, got %d", n+1)
	}
	h, rest, _ := strings.Cut(token, ".")
	p, s, _ := strings.Cut(rest, ".")
	for _, part := range []struct{ name, s string }{{"header", h}, {"payload", p}, {"signature", s}} {
		if !canonicalBase64URL(part.s) {
			return nil, reject(ErrMalformed, "token %s is not base64url (alphabet A-Z a-z 0-9 - _, no padding, unused bits zero)", part.name)
		}
	}
	hdr, err := b64.DecodeString(h)
	if err != nil {
		return nil, reject(ErrMalformed, "token header is not valid base64url")
	}
	m, err := decodeObject(hdr)
	if err != nil {
		return nil, reject(ErrMalformed, "token header is not a JSON object without duplicate members")
	}
	c := &compact{payload: p, signature: s}
	raw, ok := m.raw("alg")
	if !ok {
		return nil, reject(ErrMalformed, `token header has no "alg"`)
	}
	if raw[0] != '"' || json.Unmarshal(raw, &c.alg) != nil {
		return nil, reject(ErrMalformed, `token header "alg" is not a string`)
	}
	if c.kid, err = m.str("kid"); err != nil {
		return nil, reject(ErrMalformed, `token header "kid" is not a string`)
	}
	typ, err := m.str("typ")
	if err != nil {
		return nil, reject(ErrMalformed, `token header "typ" is not a string`)
	}
	// Explicit typing (RFC 8725 3.11): another kind of JWT signed by the same
	// issuer is not an identity token.
	if typ != "" && !strings.EqualFold(typ, "JWT") && !strings.EqualFold(typ, "application/jwt") {
		return nil, reject(ErrMalformed, `token header "typ" is %s; want "JWT" or none`, quote(typ))
	}
	// No extension is understood, so any "crit" makes the token unusable
	// (RFC 7515 4.1.11). "b64" (RFC 7797) would make jwx sign over the raw
	// payload bytes; a JWT never uses it.
	if _, ok := m["crit"]; ok {
		return nil, reject(ErrMalformed, `token header lists critical extensions ("crit") that Postern does not support`)
	}
	if _, ok := m["b64"]; ok {
		return nil, reject(ErrMalformed, `token header has "b64" (unencoded payload), which Postern does not support`)
	}
	// jwk, jku, x5u and x5c are not used: the verifier passes jwx its key set
	// and nothing else, so a token never chooses its own key.
	return c, nil
}

// Issue signs c and returns the compact token.
//
// It sets iat to now when c.IssuedAt is zero and jti to 128 random bits when
// c.ID is empty. Times are written in whole seconds; an empty Audience, a
// zero time and empty lists are omitted.
//
// Issue refuses what no token should ever say: a Role other than
// [RoleAgent] or [RoleConnector], and Services on a token that is not a
// connector's, or Services that a verifier would refuse (a bad name or
// kind, a name twice, beyond [MaxServices]). Otherwise it signs what it is given, including claims that
// every verifier refuses (no exp, no sub, no aud, already expired), so that
// tests can produce such tokens; it is the caller's job (the `postern token`
// command's, say) to set Subject, Audience and a short ExpiresAt. Verifiers
// refuse tokens longer than their MaxTokenSize (8 KiB by default), which
// bounds how many groups and attributes a token can carry.
func (k *SigningKey) Issue(c Claims) (string, error) {
	if k == nil || k.raw == nil {
		return "", errors.New("identity: Issue called on a nil or zero SigningKey; use GenerateSigningKey or ParseSigningKey")
	}
	if !c.Role.valid() {
		return "", fmt.Errorf("identity: refusing to issue a token with role %s: want %q or %q", quote(string(c.Role)), RoleAgent, RoleConnector)
	}
	if len(c.Services) > 0 && c.Role != RoleConnector {
		return "", fmt.Errorf("identity: refusing to issue a %s token with services: only connector tokens may carry them", c.Role)
	}
	if c.IssuedAt.IsZero() {
		c.IssuedAt = time.Now()
	}
	if c.ID == "" {
		var b [16]byte
		_, _ = rand.Read(b[:]) // never fails (crypto/rand)
		c.ID = b64.EncodeToString(b[:])
	}
	services, err := encodeServices(c.Services)
	if err != nil {
		return "", err
	}
	w := wireClaims{
		Issuer: c.Issuer, Subject: c.Subject, ID: c.ID, Role: c.Role,
		Groups: c.Groups, Attributes: c.Attributes, Services: services,
	}
	if c.BoundKey != "" {
		if len(c.BoundKey) != jktLen || !canonicalBase64URL(c.BoundKey) {
			return "", errors.New("identity: BoundKey must be a key thumbprint from KeyThumbprint")
		}
		w.Cnf = &wireCnf{JKT: c.BoundKey}
	}
	switch len(c.Audience) {
	case 0:
	case 1:
		w.Audience = c.Audience[0]
	default:
		w.Audience = c.Audience
	}
	if w.ExpiresAt, err = unixSeconds("exp", c.ExpiresAt); err != nil {
		return "", err
	}
	if w.NotBefore, err = unixSeconds("nbf", c.NotBefore); err != nil {
		return "", err
	}
	if w.IssuedAt, err = unixSeconds("iat", c.IssuedAt); err != nil {
		return "", err
	}
	payload, err := json.Marshal(w)
	if err != nil {
		return "", fmt.Errorf("identity: encode claims (attributes must be JSON-encodable): %w", err)
	}
	// The protected header is {"alg":..,"kid":..,"typ":"JWT"}.
	tok, err := jws.Sign(payload, jws.WithKey(k.alg.jwa(), k.raw, jws.WithProtectedHeaders(k.header)))
	if err != nil {
		return "", fmt.Errorf("identity: sign token: %w", err)
	}
	return string(tok), nil
}

// ParseUnverified decodes a token's claims WITHOUT VERIFYING ITS SIGNATURE
// OR ANY CLAIM.
//
// Never use its result to authorize anything, to identify anyone or to
// decide what a token holder may do: anyone can write a token that
// ParseUnverified accepts. It exists for a client that holds its own token
// and wants to read exp to refresh it in time. To trust a token, use
// [Verifier.Verify].
//
// It refuses tokens larger than DefaultMaxTokenSize, malformed tokens and
// claims of the wrong JSON type, with the same errors as Verify.
func ParseUnverified(token string) (*Claims, error) {
	if len(token) > DefaultMaxTokenSize {
		return nil, reject(ErrTooLarge, "token is %d bytes, more than the %d allowed", len(token), DefaultMaxTokenSize)
	}
	c, err := parseCompact(token)
	if err != nil {
		return nil, err
	}
	// No JOSE here, only the payload's JSON: jws.Parse would refuse a token
	// with an empty signature, which this function reads.
	payload, err := b64.DecodeString(c.payload)
	if err != nil {
		return nil, reject(ErrMalformed, "token payload is not valid base64url")
	}
	m, err := decodeObject(payload)
	if err != nil {
		return nil, reject(ErrMalformed, "token payload is not a JSON object without duplicate members")
	}
	return decodeClaims(m)
}
