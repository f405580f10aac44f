package cli

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/postern/postern/binding"
	"github.com/postern/postern/internal/config"
	"github.com/postern/postern/internal/forward"
	"github.com/postern/postern/mesh"
)

const forwardAbout = `
Listen on local addresses and carry each connection accepted there over a
binding stream of its own, so that any program (psql, pgbench, curl, a TCP
client) reaches a binding unchanged:

  postern forward staging-db=127.0.0.1:5432 staging-api=127.0.0.1:8080
  psql "host=127.0.0.1 port=5432 user=agent sslmode=disable"
  curl http://127.0.0.1:8080/orders

The agent is configured as binding.Open is, from POSTERN_RELAY,
POSTERN_TOKEN or POSTERN_TOKEN_FILE, and POSTERN_RELAY_PIN or
POSTERN_RELAY_CA; one session to the relay carries every connection. An
address is host:port, or a port alone for 127.0.0.1:PORT; port 0 picks a
free port, which the ready line names.

Whoever can connect to a forwarded port uses the binding with this agent's
identity: addresses must be loopback unless --allow-remote is given.

PostgreSQL: any user and password work (the connector logs in with its
own credentials); forward declines SSL (the mesh encrypts). A refused open
is answered with a FATAL error the client prints, SQLSTATE 28000 for a
denial, 08001 when the binding cannot be reached. HTTP: plain HTTP/1.1;
the connector sets the Host header and the credentials. A refused open is
an HTTP error (403, 404, 502, 503, 504). TCP: a refused open resets the
connection. Each connection ends with one log line on stderr: binding,
peer, bytes each way, duration, outcome, and for a refusal the policies
that decided it.

SIGINT or SIGTERM stops accepting and lets open connections finish for up
to --drain, then cuts them; a second signal cuts them at once. The exit
code is 0 then, 1 when the relay refuses the agent at start or a listener
fails, 2 for bad arguments.`

