package identity

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lestrrat-go/jwx/v3/jws"
)

// Defaults and limits of VerifierConfig.
const (
	DefaultMaxTokenSize    = 8 << 10 // bytes
	DefaultLeeway          = 30 * time.Second
	MaxLeeway              = time.Minute
	DefaultRefreshInterval = 15 * time.Minute
)

const (
	maxJWKSSize  = 1 << 20          // a JWKS document larger than this is refused
	fetchTimeout = 30 * time.Second // bounds each JWKS fetch
)

// minRefreshInterval is the floor of RefreshInterval and the least time
// between two fetches of a JWKS URL, however many tokens with unknown key IDs
// arrive. A variable so that tests can lower it.
var minRefreshInterval = 10 * time.Second

// VerifierConfig configures a [Verifier]. Audience and exactly one of KeySet
// and JWKSURL are required; every other field has a usable zero value.
type VerifierConfig struct {
	// Audience is the mesh's audience: a token's aud must include it.
	// Required.
	Audience string

	// Issuer, when set, must equal a token's iss. Empty: iss is not checked.
	Issuer string

	// KeySet is a static JWK set ({"keys":[...]}) of public keys, as
	// produced by SigningKey.PublicJWKS or MergeJWKS. Keys of kinds other
	// than Ed25519 and P-256 are skipped; private keys are refused.
	KeySet []byte

	// JWKSURL is fetched by NewVerifier (which fails if it cannot be) and
	// then again every RefreshInterval in the background, and soon after a
	// token names a key ID the set does not hold (at most once per 10s). A
	// failed refresh keeps the previous keys and is logged. It must be
	// https, or http to a loopback address.
	JWKSURL string

	// RefreshInterval is the period of JWKSURL refreshes. Zero means 15
	// minutes; values under 10 seconds are raised to 10 seconds. After a
	// failed refresh the next attempt comes after at most a minute.
	RefreshInterval time.Duration

	// HTTPClient fetches JWKSURL. Nil means a private client with a 30s
	// timeout that refuses redirects to plain http; Close closes its idle
	// connections. A client you pass is yours to clean up.
	HTTPClient *http.Client

	// Leeway is the clock skew tolerated on exp, nbf and iat. Zero means
	// 30s; a negative value means none; more than a minute is an error.
	Leeway time.Duration

	// MaxLifetime, when positive, caps a token's lifetime: a token whose
	// exp is more than MaxLifetime after its iat (or, without iat, after
	// now) is refused with ErrLifetime, so that a token issued for a year
	// cannot be used even though it is validly signed. Zero or negative:
	// no cap. The relay's tokens.max_ttl sets it (default 24h).
	MaxLifetime time.Duration

	// MaxTokenSize is the largest token, in bytes, that Verify reads; it is
	// checked before any parsing. Zero means 8 KiB; negative is an error.
	MaxTokenSize int

	// Now returns the current time, for tests. Nil means time.Now.
	Now func() time.Time

	// Logger receives key set refreshes (Debug), refresh failures (Warn) and
	// refused tokens (Debug, with the reason, never the token). Nil means
	// silent.
	Logger *slog.Logger
}

// Verifier checks identity tokens against a key set. It is safe for
// concurrent use. Create it with [NewVerifier] and Close it when done.
type Verifier struct {
	audience string
	issuer   string
	leeway   time.Duration
	maxLife  time.Duration
	maxSize  int
	now      func() time.Time
	log      *slog.Logger

	keys   atomic.Pointer[keySet]
	counts []atomic.Uint64 // [0] = ok, [i+1] = countedReasons[i]

	// Set only for a JWKS URL.
	url       *url.URL
	client    *http.Client
	transport *http.Transport // ours, when we built the client
	interval  time.Duration
	kick      chan struct{} // a token named an unknown kid
	stop      context.CancelFunc
	done      chan struct{} // closed when the refresher has returned
	closeOnce sync.Once
}

