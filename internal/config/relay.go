package config

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/postern/postern"
	"github.com/postern/postern/internal/wire"
	"github.com/postern/postern/mesh/identity"
	"github.com/postern/postern/mesh/relay"
	"github.com/postern/postern/policy"
	"github.com/postern/postern/transport"
)

// RelayFile is the relay's configuration file as written. See the README's
// configuration reference; every field but tokens.audience, one of
// tokens.jwks_file and tokens.jwks_url, and policy.dir may be left out.
type RelayFile struct {
	Listen       string         `yaml:"listen"`
	Transport    string         `yaml:"transport"`
	TLS          *TLSFile       `yaml:"tls"`
	Tokens       TokensFile     `yaml:"tokens"`
	Policy       PolicyFile     `yaml:"policy"`
	Limits       LimitsFile     `yaml:"limits"`
	Bindings     []BindingFile  `yaml:"bindings"`
	Audit        string         `yaml:"audit"`
	AuditQueue   AuditQueueFile `yaml:"audit_queue"`
	HideDenied   bool           `yaml:"hide_denied"`
	Log          LogFile        `yaml:"log"`
	DrainTimeout time.Duration  `yaml:"drain_timeout"`
	GCHeadroom   int            `yaml:"gc_headroom_mib"`
	Metrics      MetricsFile    `yaml:"metrics"`
}

// MetricsFile configures the listener that serves /metrics, /healthz and
// /readyz; off unless listen is set.
type MetricsFile struct {
	Listen string `yaml:"listen"`
}

// TLSFile is the relay's certificate. Without a tls section the relay
// makes a self-signed certificate at every start (its pin changes each
// time); with self_signed it makes one once and keeps it in cert_file and
// key_file, so that its pin survives restarts.
type TLSFile struct {
	CertFile   string   `yaml:"cert_file"`
	KeyFile    string   `yaml:"key_file"`
	SelfSigned bool     `yaml:"self_signed"`
	Hosts      []string `yaml:"hosts"`
}

// TokensFile says how the relay verifies identity tokens.
type TokensFile struct {
	Audience string        `yaml:"audience"`
	Issuer   string        `yaml:"issuer"`
	JWKSFile string        `yaml:"jwks_file"`
	JWKSURL  string        `yaml:"jwks_url"`
	Refresh  time.Duration `yaml:"refresh"`
	Leeway   time.Duration `yaml:"leeway"`
	// MaxTTL caps a token's lifetime (exp - iat). Default 24h.
	MaxTTL time.Duration `yaml:"max_ttl"`
	// RevocationFile lists revoked token IDs and subjects
	// (relay.ParseRevocations); reloaded like the policies.
	RevocationFile string `yaml:"revocation_file"`
	// RequireBound refuses agent tokens not bound to a key (relay.Config.RequireBoundTokens).
	RequireBound bool `yaml:"require_bound"`
}

// PolicyFile is where the relay's Cedar policies live and what the
// schema they are validated against adds to Postern's.
type PolicyFile struct {
	Dir                 string            `yaml:"dir"`
	Poll                time.Duration     `yaml:"poll"`
	PrincipalAttributes map[string]string `yaml:"principal_attributes"`
	DetailKeys          []string          `yaml:"detail_keys"`
	Actions             []string          `yaml:"actions"`
}

// LimitsFile is relay.Limits as written.
type LimitsFile struct {
	StreamsPerAgent  int           `yaml:"streams_per_agent"`
	MaxFrameSize     int           `yaml:"max_frame_size"`
	HandshakeTimeout time.Duration `yaml:"handshake_timeout"`
	MaxTokenSize     int           `yaml:"max_token_size"`
	OpenTimeout      time.Duration `yaml:"open_timeout"`
	AckTimeout       time.Duration `yaml:"ack_timeout"`
	StallTimeout     time.Duration `yaml:"stall_timeout"`
	StalledStreams   int           `yaml:"stalled_streams_per_agent"`
	ConnectorSilence time.Duration `yaml:"connector_silence"`

	UnverifiedConnections int `yaml:"unverified_connections"`
	UnverifiedPerSource   int `yaml:"unverified_per_source"`
	RetryAbove            int `yaml:"retry_above"`
	InitialStreamWindow   int `yaml:"initial_stream_window"`
	InitialConnWindow     int `yaml:"initial_conn_window"`
	// ConnectorNetworks are CIDR prefixes or IP addresses.
	ConnectorNetworks  []string `yaml:"connector_networks"`
	SessionsPerSubject int      `yaml:"sessions_per_subject"`
	StreamsPerSubject  int      `yaml:"streams_per_subject"`
	RefreshesPerMinute int      `yaml:"refreshes_per_minute"`
	RejectsPerSource   int      `yaml:"rejects_per_source"`
	FloodRejects       int      `yaml:"flood_rejects"`
	HandshakeBudget    int      `yaml:"handshake_budget"`
}

