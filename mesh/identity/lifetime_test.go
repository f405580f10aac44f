package identity

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestMaxLifetime: a token living longer than MaxLifetime is refused with
// its own sentinel and reason, however valid its signature and times; one
// within it, or with no cap set, passes.
func TestMaxLifetime(t *testing.T) {
	k := newKey(t, EdDSA)
	tests := []struct {
		name    string
		max     time.Duration
		life    time.Duration // exp - iat
		wantErr error
	}{
		{"no cap, a year", 0, 365 * 24 * time.Hour, nil},
		{"24h cap, 1h", 24 * time.Hour, time.Hour, nil},
		{"24h cap, exactly 24h", 24 * time.Hour, 24 * time.Hour, nil},
		{"24h cap, 24h1s", 24 * time.Hour, 24*time.Hour + time.Second, ErrLifetime},
		{"24h cap, a year", 24 * time.Hour, 365 * 24 * time.Hour, ErrLifetime},
		{"1h cap, 2h", time.Hour, 2 * time.Hour, ErrLifetime},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := newVerifier(t, VerifierConfig{KeySet: jwks(t, k), MaxLifetime: tt.max})
			c := goodClaims(RoleAgent)
			c.IssuedAt = testNow.Add(-time.Minute)
			c.ExpiresAt = c.IssuedAt.Add(tt.life)
			_, err := v.Verify(issue(t, k, c), RoleAgent)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("Verify = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				if Reason(err) != "token_lifetime_exceeded" {
					t.Errorf("Reason = %q", Reason(err))
				}
				if !strings.Contains(err.Error(), "more than the") {
					t.Errorf("message does not say the cap: %v", err)
				}
			}
		})
	}
}

// TestLeewayAccessor: Leeway reports what Verify applies, defaults
// included, so that a session's expiry timer can match it.
func TestLeewayAccessor(t *testing.T) {
	k := newKey(t, EdDSA)
	for _, tt := range []struct {
		name string
		in   time.Duration
		want time.Duration
	}{{"default", 0, DefaultLeeway}, {"none", -1, 0}, {"set", 45 * time.Second, 45 * time.Second}} {
		t.Run(tt.name, func(t *testing.T) {
			v := newVerifier(t, VerifierConfig{KeySet: jwks(t, k), Leeway: tt.in})
			if got := v.Leeway(); got != tt.want {
				t.Errorf("Leeway() = %v, want %v", got, tt.want)
			}
		})
	}
}
