package identity

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// sentinel is the dynamic type of the package's sentinel errors. It carries
// the stable reason string so that [Reason] needs no lookup table, and an
// index into the verifier's counters.
type sentinel struct {
	reason string
	text   string
	index  int // position in countedReasons, or -1 when Verify never returns it
}

func (s *sentinel) Error() string { return "identity: " + s.text }

// Sentinel errors. Every error returned by [Verifier.Verify] wraps exactly one
// of them, so callers branch with errors.Is; [Reason] maps each to a stable
// snake_case string for the wire and for metrics.
var (
	// ErrTooLarge: the token is longer than VerifierConfig.MaxTokenSize.
	// Reason "token_too_large".
	ErrTooLarge error = newSentinel("token_too_large", "token too large")
	// ErrMalformed: not a compact JWS of three base64url parts with a JSON
	// object header (and, once the signature holds, a JSON object payload).
	// Reason "malformed_token".
	ErrMalformed error = newSentinel("malformed_token", "malformed token")
	// ErrAlgorithm: the header's alg is not EdDSA or ES256 ("none", HS256,
	// RS256, ...), or does not match the algorithm of the key its kid names.
	// Reason "alg_not_allowed".
	ErrAlgorithm error = newSentinel("alg_not_allowed", "token algorithm not allowed")
	// ErrSignature: no kid, a kid that is not in the key set, or a signature
	// that does not verify. Reason "bad_signature".
	ErrSignature error = newSentinel("bad_signature", "bad token signature")
	// ErrIssuer: iss differs from VerifierConfig.Issuer. Reason "wrong_issuer".
	ErrIssuer error = newSentinel("wrong_issuer", "wrong token issuer")
	// ErrAudience: aud does not include VerifierConfig.Audience.
	// Reason "wrong_audience".
	ErrAudience error = newSentinel("wrong_audience", "wrong token audience")
	// ErrExpired: exp is in the past by more than the leeway.
	// Reason "token_expired".
	ErrExpired error = newSentinel("token_expired", "token expired")
	// ErrNoExpiry: the token has no exp; Postern never accepts an eternal
	// token. Reason "missing_expiry".
	ErrNoExpiry error = newSentinel("missing_expiry", "token has no expiry")
	// ErrNotYetValid: nbf, or iat, is in the future by more than the leeway.
	// Reason "token_not_yet_valid".
	ErrNotYetValid error = newSentinel("token_not_yet_valid", "token not yet valid")
	// ErrLifetime: exp - iat (exp - now for a token without iat) is more
	// than VerifierConfig.MaxLifetime. Reason "token_lifetime_exceeded".
	ErrLifetime error = newSentinel("token_lifetime_exceeded", "token lifetime exceeds the maximum")
	// ErrNoSubject: sub is missing or empty. Reason "missing_subject".
	ErrNoSubject error = newSentinel("missing_subject", "token has no subject")
	// ErrRole: the role claim is not the role the caller asked for.
	// Reason "wrong_role".
	ErrRole error = newSentinel("wrong_role", "wrong token role")
	// ErrInvalidClaim: a claim has the wrong JSON type (groups not an
	// array of strings, exp not a number, ...), a services entry breaks the
	// claim's rules (an unknown member, a bad name or kind, a name twice),
	// or an agent token carries services. Reason "invalid_claim".
	ErrInvalidClaim error = newSentinel("invalid_claim", "invalid token claim")
	// ErrServiceNotGranted: returned by [Claims.MayAdvertise], never by
	// Verify. Reason "service_not_granted".
	ErrServiceNotGranted error = &sentinel{reason: "service_not_granted", text: "service not granted", index: -1}
	// ErrKeyNotProven: returned by [Claims.CheckKey], never by Verify: the
	// token is bound to a key and the connection proved none.
	// Reason "key_not_proven".
	ErrKeyNotProven error = &sentinel{reason: "key_not_proven", text: "token key not proven", index: -1}
	// ErrKeyMismatch: returned by [Claims.CheckKey]: the token is bound to
	// a key other than the one the connection proved. Reason
	// "key_mismatch".
	ErrKeyMismatch error = &sentinel{reason: "key_mismatch", text: "token bound to another key", index: -1}
)

// countedReasons lists, in a fixed order, the reasons Verify can return.
// Verifier.Counts reports each of them plus "ok".
var countedReasons []string

func newSentinel(reason, text string) *sentinel {
	s := &sentinel{reason: reason, text: text, index: len(countedReasons)}
	countedReasons = append(countedReasons, reason)
	return s
}

// Reason returns the stable snake_case reason for err, suitable as a wire
// code and as a metrics label: "ok" for nil, the sentinel's reason (see the
// Err variables) for errors of this package, and "invalid_token" for any
// other error.
func Reason(err error) string {
	if err == nil {
		return "ok"
	}
	var s *sentinel
	if errors.As(err, &s) {
		return s.reason
	}
	return "invalid_token"
}

// tokenError is a rejection: a sentinel (for errors.Is and Reason) and an
// actionable message. The message is built only from values this package has
// quoted and truncated, never from the token, its signature or key material.
type tokenError struct {
	kind error
	msg  string
}

func (e *tokenError) Error() string { return e.msg }
func (e *tokenError) Unwrap() error { return e.kind }

func reject(kind error, format string, args ...any) error {
	return &tokenError{kind: kind, msg: "identity: " + fmt.Sprintf(format, args...)}
}

// maxQuoted bounds how much of an attacker-chosen string (a kid, an issuer)
// ends up in an error message, a log line or a Reject frame.
const maxQuoted = 64

// quote returns s as a Go string literal, escaped (no control characters reach
// a log) and truncated to maxQuoted runes.
func quote(s string) string {
	if utf8.RuneCountInString(s) > maxQuoted {
		i, n := 0, 0
		for i = range s {
			if n == maxQuoted {
				break
			}
			n++
		}
		return strconv.Quote(s[:i]) + "..."
	}
	return strconv.Quote(s)
}

// quoteList renders a short, quoted list: ["a" "b"], at most 8 entries.
func quoteList(list []string) string {
	const maxItems = 8
	var b strings.Builder
	b.WriteByte('[')
	for i, s := range list {
		if i == maxItems {
			fmt.Fprintf(&b, " ... %d more", len(list)-maxItems)
			break
		}
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(quote(s))
	}
	b.WriteByte(']')
	return b.String()
}
