package forward

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/postern/postern"
	"github.com/postern/postern/internal/quicnet"
	"github.com/postern/postern/mesh"
)

// SniffTimeout bounds the wait for a client's first bytes after a refused
// open of a binding whose kind is unknown.
const SniffTimeout = 2 * time.Second

// startupTimeout bounds a PostgreSQL client's startup phase, as the
// connector bounds it.
const startupTimeout = 15 * time.Second

// Forwarder carries connections accepted by Serve over binding streams.
// Client is required; the zero value of every other field works.
type Forwarder struct {
	// Client opens the binding streams.
	Client *mesh.Client
	// Logger receives one line per connection. Nil means silent.
	Logger *slog.Logger
	// OpenTimeout bounds an open up to the binding's first answer
	// (for PostgreSQL, the connector's login upstream). Zero means 30s.
	OpenTimeout time.Duration

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*fconn]struct{}
	closing   bool
	wg        sync.WaitGroup
}

// fconn is one forwarded connection, for Shutdown to cut.
type fconn struct {
	local net.Conn
	// ctx ends when the connection is cut: it bounds the open.
	ctx    context.Context
	cancel context.CancelFunc
	mu     sync.Mutex
	up     net.Conn // the binding stream, once opened
	cut    bool
}

func (c *fconn) setRemote(r net.Conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cut {
		r.Close()
		return false
	}
	c.up = r
	return true
}

func (c *fconn) abort() {
	c.mu.Lock()
	c.cut = true
	up := c.up
	c.mu.Unlock()
	c.cancel()
	abortLocal(c.local)
	if up != nil {
		up.Close()
	}
}

func (c *fconn) wasCut() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cut
}

// Serve accepts connections on ln and forwards each to the binding called
// name, until Shutdown; it then returns nil. Any other error from Accept
// ends it with that error. Serve closes ln when it returns.
func (f *Forwarder) Serve(ln net.Listener, name string) error {
	f.mu.Lock()
	if f.closing {
		f.mu.Unlock()
		ln.Close()
		return nil
	}
	if f.listeners == nil {
		f.listeners = map[net.Listener]struct{}{}
	}
	f.listeners[ln] = struct{}{}
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.listeners, ln)
		f.mu.Unlock()
		ln.Close()
	}()
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			f.mu.Lock()
			closing := f.closing
			f.mu.Unlock()
			if closing {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporaryAccept(err) {
				// Out of file descriptors, say: wait, as net/http does.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		fc := &fconn{local: c}
		fc.ctx, fc.cancel = context.WithCancel(context.Background())
		f.mu.Lock()
		if f.closing {
			f.mu.Unlock()
			c.Close()
			return nil
		}
		if f.conns == nil {
			f.conns = map[*fconn]struct{}{}
		}
		f.conns[fc] = struct{}{}
		f.wg.Add(1)
		f.mu.Unlock()
		go func() {
			defer f.wg.Done()
			f.handle(fc, name)
			fc.cancel()
			f.mu.Lock()
			delete(f.conns, fc)
			f.mu.Unlock()
		}()
	}
}

func isTemporaryAccept(err error) bool {
	var te interface{ Temporary() bool }
	return errors.As(err, &te) && te.Temporary()
}

// Shutdown stops accepting and waits for the connections open to finish.
// When ctx ends first, it cuts them (the local side with a TCP reset),
// waits for their handlers to return and returns ctx's error.
func (f *Forwarder) Shutdown(ctx context.Context) error {
	f.mu.Lock()
	f.closing = true
	for ln := range f.listeners {
		ln.Close()
	}
	f.mu.Unlock()
	done := make(chan struct{})
	go func() { f.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	f.mu.Lock()
	for c := range f.conns {
		c.abort()
	}
	f.mu.Unlock()
	<-done
	return ctx.Err()
}

// Active returns how many connections are being forwarded.
func (f *Forwarder) Active() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.conns)
}

