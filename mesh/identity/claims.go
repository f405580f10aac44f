package identity

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/postern/postern"
	"github.com/postern/postern/internal/wire"
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
	// Services lists the services a connector may advertise, each by its
	// exact name (no patterns) and, when the issuer describes it, with
	// what policy reads of it. Only connector tokens carry it.
	Services []Service
	// BoundKey is the thumbprint ([KeyThumbprint]) of the key the holder
	// must prove in its TLS handshake for the token to be accepted: the
	// claim cnf {"jkt": ...}. Empty: a bearer token, which works for
	// whoever holds it.
	BoundKey string
}

// Service is one service a connector token grants. A token either grants
// the name alone (Kind empty) or describes the service: its kind,
// environment and labels are then what the relay lets policy read, and a
// connector advertising it otherwise is refused. The relay serves a
// name-only grant only when its own configuration declares the binding.
type Service struct {
	Name        string   // the binding name agents open
	Kind        string   // "tcp", "http" or "postgres"; empty: the name alone is granted
	Environment string   // policy: resource in Environment::"<env>"; may be empty
	Labels      []string // policy: resource.labels
}

// Described reports whether the token says what s is, not only its name.
func (s Service) Described() bool { return s.Kind != "" }

// ServiceNames grants names without describing them.
func ServiceNames(names ...string) []Service {
	out := make([]Service, len(names))
	for i, n := range names {
		out[i] = Service{Name: n}
	}
	return out
}

// Bounds on the services claim: a token is small (8 KiB by default), and
// these keep a token within them from asking the relay for much work.
const (
	MaxServices      = 256 // services in one token
	MaxServiceLabels = 32  // labels of one service
)

// Service returns the service of c named name, and whether c grants it.
func (c *Claims) Service(name string) (Service, bool) {
	if c == nil {
		return Service{}, false
	}
	for _, s := range c.Services {
		if s.Name == name {
			return s, true
		}
	}
	return Service{}, false
}

func (c *Claims) serviceNames() []string {
	names := make([]string, len(c.Services))
	for i, s := range c.Services {
		names[i] = s.Name
	}
	return names
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
	case service == "" || !slices.Contains(c.serviceNames(), service):
		return reject(ErrServiceNotGranted, "connector %s may not advertise service %s: its token grants %s",
			quote(c.Subject), quote(service), quoteList(c.serviceNames()))
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
	Services   []any          `json:"services,omitempty"` // a string per name-only grant, a wireService per described one
	Cnf        *wireCnf       `json:"cnf,omitempty"`
}

// wireCnf is the confirmation claim of a bound token (RFC 7800, jkt).
type wireCnf struct {
	JKT string `json:"jkt"`
}

// wireService is a described service in the services claim:
//
//	{"name": "prod-finance", "kind": "postgres", "environment": "prod", "labels": ["financial"]}
type wireService struct {
	Name        string   `json:"name"`
	Kind        string   `json:"kind"`
	Environment string   `json:"environment,omitempty"`
	Labels      []string `json:"labels,omitempty"`
}

// encodeServices is the services claim for Issue, checked as a verifier
// will check it, so that Issue never signs a token every relay refuses
// for its services.
func encodeServices(list []Service) ([]any, error) {
	if err := checkServices(list); err != nil {
		return nil, err
	}
	var out []any
	for _, s := range list {
		if !s.Described() {
			out = append(out, s.Name)
			continue
		}
		out = append(out, wireService{Name: s.Name, Kind: s.Kind, Environment: s.Environment, Labels: s.Labels})
	}
	return out, nil
}

