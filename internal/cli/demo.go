package cli

import (
	"crypto/subtle"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// The demo private services of postern dev. They listen on 127.0.0.1
// only: agents reach them through the mesh, by binding name.

// demoAPI is a small JSON API standing for a private internal service.
// It answers only requests carrying the Authorization header that the
// connector injects: the agent never holds that credential.
func demoAPI(name, env, authorization string) http.Handler {
	mux := http.NewServeMux()
	write := func(w http.ResponseWriter, code int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(v)
	}
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		write(w, http.StatusOK, map[string]any{
			"service":     name,
			"environment": env,
			"endpoints":   []string{"GET /orders", "GET /orders/{id}", "POST /echo"},
		})
	})
	orders := []map[string]any{
		{"id": 1, "item": "keyboard", "quantity": 2, "status": "shipped"},
		{"id": 2, "item": "monitor", "quantity": 1, "status": "processing"},
		{"id": 3, "item": "cable", "quantity": 5, "status": "delivered"},
	}
	mux.HandleFunc("GET /orders", func(w http.ResponseWriter, r *http.Request) {
		write(w, http.StatusOK, map[string]any{"orders": orders})
	})
	mux.HandleFunc("GET /orders/{id}", func(w http.ResponseWriter, r *http.Request) {
		for _, o := range orders {
			if r.PathValue("id") == jsonString(o["id"]) {
				write(w, http.StatusOK, o)
				return
			}
		}
		write(w, http.StatusNotFound, map[string]any{"error": "no such order"})
	})
	mux.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", r.Header.Get("Content-Type"))
		io.Copy(w, io.LimitReader(r.Body, 16<<20))
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if authorization != "" && subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), []byte(authorization)) != 1 {
			write(w, http.StatusUnauthorized, map[string]any{"error": "missing or wrong Authorization header: the connector injects it, agents never hold it"})
			return
		}
		mux.ServeHTTP(w, r)
	})
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// demoServer is a listener and what serves it, stopped by close.
type demoServer struct {
	addr  string
	close func()
}

// serveHTTP serves h on 127.0.0.1 at a free port.
func serveHTTP(h http.Handler) (*demoServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
	return &demoServer{addr: ln.Addr().String(), close: func() {
		srv.Close()
		<-done
	}}, nil
}

// serveEcho serves a TCP echo on 127.0.0.1 at a free port: each
// connection gets back what it sends, and a half-close when it half-closes.
func serveEcho() (*demoServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = map[net.Conn]struct{}{}
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				io.Copy(c, c)
				if tc, ok := c.(*net.TCPConn); ok {
					tc.CloseWrite()
				}
				c.Close()
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
			}()
		}
	}()
	return &demoServer{addr: ln.Addr().String(), close: func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}}, nil
}

// jsonHandler answers every request with v as JSON.
func jsonHandler(v any) http.Handler {
	b, _ := json.MarshalIndent(v, "", "  ")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(append(b, '\n'))
	})
}