func (f *Forwarder) openTimeout() time.Duration {
	if f.OpenTimeout > 0 {
		return f.OpenTimeout
	}
	return 30 * time.Second
}

func (f *Forwarder) log() *slog.Logger {
	if f.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return f.Logger
}

// result is how one connection went, for its log line.
type result struct {
	up, down int64 // bytes local to binding, binding to local
	err      error
	refused  bool // err is the open's refusal (or its failure)
}

// handle forwards one connection and logs how it went.
func (f *Forwarder) handle(fc *fconn, name string) {
	start := time.Now()
	kind := f.kind(fc.ctx, name)
	var r result
	switch kind {
	case postern.KindPostgres:
		r = f.forwardPostgres(fc, name)
	case postern.KindHTTP, postern.KindTCP:
		r = f.forwardEarly(fc, name, kind)
	default:
		r = f.forwardUnknown(fc, name)
	}
	attrs := []any{
		"binding", name, "kind", kindOrUnknown(kind), "peer", fc.local.RemoteAddr().String(),
		"bytes_up", r.up, "bytes_down", r.down, "duration", time.Since(start).Round(time.Microsecond),
	}
	switch {
	case fc.wasCut():
		f.log().Warn("forward: connection cut at the end of the drain", append(attrs, "outcome", "cut")...)
	case r.refused:
		attrs = append(attrs, "outcome", "refused", "err", r.err)
		var pe *postern.Error
		if errors.As(r.err, &pe) {
			if pe.Reason != "" {
				attrs = append(attrs, "reason", pe.Reason)
			}
			if len(pe.Policies) > 0 {
				attrs = append(attrs, "policies", pe.Policies)
			}
		}
		f.log().Warn("forward: open refused", attrs...)
	case r.err != nil && !quicnet.IsClosed(r.err):
		f.log().Warn("forward: connection failed", append(attrs, "outcome", "failed", "err", r.err)...)
	default:
		f.log().Info("forward: connection closed", append(attrs, "outcome", "ok")...)
	}
}

func kindOrUnknown(k string) string {
	if k == "" {
		return "unknown"
	}
	return k
}

// kind returns the kind of the binding called name from the agent's
// catalog, or "" when it is not there.
func (f *Forwarder) kind(ctx context.Context, name string) string {
	ctx, cancel := context.WithTimeout(ctx, f.openTimeout())
	defer cancel()
	b, err := f.Client.Lookup(ctx, name)
	if err != nil {
		return ""
	}
	return b.Kind
}

// dial opens the binding stream, early or not, bounded by OpenTimeout.
func (f *Forwarder) dial(fc *fconn, name string, early bool) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(fc.ctx, f.openTimeout())
	defer cancel()
	dial := f.Client.Dial
	if early {
		dial = f.Client.DialEarly
	}
	up, err := dial(ctx, "tcp", name)
	if err != nil {
		return nil, err
	}
	if !fc.setRemote(up) {
		return nil, net.ErrClosed
	}
	return up, nil
}

// forwardEarly forwards a tcp or http connection over a DialEarly
// stream. The refusal of the open is the first read of the stream; an
// http client is then answered with an HTTP error.
func (f *Forwarder) forwardEarly(fc *fconn, name, kind string) result {
	up, err := f.dial(fc, name, true)
	if err != nil {
		return f.refuse(fc, kind, fc.local, err)
	}
	local := halfConn(fc.local)
	remote := halfConn(up)
	first := &firstRead{HalfConn: remote}
	var upBytes int64
	done := make(chan error, 1)
	go func() {
		n, err := quicnet.CopyHalf(remote, local)
		upBytes = n
		var pe *postern.Error
		if err != nil && !errors.As(err, &pe) {
			// The local side failed, or the stream did: end both, so that
			// neither peer takes it for a clean end. A write refused with
			// the open is left to the other direction, which answers it.
			up.Close()
			abortLocal(fc.local)
		}
		done <- err
	}()
	down, err := quicnet.CopyHalf(local, first)
	if rerr := first.refusal(); rerr != nil {
		// Nothing came back: answer the client as its protocol expects.
		// The copy above still reads the client (its request), so the
		// answer is written without reading; the client closes once it
		// has it, which ends that copy, or the wait below does.
		r := f.refuse(fc, kind, nil, rerr)
		select {
		case <-done:
		case <-time.After(SniffTimeout):
			abortLocal(fc.local)
			<-done
		}
		fc.local.Close()
		up.Close()
		r.up = upBytes
		return r
	}
	if err != nil {
		abortLocal(fc.local)
		up.Close()
	}
	upErr := <-done
	fc.local.Close()
	up.Close()
	if err == nil {
		err = upErr
	}
	return result{up: upBytes, down: down, err: err}
}

