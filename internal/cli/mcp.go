package cli

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/postern/postern/binding"
	"github.com/postern/postern/internal/config"
	"github.com/postern/postern/internal/mcpserver"
	"github.com/postern/postern/internal/tokenfile"
	"github.com/postern/postern/mesh"
)

// EnvMCPToken holds the bearer token that postern mcp --http requires.
const EnvMCPToken = "POSTERN_MCP_TOKEN"

const mcpAbout = `
Serve the Model Context Protocol, so that any MCP client (an LLM with
tools) reaches the private databases and APIs this agent may open. It is
an agent: it reads POSTERN_RELAY, POSTERN_TOKEN or POSTERN_TOKEN_FILE, and
POSTERN_RELAY_PIN or POSTERN_RELAY_CA, as binding.Open does, and every
tool call runs with that identity, decided by the relay's policies and
audited there; the connector holds the credentials.

Its tools are the agent's catalog: NAME_query and NAME_schema for each
postgres binding, NAME_request for each http binding. When policy or the
connected services change, the tools change and clients are told
(notifications/tools/list_changed).

By default it speaks MCP on stdin and stdout, for a client that launches
it as a command; stdout carries nothing else, and logs go to stderr.
With --http it serves streamable HTTP at http://ADDR/mcp instead, on a
loopback address unless --allow-remote; beyond loopback it requires a
bearer token of its own (--http-token-file, or POSTERN_MCP_TOKEN), which
it also requires on loopback when one is given.

It connects to the relay at start and exits 1 when the relay cannot be
reached or refuses the token; after that it follows the relay through
restarts. SIGINT or SIGTERM, or the end of stdin, stops it with exit 0.`

func runMCP(ctx context.Context, env Env, args []string) int {
	fs := flagSet(env, "mcp", "mcp [--http ADDR [--allow-remote] [--http-token-file F]] [--max-rows N] [--max-bytes N] [--timeout D]", mcpAbout)
	httpAddr := fs.String("http", "", "serve streamable HTTP on `addr` (host:port) instead of stdio")
	allowRemote := fs.Bool("allow-remote", false, "let --http listen beyond loopback (a bearer token is then required)")
	tokenFile := fs.String("http-token-file", "", "the `file` holding the bearer token HTTP clients must send (default: $"+EnvMCPToken+")")
	maxRows := fs.Int("max-rows", mcpserver.DefaultMaxRows, "the most rows a query returns; callers may ask for fewer")
	maxBytes := byteSize(mcpserver.DefaultMaxBytes)
	fs.Var(&maxBytes, "max-bytes", "the most `bytes` a query's rows or an HTTP body may take: 1048576, 64KiB, 1MiB")
	timeout := fs.Duration("timeout", mcpserver.DefaultTimeout, "bounds each tool call: the statement timeout, an HTTP request")
	level := fs.String("log-level", "info", "log `level` on stderr: debug, info, warn or error")
	pos, code, done := parse(fs, env, args)
	if done {
		return code
	}
	if len(pos) > 0 {
		return failf(env, ExitUsage, "mcp: unexpected argument %q", pos[0])
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		return failf(env, ExitUsage, "mcp: --log-level: want debug, info, warn or error")
	}
	if *maxRows <= 0 || maxBytes <= 0 || *timeout <= 0 {
		return failf(env, ExitUsage, "mcp: --max-rows, --max-bytes and --timeout must be positive")
	}
	var bearer string
	if *httpAddr != "" {
		host, _, err := net.SplitHostPort(*httpAddr)
		if err != nil {
			return failf(env, ExitUsage, "mcp: --http %q: want host:port", *httpAddr)
		}
		if !isLoopback(host) && !*allowRemote {
			return failf(env, ExitUsage, "mcp: --http %s is not a loopback address: anyone who reaches it acts as this agent; add --allow-remote (and a bearer token) to mean it", *httpAddr)
		}
		switch {
		case *tokenFile != "":
			if bearer, err = tokenfile.Read(*tokenFile); err != nil {
				return failf(env, ExitUsage, "mcp: --http-token-file: %v", err)
			}
			if bearer == "" {
				return failf(env, ExitUsage, "mcp: --http-token-file: %s is empty", *tokenFile)
			}
		default:
			bearer = strings.TrimSpace(os.Getenv(EnvMCPToken))
		}
		if bearer == "" && !isLoopback(host) {
			return failf(env, ExitUsage, "mcp: --http %s beyond loopback needs a bearer token: --http-token-file F or %s", *httpAddr, EnvMCPToken)
		}
	} else if *allowRemote || *tokenFile != "" {
		return failf(env, ExitUsage, "mcp: --allow-remote and --http-token-file go with --http")
	}

	log := newLogger(env.Stderr, config.Log{Level: lvl})
	cfg, err := binding.ConfigFromEnv()
	if err != nil {
		return failf(env, ExitUsage, "mcp: %v", strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	cfg.Logger = log
	client, err := mesh.NewClient(cfg)
	if err != nil {
		return failf(env, ExitUsage, "mcp: %v", err)
	}
	defer client.Close()
	v, _, _ := version()
	srv, err := mcpserver.New(mcpserver.Config{Client: client, MaxRows: *maxRows, MaxBytes: int(maxBytes), Timeout: *timeout, Logger: log, Version: v})
	if err != nil {
		return failf(env, ExitFailure, "mcp: %v", err)
	}
	defer srv.Close()

	// The first catalog before serving: a client lists tools once it
	// has connected, and a refused token is better said now.
	sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	err = srv.Sync(sctx)
	cancel()
	if err != nil {
		return failf(env, ExitFailure, "mcp: %v", err)
	}
	id, _ := client.Identity(ctx)

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		select {
		case sig := <-sigs:
			log.Info("mcp: stopping", "signal", sig.String())
			stop()
		case <-runCtx.Done():
		}
	}()
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		srv.Watch(runCtx, 0)
	}()
	defer func() { stop(); <-watched }()

	if *httpAddr == "" {
		log.Info("postern mcp ready", "transport", "stdio", "subject", id.Subject, "tools", strings.Join(srv.Tools(), ","))
		err := srv.MCP().Run(runCtx, &mcp.StdioTransport{})
		if err != nil && runCtx.Err() == nil && !errors.Is(err, mcp.ErrConnectionClosed) {
			return failf(env, ExitFailure, "mcp: %v", err)
		}
		return ExitOK
	}
	return serveMCPHTTP(runCtx, env, log, srv, *httpAddr, bearer, id.Subject)
}