// checkServices applies the rules of the services claim; its errors are
// ErrInvalidClaim rejections naming the entry.
func checkServices(list []Service) error {
	if len(list) > MaxServices {
		return reject(ErrInvalidClaim, `token claim "services" lists %d services, more than %d`, len(list), MaxServices)
	}
	seen := make(map[string]bool, len(list))
	for i, s := range list {
		if err := wire.ValidName(s.Name); err != nil {
			return reject(ErrInvalidClaim, `token claim "services"[%d]: name %s: %s`, i, quote(s.Name), strings.TrimPrefix(err.Error(), "wire: "))
		}
		if seen[s.Name] {
			return reject(ErrInvalidClaim, `token claim "services" lists %s twice`, quote(s.Name))
		}
		seen[s.Name] = true
		if !s.Described() {
			if s.Environment != "" || len(s.Labels) > 0 {
				return reject(ErrInvalidClaim, `token claim "services"[%d] (%s) has an environment or labels but no kind: a description needs a kind`, i, quote(s.Name))
			}
			continue
		}
		if !postern.ValidKind(s.Kind) {
			return reject(ErrInvalidClaim, `token claim "services"[%d] (%s): kind %s is not tcp, http or postgres`, i, quote(s.Name), quote(s.Kind))
		}
		if s.Environment != "" {
			if err := wire.ValidName(s.Environment); err != nil {
				return reject(ErrInvalidClaim, `token claim "services"[%d] (%s): environment %s: %s`, i, quote(s.Name), quote(s.Environment), strings.TrimPrefix(err.Error(), "wire: "))
			}
		}
		if len(s.Labels) > MaxServiceLabels {
			return reject(ErrInvalidClaim, `token claim "services"[%d] (%s) has %d labels, more than %d`, i, quote(s.Name), len(s.Labels), MaxServiceLabels)
		}
		for j, l := range s.Labels {
			if err := wire.ValidName(l); err != nil {
				return reject(ErrInvalidClaim, `token claim "services"[%d] (%s): label %s: %s`, i, quote(s.Name), quote(l), strings.TrimPrefix(err.Error(), "wire: "))
			}
			if slices.Contains(s.Labels[:j], l) {
				return reject(ErrInvalidClaim, `token claim "services"[%d] (%s) lists label %s twice`, i, quote(s.Name), quote(l))
			}
		}
	}
	return nil
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

// services reads the services claim: an array whose entries are each a
// name (a name-only grant) or an object describing the service with the
// members of wireService and no other. Strict: an unknown or repeated
// member, a wrong type, a bad name or kind, a repeated service or label,
// or more than the bounds allow refuses the token.
func (m claimMap) services() ([]Service, error) {
	raw, ok := m.raw("services")
	if !ok {
		return nil, nil
	}
	const shape = `token claim "services" must be an array of service names or {"name", "kind", "environment", "labels"} objects`
	var elems []json.RawMessage
	if raw[0] != '[' || json.Unmarshal(raw, &elems) != nil {
		return nil, reject(ErrInvalidClaim, shape)
	}
	if len(elems) > MaxServices {
		return nil, reject(ErrInvalidClaim, `token claim "services" lists %d services, more than %d`, len(elems), MaxServices)
	}
	list := make([]Service, len(elems))
	for i, e := range elems {
		e = bytes.TrimSpace(e)
		switch {
		case len(e) > 0 && e[0] == '"':
			if json.Unmarshal(e, &list[i].Name) != nil {
				return nil, reject(ErrInvalidClaim, shape)
			}
		case len(e) > 0 && e[0] == '{':
			obj, err := decodeObject(e)
			if err != nil {
				return nil, reject(ErrInvalidClaim, `token claim "services"[%d] is not a JSON object without duplicate members`, i)
			}
			for k := range obj {
				if k != "name" && k != "kind" && k != "environment" && k != "labels" {
					return nil, reject(ErrInvalidClaim, `token claim "services"[%d] has member %s; a service has only "name", "kind", "environment" and "labels"`, i, quote(k))
				}
			}
			s := &list[i]
			member := func(name string) string { return fmt.Sprintf(`services"[%d].%s`, i, name) }
			if s.Name, err = obj.str("name"); err != nil {
				return nil, reject(ErrInvalidClaim, `token claim "%s must be a string`, member("name"))
			}
			if s.Kind, err = obj.str("kind"); err != nil {
				return nil, reject(ErrInvalidClaim, `token claim "%s must be a string`, member("kind"))
			}
			if s.Environment, err = obj.str("environment"); err != nil {
				return nil, reject(ErrInvalidClaim, `token claim "%s must be a string`, member("environment"))
			}
			if s.Labels, err = obj.strings("labels"); err != nil {
				return nil, reject(ErrInvalidClaim, `token claim "%s must be an array of strings`, member("labels"))
			}
			if s.Name == "" {
				return nil, reject(ErrInvalidClaim, `token claim "services"[%d] has no "name"`, i)
			}
			if s.Kind == "" {
				return nil, reject(ErrInvalidClaim, `token claim "services"[%d] (%s) has no "kind": a described service needs one (or grant the name alone, as a string)`, i, quote(s.Name))
			}
		default:
			return nil, reject(ErrInvalidClaim, shape)
		}
	}
	if err := checkServices(list); err != nil {
		return nil, err
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
	if c.Services, err = m.services(); err != nil {
		return err
	}
	if c.BoundKey, err = m.cnf(); err != nil {
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