// AuditQueueFile is relay.AuditQueue as written.
type AuditQueueFile struct {
	Size           int           `yaml:"size"`
	Full           string        `yaml:"full"`
	RejectInterval time.Duration `yaml:"reject_interval"`
}

// BindingFile declares a binding ahead of any connector.
type BindingFile struct {
	Name        string   `yaml:"name"`
	Kind        string   `yaml:"kind"`
	Environment string   `yaml:"environment"`
	Labels      []string `yaml:"labels"`
	Description string   `yaml:"description"`
}

// LogFile configures the operational log, written to stderr.
type LogFile struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

// Relay is a loaded and checked relay configuration, with every file it
// names read and every relative path resolved against the directory of
// the configuration file.
type Relay struct {
	File   string
	Listen string
	// Transport is what the relay listens on (transport.Config.Network):
	// "auto" (default: UDP for QUIC and TCP for TLS over TCP, on the
	// listen port), "quic" or "tcp".
	Transport string

	Certificate tls.Certificate
	// CertSource says where Certificate came from, for the start-up log:
	// "file", "generated" (and saved to the files) or "ephemeral".
	CertSource string

	Verifier identity.VerifierConfig
	// JWKSFile is the resolved path of tokens.jwks_file, read again on
	// SIGHUP; empty with tokens.jwks_url.
	JWKSFile string
	// RevocationFile is the resolved path of tokens.revocation_file,
	// empty when none is set; Revoked is what it held at load.
	RevocationFile string
	Revoked        relay.Revoked
	// RequireBound is tokens.require_bound (default false).
	RequireBound bool

	PolicyDir     string
	PolicyOptions policy.ValidateOptions
	PolicyPoll    time.Duration // default 2s

	Limits   relay.Limits
	Bindings []postern.Binding

	// Audit is "stdout", "stderr", "none" or the absolute path of a file
	// that audit events are appended to. Default "stdout".
	Audit string
	// AuditQueue is audit_queue: Size and Drop (full: drop); the CLI
	// sets Flush. RejectInterval is audit_queue.reject_interval.
	AuditQueue     relay.AuditQueue
	RejectInterval time.Duration
	HideDenied     bool
	Log            Log
	DrainTimeout   time.Duration // default 10s
	// GCHeadroom is gc_headroom_mib in bytes: the least heap growth the
	// garbage collector waits for (see package gcfloor). Default
	// DefaultGCHeadroom; 0 when gc_headroom_mib is -1 (GOGC alone).
	GCHeadroom uint64
	// MetricsListen is metrics.listen: the host:port that serves /metrics,
	// /healthz and /readyz over HTTP. Empty (the default) serves none.
	MetricsListen string
}

// Log is a checked LogFile.
type Log struct {
	Level slog.Level
	JSON  bool
}

// Defaults of the relay configuration.
const (
	DefaultListen       = ":7443"
	DefaultMaxTTL       = 24 * time.Hour
	DefaultPolicyPoll   = 2 * time.Second
	DefaultDrainTimeout = 10 * time.Second
	DefaultGCHeadroom   = 48 << 20
)

// maxGCHeadroomMiB bounds gc_headroom_mib: beyond 1 TiB it is a typo.
const maxGCHeadroomMiB = 1 << 20

