package cli

import (
	"context"
	"encoding/pem"
	"fmt"
	"os"

	"github.com/postern/postern/transport"
)

const pinAbout = `
Print the pin of the certificate in FILE (PEM): "sha256:" and the hex
SHA-256 of the certificate, as the relay prints it at start. Connectors
(trust.pin) and agents (POSTERN_RELAY_PIN) trust a self-signed relay by
its pin. Of a chain, the first certificate (the relay's own) is pinned.`

func runPin(_ context.Context, env Env, args []string) int {
	fs := flagSet(env, "pin", "pin FILE", pinAbout)
	pos, code, done := parse(fs, env, args)
	if done {
		return code
	}
	if len(pos) != 1 {
		return failf(env, ExitUsage, "pin: want one certificate FILE")
	}
	b, err := os.ReadFile(pos[0])
	if err != nil {
		return failf(env, ExitFailure, "pin: %v", err)
	}
	for rest := b; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			return failf(env, ExitFailure, "pin: %s holds no PEM certificate", pos[0])
		}
		if blk.Type == "CERTIFICATE" {
			fmt.Fprintln(env.Stdout, transport.PinDER(blk.Bytes))
			return ExitOK
		}
	}
}
