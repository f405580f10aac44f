package config

import (
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/postern/postern"
	"github.com/postern/postern/internal/tokenfile"
	"github.com/postern/postern/internal/wire"
	"github.com/postern/postern/mesh/connector"
	"github.com/postern/postern/mesh/identity"
	"github.com/postern/postern/transport"
)

// ConnectorFile is the connector's configuration file as written.
type ConnectorFile struct {
	Relays    []string      `yaml:"relays"`
	Transport string        `yaml:"transport"`
	TokenFile string        `yaml:"token_file"`
	KeyFile   string        `yaml:"key_file"`
	Trust     TrustFile     `yaml:"trust"`
	Services  []ServiceFile `yaml:"services"`
	Backoff   BackoffFile   `yaml:"backoff"`
	Log       LogFile       `yaml:"log"`
	Metrics   MetricsFile   `yaml:"metrics"`
}

// TrustFile says how the connector trusts the relays' certificate: by
// its pin (as the relay prints it) or by a CA.
type TrustFile struct {
	Pin        string `yaml:"pin"`
	CAFile     string `yaml:"ca_file"`
	ServerName string `yaml:"server_name"`
}

// BackoffFile bounds the wait between reconnects to a relay.
type BackoffFile struct {
	Min time.Duration `yaml:"min"`
	Max time.Duration `yaml:"max"`
}

// ServiceFile is one private service, as written.
type ServiceFile struct {
	Name        string        `yaml:"name"`
	Kind        string        `yaml:"kind"`
	Upstream    string        `yaml:"upstream"`
	Environment string        `yaml:"environment"`
	Labels      []string      `yaml:"labels"`
	Description string        `yaml:"description"`
	DialTimeout time.Duration `yaml:"dial_timeout"`
	Postgres    *PostgresFile `yaml:"postgres"`
	HTTP        *HTTPFile     `yaml:"http"`
}

// PostgresFile is the upstream login of a postgres service. The password
// is named by a file or an environment variable, never written inline.
type PostgresFile struct {
	User         string `yaml:"user"`
	Database     string `yaml:"database"`
	PasswordFile string `yaml:"password_file"`
	PasswordEnv  string `yaml:"password_env"`
	SSLMode      string `yaml:"sslmode"`
	InsecureAuth bool   `yaml:"insecure_auth"`
	RootCAFile   string `yaml:"root_ca_file"`
	// ReadOnly is the login for agents whose policy permits no write on
	// the service: a role granted only SELECT.
	ReadOnly *PostgresLoginFile `yaml:"read_only"`
}

// PostgresLoginFile is a second login of a postgres service, on the same
// database with the same TLS settings.
type PostgresLoginFile struct {
	User         string `yaml:"user"`
	PasswordFile string `yaml:"password_file"`
	PasswordEnv  string `yaml:"password_env"`
}

// HTTPFile is what the connector adds to an http service's requests.
type HTTPFile struct {
	Headers    map[string]SecretRef `yaml:"headers"`
	TLS        bool                 `yaml:"tls"`
	ServerName string               `yaml:"server_name"`
	RootCAFile string               `yaml:"root_ca_file"`
	Host       string               `yaml:"host"`
}

// SecretRef names where a secret is: a file or an environment variable,
// exactly one. Configuration files never hold a secret's value.
type SecretRef struct {
	File string `yaml:"file"`
	Env  string `yaml:"env"`
}

// Connector is a loaded and checked connector configuration.
type Connector struct {
	File string
	// Config is ready for connector.New, its TokenSource re-reading
	// TokenFile each time the connector needs a token.
	Config    connector.Config
	TokenFile string
	Log       Log
	// MetricsListen is metrics.listen, as for the relay: empty serves no
	// /metrics, /healthz or /readyz.
	MetricsListen string
}