// LoadRelay reads and checks the relay configuration file at path. Every
// problem is reported, each an *Error naming the file, the line and the
// field. With tls.self_signed and no certificate files yet, it creates
// them.
func LoadRelay(path string) (*Relay, error) {
	var f RelayFile
	d, err := decodeFile(path, &f)
	if err != nil {
		return nil, err
	}
	if len(d.errs) > 0 {
		return nil, d.err()
	}
	r := &Relay{File: path}

	r.Listen = f.Listen
	if r.Listen == "" {
		r.Listen = DefaultListen
	}
	host, _, err := net.SplitHostPort(r.Listen)
	if err != nil {
		d.errorf("listen", "want host:port (such as 0.0.0.0:7443), got %q", f.Listen)
	}

	r.Transport = f.Transport
	if r.Transport == "" {
		r.Transport = transport.NetworkAuto
	}
	if err := transport.CheckNetwork(f.Transport); err != nil {
		d.errorf("transport", "want auto (UDP and TCP), quic or tcp, got %q", f.Transport)
	}

	d.relayTLS(r, f.TLS, host)

	t := f.Tokens
	switch {
	case t.Audience == "":
		d.errorf("tokens.audience", "required: the audience every token must name (postern token issue --audience)")
	}
	r.Verifier = identity.VerifierConfig{Audience: t.Audience, Issuer: t.Issuer, RefreshInterval: t.Refresh, Leeway: t.Leeway}
	r.RequireBound = t.RequireBound
	switch {
	case t.JWKSFile != "" && t.JWKSURL != "":
		d.errorf("tokens.jwks_url", "set either jwks_file or jwks_url, not both")
	case t.JWKSFile != "":
		b, err := os.ReadFile(d.path(t.JWKSFile))
		if err != nil {
			d.fail("tokens.jwks_file", err, "cannot read %s: %s", t.JWKSFile, errText(err))
		} else if _, err := identity.MergeJWKS(b); err != nil {
			d.fail("tokens.jwks_file", err, "%s is not a public JWK set: %v", t.JWKSFile, err)
		}
		r.Verifier.KeySet = b
		r.JWKSFile = d.path(t.JWKSFile)
	case t.JWKSURL != "":
		if !strings.HasPrefix(t.JWKSURL, "https://") && !strings.HasPrefix(t.JWKSURL, "http://") {
			d.errorf("tokens.jwks_url", "want an https:// URL, got %q", redactURL(t.JWKSURL))
		}
		r.Verifier.JWKSURL = t.JWKSURL
	default:
		d.errorf("tokens.jwks_file", "required: the public key set that verifies tokens (postern keygen writes one), or tokens.jwks_url")
	}
	if t.Leeway > identity.MaxLeeway {
		d.errorf("tokens.leeway", "at most %s", identity.MaxLeeway)
	}
	// The decoder refuses a negative duration; zero is the default.
	r.Verifier.MaxLifetime = t.MaxTTL
	if r.Verifier.MaxLifetime == 0 {
		r.Verifier.MaxLifetime = DefaultMaxTTL
	}
	if t.RevocationFile != "" {
		r.RevocationFile = d.path(t.RevocationFile)
		var err error
		if r.Revoked, err = LoadRevocations(r.RevocationFile); err != nil {
			d.fail("tokens.revocation_file", err, "%s (create it empty to revoke nothing yet)", err)
		}
	}

	d.relayPolicy(r, f.Policy)

	l := f.Limits
	for _, c := range []struct {
		field string
		v     int
	}{{"limits.streams_per_agent", l.StreamsPerAgent}, {"limits.max_frame_size", l.MaxFrameSize}, {"limits.max_token_size", l.MaxTokenSize},
		{"limits.unverified_connections", l.UnverifiedConnections}, {"limits.unverified_per_source", l.UnverifiedPerSource},
		{"limits.sessions_per_subject", l.SessionsPerSubject}, {"limits.streams_per_subject", l.StreamsPerSubject},
		{"limits.refreshes_per_minute", l.RefreshesPerMinute},
		{"limits.stalled_streams_per_agent", l.StalledStreams}} {
		if c.v < 0 {
			d.errorf(c.field, "must not be negative")
		}
	}
	r.Limits = relay.Limits{
		StreamsPerAgent:  l.StreamsPerAgent,
		MaxFrameSize:     l.MaxFrameSize,
		HandshakeTimeout: l.HandshakeTimeout,
		MaxTokenSize:     l.MaxTokenSize,
		OpenTimeout:      l.OpenTimeout,
		AckTimeout:       l.AckTimeout,
		StallTimeout:     l.StallTimeout,

		StalledStreamsPerAgent: l.StalledStreams,
		ConnectorSilence:       l.ConnectorSilence,

		MaxUnverified:          l.UnverifiedConnections,
		MaxUnverifiedPerSource: l.UnverifiedPerSource,
		RetryAbove:             l.RetryAbove,
		InitialStreamWindow:    uint64(max(0, l.InitialStreamWindow)),
		InitialConnWindow:      uint64(max(0, l.InitialConnWindow)),
		SessionsPerSubject:     l.SessionsPerSubject,
		StreamsPerSubject:      l.StreamsPerSubject,
		RefreshesPerMinute:     l.RefreshesPerMinute,
		RejectsPerSource:       l.RejectsPerSource,
		FloodRejects:           l.FloodRejects,
		HandshakeBudget:        l.HandshakeBudget,
	}
	if lim := r.Limits; lim.MaxUnverified > 0 || lim.RetryAbove > 0 {
		unv := lim.MaxUnverified
		if unv == 0 {
			unv = 1024
		}
		if lim.RetryAbove >= unv {
			d.errorf("limits.retry_above", "must be below limits.unverified_connections (%d): past it, spoofed Initials could fill the relay before a Retry is asked", unv)
		}
	}
	for _, c := range []struct {
		field string
		v     int
	}{{"limits.initial_stream_window", l.InitialStreamWindow}, {"limits.initial_conn_window", l.InitialConnWindow}} {
		if c.v != 0 && (c.v < 1<<10 || c.v > 16<<20) {
			d.errorf(c.field, "want 1024 to 16777216 bytes, got %d", c.v)
		}
	}
	for i, n := range l.ConnectorNetworks {
		p, err := parseNetwork(n)
		if err != nil {
			d.errorf(fmt.Sprintf("limits.connector_networks[%d]", i), "%q is not a CIDR prefix (10.1.0.0/16, 2001:db8::/32) or an IP address", n)
			continue
		}
		r.Limits.ConnectorNetworks = append(r.Limits.ConnectorNetworks, p)
	}
	r.Verifier.MaxTokenSize = l.MaxTokenSize

	seen := map[string]bool{}
	for i, b := range f.Bindings {
		field := fmt.Sprintf("bindings[%d]", i)
		if b.Name == "" {
			d.errorf(field+".name", "required")
		} else if err := wire.ValidName(b.Name); err != nil {
			d.errorf(field+".name", "%s", strings.TrimPrefix(err.Error(), "wire: "))
		} else if seen[b.Name] {
			d.errorf(field+".name", "binding %q is declared twice", b.Name)
		}
		seen[b.Name] = true
		if !validKind(b.Kind) {
			d.errorf(field+".kind", "want tcp, http or postgres, got %q", b.Kind)
		}
		r.Bindings = append(r.Bindings, postern.Binding{Name: b.Name, Kind: b.Kind, Environment: b.Environment, Labels: b.Labels, Description: b.Description})
	}

	switch f.Audit {
	case "", "stdout":
		r.Audit = "stdout"
	case "stderr", "none":
		r.Audit = f.Audit
	default:
		r.Audit = d.path(f.Audit)
		fh, err := os.OpenFile(r.Audit, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
		if err != nil {
			d.fail("audit", err, "cannot open %s for appending: %s", f.Audit, errText(err))
		} else {
			fh.Close()
		}
	}
	q := f.AuditQueue
	if q.Size < 0 {
		d.errorf("audit_queue.size", "must not be negative")
	}
	r.AuditQueue.Size = q.Size
	switch q.Full {
	case "", "block":
	case "drop":
		r.AuditQueue.Drop = true
	default:
		d.errorf("audit_queue.full", "want block or drop, got %q", q.Full)
	}
	if q.RejectInterval < 0 {
		d.errorf("audit_queue.reject_interval", "must not be negative")
	}
	r.RejectInterval = q.RejectInterval
	r.HideDenied = f.HideDenied
	r.Log = d.log(f.Log)
	r.MetricsListen = d.metrics(f.Metrics)
	r.DrainTimeout = f.DrainTimeout
	if r.DrainTimeout == 0 {
		r.DrainTimeout = DefaultDrainTimeout
	}
	switch h := f.GCHeadroom; {
	case h == 0:
		r.GCHeadroom = DefaultGCHeadroom
	case h == -1:
	case h < 0 || h > maxGCHeadroomMiB:
		d.errorf("gc_headroom_mib", "want -1 (off) or 1 to %d, got %d", maxGCHeadroomMiB, h)
	default:
		r.GCHeadroom = uint64(h) << 20
	}
	if err := d.err(); err != nil {
		return nil, err
	}
	return r, nil
}

// LoadRelayPolicy reads the relay configuration file at path for its
// policy section alone: the policy directory and the declarations that
// validation adds to the schema, as LoadRelay resolves them. The file is
// decoded as strictly as LoadRelay decodes it, but nothing else it names
// is read or created (no key set, certificate or audit log), so that
// "postern policy validate --config" runs where the relay does not, in CI.
func LoadRelayPolicy(path string) (dir string, opts policy.ValidateOptions, err error) {
	var f RelayFile
	d, err := decodeFile(path, &f)
	if err != nil {
		return "", opts, err
	}
	if len(d.errs) > 0 {
		return "", opts, d.err()
	}
	var r Relay
	d.relayPolicy(&r, f.Policy)
	if err := d.err(); err != nil {
		return "", opts, err
	}
	return r.PolicyDir, r.PolicyOptions, nil
}

// relayPolicy checks the policy section and sets r's policy fields.
func (d *doc) relayPolicy(r *Relay, p PolicyFile) {
	if p.Dir == "" {
		d.errorf("policy.dir", "required: the directory of *.cedar policy files")
	} else {
		r.PolicyDir = d.path(p.Dir)
		if st, err := os.Stat(r.PolicyDir); err != nil {
			d.fail("policy.dir", err, "cannot read %s: %s", p.Dir, errText(err))
		} else if !st.IsDir() {
			d.errorf("policy.dir", "%s is not a directory", p.Dir)
		}
	}
	r.PolicyPoll = p.Poll
	if r.PolicyPoll == 0 {
		r.PolicyPoll = DefaultPolicyPoll
	}
	r.PolicyOptions = policy.ValidateOptions{PrincipalAttributes: p.PrincipalAttributes, DetailKeys: p.DetailKeys, Actions: p.Actions}
	if _, err := r.PolicyOptions.Schema(); err != nil {
		d.fail("policy", err, "%v", err)
	}
}

// redactURL returns u with the password of its user information, if any,
// replaced by "xxxxx": an error must not show a credential written into
// a URL.
func redactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		if i := strings.LastIndex(u, "@"); i >= 0 {
			return "..." + u[i:] // unparsable, and may hold a credential
		}
		return u
	}
	return p.Redacted()
}