// NewVerifier validates cfg and returns a Verifier. With a JWKS URL it
// fetches the key set once, bounded by ctx, and fails if it cannot; ctx does
// not bound the background refreshes, which run until Close.
func NewVerifier(ctx context.Context, cfg VerifierConfig) (*Verifier, error) {
	if cfg.Audience == "" {
		return nil, errors.New("identity: VerifierConfig.Audience is required: the aud that the mesh's tokens carry")
	}
	if (len(cfg.KeySet) == 0) == (cfg.JWKSURL == "") {
		return nil, errors.New("identity: set exactly one of VerifierConfig.KeySet and VerifierConfig.JWKSURL")
	}
	v := &Verifier{
		audience: cfg.Audience,
		issuer:   cfg.Issuer,
		leeway:   cfg.Leeway,
		maxLife:  cfg.MaxLifetime,
		maxSize:  cfg.MaxTokenSize,
		now:      cfg.Now,
		log:      cfg.Logger,
		counts:   make([]atomic.Uint64, len(countedReasons)+1),
	}
	switch {
	case v.leeway == 0:
		v.leeway = DefaultLeeway
	case v.leeway < 0:
		v.leeway = 0
	case v.leeway > MaxLeeway:
		return nil, fmt.Errorf("identity: VerifierConfig.Leeway %v is more than the %v allowed", cfg.Leeway, MaxLeeway)
	}
	switch {
	case v.maxSize == 0:
		v.maxSize = DefaultMaxTokenSize
	case v.maxSize < 0:
		return nil, fmt.Errorf("identity: VerifierConfig.MaxTokenSize %d is negative", cfg.MaxTokenSize)
	}
	if v.now == nil {
		v.now = time.Now
	}
	if v.log == nil {
		v.log = slog.New(slog.DiscardHandler)
	}

	if len(cfg.KeySet) > 0 {
		ks, err := parseKeySet(cfg.KeySet)
		if err != nil {
			return nil, fmt.Errorf("identity: VerifierConfig.KeySet: %w", err)
		}
		v.keys.Store(ks)
		v.log.Debug("identity: verifier ready", "source", "static", "keys", len(ks.byKID), "skipped", ks.skipped)
		return v, nil
	}

	u, err := checkJWKSURL(cfg.JWKSURL)
	if err != nil {
		return nil, err
	}
	v.url = u
	v.client = cfg.HTTPClient
	if v.client == nil {
		v.transport = newTransport()
		v.client = &http.Client{Transport: v.transport, Timeout: fetchTimeout, CheckRedirect: checkRedirect}
	}
	v.interval = cfg.RefreshInterval
	switch {
	case v.interval == 0:
		v.interval = DefaultRefreshInterval
	case v.interval < minRefreshInterval:
		v.interval = minRefreshInterval
	}
	ks, err := v.fetch(ctx)
	if err != nil {
		if v.transport != nil {
			v.transport.CloseIdleConnections()
		}
		return nil, err
	}
	v.keys.Store(ks)
	v.log.Debug("identity: verifier ready", "source", u.Redacted(), "keys", len(ks.byKID), "skipped", ks.skipped)

	refreshCtx, stop := context.WithCancel(context.Background())
	v.stop = stop
	v.done = make(chan struct{})
	v.kick = make(chan struct{}, 1)
	go v.refreshLoop(refreshCtx)
	return v, nil
}

// Verify checks token and returns its claims, or an error wrapping one of
// the sentinel errors (see [Reason]). The checks run in a fixed order and the
// first failure decides:
//
//  1. size: at most MaxTokenSize bytes (ErrTooLarge);
//  2. structure: three canonical base64url parts, a JSON header without
//     duplicate members, with a string alg, no "crit" or "b64", typ "JWT"
//     or none (ErrMalformed);
//  3. algorithm: EdDSA or ES256, checked before any key is looked up, so
//     "none" and HS256 never reach a key (ErrAlgorithm);
//  4. signature: the kid must name a key of the set (ErrSignature), of the
//     token's algorithm (ErrAlgorithm), and jws.Verify, given the key set
//     and nothing else, must verify the signature under the key's own
//     algorithm (ErrSignature); only then is the payload decoded
//     (ErrMalformed);
//  5. issuer, when configured (ErrIssuer);
//  6. audience includes the configured one (ErrAudience);
//  7. exp present (ErrNoExpiry) and not past by more than the leeway
//     (ErrExpired);
//  8. nbf, when present, not ahead by more than the leeway (ErrNotYetValid);
//  9. iat, when present, not ahead by more than the leeway (ErrNotYetValid);
//  10. with MaxLifetime, exp - iat (exp - now without iat) at most
//     MaxLifetime (ErrLifetime);
//  11. sub not empty (ErrNoSubject);
//  12. role equal to want (ErrRole);
//  13. types of jti, groups, attributes, services; services only on a
//     connector token (ErrInvalidClaim).
//
// A claim of the wrong JSON type fails its step with ErrInvalidClaim.
// Every outcome is counted (see [Verifier.Counts]).
func (v *Verifier) Verify(token string, want Role) (*Claims, error) {
	c, err := v.verify(token, want)
	if err != nil {
		var s *sentinel
		if errors.As(err, &s) && s.index >= 0 {
			v.counts[s.index+1].Add(1)
		}
		v.log.Debug("identity: token refused", "reason", Reason(err), "error", err)
		return nil, err
	}
	v.counts[0].Add(1)
	return c, nil
}

