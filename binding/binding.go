package binding

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/postern/postern"
	"github.com/postern/postern/internal/wire"
	"github.com/postern/postern/mesh"
)

// ErrWrongKind is matched (errors.Is) by a *KindError.
var ErrWrongKind = errors.New("wrong kind of binding")

// KindError is the error of asking a binding for a handle of another kind:
// an *sql.DB from an http binding, say.
type KindError struct {
	Binding string // the binding's name
	Kind    string // its kind, as the catalog says
	Want    string // the kind the handle needs
}

func (e *KindError) Error() string {
	return fmt.Sprintf("binding: %s is %s %s binding, not %s", e.Binding, article(e.Kind), e.Kind, e.Want)
}

// Unwrap returns ErrWrongKind.
func (e *KindError) Unwrap() error { return ErrWrongKind }

func article(kind string) string {
	if kind == postern.KindHTTP || kind != "" && strings.ContainsRune("aeiou", rune(kind[0])) {
		return "an" // "an http" as it is read: "an aitch-tee-tee-pee"
	}
	return "a"
}

// Binding is a named private service reached through a mesh client. It
// hands out typed handles that open streams to the service on demand;
// Close closes those handles. A Binding is safe for concurrent use.
type Binding struct {
	name   string
	host   string // name as a URL or PostgreSQL host
	client *mesh.Client

	mu     sync.Mutex
	closed bool
	db     *sql.DB
	pool   *pgxpool.Pool
	rt     *roundTripper
}

// Open returns the binding called name on the default client (see
// DefaultClient), which is configured from the environment the first time
// it is needed. Like sql.Open, it does no network I/O: the first use of a
// handle connects to the relay, checks the binding's kind in the agent's
// catalog, and opens a stream. An error here is a configuration error
// that names the environment variable to fix, or an invalid name.
func Open(name string) (*Binding, error) {
	c, err := DefaultClient()
	if err != nil {
		return nil, err
	}
	return OpenWith(c, name)
}

// OpenWith is Open on a client the program manages itself. Closing the
// Binding does not close the client.
func OpenWith(c *mesh.Client, name string) (*Binding, error) {
	if c == nil {
		return nil, errors.New("binding: OpenWith: nil *mesh.Client")
	}
	// The wire protocol's rule, checked here so that a bad name fails at
	// Open rather than at first use.
	if wire.ValidName(name) != nil {
		return nil, &postern.Error{Op: "open", Binding: name, Err: postern.ErrUnknownBinding, Message: "not a valid binding name (1 to 128 of A-Z a-z 0-9 . _ / -)"}
	}
	host := strings.ReplaceAll(name, "/", ".")
	return &Binding{name: name, host: host, client: c}, nil
}

// Name returns the binding's name.
func (b *Binding) Name() string { return b.name }

// Client returns the mesh client the binding uses.
func (b *Binding) Client() *mesh.Client { return b.client }

// Kind returns the binding's kind (postern.KindPostgres, postern.KindHTTP or
// postern.KindTCP) from the agent's catalog, connecting to the relay if the
// client is not connected yet. A binding that is not in the catalog gives
// an error matching postern.ErrUnknownBinding.
func (b *Binding) Kind(ctx context.Context) (string, error) {
	bd, err := b.client.Lookup(ctx, b.name)
	if err != nil {
		return "", err
	}
	return bd.Kind, nil
}

// Dial opens a stream to a tcp binding and returns it as a net.Conn:
// raw bytes to and from the private service. The caller closes it; Close
// on the Binding does not.
func (b *Binding) Dial(ctx context.Context) (net.Conn, error) {
	if err := b.checkOpen(); err != nil {
		return nil, err
	}
	if err := b.expectKind(ctx, postern.KindTCP); err != nil {
		return nil, err
	}
	return b.client.Dial(ctx, "tcp", b.name)
}

// Close closes the handles the binding made (its *sql.DB, pgx pool and
// HTTP transport) and makes later calls for handles fail. Streams from
// Dial are the caller's to close. Close does not close the mesh client.
func (b *Binding) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	db, pool, rt := b.db, b.pool, b.rt
	b.mu.Unlock()
	var errs []error
	if db != nil {
		errs = append(errs, db.Close())
	}
	if pool != nil {
		pool.Close()
	}
	if rt != nil {
		rt.close()
	}
	return errors.Join(errs...)
}

func (b *Binding) checkOpen() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closedErr()
}

// closedErr is the error of using a closed binding; b.mu is held.
func (b *Binding) closedErr() error {
	if b.closed {
		return fmt.Errorf("binding: %s is closed: %w", b.name, net.ErrClosed)
	}
	return nil
}

// expectKind checks the binding's kind in the catalog. A binding missing
// from the catalog passes: the open that follows asks the relay, which
// says why (denied, and by which policy, or no such binding), which the
// catalog alone cannot.
func (b *Binding) expectKind(ctx context.Context, want string) error {
	bd, err := b.client.Lookup(ctx, b.name)
	switch {
	case errors.Is(err, postern.ErrUnknownBinding):
		return nil
	case err != nil:
		return err
	case bd.Kind != want:
		return &KindError{Binding: b.name, Kind: bd.Kind, Want: want}
	}
	return nil
}
