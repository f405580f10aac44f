package bench

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
)

// The upstream speaks a tiny protocol of its own, so that every path moves
// exactly the same bytes. A connection starts with one command byte:
//
//	'E'               echo every byte until EOF, then half-close
//	'U' <len:8 BE>    read len bytes, answer their SHA-256 (32 bytes)
//	'D' <len:8 BE>    send len bytes of the pattern, then half-close
//
// The pattern is a fixed pseudo-random block repeated, so the driver knows
// the SHA-256 of what should arrive without hashing during the run.
const (
	opEcho     = 'E'
	opUpload   = 'U'
	opDownload = 'D'
)

// ioSize is the size of every write in bulk transfers (and of copy
// buffers on the driver's side).
const ioSize = 64 << 10

const patternSize = 1 << 20

var pattern = sync.OnceValue(func() []byte {
	b := make([]byte, patternSize)
	r := rand.NewChaCha8([32]byte{'p', 'o', 's', 't', 'e', 'r', 'n'})
	r.Read(b)
	return b
})

var patternSums sync.Map // int64 -> [32]byte

// patternSum is the SHA-256 of the first n bytes of the repeated pattern.
func patternSum(n int64) [32]byte {
	if v, ok := patternSums.Load(n); ok {
		return v.([32]byte)
	}
	h := sha256.New()
	writePattern(h, n)
	var sum [32]byte
	h.Sum(sum[:0])
	patternSums.Store(n, sum)
	return sum
}

// writePattern writes n bytes of the pattern to w in ioSize writes.
func writePattern(w io.Writer, n int64) error {
	p := pattern()
	var off int64
	for n > 0 {
		k := min(int64(ioSize), n, int64(len(p))-off)
		if _, err := w.Write(p[off : off+k]); err != nil {
			return err
		}
		n -= k
		off = (off + k) % int64(len(p))
	}
	return nil
}

func header(op byte, n int64) []byte {
	h := make([]byte, 9)
	h[0] = op
	binary.BigEndian.PutUint64(h[1:], uint64(n))
	return h
}

type upstreamReady struct {
	Addr string `json:"addr"` // the bench protocol, TCP
	HTTP string `json:"http"` // an HTTP/1.1 server, TCP
}

// httpBody is what GET /small answers: a small JSON document, the size of
// a typical internal-API reply.
var httpBody = []byte(`{"id":42,"name":"staging widget","tags":["a","b","c"],"ok":true}` + "\n")

// upstreamConfig configures an upstream child.
type upstreamConfig struct {
	// Host is the address it listens on; empty means 127.0.0.1.
	Host string `json:"host,omitempty"`
}

func startUpstream(b []byte) (any, func(), error) {
	var cfg upstreamConfig
	if err := decodeConfig(b, &cfg); err != nil {
		return nil, nil, err
	}
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(cfg.Host, "0"))
	if err != nil {
		return nil, nil, err
	}
	hln, err := net.Listen("tcp", net.JoinHostPort(cfg.Host, "0"))
	if err != nil {
		ln.Close()
		return nil, nil, err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serveUpstream(c.(*net.TCPConn))
		}
	}()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /small", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(httpBody)
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(hln)
	stop := func() {
		ln.Close()
		srv.Close()
	}
	return upstreamReady{Addr: ln.Addr().String(), HTTP: hln.Addr().String()}, stop, nil
}

func serveUpstream(c *net.TCPConn) {
	defer c.Close()
	var op [1]byte
	if _, err := io.ReadFull(c, op[:]); err != nil {
		return
	}
	switch op[0] {
	case opEcho:
		buf := make([]byte, ioSize)
		if _, err := io.CopyBuffer(struct{ io.Writer }{c}, struct{ io.Reader }{c}, buf); err != nil {
			return
		}
		c.CloseWrite()
	case opUpload, opDownload:
		var l [8]byte
		if _, err := io.ReadFull(c, l[:]); err != nil {
			return
		}
		n := int64(binary.BigEndian.Uint64(l[:]))
		if op[0] == opUpload {
			h := sha256.New()
			buf := make([]byte, ioSize)
			if _, err := io.CopyBuffer(h, io.LimitReader(c, n), buf); err != nil {
				return
			}
			c.Write(h.Sum(nil))
		} else if writePattern(c, n) != nil {
			return
		}
		c.CloseWrite()
	default:
		return
	}
	io.Copy(io.Discard, c) // until the client closes
}

// upload sends n bytes of the pattern on c (whose first bytes must be the
// command) and checks the upstream's SHA-256 of what arrived.
func upload(c io.ReadWriter, n int64) error {
	if _, err := c.Write(header(opUpload, n)); err != nil {
		return err
	}
	if err := writePattern(c, n); err != nil {
		return err
	}
	var got [32]byte
	if _, err := io.ReadFull(c, got[:]); err != nil {
		return fmt.Errorf("reading the upstream's SHA-256: %w", err)
	}
	if got != patternSum(n) {
		return errors.New("integrity: the SHA-256 of what the upstream received differs from what was sent")
	}
	return nil
}

// download asks for n bytes and checks their SHA-256.
func download(c io.ReadWriter, n int64) error {
	if _, err := c.Write(header(opDownload, n)); err != nil {
		return err
	}
	h := sha256.New()
	buf := make([]byte, ioSize)
	got, err := io.CopyBuffer(h, io.LimitReader(c, n), buf)
	if err != nil {
		return err
	}
	if got != n {
		return fmt.Errorf("integrity: received %d bytes of %d", got, n)
	}
	var sum [32]byte
	h.Sum(sum[:0])
	if sum != patternSum(n) {
		return errors.New("integrity: the SHA-256 of what arrived differs from what the upstream sent")
	}
	return nil
}
