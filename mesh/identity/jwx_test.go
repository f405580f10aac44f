package identity

import (
	"github.com/lestrrat-go/jwx/v3/jws"
)

// Signing and verifying a bare signing input, whatever a header says, is
// something only tests need: Issue and Verify go through jws.Sign and
// jws.Verify with a whole token. These helpers use the same jwx algorithms.

// sign signs input with k under k's algorithm.
func (k *SigningKey) sign(input string) ([]byte, error) {
	signer, err := jws.SignerFor(k.alg.jwa())
	if err != nil {
		return nil, err
	}
	return signer.Sign(k.raw, []byte(input))
}

// verifySignature reports whether sig over input verifies with key.
func verifySignature(key *publicKey, input string, sig []byte) bool {
	verifier, err := jws.VerifierFor(key.alg.jwa())
	if err != nil {
		return false
	}
	return verifier.Verify(key.key, []byte(input), sig) == nil
}
