// Command bench runs the Postern benchmark (internal/bench) until the
// postern command exposes it as "postern bench":
//
//	go run ./internal/bench/cmd -quick
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
