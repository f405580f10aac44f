package cli

import (
	"context"

	"github.com/postern/postern/internal/bench"
)

// runBench is "postern bench": see internal/bench. Ctrl-C reaches the
// child processes through the process group.
func runBench(_ context.Context, env Env, args []string) int {
	return bench.Main(args, env.Stdout, env.Stderr)
}
