// Command postern-bench measures what the Postern mesh path costs an
// agent, side by side with direct TCP, a bare QUIC relay, ssh -L and
// WireGuard, in one run with every endpoint in its own process. Run
// "go run ./cmd/postern-bench --help" for its flags; internal/bench has
// the manual and BENCHMARKS.md the results.
//
// It is a binary of its own so that the shipped postern binary carries
// no benchmark code: the bench re-executes this binary for each endpoint
// it measures.
package main

import (
	"os"

	"github.com/postern/postern/internal/bench"
)

func main() {
	if handled, code := bench.RunRole(os.Args); handled {
		os.Exit(code)
	}
	os.Exit(bench.Main(os.Args[1:], os.Stdout, os.Stderr))
}
