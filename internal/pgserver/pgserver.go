// Package pgserver runs a real, throwaway PostgreSQL server: a fresh
// cluster in a temporary directory, listening on a free 127.0.0.1 port
// only (no Unix socket), with scram-sha-256 password authentication for
// every TCP login, and fsync off for speed. `postern dev` and the
// benchmark use it directly; tests use it through package pgtest.
//
// initdb and postgres refuse to run as root. When the caller runs as root,
// both run as the "postgres" OS user, in a directory that user owns.
package pgserver

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/postern/postern/internal/pgconnstr"
	"github.com/postern/postern/transport"
)

// Server is a running PostgreSQL server.
type Server struct {
	// Addr is the server's address, 127.0.0.1:port.
	Addr string
	Host string
	Port int
	// User and Password are the superuser's login.
	User     string
	Password string
	// CertFile is the PEM of the server's self-signed certificate for
	// 127.0.0.1: TLS is on (and optional), and a client that trusts this
	// file can use sslmode=verify-full.
	CertFile string
	// Dir holds the cluster and the server's log. Stop removes it.
	Dir string

	cmd     *exec.Cmd
	exited  chan struct{} // closed when the server process has exited
	waitErr error

	stopOnce sync.Once
	stopErr  error
}

// ErrNotInstalled is returned by Start when the PostgreSQL binaries
// (initdb and postgres) are not found, or, as root, there is no postgres
// OS user to run them as.
var ErrNotInstalled = errors.New("pgserver: PostgreSQL is not installed")

// Start initializes a cluster in a new directory under dir (the
// system's temporary directory when dir is empty) and starts a server on
// it. The caller must call Stop. It returns an error matching
// ErrNotInstalled when PostgreSQL is missing. As root, the postgres OS user
// must be able to reach dir (t.TempDir() is not: its parents are 0700).
func Start(dir string) (*Server, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	cred, owner, err := runAs()
	if err != nil {
		return nil, err
	}
	if dir == "" {
		dir = os.TempDir()
	}
	base, err := os.MkdirTemp(dir, "postern-pg-")
	if err != nil {
		return nil, fmt.Errorf("pgserver: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(base)
		}
	}()
	// MkdirTemp makes base 0700 for the current user; the server's user
	// must own it (initdb insists on owning the data directory).
	if owner != nil {
		if err := os.Chown(base, owner.uid, owner.gid); err != nil {
			return nil, fmt.Errorf("pgserver: %w", err)
		}
	}
	s := &Server{User: "postgres", Password: randomHex(16), Dir: base, Host: "127.0.0.1"}
	pwfile := filepath.Join(base, "pwfile")
	if err := writeOwned(pwfile, s.Password+"\n", owner); err != nil {
		return nil, err
	}
	data := filepath.Join(base, "data")
	initdb := command(filepath.Join(bin, "initdb"), cred, base,
		"--pgdata="+data, "--username="+s.User, "--pwfile="+pwfile,
		"--auth=scram-sha-256", "--encoding=UTF8", "--locale=C",
		"--no-sync", "--no-instructions")
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("pgserver: initdb: %w\n%s", err, out)
	}
	os.Remove(pwfile)
	if err := s.writeCert(data, owner); err != nil {
		return nil, err
	}

	// Ports are picked by binding :0 and closing; another process may
	// take the port in between, so try a few.
	var lastErr error
	for range 3 {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s.Port = port
		s.Addr = net.JoinHostPort(s.Host, strconv.Itoa(port))
		if lastErr = s.start(bin, cred, data, owner); lastErr == nil {
			ok = true
			return s, nil
		}
	}
	return nil, lastErr
}

// start runs postgres on s.Port and waits until it accepts a login.
func (s *Server) start(bin string, cred *syscall.Credential, data string, owner *ids) error {
	logPath := filepath.Join(s.Dir, "postgres.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("pgserver: %w", err)
	}
	defer logf.Close() // the child has its own descriptor
	cmd := command(filepath.Join(bin, "postgres"), cred, s.Dir,
		"-D", data,
		"-p", strconv.Itoa(s.Port),
		"-c", "listen_addresses="+s.Host,
		"-c", "unix_socket_directories=",
		"-c", "fsync=off",
		"-c", "synchronous_commit=off",
		"-c", "full_page_writes=off",
		"-c", "shared_buffers=16MB",
		"-c", "max_connections=200",
		"-c", "password_encryption=scram-sha-256",
		"-c", "log_min_messages=warning",
		"-c", "ssl=on",
		"-c", "ssl_cert_file="+filepath.Join(data, "server.crt"),
		"-c", "ssl_key_file="+filepath.Join(data, "server.key"),
	)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("pgserver: start postgres: %w", err)
	}
	s.cmd = cmd
	s.exited = make(chan struct{})
	go func() {
		s.waitErr = cmd.Wait()
		close(s.exited)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := s.ping()
		if err == nil {
			return nil
		}
		select {
		case <-s.exited:
			log, _ := os.ReadFile(logPath)
			return fmt.Errorf("pgserver: postgres exited: %v\n%s", s.waitErr, tail(log, 4096))
		default:
		}
		if time.Now().After(deadline) {
			s.kill()
			log, _ := os.ReadFile(logPath)
			return fmt.Errorf("pgserver: postgres not ready after 30s: %v\n%s", err, tail(log, 4096))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *Server) ping() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c, err := pgconn.Connect(ctx, s.ConnString(s.User, s.Password, "postgres"))
	if err != nil {
		return err
	}
	return c.Close(ctx)
}

func (s *Server) kill() {
	s.cmd.Process.Kill()
	<-s.exited
}

