package identity

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"time"
)

// Role says what a token's holder is: an agent, which opens bindings, or a
// connector, which serves them.
type Role string

// The two roles of the mesh.
const (
	RoleAgent     Role = "agent"
	RoleConnector Role = "connector"
)

func (r Role) valid() bool { return r == RoleAgent || r == RoleConnector }

// Claims is the content of an identity token. A zero time means the claim is
// absent; so does an empty string or a nil slice or map.
type Claims struct {
	Issuer   string   // iss
	Subject  string   // sub: the agent's or connector's ID
	ID       string   // jti: unique per token
	Audience []string // aud: the mesh (or meshes) the token is for

	ExpiresAt time.Time // exp, whole seconds, UTC
	NotBefore time.Time // nbf
	IssuedAt  time.Time // iat

	Role   Role     // role
	Groups []string // groups: Cedar groups the principal is a member of
	// Attributes is a free JSON object that policies read as entity
	// attributes. In claims returned by Verify and ParseUnverified, numbers
	// are json.Number (so that 64-bit integers survive exactly), nested
	// objects are map[string]any and arrays are []any.
	Attributes map[string]any
	// Services lists the service names a connector may advertise; exact
	// names, no patterns. Only connector tokens carry it.
	Services []string
}

// MayAdvertise reports whether the holder of c may advertise service: nil
// when c is a connector's claims and service is listed in Services, an error
// wrapping [ErrServiceNotGranted] otherwise. The relay calls it for each
// service a connector advertises, so that a stolen connector token cannot
// claim a service it was not issued for.
func (c *Claims) MayAdvertise(service string) error {
	switch {
	case c == nil:
		return reject(ErrServiceNotGranted, "no claims: nothing may be advertised")
	case c.Role != RoleConnector:
		return reject(ErrServiceNotGranted, "%s %s may not advertise services: only connector tokens may",
			quote(string(c.Role)), quote(c.Subject))
	case service == "" || !slices.Contains(c.Services, service):
		return reject(ErrServiceNotGranted, "connector %s may not advertise service %s: its token grants %s",
			quote(c.Subject), quote(service), quoteList(c.Services))
	}
	return nil
}

// wireClaims is the JSON form that Issue signs.
type wireClaims struct {
	Issuer     string         `json:"iss,omitempty"`
	Subject    string         `json:"sub,omitempty"`
	Audience   any            `json:"aud,omitempty"` // string when one, []string when more
	ExpiresAt  *int64         `json:"exp,omitempty"`
	NotBefore  *int64         `json:"nbf,omitempty"`
	IssuedAt   *int64         `json:"iat,omitempty"`
	ID         string         `json:"jti,omitempty"`
	Role       Role           `json:"role,omitempty"`
	Groups     []string       `json:"groups,omitempty"`
	Attributes map[string]any `json:"attributes,omitempty"`
	Services   []string       `json:"services,omitempty"`
}

// Reading claims. Each reader treats an absent member and JSON null alike
// (absent) and returns an ErrInvalidClaim rejection for a wrong JSON type.
// They are called one by one, in the fixed verification order.

// claimMap is a decoded JSON object: member name to raw value.
type claimMap map[string]json.RawMessage

func (m claimMap) raw(name string) (json.RawMessage, bool) {
	raw, ok := m[name]
	raw = bytes.TrimSpace(raw)
	if !ok || len(raw) == 0 || isNull(raw) {
		return nil, false
	}
	return raw, true
}

func isNull(raw json.RawMessage) bool { return bytes.Equal(raw, []byte("null")) }

func (m claimMap) str(name string) (string, error) {
	raw, ok := m.raw(name)
	if !ok {
		return "", nil
	}
	var s string
	if raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		return "", reject(ErrInvalidClaim, "token claim %q must be a string", name)
	}
	return s, nil
}

func (m claimMap) strings(name string) ([]string, error) {
	raw, ok := m.raw(name)
	if !ok {
		return nil, nil
	}
	// Element by element: json.Unmarshal into []string would turn a null
	// element into "", inventing an empty group or service name.
	var elems []json.RawMessage
	if raw[0] != '[' || json.Unmarshal(raw, &elems) != nil {
		return nil, reject(ErrInvalidClaim, "token claim %q must be an array of strings", name)
	}
	list := make([]string, len(elems))
	for i, e := range elems {
		if len(e) == 0 || e[0] != '"' || json.Unmarshal(e, &list[i]) != nil {
			return nil, reject(ErrInvalidClaim, "token claim %q must be an array of strings", name)
		}
	}
	return list, nil
}

