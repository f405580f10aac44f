package mcpserver

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/postern/postern"
	"github.com/postern/postern/binding"
	"github.com/postern/postern/mesh"
)

// Defaults of the Config fields whose zero value means a default.
const (
	DefaultMaxRows  = 1000
	DefaultMaxBytes = 1 << 20 // 1 MiB
	DefaultTimeout  = 30 * time.Second
)

// Config configures a Server. Client is required; every other field has
// a working zero value.
type Config struct {
	// Client is the agent's mesh client: its identity is the one every
	// tool call runs as. The Server does not close it.
	Client *mesh.Client

	// MaxRows is the most rows a query returns; a caller may ask for
	// fewer, never more. Zero means DefaultMaxRows.
	MaxRows int
	// MaxBytes bounds a query's rows (their values as text) and an HTTP
	// response's body; a caller may lower it, never raise it. Zero means
	// DefaultMaxBytes.
	MaxBytes int
	// Timeout bounds one tool call: a query's statement_timeout, and an
	// HTTP request from start to the end of its body. Zero means
	// DefaultTimeout.
	Timeout time.Duration

	// Logger receives one line per tool call (tool, binding, duration,
	// outcome) and catalog changes. Nil means silent. SQL text, request
	// bodies and headers are never logged.
	Logger *slog.Logger

	// Version is the server's version, as MCP's serverInfo says it.
	// Empty means "dev".
	Version string
}

// Server is an MCP server whose tools are the agent's bindings. It is
// safe for concurrent use; one Server serves any number of MCP sessions
// (stdio has one; streamable HTTP may have several).
type Server struct {
	cfg Config
	log *slog.Logger
	mcp *mcp.Server

	mu      sync.Mutex
	served  map[string]*served // by binding name
	closed  bool
	closing sync.WaitGroup // bindings being closed: a pool waits for its calls
}

// served is a binding with tools on the server.
type served struct {
	b     postern.Binding
	h     *binding.Binding
	tools []string

	mu     sync.Mutex
	closed bool
	pools  map[string]*pgxpool.Pool // postgres: by tool, each made at its first call
}

// close closes the binding's pool and handles; calls in flight fail.
func (sv *served) close() error {
	sv.mu.Lock()
	sv.closed = true
	pools := sv.pools
	sv.pools = nil
	sv.mu.Unlock()
	for _, p := range pools {
		p.Close()
	}
	return sv.h.Close()
}

