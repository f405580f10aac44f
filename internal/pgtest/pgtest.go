// Package pgtest runs a real PostgreSQL server for tests (see package
// pgserver): Start is for one test; Shared gives every test of a package
// the same server, stopped by Main when the tests end.
//
// When PostgreSQL is not installed, Start and Shared skip the test, unless
// the environment variable CI is set: then they fail it, so that CI never
// passes by skipping.
package pgtest

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/postern/postern/internal/pgserver"
)

// Server is a running PostgreSQL server.
type Server = pgserver.Server

// ErrNotInstalled matches the error of a server that cannot start because
// PostgreSQL is missing.
var ErrNotInstalled = pgserver.ErrNotInstalled

// StartServer starts a server outside a test; the caller must Stop it.
func StartServer(dir string) (*Server, error) { return pgserver.Start(dir) }

// Start starts a server for t and stops it when t ends. It skips t when
// PostgreSQL is missing, or fails it when the environment variable CI is
// set.
func Start(t testing.TB) *Server {
	t.Helper()
	s, err := StartServer("")
	if err != nil {
		skipOrFail(t, err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("pgtest: stop: %v", err)
		}
	})
	return s
}

func skipOrFail(t testing.TB, err error) {
	t.Helper()
	if errors.Is(err, ErrNotInstalled) && os.Getenv("CI") == "" {
		t.Skipf("%v (set CI=1 to make this a failure)", err)
	}
	t.Fatal(err)
}

var shared struct {
	mu  sync.Mutex
	s   *Server
	err error
}

// Shared returns the server shared by every test of the package, starting
// it at the first call. Use it with Main in TestMain, which stops it. It
// skips or fails t as Start does.
func Shared(t testing.TB) *Server {
	t.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.s == nil && shared.err == nil {
		shared.s, shared.err = StartServer("")
	}
	if shared.err != nil {
		skipOrFail(t, shared.err)
	}
	return shared.s
}

// Main wraps a *testing.M so that the server Shared started is stopped
// once the tests have run, before a leak check sees its goroutine:
//
//	func TestMain(m *testing.M) { goleak.VerifyTestMain(pgtest.Main(m)) }
func Main(m interface{ Run() int }) interface{ Run() int } { return mainRunner{m} }

type mainRunner struct{ m interface{ Run() int } }

func (r mainRunner) Run() int {
	code := r.m.Run()
	shared.mu.Lock()
	s := shared.s
	shared.s, shared.err = nil, nil
	shared.mu.Unlock()
	if s != nil {
		if err := s.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			if code == 0 {
				code = 1
			}
		}
	}
	return code
}