func (v *Verifier) verify(token string, want Role) (*Claims, error) {
	if len(token) > v.maxSize {
		return nil, reject(ErrTooLarge, "token is %d bytes, more than the %d allowed", len(token), v.maxSize)
	}
	tok, err := parseCompact(token)
	if err != nil {
		return nil, err
	}
	alg := Algorithm(tok.alg)
	if alg != EdDSA && alg != ES256 {
		return nil, reject(ErrAlgorithm, "token algorithm %s is not allowed: want %q or %q", quote(tok.alg), EdDSA, ES256)
	}

	if tok.kid == "" {
		return nil, reject(ErrSignature, `token header has no key ID ("kid"), so no key can verify it`)
	}
	keys := v.keys.Load()
	key, ok := keys.byKID[tok.kid]
	if !ok {
		v.kickRefresh()
		return nil, reject(ErrSignature, "token key ID %s is not in the key set: signed by an unknown or retired key", quote(tok.kid))
	}
	if key.alg != alg {
		return nil, reject(ErrAlgorithm, "token algorithm %s does not match key %s, an %s key", alg, quote(tok.kid), key.alg)
	}
	// jws.Parse calls an empty signature malformed; it is a signature that
	// does not verify.
	if tok.signature == "" {
		return nil, reject(ErrSignature, "token has an empty signature")
	}
	payload, err := jws.Verify([]byte(token), keys.verifyOptions...)
	if err != nil {
		// jwx's error text quotes header values: only its kind is used. A
		// parse error here is a header member that parseCompact ignores but
		// jwx types (jwk, x5c, x5t, ...) holding the wrong type.
		if errors.Is(err, jws.ParseError()) {
			return nil, reject(ErrMalformed, "token header has a registered member (jwk, x5c, ...) of the wrong type")
		}
		return nil, reject(ErrSignature, "token signature does not verify with key %s", quote(tok.kid))
	}
	m, err := decodeObject(payload)
	if err != nil {
		return nil, reject(ErrMalformed, "token payload is not a JSON object without duplicate members")
	}

	c := &Claims{}
	if c.Issuer, err = m.str("iss"); err != nil {
		return nil, err
	}
	if v.issuer != "" && c.Issuer != v.issuer {
		if c.Issuer == "" {
			return nil, reject(ErrIssuer, "token has no issuer (iss); want %s", quote(v.issuer))
		}
		return nil, reject(ErrIssuer, "token issuer %s is not %s", quote(c.Issuer), quote(v.issuer))
	}

	if c.Audience, err = m.audience(); err != nil {
		return nil, err
	}
	if !slices.Contains(c.Audience, v.audience) {
		if len(c.Audience) == 0 {
			return nil, reject(ErrAudience, "token has no audience (aud); want %s", quote(v.audience))
		}
		return nil, reject(ErrAudience, "token audience %s does not include %s", quoteList(c.Audience), quote(v.audience))
	}

	now := v.now()
	var present bool
	if c.ExpiresAt, present, err = m.date("exp"); err != nil {
		return nil, err
	}
	if !present {
		return nil, reject(ErrNoExpiry, "token has no expiry (exp); Postern refuses tokens that never expire")
	}
	if !now.Before(c.ExpiresAt.Add(v.leeway)) {
		return nil, reject(ErrExpired, "token expired %s ago (exp %s); get a new token",
			human(now.Sub(c.ExpiresAt)), c.ExpiresAt.Format(time.RFC3339))
	}
	if c.NotBefore, present, err = m.date("nbf"); err != nil {
		return nil, err
	}
	if present && now.Add(v.leeway).Before(c.NotBefore) {
		return nil, reject(ErrNotYetValid, "token is not valid for another %s (nbf %s); check the clocks of the issuer and of this host",
			human(c.NotBefore.Sub(now)), c.NotBefore.Format(time.RFC3339))
	}
	if c.IssuedAt, present, err = m.date("iat"); err != nil {
		return nil, err
	}
	if present && now.Add(v.leeway).Before(c.IssuedAt) {
		return nil, reject(ErrNotYetValid, "token was issued %s in the future (iat %s); check the issuer's clock",
			human(c.IssuedAt.Sub(now)), c.IssuedAt.Format(time.RFC3339))
	}
	if v.maxLife > 0 {
		from, what := c.IssuedAt, "issued"
		if !present {
			from, what = now, "no iat; expiring"
		}
		if life := c.ExpiresAt.Sub(from); life > v.maxLife {
			return nil, reject(ErrLifetime, "token lives %s (%s %s, exp %s), more than the %s this verifier accepts; issue a shorter-lived token",
				human(life), what, from.Format(time.RFC3339), c.ExpiresAt.Format(time.RFC3339), human(v.maxLife))
		}
	}

	if c.Subject, err = m.str("sub"); err != nil {
		return nil, err
	}
	if c.Subject == "" {
		return nil, reject(ErrNoSubject, "token has no subject (sub): it names no agent or connector")
	}

	if !want.valid() {
		return nil, reject(ErrRole, "Verify called with role %s; want %q or %q", quote(string(want)), RoleAgent, RoleConnector)
	}
	role, err := m.str("role")
	if err != nil {
		return nil, err
	}
	if Role(role) != want {
		if role == "" {
			return nil, reject(ErrRole, "token has no role claim; want %q", want)
		}
		return nil, reject(ErrRole, "token is for role %s, not %q", quote(role), want)
	}
	c.Role = want

	if err := decodePrivateClaims(m, c); err != nil {
		return nil, err
	}
	return c, nil
}