// Stop shuts the server down (fast shutdown: sessions are ended) and
// removes its directory. It is safe to call more than once.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		if s.cmd != nil {
			s.cmd.Process.Signal(syscall.SIGINT)
			select {
			case <-s.exited:
			case <-time.After(15 * time.Second):
				s.kill()
			}
		}
		if err := os.RemoveAll(s.Dir); err != nil {
			s.stopErr = fmt.Errorf("pgserver: %w", err)
		}
	})
	return s.stopErr
}

// ConnString is a connection string for user on database at the server,
// TLS off.
func (s *Server) ConnString(user, password, database string) string {
	return fmt.Sprintf("host=%s port=%d user=%s password=%s dbname=%s sslmode=disable",
		s.Host, s.Port, pgconnstr.Quote(user), pgconnstr.Quote(password), pgconnstr.Quote(database))
}

// Exec runs sql as the superuser on database.
func (s *Server) Exec(ctx context.Context, database, sql string) error {
	c, err := pgconn.Connect(ctx, s.ConnString(s.User, s.Password, database))
	if err != nil {
		return fmt.Errorf("pgserver: %w", err)
	}
	defer c.Close(context.Background())
	if _, err := c.Exec(ctx, sql).ReadAll(); err != nil {
		return fmt.Errorf("pgserver: %w", err)
	}
	return nil
}

// CreateRole creates a role that can log in with password (stored as a
// SCRAM-SHA-256 verifier).
func (s *Server) CreateRole(ctx context.Context, name, password string) error {
	return s.Exec(ctx, "postgres", fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD %s", quoteIdent(name), quoteLiteral(password)))
}

// PrependHBA puts lines at the top of the server's pg_hba.conf, where
// they take precedence over the scram-sha-256 rule every TCP login
// otherwise gets, and reloads the configuration: a test can make the
// server ask one role for a cleartext password ("host all clear_user
// 127.0.0.1/32 password") or an MD5 digest. The reload is asynchronous;
// the caller waits for the new rule to apply (a login that sees it).
func (s *Server) PrependHBA(ctx context.Context, lines ...string) error {
	path := filepath.Join(s.Dir, "data", "pg_hba.conf")
	old, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("pgserver: %w", err)
	}
	// WriteFile keeps the file's owner (the server's user) and mode.
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"+string(old)), 0o600); err != nil {
		return fmt.Errorf("pgserver: %w", err)
	}
	return s.Exec(ctx, "postgres", "SELECT pg_reload_conf()")
}

// CreateDatabase creates a database owned by owner.
func (s *Server) CreateDatabase(ctx context.Context, name, owner string) error {
	return s.Exec(ctx, "postgres", fmt.Sprintf("CREATE DATABASE %s OWNER %s", quoteIdent(name), quoteIdent(owner)))
}

// writeCert makes the server's TLS certificate and key, in the data
// directory (the key must belong to the server's user, mode 0600), and a
// copy of the certificate for clients.
func (s *Server) writeCert(data string, owner *ids) error {
	cert, err := transport.SelfSigned(s.Host)
	if err != nil {
		return fmt.Errorf("pgserver: %w", err)
	}
	key, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		return fmt.Errorf("pgserver: %w", err)
	}
	certPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}))
	keyPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}))
	s.CertFile = filepath.Join(s.Dir, "ca.pem")
	for _, f := range []struct{ path, content string }{
		{filepath.Join(data, "server.crt"), certPEM},
		{filepath.Join(data, "server.key"), keyPEM},
		{s.CertFile, certPEM},
	} {
		if err := writeOwned(f.path, f.content, owner); err != nil {
			return err
		}
	}
	return os.Chmod(s.CertFile, 0o644)
}

// binDir finds the directory holding initdb and postgres: that of initdb
// on PATH (symbolic links resolved: initdb looks for postgres beside
// itself), else the newest /usr/lib/postgresql/*/bin.
func binDir() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			dir := filepath.Dir(real)
			if isExec(filepath.Join(dir, "postgres")) {
				return dir, nil
			}
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int { return version(b) - version(a) })
	for _, d := range dirs {
		if isExec(filepath.Join(d, "initdb")) && isExec(filepath.Join(d, "postgres")) {
			return d, nil
		}
	}
	return "", fmt.Errorf("%w: no initdb and postgres on PATH or in /usr/lib/postgresql/*/bin", ErrNotInstalled)
}

func version(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

func isExec(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

type ids struct{ uid, gid int }

// runAs returns the credentials to run PostgreSQL with: none when not
// root, the postgres OS user's when root.
func runAs() (*syscall.Credential, *ids, error) {
	if os.Geteuid() != 0 {
		return nil, nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, nil, fmt.Errorf("%w: running as root and there is no postgres OS user to run the server as: %v", ErrNotInstalled, err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil {
		return nil, nil, fmt.Errorf("pgserver: postgres OS user has uid %q gid %q", u.Uid, u.Gid)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, &ids{uid, gid}, nil
}

// command builds a command run as cred in dir. The server dies with the
// test process (Pdeathsig), so that a killed test leaves no postgres
// behind.
func command(path string, cred *syscall.Credential, dir string, args ...string) *exec.Cmd {
	cmd := exec.Command(path, args...)
	cmd.Dir = dir
	cmd.Env = []string{"LC_ALL=C", "PATH=" + filepath.Dir(path) + ":/usr/bin:/bin", "HOME=" + dir}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGQUIT, Setpgid: true}
	return cmd
}

func writeOwned(path, content string, owner *ids) error {
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		return fmt.Errorf("pgserver: %w", err)
	}
	if owner != nil {
		if err := os.Chown(path, owner.uid, owner.gid); err != nil {
			return fmt.Errorf("pgserver: %w", err)
		}
	}
	return nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pgserver: find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

func quoteLiteral(s string) string { return `'` + strings.ReplaceAll(s, `'`, `''`) + `'` }