// LoadConnector reads and checks the connector configuration file at
// path. Every problem is reported, each an *Error naming the file, the
// line and the field. Files it names (token, CA, passwords) are read now,
// so that a typo in a path fails at start rather than at the first open.
func LoadConnector(path string) (*Connector, error) {
	var f ConnectorFile
	d, err := decodeFile(path, &f)
	if err != nil {
		return nil, err
	}
	if len(d.errs) > 0 {
		return nil, d.err()
	}
	c := &Connector{File: path}
	cfg := &c.Config

	if len(f.Relays) == 0 {
		d.errorf("relays", "required: the relay addresses (host:port) to dial out to")
	}
	for i, r := range f.Relays {
		if _, _, err := net.SplitHostPort(r); err != nil {
			d.errorf(fmt.Sprintf("relays[%d]", i), "want host:port, got %q", r)
		}
	}
	cfg.Relays = f.Relays

	var claims *identity.Claims
	if f.TokenFile == "" {
		d.errorf("token_file", "required: the file holding this connector's token (postern token issue --role connector)")
	} else {
		c.TokenFile = d.path(f.TokenFile)
		tok, err := ReadTokenFile(c.TokenFile)
		if err != nil {
			d.fail("token_file", err, "%v", err)
		} else if claims, err = identity.ParseUnverified(tok); err != nil {
			d.fail("token_file", err, "%s does not hold a token: %v", f.TokenFile, err)
		} else if claims.Role != identity.RoleConnector {
			d.errorf("token_file", "%s holds a token of role %q; a connector needs one of role connector (postern token issue --role connector)", f.TokenFile, claims.Role)
			claims = nil
		}
		cfg.TokenSource = TokenFileSource(c.TokenFile)
	}
	if f.KeyFile != "" {
		b, err := os.ReadFile(d.path(f.KeyFile))
		if err != nil {
			d.fail("key_file", err, "cannot read %s: %s", f.KeyFile, errText(err))
		} else if cfg.Key, err = transport.ParseClientKey(b); err != nil {
			d.fail("key_file", err, "%s: %v", f.KeyFile, err)
		}
	} else if claims != nil && claims.BoundKey != "" {
		d.errorf("key_file", "required: the token in %s is bound to a key (postern token issue --bind-key), and the connector must prove it", f.TokenFile)
	}

	t := f.Trust
	switch {
	case t.Pin != "" && t.CAFile != "":
		d.errorf("trust.ca_file", "set either pin or ca_file, not both")
	case t.Pin != "":
		pin, err := transport.ParsePin(t.Pin)
		if err != nil {
			d.errorf("trust.pin", "want sha256: and 64 hex digits, as the relay prints it")
		}
		cfg.Pin = pin
	case t.CAFile != "":
		pool, err := readCAFile(d.path(t.CAFile))
		if err != nil {
			d.fail("trust.ca_file", err, "%v", err)
		}
		cfg.RootCAs = pool
	default:
		d.errorf("trust.pin", "required: the relay's certificate pin (it prints it at start), or trust.ca_file")
	}
	cfg.ServerName = t.ServerName

	if len(f.Services) == 0 {
		d.errorf("services", "required: at least one service to serve")
	}
	seen := map[string]bool{}
	for i, s := range f.Services {
		svc := d.service(fmt.Sprintf("services[%d]", i), s, seen)
		if claims != nil && svc.Name != "" {
			if err := claims.MayAdvertise(svc.Name); err != nil {
				d.errorf(fmt.Sprintf("services[%d].name", i), "the token in %s does not grant service %q (postern token issue --role connector --service %s:KIND:ENVIRONMENT[:LABEL,...])", f.TokenFile, svc.Name, svc.Name)
			} else if field, got, want := disagrees(svc, claims); field != "" {
				// The relay would refuse it (service_mismatch): say so now,
				// where the line can be named.
				d.errorf(fmt.Sprintf("services[%d].%s", i, field), "service %q has %s %s, but the token in %s describes it with %s %s, and the relay trusts the token: make them agree", svc.Name, field, got, f.TokenFile, field, want)
			}
		}
		cfg.Services = append(cfg.Services, svc)
	}

	if err := transport.CheckNetwork(f.Transport); err != nil {
		d.errorf("transport", "want auto (QUIC, falling back to TLS over TCP), quic or tcp, got %q", f.Transport)
	} else if f.Transport != "" {
		cfg.Transport = &transport.Config{Network: f.Transport}
	}

	cfg.MinBackoff, cfg.MaxBackoff = f.Backoff.Min, f.Backoff.Max
	if f.Backoff.Max > 0 && f.Backoff.Min > f.Backoff.Max {
		d.errorf("backoff.min", "larger than backoff.max")
	}
	c.Log = d.log(f.Log)
	c.MetricsListen = d.metrics(f.Metrics)
	if err := d.err(); err != nil {
		return nil, err
	}
	return c, nil
}