// New checks cfg and returns a Server with no tools yet: call Sync (or
// Watch) to take the catalog.
func New(cfg Config) (*Server, error) {
	if cfg.Client == nil {
		return nil, errors.New("mcpserver: Config.Client is required")
	}
	if cfg.MaxRows <= 0 {
		cfg.MaxRows = DefaultMaxRows
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Version == "" {
		cfg.Version = "dev"
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: log, served: map[string]*served{}}
	s.mcp = mcp.NewServer(&mcp.Implementation{Name: "postern", Title: "Postern", Version: cfg.Version}, &mcp.ServerOptions{
		Instructions: "Tools over private databases and APIs, reached through Postern with this agent's own identity. " +
			"A relay decides every access with Cedar policy; a refusal names the deciding policy. " +
			"The tools change when policy or the connected services change.",
		// Tools come and go with the catalog: advertise tools, with
		// list_changed, even while the catalog is empty.
		Capabilities: &mcp.ServerCapabilities{Tools: &mcp.ToolCapabilities{ListChanged: true}},
	})
	return s, nil
}

// MCP returns the SDK server, to run on a transport: Run with
// &mcp.StdioTransport{}, or mcp.NewStreamableHTTPHandler.
func (s *Server) MCP() *mcp.Server { return s.mcp }

// Sync reads the agent's catalog and makes the tools match it: a new
// postgres or http binding gets its tools, a binding gone loses them and
// its pooled connections, and a binding changed (its description, or
// whether the agent may only read it) has its tools replaced in place,
// so that a client listing tools meanwhile sees the old or the new
// version and never a gap. The SDK notifies connected clients of the
// change.
func (s *Server) Sync(ctx context.Context) error {
	cat, err := s.cfg.Client.Catalog(ctx)
	if err != nil {
		return err
	}
	want := map[string]postern.Binding{}
	for _, b := range cat {
		if b.Kind == postern.KindPostgres || b.Kind == postern.KindHTTP {
			want[b.Name] = b
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("mcpserver: closed")
	}
	var removed, added []string
	retire := func(sv *served) {
		// Closing a pool waits for the calls using it: not under s.mu.
		s.closing.Go(func() { sv.close() })
	}
	for name, sv := range s.served {
		if _, ok := want[name]; ok {
			continue
		}
		s.mcp.RemoveTools(sv.tools...)
		retire(sv)
		delete(s.served, name)
		removed = append(removed, sv.tools...)
	}
	for name, b := range want {
		old := s.served[name]
		if old != nil && sameBinding(b, old.b) {
			continue
		}
		h, err := binding.OpenWith(s.cfg.Client, name)
		if err != nil {
			s.log.Warn("mcp: binding has no tools", "binding", name, "err", err)
			continue
		}
		sv := &served{b: b, h: h}
		// Adding a tool under a name in use replaces it.
		switch b.Kind {
		case postern.KindPostgres:
			sv.tools = s.addPostgres(sv)
		case postern.KindHTTP:
			sv.tools = s.addHTTP(sv)
		}
		s.served[name] = sv
		added = append(added, sv.tools...)
		if old != nil {
			var gone []string
			for _, tl := range old.tools {
				if !slices.Contains(sv.tools, tl) {
					gone = append(gone, tl)
				}
			}
			s.mcp.RemoveTools(gone...)
			removed = append(removed, gone...)
			retire(old)
		}
	}
	if len(removed)+len(added) > 0 {
		slices.Sort(added)
		slices.Sort(removed)
		s.log.Info("mcp: tools changed", "added", strings.Join(added, ","), "removed", strings.Join(removed, ","), "bindings", len(s.served))
	}
	return nil
}

func sameBinding(a, b postern.Binding) bool {
	return a.Name == b.Name && a.Kind == b.Kind && a.Environment == b.Environment &&
		a.Description == b.Description && a.ReadOnly == b.ReadOnly && slices.Equal(a.Labels, b.Labels)
}

// Watch keeps the tools in step with the catalog until ctx ends: it
// syncs, then waits for the relay's next catalog. It also syncs every
// resync period, which reconnects a session the relay has dropped (a
// relay restart), since nothing else would while no tool is called.
func (s *Server) Watch(ctx context.Context, resync time.Duration) {
	if resync <= 0 {
		resync = 30 * time.Second
	}
	retry := time.Duration(0) // after a failed sync: sooner than resync
	for {
		changed := s.cfg.Client.CatalogChanged()
		sctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
		err := s.Sync(sctx)
		cancel()
		wait := resync
		if err != nil && ctx.Err() == nil {
			// A catalog that could not be read (a relay restarting, a
			// timeout) is asked again soon, backing off: the tools must
			// not stay stale for a whole resync period.
			retry = min(max(2*retry, 250*time.Millisecond), resync)
			wait = retry
			s.log.Warn("mcp: reading the catalog", "err", err, "retry_in", wait)
		} else {
			retry = 0
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-changed:
		case <-t.C:
		}
		t.Stop()
	}
}

// Tools returns the names of the tools the server has now, sorted.
func (s *Server) Tools() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var names []string
	for _, sv := range s.served {
		names = append(names, sv.tools...)
	}
	slices.Sort(names)
	return names
}

// Close closes every binding's pooled connections and removes the tools.
// It does not close the mesh client.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	all := s.served
	s.served = map[string]*served{}
	s.mu.Unlock()
	var errs []error
	for _, sv := range all {
		s.mcp.RemoveTools(sv.tools...)
		errs = append(errs, sv.close())
	}
	s.closing.Wait()
	return errors.Join(errs...)
}

