// Command postern runs the parts of a Postern mesh: a relay, a connector,
// a whole mesh for development, and the tools around them (keys, tokens,
// policy checks). Run "postern --help" for the commands; the README has
// a walkthrough and the configuration reference.
//
// It is a thin layer over the libraries: mesh/relay, mesh/connector,
// mesh/identity and policy, with the command line in internal/cli.
package main

import (
	"context"
	"os"

	"github.com/postern/postern/internal/bench"
	"github.com/postern/postern/internal/cli"
)

func main() {
	// "postern bench" runs each endpoint it measures as a child process
	// of this same binary.
	if handled, code := bench.RunRole(os.Args); handled {
		os.Exit(code)
	}
	os.Exit(cli.Main(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}