func validKind(k string) bool {
	return k == postern.KindTCP || k == postern.KindHTTP || k == postern.KindPostgres
}

// relayTLS loads, creates or generates the relay's certificate.
func (d *doc) relayTLS(r *Relay, t *TLSFile, listenHost string) {
	hosts := []string{"localhost", "127.0.0.1"}
	if t != nil && len(t.Hosts) > 0 {
		hosts = t.Hosts
	} else if listenHost != "" && listenHost != "0.0.0.0" && listenHost != "::" && listenHost != "localhost" && listenHost != "127.0.0.1" {
		hosts = append(hosts, listenHost)
	}
	if t == nil {
		cert, err := transport.SelfSigned(hosts...)
		if err != nil {
			d.fail("tls", err, "cannot make a self-signed certificate: %v", err)
		}
		r.Certificate, r.CertSource = cert, "ephemeral"
		return
	}
	if t.CertFile == "" {
		d.errorf("tls.cert_file", "required with a tls section")
	}
	if t.KeyFile == "" {
		d.errorf("tls.key_file", "required with a tls section")
	}
	if t.CertFile == "" || t.KeyFile == "" {
		return
	}
	certPath, keyPath := d.path(t.CertFile), d.path(t.KeyFile)
	_, certErr := os.Stat(certPath)
	_, keyErr := os.Stat(keyPath)
	if t.SelfSigned && errors.Is(certErr, fs.ErrNotExist) && errors.Is(keyErr, fs.ErrNotExist) {
		cert, err := transport.SelfSigned(hosts...)
		if err == nil {
			err = writeCert(cert, certPath, keyPath)
		}
		if err != nil {
			d.fail("tls.self_signed", err, "cannot create a self-signed certificate in %s and %s: %v", t.CertFile, t.KeyFile, err)
			return
		}
		r.Certificate, r.CertSource = cert, "generated"
		return
	}
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		d.fail("tls.cert_file", err, "cannot read %s: %s", t.CertFile, errText(err))
	}
	keyPEM, kerr := os.ReadFile(keyPath)
	if kerr != nil {
		d.fail("tls.key_file", kerr, "cannot read %s: %s", t.KeyFile, errText(kerr))
	}
	if err != nil || kerr != nil {
		return
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		d.fail("tls.key_file", err, "%s and %s are not a certificate and its private key in PEM: %v", t.CertFile, t.KeyFile, err)
		return
	}
	r.Certificate, r.CertSource = cert, "file"
}