// human formats a duration for a message: 3m, 1h5m, 42s.
func human(d time.Duration) string {
	s := d.Round(time.Second).String()
	if len(s) > 3 && s[len(s)-3:] == "m0s" {
		s = s[:len(s)-2]
	}
	if len(s) > 3 && s[len(s)-3:] == "h0m" {
		s = s[:len(s)-2]
	}
	return s
}

// Leeway is the clock skew the Verifier tolerates on exp, nbf and iat. A
// session that holds a token must end when Verify would start refusing
// it, exp + Leeway, not at exp.
func (v *Verifier) Leeway() time.Duration { return v.leeway }

// SetKeySet replaces the static key set of a Verifier made with
// VerifierConfig.KeySet, for key rotation without a restart: tokens
// verified after it returns use the new set. A set that does not parse
// is refused and the keys in force stay. A Verifier that fetches a JWKS
// URL refuses it: its keys come from the URL.
func (v *Verifier) SetKeySet(jwks []byte) error {
	if v.url != nil {
		return errors.New("identity: SetKeySet: this verifier's keys come from its JWKS URL")
	}
	ks, err := parseKeySet(jwks)
	if err != nil {
		return fmt.Errorf("identity: SetKeySet: %w", err)
	}
	v.keys.Store(ks)
	v.log.Info("identity: key set replaced", "keys", len(ks.byKID), "skipped", ks.skipped)
	return nil
}

// Counts returns how many tokens Verify accepted ("ok") and refused, per
// reason (the Reason strings of the sentinel errors). Every reason is
// present, zero or not.
func (v *Verifier) Counts() map[string]uint64 {
	m := make(map[string]uint64, len(v.counts))
	m["ok"] = v.counts[0].Load()
	for i, r := range countedReasons {
		m[r] = v.counts[i+1].Load()
	}
	return m
}

