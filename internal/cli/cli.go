// Package cli is the postern command: each subcommand parses its flags,
// reads its configuration through package config and calls the libraries
// (mesh/relay, mesh/connector, mesh/identity, policy). cmd/postern only
// calls Main.
package cli

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/postern/postern/internal/config"
)

// Exit codes of the postern command.
const (
	ExitOK      = 0 // success; for policy check, allowed
	ExitFailure = 1 // a failure while running (cannot listen, refused by the relay, ...)
	ExitUsage   = 2 // bad flags, or a configuration or policy that does not load
	ExitDenied  = 3 // policy check: the request would be denied
)

// Env holds a command's standard output and error.
type Env struct {
	Stdout, Stderr io.Writer
}

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, env Env, args []string) int
}

func commands() []command {
	return []command{
		{"relay", "run a relay: the public QUIC endpoint that verifies, authorizes and splices", runRelay},
		{"connector", "run a connector inside a private network: it dials out to relays", runConnector},
		{"keygen", "make a signing key and its public JWK set", runKeygen},
		{"agent-key", "make an agent's (or connector's) private key, for tokens bound to it", runAgentKey},
		{"token", "issue identity tokens for agents and connectors", runToken},
		{"policy", "validate Cedar policies and check what they decide", runPolicy},
		{"pin", "print the pin of a relay certificate, for trust.pin and POSTERN_RELAY_PIN", runPin},
		{"forward", "carry local connections over bindings, for any program: psql, curl, ...", runForward},
		{"mcp", "serve MCP tools over this agent's bindings, for any MCP client (stdio or HTTP)", runMCP},
		{"status", "print a live summary of a relay or connector from its metrics listener", runStatus},
		{"dev", "run a relay, a connector and demo services in one process", runDev},
		{"version", "print the version of this build", runVersion},
	}
}

// Main runs the postern command with args (without the program name) and
// returns the process exit code. Cancelling ctx stops a running relay,
// connector or dev mesh as SIGTERM does.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	env := Env{Stdout: stdout, Stderr: stderr}
	if len(args) == 0 {
		usage(stderr)
		return ExitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		usage(stdout)
		return ExitOK
	case "-version", "--version":
		return runVersion(ctx, env, nil)
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(ctx, env, args[1:])
		}
	}
	fmt.Fprintf(stderr, "postern: unknown command %q\n\n", args[0])
	usage(stderr)
	return ExitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "postern: private connectivity for AI agents, with an identity per agent and a Cedar policy on every access.")
	fmt.Fprintln(w, "\nUsage: postern COMMAND [flags]")
	fmt.Fprintln(w, "\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'postern COMMAND --help' for a command's flags.")
}

// flagSet returns a FlagSet for a command whose --help prints synopsis,
// then about, then the flags, to stdout.
func flagSet(env Env, name, synopsis, about string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: postern %s\n\n%s\n", synopsis, strings.TrimSpace(about))
		hasFlags := false
		fs.VisitAll(func(*flag.Flag) { hasFlags = true })
		if hasFlags {
			fmt.Fprintln(w, "\nFlags:")
			fs.PrintDefaults()
		}
	}
	return fs
}

// parse parses args, allowing flags after positional arguments
// ("policy validate DIR --attribute team=String"), and returns the
// positional arguments. done is true when the command should return
// code at once: --help (0) or a bad flag (2).
func parse(fs *flag.FlagSet, env Env, args []string) (pos []string, code int, done bool) {
	for {
		// FlagSet.Parse prints the usage itself, on --help as on a bad
		// flag: hold it, and print it once, where it belongs.
		var msg bytes.Buffer
		fs.SetOutput(&msg)
		err := fs.Parse(args)
		fs.SetOutput(env.Stderr)
		if err != nil {
			if errors.Is(err, flag.ErrHelp) {
				env.Stdout.Write(msg.Bytes())
				return nil, ExitOK, true
			}
			env.Stderr.Write(msg.Bytes())
			return nil, ExitUsage, true
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, ExitOK, false
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), ExitOK, false
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// subcommand runs the subcommand of a command with subcommands ("token
// issue", "policy check") named by args[0]. Without one it prints the
// command's usage to stderr (exit 2); with --help, to stdout.
func subcommand(ctx context.Context, env Env, name, usage, about string, subs []command, args []string) int {
	if len(args) == 0 {
		fmt.Fprintf(env.Stderr, "Usage: postern %s\n%s\n", usage, about)
		return ExitUsage
	}
	var names []string
	for _, c := range subs {
		if c.name == args[0] {
			return c.run(ctx, env, args[1:])
		}
		names = append(names, c.name)
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprintf(env.Stdout, "Usage: postern %s\n%s\n", usage, about)
		return ExitOK
	}
	return failf(env, ExitUsage, "%s: unknown subcommand %q: want %s", name, args[0], strings.Join(names, " or "))
}

// failf prints a command's error to stderr and returns code.
func failf(env Env, code int, format string, args ...any) int {
	fmt.Fprintf(env.Stderr, "postern: "+format+"\n", args...)
	return code
}

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error {
	*l = append(*l, s)
	return nil
}

// newLogger returns the operational logger of a long-running command,
// writing to w.
func newLogger(w io.Writer, l config.Log) *slog.Logger {
	opts := &slog.HandlerOptions{Level: l.Level}
	if l.JSON {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// auditLogger opens where the relay's audit events go: "stdout", "stderr",
// "none" or a file appended to. close releases the file.
func auditLogger(env Env, dest string) (l *slog.Logger, close func() error, err error) {
	noop := func() error { return nil }
	switch dest {
	case "none":
		return nil, noop, nil
	case "", "stdout":
		return slog.New(slog.NewJSONHandler(env.Stdout, nil)), noop, nil
	case "stderr":
		return slog.New(slog.NewJSONHandler(env.Stderr, nil)), noop, nil
	}
	f, err := os.OpenFile(dest, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, nil, err
	}
	return slog.New(slog.NewJSONHandler(f, nil)), f.Close, nil
}