func runForward(ctx context.Context, env Env, args []string) int {
	fs := flagSet(env, "forward", "forward [flags] BINDING=[HOST:]PORT...", forwardAbout)
	allowRemote := fs.Bool("allow-remote", false, "allow listen addresses that are not loopback: whoever reaches them uses this agent's identity")
	drainTimeout := fs.Duration("drain", 10*time.Second, "on SIGINT or SIGTERM, how long open connections may finish before they are cut")
	level := fs.String("log-level", "info", "log `level` on stderr: debug, info, warn or error")
	format := fs.String("log-format", "text", "log `format`: text or json")
	pos, code, done := parse(fs, env, args)
	if done {
		return code
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		return failf(env, ExitUsage, "forward: --log-level: want debug, info, warn or error")
	}
	if *format != "text" && *format != "json" {
		return failf(env, ExitUsage, "forward: --log-format: want text or json")
	}
	if len(pos) == 0 {
		return failf(env, ExitUsage, "forward: name at least one BINDING=[HOST:]PORT, e.g. staging-db=127.0.0.1:5432")
	}
	rules, err := parseForwards(pos, *allowRemote)
	if err != nil {
		return failf(env, ExitUsage, "forward: %v", err)
	}
	log := newLogger(env.Stderr, config.Log{Level: lvl, JSON: *format == "json"})

	cfg, err := binding.ConfigFromEnv()
	if err != nil {
		return failf(env, ExitUsage, "forward: %v", err)
	}
	cfg.Logger = log
	// As binding.DefaultClient makes it, with forward's logger.
	client, err := mesh.NewClient(cfg)
	if err != nil {
		return failf(env, ExitUsage, "forward: %v", err)
	}
	defer client.Close()

	// Fail fast: a token the relay refuses is better said now than at
	// the first connection.
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	err = client.Connect(cctx)
	cancel()
	if err != nil {
		return failf(env, ExitFailure, "forward: %v", err)
	}
	catalog, _ := client.Catalog(ctx)

	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for _, r := range rules {
		ln, err := net.Listen("tcp", r.addr)
		if err != nil {
			return failf(env, ExitFailure, "forward: %s: %v", r.arg, err)
		}
		lns = append(lns, ln)
		// "localhost" is what the resolver says it is: check what was
		// bound.
		if a, ok := ln.Addr().(*net.TCPAddr); !*allowRemote && (!ok || !a.IP.IsLoopback()) {
			return failf(env, ExitUsage, "forward: %s: listening on %s, which is not a loopback address: pass --allow-remote to listen there", r.arg, ln.Addr())
		}
	}

	// Signals are caught before the ready lines: a supervisor that stops
	// the forward as soon as it is ready gets a drain, not a kill.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)

	f := &forward.Forwarder{Client: client, Logger: log}
	var wg sync.WaitGroup
	serveErr := make(chan error, len(rules))
	ready := newLogger(env.Stderr, config.Log{Level: slog.LevelInfo, JSON: *format == "json"})
	for i, r := range rules {
		kind := "unknown"
		for _, b := range catalog {
			if b.Name == r.binding {
				kind = b.Kind
			}
		}
		if kind == "unknown" {
			log.Warn("forward: binding not in this agent's catalog: policy will likely refuse its opens", "binding", r.binding)
		}
		ready.Info("postern forward ready", "binding", r.binding, "listen", lns[i].Addr().String(), "kind", kind)
		wg.Add(1)
		go func(ln net.Listener, name string) {
			defer wg.Done()
			if err := f.Serve(ln, name); err != nil {
				serveErr <- fmt.Errorf("%s: %w", name, err)
			}
		}(lns[i], r.binding)
	}
	lns = nil // Serve closes them

	exit := ExitOK
	why := ""
	select {
	case sig := <-sigs:
		why = sig.String()
	case <-ctx.Done():
		why = "context done"
	case err := <-serveErr:
		log.Error("forward: listener failed", "err", err)
		why, exit = "listener failed", ExitFailure
	}
	log.Info("forward: draining", "reason", why, "connections", f.Active(), "timeout", *drainTimeout)
	dctx, cancel := context.WithTimeout(context.Background(), *drainTimeout)
	defer cancel()
	go func() {
		select {
		case sig := <-sigs:
			log.Warn("forward: second signal: cutting open connections now", "signal", sig.String())
			cancel()
		case <-dctx.Done():
		}
	}()
	if err := f.Shutdown(dctx); err != nil {
		log.Warn("forward: drain ended with connections still open; they were cut")
	}
	wg.Wait()
	log.Info("forward: stopped")
	return exit
}

// forwardRule is one BINDING=ADDRESS argument.
type forwardRule struct {
	arg, binding, addr string
}

// parseForwards parses BINDING=[HOST:]PORT arguments and refuses
// non-loopback addresses unless allowRemote (isLoopback is postern mcp's).
func parseForwards(args []string, allowRemote bool) ([]forwardRule, error) {
	var rules []forwardRule
	seen := map[string]string{}
	for _, arg := range args {
		name, addr, ok := strings.Cut(arg, "=")
		if !ok || name == "" || addr == "" {
			return nil, fmt.Errorf("%q: want BINDING=[HOST:]PORT, e.g. staging-db=127.0.0.1:5432", arg)
		}
		if _, err := strconv.Atoi(addr); err == nil {
			addr = net.JoinHostPort("127.0.0.1", addr)
		}
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, fmt.Errorf("%q: %q is not HOST:PORT or PORT", arg, addr)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			return nil, fmt.Errorf("%q: port %q is not a number from 0 to 65535", arg, port)
		}
		if !allowRemote && !isLoopback(host) {
			shown := host
			if shown == "" {
				shown = "an empty host (every interface)"
			}
			return nil, fmt.Errorf("%q: %s is not a loopback address, and whoever can connect to it would use this agent's identity: listen on 127.0.0.1 or ::1, or pass --allow-remote", arg, shown)
		}
		if p, dup := seen[addr]; dup && port != "0" {
			return nil, fmt.Errorf("%q: %s is already forwarded by %q", arg, addr, p)
		}
		seen[addr] = arg
		rules = append(rules, forwardRule{arg: arg, binding: name, addr: addr})
	}
	return rules, nil
}