func serveMCPHTTP(ctx context.Context, env Env, log *slog.Logger, srv *mcpserver.Server, addr, bearer, subject string) int {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return failf(env, ExitFailure, "mcp: --http: %v", err)
	}
	mux := http.NewServeMux()
	// The SDK refuses a loopback request naming another Host (DNS
	// rebinding); CrossOriginProtection refuses a browser's cross-origin
	// POST, so that a web page cannot use a token-less loopback server.
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv.MCP() }, nil)
	mux.Handle("/mcp", requireBearer(bearer, http.NewCrossOriginProtection().Handler(h)))
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- hs.Serve(ln) }()
	log.Info("postern mcp ready", "transport", "http", "url", "http://"+ln.Addr().String()+"/mcp", "bearer", bearer != "", "subject", subject, "tools", strings.Join(srv.Tools(), ","))
	select {
	case err := <-done:
		return failf(env, ExitFailure, "mcp: %v", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Streams (the SSE stream of each session) do not end by themselves.
	if err := hs.Shutdown(sctx); err != nil {
		hs.Close()
	}
	<-done
	log.Info("mcp: stopped")
	return ExitOK
}

// requireBearer refuses requests without "Authorization: Bearer <token>"
// (401); an empty token requires nothing. The comparison is of SHA-256
// sums, in constant time, so that neither the token nor its length leaks
// through timing.
func requireBearer(token string, h http.Handler) http.Handler {
	if token == "" {
		return h
	}
	want := sha256.Sum256([]byte(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		sum := sha256.Sum256([]byte(got))
		if !ok || subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="postern mcp"`)
			http.Error(w, "postern mcp: a bearer token is required", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// isLoopback reports whether host names only the loopback interface. An
// empty host (":8080") is every interface.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// byteSize is a flag of bytes: 1048576, 1MiB, 64KiB, 1GiB.
type byteSize int

func (b *byteSize) String() string {
	for _, u := range []struct {
		suffix string
		mult   int
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if int(*b) >= u.mult && int(*b)%u.mult == 0 {
			return strconv.Itoa(int(*b)/u.mult) + u.suffix
		}
	}
	return strconv.Itoa(int(*b))
}

func (b *byteSize) Set(s string) error {
	mult := 1
	num := s
	for _, u := range []struct {
		suffix string
		mult   int
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}} {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			num, mult = strings.TrimSpace(n), u.mult
			break
		}
	}
	n, err := strconv.Atoi(num)
	if err != nil || n <= 0 || n > (1<<31-1)/mult {
		return fmt.Errorf("want a positive number of bytes, e.g. 1048576, 64KiB or 1MiB")
	}
	*b = byteSize(n * mult)
	return nil
}
