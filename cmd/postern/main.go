// Command postern runs the parts of a Postern mesh: a relay, a connector,
// a whole mesh for development, and the tools around them (keys, tokens,
// policy checks). Run "postern --help" for the commands; the README has
// a walkthrough and the configuration reference.
//
// It is a thin layer over the libraries: mesh/relay, mesh/connector,
// mesh/identity and policy, with the command line in internal/cli. The
// benchmark instrument is a separate binary, cmd/postern-bench.
package main

import (
	"context"
	"os"

	"github.com/postern/postern/internal/cli"
)

func main() {
	os.Exit(cli.Main(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}