func (d *doc) service(field string, s ServiceFile, seen map[string]bool) connector.Service {
	svc := connector.Service{
		Name: s.Name, Kind: s.Kind, Upstream: s.Upstream, Environment: s.Environment,
		Labels: s.Labels, Description: s.Description, DialTimeout: s.DialTimeout,
	}
	switch {
	case s.Name == "":
		d.errorf(field+".name", "required")
	case wire.ValidName(s.Name) != nil:
		d.errorf(field+".name", "%q: use letters, digits and . _ / -", s.Name)
	case seen[s.Name]:
		d.errorf(field+".name", "service %q is listed twice", s.Name)
	}
	seen[s.Name] = true
	if svc.Kind == "" {
		svc.Kind = postern.KindTCP
	}
	if !validKind(svc.Kind) {
		d.errorf(field+".kind", "want tcp, http or postgres, got %q", s.Kind)
	}
	if s.Upstream == "" {
		d.errorf(field+".upstream", "required: the service's host:port as the connector reaches it")
	} else if _, _, err := net.SplitHostPort(s.Upstream); err != nil {
		d.errorf(field+".upstream", "want host:port, got %q", s.Upstream)
	}
	if p := s.Postgres; p != nil {
		if svc.Kind != postern.KindPostgres {
			d.errorf(field+".postgres", "only for kind postgres (this service is %s)", svc.Kind)
		}
		if p.User == "" {
			d.errorf(field+".postgres.user", "required: the role the connector logs in as")
		}
		switch p.SSLMode {
		case "", "disable", "prefer", "require", "verify-ca", "verify-full":
		default:
			d.errorf(field+".postgres.sslmode", "want disable, prefer, require, verify-ca or verify-full, got %q", p.SSLMode)
		}
		svc.Postgres = &connector.Postgres{User: p.User, Database: p.Database, SSLMode: p.SSLMode, RootCAFile: d.path(p.RootCAFile), InsecureAuth: p.InsecureAuth}
		svc.Postgres.Password = d.secret(field+".postgres.password", SecretRef{File: p.PasswordFile, Env: p.PasswordEnv}, false)
		if r := p.ReadOnly; r != nil {
			switch r.User {
			case "":
				d.errorf(field+".postgres.read_only.user", "required: the role, granted only SELECT, that agents who may not write log in as")
			case p.User:
				d.errorf(field+".postgres.read_only.user", "is postgres.user (%q): the read-only login must be a role of its own, granted no write", p.User)
			}
			svc.Postgres.ReadOnly = &connector.PostgresLogin{User: r.User,
				Password: d.secret(field+".postgres.read_only.password", SecretRef{File: r.PasswordFile, Env: r.PasswordEnv}, false)}
		}
		if p.RootCAFile != "" {
			if _, err := readCAFile(svc.Postgres.RootCAFile); err != nil {
				d.fail(field+".postgres.root_ca_file", err, "%v", err)
			}
		}
	}
	if h := s.HTTP; h != nil {
		if svc.Kind != postern.KindHTTP {
			d.errorf(field+".http", "only for kind http (this service is %s)", svc.Kind)
		}
		svc.HTTP = &connector.HTTP{TLS: h.TLS, ServerName: h.ServerName, RootCAFile: d.path(h.RootCAFile), Host: h.Host}
		for name, ref := range h.Headers {
			if svc.HTTP.Headers == nil {
				svc.HTTP.Headers = map[string]connector.Secret{}
			}
			svc.HTTP.Headers[name] = d.secret(field+".http.headers."+name, ref, true)
		}
		if h.RootCAFile != "" {
			if _, err := readCAFile(svc.HTTP.RootCAFile); err != nil {
				d.fail(field+".http.root_ca_file", err, "%v", err)
			}
		}
	}
	return svc
}