// writeCert saves a certificate and its key as PEM; the key file is
// created with mode 0600 and never overwritten.
func writeCert(cert tls.Certificate, certPath, keyPath string) error {
	der, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		return err
	}
	if err := WriteSecretFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})); err != nil {
		return err
	}
	return os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o644)
}

// WriteSecretFile creates path with mode 0600 and writes b. It refuses
// to overwrite an existing file: a secret is replaced on purpose, by
// removing the old one first.
func WriteSecretFile(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func (d *doc) log(l LogFile) Log {
	var out Log
	switch strings.ToLower(l.Level) {
	case "", "info":
		out.Level = slog.LevelInfo
	case "debug":
		out.Level = slog.LevelDebug
	case "warn", "warning":
		out.Level = slog.LevelWarn
	case "error":
		out.Level = slog.LevelError
	default:
		d.errorf("log.level", "want debug, info, warn or error, got %q", l.Level)
	}
	switch l.Format {
	case "", "text":
	case "json":
		out.JSON = true
	default:
		d.errorf("log.format", "want text or json, got %q", l.Format)
	}
	return out
}

// path resolves p against the directory of the configuration file.
func (d *doc) path(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(d.dir, p)
}

func dirOf(path string) string {
	abs, err := filepath.Abs(path)
	if err != nil {
		return filepath.Dir(path)
	}
	return filepath.Dir(abs)
}

// LoadRevocations reads and parses a revocation file
// (relay.ParseRevocations), reading no more than the format allows.
func LoadRevocations(path string) (relay.Revoked, error) {
	f, err := os.Open(path)
	if err != nil {
		return relay.Revoked{}, fmt.Errorf("cannot read %s: %s", filepath.Base(path), errText(err))
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, relay.MaxRevocationFile+1))
	if err != nil {
		return relay.Revoked{}, fmt.Errorf("cannot read %s: %s", filepath.Base(path), errText(err))
	}
	rev, err := relay.ParseRevocations(b)
	if err != nil {
		return relay.Revoked{}, fmt.Errorf("%s: %s", filepath.Base(path), strings.TrimPrefix(err.Error(), "relay: "))
	}
	return rev, nil
}

// metrics checks metrics.listen: empty (off) or host:port.
func (d *doc) metrics(m MetricsFile) string {
	if m.Listen == "" {
		return ""
	}
	_, port, err := net.SplitHostPort(m.Listen)
	if err == nil {
		_, err = net.LookupPort("tcp", port)
	}
	if err != nil {
		d.errorf("metrics.listen", "want host:port (such as 127.0.0.1:9464), got %q", m.Listen)
	}
	return m.Listen
}

// parseNetwork reads a CIDR prefix, or an IP address as the prefix of that
// address alone.
func parseNetwork(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, errors.New("not a prefix")
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}
