package forward

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/postern/postern"
	"github.com/postern/postern/internal/quicnet"
)

// Startup-phase request codes (the first four bytes after the length),
// as mesh/connector reads them.
const (
	pgSSLRequest    = 80877103
	pgGSSEncRequest = 80877104
	pgCancelRequest = 80877102
)

// forwardPostgres forwards a PostgreSQL client. It answers the client's
// encryption requests itself and sends its StartupMessage with the open,
// so that the whole login through the mesh is one round trip, and a
// refusal finds the client waiting for the server's authentication
// answer: it gets a FATAL ErrorResponse instead.
func (f *Forwarder) forwardPostgres(fc *fconn, name string) result {
	local := fc.local
	local.SetReadDeadline(time.Now().Add(startupTimeout))
	startup, cancel, err := pgStartup(local)
	local.SetReadDeadline(time.Time{})
	if err != nil {
		abortLocal(local)
		if errors.Is(err, io.EOF) {
			err = nil // the client went away before its startup message
		}
		return result{err: err}
	}
	up, err := f.dial(fc, name, true)
	if err != nil {
		if cancel {
			abortLocal(local)
			return result{err: err, refused: true}
		}
		r := f.refuse(fc, postern.KindPostgres, nil, err)
		local.Close()
		return r
	}
	r := result{up: int64(len(startup))}
	// Before the welcome, the client waits for the server's answer to
	// its startup: whatever went wrong, say so there (a cancel request
	// has no answer).
	fail := func(err error) result {
		var pe *postern.Error
		r.err, r.refused = err, errors.As(err, &pe)
		if cancel {
			abortLocal(local)
		} else {
			local.SetWriteDeadline(time.Now().Add(startupTimeout))
			pgRefuse(local, err)
			local.Close()
		}
		up.Close()
		return r
	}
	if _, err := up.Write(startup); err != nil {
		return fail(err)
	}
	// The first read carries the relay's answer, then the connector's
	// welcome (AuthenticationOk ... ReadyForQuery).
	up.SetReadDeadline(time.Now().Add(f.openTimeout()))
	buf := make([]byte, 16<<10)
	n, err := up.Read(buf)
	up.SetReadDeadline(time.Time{})
	if n == 0 && err != nil && !(cancel && errors.Is(err, io.EOF)) {
		return fail(err)
	}
	if n > 0 {
		if _, werr := local.Write(buf[:n]); werr != nil {
			abortLocal(local)
			up.Close()
			r.down, r.err = int64(n), werr
			return r
		}
	}
	up2, down, err := quicnet.Splice(halfConn(local), halfConn(up))
	r.up += up2
	r.down = int64(n) + down
	r.err = err
	return r
}

// pgStartup reads a client's startup phase: it declines SSL and GSS
// encryption ('N': the mesh encrypts) and returns the StartupMessage or
// CancelRequest that follows, with its length, as the client sent it.
func pgStartup(rw io.ReadWriter) (msg []byte, cancel bool, err error) {
	for range 3 { // at most an SSLRequest and a GSSEncRequest first
		var hdr [8]byte
		if _, err := io.ReadFull(rw, hdr[:]); err != nil {
			return nil, false, err
		}
		n := binary.BigEndian.Uint32(hdr[:4])
		// PostgreSQL's own bounds: 8 bytes, and 10000 for the startup packet.
		if n < 8 || n > 10000 {
			return nil, false, fmt.Errorf("forward: a startup message of %d bytes: not the PostgreSQL protocol (TLS? use sslmode=disable or prefer: the mesh encrypts)", n)
		}
		switch binary.BigEndian.Uint32(hdr[4:]) {
		case pgSSLRequest, pgGSSEncRequest:
			if _, err := rw.Write([]byte{'N'}); err != nil {
				return nil, false, err
			}
			continue
		case pgCancelRequest:
			cancel = true
		}
		msg = make([]byte, n)
		copy(msg, hdr[:])
		if _, err := io.ReadFull(rw, msg[8:]); err != nil {
			return nil, false, err
		}
		return msg, cancel, nil
	}
	return nil, false, errors.New("forward: too many encryption requests before the startup message")
}

// pgRefuse answers a client waiting for authentication with a FATAL
// ErrorResponse saying why the open failed.
func pgRefuse(w io.Writer, err error) {
	msg := &pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: pgCode(err), Message: message(err)}
	buf, eerr := msg.Encode(nil)
	if eerr != nil {
		return
	}
	w.Write(buf)
}

// message is what a client is told of err: a *postern.Error says
// "postern: open ...:" itself; anything else is forward's.
func message(err error) string {
	var pe *postern.Error
	if errors.As(err, &pe) {
		return err.Error()
	}
	return "postern: forward: " + err.Error()
}

// pgCode is the SQLSTATE of a refused open: class 28 (invalid
// authorization) for what the agent's identity decides, 53300 for a
// limit, 08001 (unable to establish the connection) for everything else.
func pgCode(err error) string {
	switch {
	case errors.Is(err, postern.ErrDenied), errors.Is(err, postern.ErrUnauthenticated), errors.Is(err, postern.ErrUnknownBinding):
		return "28000"
	case errors.Is(err, postern.ErrLimitExceeded):
		return "53300"
	}
	return "08001"
}

// httpRefuse answers an HTTP client with an error status saying why the
// open failed, and half-closes.
func httpRefuse(c net.Conn, err error) {
	code := httpStatus(err)
	body := message(err) + "\n"
	fmt.Fprintf(c, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		code, http.StatusText(code), len(body), body)
	if h, ok := c.(quicnet.HalfConn); ok {
		h.CloseWrite()
	}
}

func httpStatus(err error) int {
	switch {
	case errors.Is(err, postern.ErrDenied), errors.Is(err, postern.ErrUnauthenticated):
		return http.StatusForbidden
	case errors.Is(err, postern.ErrUnknownBinding):
		return http.StatusNotFound
	case errors.Is(err, postern.ErrUpstream):
		return http.StatusBadGateway
	case errors.Is(err, postern.ErrTimeout):
		return http.StatusGatewayTimeout
	}
	return http.StatusServiceUnavailable
}

// sniff reads a client's first bytes and guesses its protocol: postgres
// for a PostgreSQL startup-phase message, http for an HTTP/1 request
// line, "" otherwise. It returns what it read.
func sniff(r io.Reader) (kind string, prefix []byte) {
	var buf [8]byte
	n, _ := io.ReadFull(r, buf[:])
	prefix = buf[:n]
	if n < 8 {
		return "", prefix
	}
	length := binary.BigEndian.Uint32(buf[:4])
	code := binary.BigEndian.Uint32(buf[4:])
	switch {
	case length == 8 && (code == pgSSLRequest || code == pgGSSEncRequest):
		return postern.KindPostgres, prefix
	case length == 16 && code == pgCancelRequest:
		return postern.KindPostgres, prefix
	case length > 8 && length <= 10000 && code>>16 == 3: // protocol 3.x
		return postern.KindPostgres, prefix
	}
	for i, b := range prefix {
		if b == ' ' && i > 0 {
			return postern.KindHTTP, prefix
		}
		if b < 'A' || b > 'Z' {
			break
		}
	}
	return "", prefix
}