// firstRead records a refusal of the open, which the first Read of a
// DialEarly stream returns.
type firstRead struct {
	quicnet.HalfConn
	mu      sync.Mutex
	read    bool
	refused error
}

func (r *firstRead) Read(p []byte) (int, error) {
	n, err := r.HalfConn.Read(p)
	r.mu.Lock()
	if !r.read {
		r.read = true
		var pe *postern.Error
		if n == 0 && errors.As(err, &pe) {
			r.refused = err
		}
	}
	r.mu.Unlock()
	return n, err
}

func (r *firstRead) refusal() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.refused
}

// forwardUnknown forwards a connection to a binding not in the catalog.
// It waits for the relay's answer before reading anything from the
// client, so that a refusal can be answered in the client's protocol.
func (f *Forwarder) forwardUnknown(fc *fconn, name string) result {
	up, err := f.dial(fc, name, false)
	if err != nil {
		return f.refuse(fc, "", fc.local, err)
	}
	var r result
	r.up, r.down, r.err = quicnet.Splice(halfConn(fc.local), halfConn(up))
	return r
}

// refuse answers a refused or failed open on the local connection, as a
// server of kind would, and returns the result to log. in is where the
// client's bytes are read from, or nil when something else reads them:
// the answer is then written without reading the client first. With in
// set, kind "" is guessed from the client's first bytes, and the local
// connection is closed; with in nil, closing is the caller's.
func (f *Forwarder) refuse(fc *fconn, kind string, in io.Reader, err error) result {
	r := result{err: err, refused: true}
	local := fc.local
	if in != nil && kind == "" {
		// Only after a refusal: the client's bytes are going nowhere.
		local.SetReadDeadline(time.Now().Add(SniffTimeout))
		var prefix []byte
		kind, prefix = sniff(local)
		in = io.MultiReader(bytes.NewReader(prefix), local)
	}
	local.SetDeadline(time.Now().Add(startupTimeout))
	switch kind {
	case postern.KindPostgres:
		if in != nil {
			if _, cancel, serr := pgStartup(readWriter{in, local}); serr != nil || cancel {
				abortLocal(local)
				return r
			}
		}
		pgRefuse(local, err)
	case postern.KindHTTP:
		httpRefuse(local, err)
		if in != nil {
			// Read the rest of the request, so that closing does not
			// reset the connection under the answer.
			local.SetReadDeadline(time.Now().Add(SniffTimeout))
			io.Copy(io.Discard, io.LimitReader(in, 1<<20))
		}
	default:
		abortLocal(local)
		return r
	}
	if in != nil {
		local.Close()
	}
	return r
}

// abortLocal ends a local connection with a TCP reset.
func abortLocal(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

// halfConn gives c the half-close that splicing uses: TCP, Unix and
// binding connections have one; anything else closes whole.
func halfConn(c net.Conn) quicnet.HalfConn {
	if h, ok := c.(quicnet.HalfConn); ok {
		return h
	}
	return closeWriteByClose{c}
}

type closeWriteByClose struct{ net.Conn }

func (c closeWriteByClose) CloseWrite() error { return c.Close() }

type readWriter struct {
	io.Reader
	io.Writer
}