// audience reads aud, which RFC 7519 allows as a string or an array.
func (m claimMap) audience() ([]string, error) {
	raw, ok := m.raw("aud")
	if !ok {
		return nil, nil
	}
	if raw[0] == '"' {
		s, err := m.str("aud")
		return []string{s}, err
	}
	list, err := m.strings("aud")
	if err != nil {
		return nil, reject(ErrInvalidClaim, `token claim "aud" must be a string or an array of strings`)
	}
	return list, nil
}

// maxNumericDate is 9999-12-31T23:59:59Z: anything later is garbage.
const maxNumericDate = 253402300799

// date reads a NumericDate: seconds since the epoch, possibly fractional.
// ok is false when the claim is absent.
func (m claimMap) date(name string) (t time.Time, ok bool, err error) {
	raw, present := m.raw(name)
	if !present {
		return time.Time{}, false, nil
	}
	var f float64
	c := raw[0]
	if (c != '-' && (c < '0' || c > '9')) || json.Unmarshal(raw, &f) != nil {
		return time.Time{}, false, reject(ErrInvalidClaim, "token claim %q must be a number of seconds since 1970", name)
	}
	if math.IsNaN(f) || f < 0 || f > maxNumericDate {
		return time.Time{}, false, reject(ErrInvalidClaim, "token claim %q is out of range", name)
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC(), true, nil
}

func (m claimMap) object(name string) (map[string]any, error) {
	raw, ok := m.raw(name)
	if !ok {
		return nil, nil
	}
	if raw[0] != '{' {
		return nil, reject(ErrInvalidClaim, "token claim %q must be a JSON object", name)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil {
		return nil, reject(ErrInvalidClaim, "token claim %q must be a JSON object", name)
	}
	return obj, nil
}

// decodeClaims reads every claim without judging it (ParseUnverified).
func decodeClaims(m claimMap) (*Claims, error) {
	var c Claims
	var err error
	if c.Issuer, err = m.str("iss"); err != nil {
		return nil, err
	}
	if c.Audience, err = m.audience(); err != nil {
		return nil, err
	}
	for _, d := range []struct {
		name string
		t    *time.Time
	}{{"exp", &c.ExpiresAt}, {"nbf", &c.NotBefore}, {"iat", &c.IssuedAt}} {
		if *d.t, _, err = m.date(d.name); err != nil {
			return nil, err
		}
	}
	if c.Subject, err = m.str("sub"); err != nil {
		return nil, err
	}
	var role string
	if role, err = m.str("role"); err != nil {
		return nil, err
	}
	c.Role = Role(role)
	if err = decodePrivateClaims(m, &c); err != nil {
		return nil, err
	}
	return &c, nil
}

// decodePrivateClaims reads jti, groups, attributes and services: the last
// step of verification, once every check that can refuse the token has
// passed.
func decodePrivateClaims(m claimMap, c *Claims) error {
	var err error
	if c.ID, err = m.str("jti"); err != nil {
		return err
	}
	if c.Groups, err = m.strings("groups"); err != nil {
		return err
	}
	if c.Attributes, err = m.object("attributes"); err != nil {
		return err
	}
	if c.Services, err = m.strings("services"); err != nil {
		return err
	}
	if len(c.Services) > 0 && c.Role != RoleConnector {
		return reject(ErrInvalidClaim, "token for role %s carries a \"services\" claim: only connector tokens may", quote(string(c.Role)))
	}
	return nil
}

// unixSeconds converts a claim time for Issue: nil when absent.
func unixSeconds(name string, t time.Time) (*int64, error) {
	if t.IsZero() {
		return nil, nil
	}
	s := t.Unix()
	if s < 0 || s > maxNumericDate {
		return nil, fmt.Errorf("identity: claim %q (%s) is outside 1970..9999", name, t.UTC().Format(time.RFC3339))
	}
	return &s, nil
}