// secret checks a secret reference: exactly one of a file (which must be
// readable now) and an environment variable (which must be set now). A
// postgres password may be absent (the upstream may not ask for one).
func (d *doc) secret(field string, ref SecretRef, required bool) connector.Secret {
	fileField, envField := field+".file", field+".env"
	if strings.HasSuffix(field, ".password") {
		fileField, envField = field+"_file", field+"_env"
	}
	switch {
	case ref.File != "" && ref.Env != "":
		d.errorf(envField, "set either a file or an environment variable, not both")
	case ref.File != "":
		path := d.path(ref.File)
		if _, err := os.ReadFile(path); err != nil {
			d.fail(fileField, err, "cannot read %s: %s", ref.File, errText(err))
		}
		return connector.Secret{File: path}
	case ref.Env != "":
		if v, ok := os.LookupEnv(ref.Env); !ok || v == "" {
			d.errorf(envField, "environment variable %s is not set", ref.Env)
		}
		return connector.Secret{Env: ref.Env}
	case required:
		d.errorf(fileField, "required: a file or env holding the value (values are never written in the configuration)")
	}
	return connector.Secret{}
}

func readCAFile(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %s", path, errText(err))
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}

// ReadTokenFile reads a token from path (tokenfile.Read), in the words
// of a configuration error. Errors name the file, never its content.
func ReadTokenFile(path string) (string, error) {
	tok, err := tokenfile.Read(path)
	if err != nil {
		return "", fmt.Errorf("cannot read token file %s: %s", path, errText(err))
	}
	if tok == "" {
		return "", fmt.Errorf("token file %s is empty", path)
	}
	return tok, nil
}

// TokenFileSource returns a token source that reads path each time it is
// called, so that a token replaced on disk (by a job that renews it) is
// presented on the next connect or refresh without a restart. A token
// that has already expired is reported as such, naming the file.
func TokenFileSource(path string) func(context.Context) (string, error) {
	return func(ctx context.Context) (string, error) {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		tok, err := ReadTokenFile(path)
		if err != nil {
			return "", err
		}
		if c, err := identity.ParseUnverified(tok); err == nil && !c.ExpiresAt.IsZero() && time.Now().After(c.ExpiresAt) {
			return "", fmt.Errorf("the token in %s expired at %s: issue a new one", path, c.ExpiresAt.Format(time.RFC3339))
		}
		return tok, nil
	}
}

// disagrees names the first field (kind, environment, labels) in which a
// configured service differs from the description its token gives it; ""
// when they agree or the token grants the name alone.
func disagrees(svc connector.Service, claims *identity.Claims) (field, got, want string) {
	granted, ok := claims.Service(svc.Name)
	if !ok || !granted.Described() {
		return "", "", ""
	}
	kind := svc.Kind
	if kind == "" {
		kind = postern.KindTCP
	}
	set := func(l []string) []string {
		c := slices.Clone(l)
		slices.Sort(c)
		return slices.Compact(c)
	}
	switch {
	case kind != granted.Kind:
		return "kind", strconv.Quote(kind), strconv.Quote(granted.Kind)
	case svc.Environment != granted.Environment:
		return "environment", strconv.Quote(svc.Environment), strconv.Quote(granted.Environment)
	case !slices.Equal(set(svc.Labels), set(granted.Labels)):
		return "labels", fmt.Sprintf("%q", svc.Labels), fmt.Sprintf("%q", granted.Labels)
	}
	return "", "", ""
}
