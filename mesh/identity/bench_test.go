package identity

import (
	"strings"
	"testing"
)

func benchmarkVerify(b *testing.B, alg Algorithm) {
	k := newKey(b, alg)
	v := newVerifier(b, VerifierConfig{KeySet: jwks(b, k)})
	tok := issue(b, k, goodClaims(RoleAgent))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(tok, RoleAgent); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyEdDSA(b *testing.B) { benchmarkVerify(b, EdDSA) }
func BenchmarkVerifyES256(b *testing.B) { benchmarkVerify(b, ES256) }

// BenchmarkVerifyRefused is the cost of a forged token that names a known
// kid but has a bad signature: what a flood of garbage costs the relay.
func BenchmarkVerifyRefused(b *testing.B) {
	k := newKey(b, EdDSA)
	v := newVerifier(b, VerifierConfig{KeySet: jwks(b, k)})
	tok := issue(b, k, goodClaims(RoleAgent))
	i := strings.LastIndexByte(tok, '.') + 1
	sig, _ := b64.DecodeString(tok[i:])
	sig[0] ^= 1
	tok = tok[:i] + b64.EncodeToString(sig)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(tok, RoleAgent); err == nil {
			b.Fatal("accepted")
		}
	}
}

func BenchmarkIssue(b *testing.B) {
	for _, alg := range []Algorithm{EdDSA, ES256} {
		b.Run(string(alg), func(b *testing.B) {
			k := newKey(b, alg)
			c := goodClaims(RoleAgent)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := k.Issue(c); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