// maxToolName is the longest tool name made. MCP allows 128 characters
// of A-Z a-z 0-9 _ - .; some clients allow only 64 of A-Z a-z 0-9 _ -
// (Anthropic's API, for one), so names keep to that.
const maxToolName = 64

// ToolName returns the name of a binding's tool: "<binding>_<verb>", as
// in staging-db_query. A binding name that holds a character some
// clients refuse in tool names ("." or "/"), or that would make the name
// longer than 64 characters, is cut down to what fits with those
// characters made "_", and followed by 8 hex digits of its SHA-256, so
// that two bindings never share a tool name and a binding's tool keeps
// its name whatever else is in the catalog.
func ToolName(bindingName, verb string) string {
	clean := true
	for _, r := range bindingName {
		if !toolRune(r) {
			clean = false
			break
		}
	}
	name := bindingName + "_" + verb
	if clean && len(name) <= maxToolName {
		return name
	}
	sum := sha256.Sum256([]byte(bindingName))
	tail := "_" + hex.EncodeToString(sum[:4]) + "_" + verb
	var b strings.Builder
	for _, r := range bindingName {
		if b.Len()+len(tail) >= maxToolName {
			break
		}
		if !toolRune(r) {
			r = '_'
		}
		b.WriteRune(r)
	}
	return b.String() + tail
}

func toolRune(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-'
}

// about describes a binding for a tool description.
func about(b postern.Binding) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "binding %q (%s", b.Name, b.Kind)
	if b.Environment != "" {
		fmt.Fprintf(&sb, ", environment %s", b.Environment)
	}
	if len(b.Labels) > 0 {
		fmt.Fprintf(&sb, ", labels %s", strings.Join(b.Labels, ", "))
	}
	sb.WriteString(")")
	if d := strings.TrimSpace(b.Description); d != "" {
		fmt.Fprintf(&sb, ": %s", strings.TrimSuffix(d, "."))
	}
	sb.WriteString(".")
	if b.ReadOnly {
		sb.WriteString(" This agent's policy lets it only read here: a statement or request that writes is refused.")
	}
	return sb.String()
}

// logCall logs one tool call: which tool, which binding, how long,
// and how it ended. The relay's and connector's audit events name the
// tool of each connection and statement (DetailTool); since pooled
// connections serve many calls, this line is what counts the calls.
func (s *Server) logCall(tool, bindingName string, start time.Time, err error, attrs ...any) {
	attrs = append([]any{"tool", tool, "binding", bindingName, "duration", time.Since(start).Round(time.Microsecond)}, attrs...)
	if err != nil {
		s.log.Info("mcp: tool call", append(attrs, "outcome", "error", "err", err)...)
		return
	}
	s.log.Info("mcp: tool call", append(attrs, "outcome", "ok")...)
}

// toolError is the message a model reads: a *postern.Error as it is (it
// says the binding, the reason and the deciding policies), even when pgx
// or net/http wrapped it, and a timeout said as one.
func toolError(err error) error {
	if err == nil {
		return nil
	}
	var pe *postern.Error
	if errors.As(err, &pe) {
		return pe
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("timed out: %w", err)
	}
	return err
}

func ptr[T any](v T) *T { return &v }

// DetailTool is the open detail that names the tool a binding stream
// serves: every stream a tool call opens carries it, so the relay's open
// and close events, and the connector's statement and request events,
// name the tool. Policy reads it as context.details.mcp_tool; it is this
// server's word, which the agent's identity already vouches for, not a
// verified fact.
const DetailTool = "mcp_tool"

func withTool(ctx context.Context, tool string) context.Context {
	return mesh.WithDetail(ctx, DetailTool, tool)
}
