package cli

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
)

// Version is the version of this build. Release builds set it with
//
//	go build -ldflags "-X github.com/postern/postern/internal/cli.Version=v1.2.3" ./cmd/postern
//
// Without it, the version is the module version recorded in the binary
// (go install ...@v1.2.3), or the VCS revision of a build from a checkout.
var Version = ""

// version returns the version, the VCS revision and whether the tree was
// modified, as far as the build recorded them.
func version() (v, revision string, modified bool) {
	v = Version
	info, ok := debug.ReadBuildInfo()
	if !ok {
		if v == "" {
			v = "unknown"
		}
		return v, "", false
	}
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			revision = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if v == "" {
		v = info.Main.Version
	}
	if v == "" {
		v = "(devel)"
	}
	return v, revision, modified
}

func runVersion(_ context.Context, env Env, args []string) int {
	fs := flagSet(env, "version", "version", "Print the version of this build, its source revision and the Go version that built it.")
	pos, code, done := parse(fs, env, args)
	if done {
		return code
	}
	if len(pos) > 0 {
		return failf(env, ExitUsage, "version: unexpected argument %q", pos[0])
	}
	v, rev, modified := version()
	fmt.Fprintf(env.Stdout, "postern %s", v)
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		fmt.Fprintf(env.Stdout, " (revision %s", rev)
		if modified {
			fmt.Fprint(env.Stdout, ", modified")
		}
		fmt.Fprint(env.Stdout, ")")
	}
	fmt.Fprintf(env.Stdout, " %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return ExitOK
}