// Keys returns how many keys of the current set can verify tokens.
func (v *Verifier) Keys() int {
	ks := v.keys.Load()
	if ks == nil {
		return 0
	}
	return len(ks.byKID)
}

// Close stops the background refresh and waits for it to return. It is
// idempotent and always returns nil. Verify keeps working after Close, with
// the last key set fetched.
func (v *Verifier) Close() error {
	v.closeOnce.Do(func() {
		if v.stop != nil {
			v.stop()
			<-v.done
		}
		if v.transport != nil {
			v.transport.CloseIdleConnections()
		}
	})
	return nil
}

// kickRefresh asks the refresher, without waiting, to fetch the key set
// soon: a token naming an unknown kid is what an issuer's key rotation looks
// like from here. The refresher rate-limits, so a flood of forged kids costs
// at most one fetch per minRefreshInterval.
func (v *Verifier) kickRefresh() {
	if v.kick == nil {
		return
	}
	select {
	case v.kick <- struct{}{}:
	default:
	}
}

// refreshLoop keeps the JWKS URL's keys fresh. It is ours, not jwx's
// jwk.Cache (httprc), because that cache does not keep the promises of
// VerifierConfig.JWKSURL: Register waits for a first fetch that succeeds and
// retries until then, so NewVerifier could neither fail fast nor say why;
// httprc schedules in whole seconds and, after a refresh answered with an
// error status, waits a full interval rather than at most a minute;
// Cache.Refresh fetches synchronously and without a rate limit, so the
// unknown-kid refresh would need this goroutine and its limit anyway; and
// its errors quote the URL with its password.
func (v *Verifier) refreshLoop(ctx context.Context) {
	defer close(v.done)
	last := time.Now()
	next := last.Add(v.interval)
	timer := time.NewTimer(v.interval)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-v.kick:
			if soon := last.Add(minRefreshInterval); soon.Before(next) {
				next = soon
				timer.Reset(time.Until(next))
			}
			continue
		case <-timer.C:
		}
		wait := v.interval
		ks, err := v.fetch(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			v.log.Warn("identity: key set refresh failed; keeping the previous keys", "error", err)
			wait = min(v.interval, time.Minute)
		default:
			v.keys.Store(ks)
			v.log.Debug("identity: key set refreshed", "source", v.url.Redacted(), "keys", len(ks.byKID), "skipped", ks.skipped)
		}
		last = time.Now()
		next = last.Add(wait)
		timer.Reset(wait)
	}
}

// fetch downloads and parses the key set. Errors name the URL (without its
// password) and say what went wrong.
func (v *Verifier) fetch(ctx context.Context) (*keySet, error) {
	ks, err := v.get(ctx)
	if err != nil {
		return nil, fmt.Errorf("identity: fetch key set from %s: %w", v.url.Redacted(), err)
	}
	return ks, nil
}

func (v *Verifier) get(ctx context.Context) (*keySet, error) {
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, v.url.String(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := v.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) { // its text repeats the URL, with a password
			err = ue.Err
		}
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10)) // let the connection be reused
		return nil, fmt.Errorf("HTTP status %d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSSize+1))
	if err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	if len(body) > maxJWKSSize {
		return nil, fmt.Errorf("the key set is larger than %d bytes", maxJWKSSize)
	}
	return parseKeySet(body)
}

// checkJWKSURL accepts https URLs, and http URLs to a loopback address: over
// plain http anyone on the path could replace the keys.
func checkJWKSURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, errors.New("identity: VerifierConfig.JWKSURL is not an absolute https URL")
	}
	if u.Scheme == "http" && !isLoopback(u.Hostname()) {
		return nil, fmt.Errorf("identity: VerifierConfig.JWKSURL %s uses plain http: anyone on the path could replace the keys; use https (http is allowed only to a loopback address)", u.Redacted())
	}
	return u, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 5 {
		return errors.New("too many redirects")
	}
	if req.URL.Scheme != "https" && !isLoopback(req.URL.Hostname()) {
		return fmt.Errorf("refusing a redirect to %s: not https", req.URL.Redacted())
	}
	return nil
}

func newTransport() *http.Transport {
	if t, ok := http.DefaultTransport.(*http.Transport); ok {
		return t.Clone()
	}
	return &http.Transport{Proxy: http.ProxyFromEnvironment}
}
