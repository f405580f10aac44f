package binding_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postern/postern"
	"github.com/postern/postern/internal/meshtest"
	"github.com/postern/postern/mesh/connector"
)

// apiServer is the private HTTP upstream: it records the credentials it
// is sent and serves the routes the tests use.
type apiServer struct {
	*httptest.Server
	mu    sync.Mutex
	auths [][]string // Authorization values of each request
	keys  []string   // X-Api-Key of each request

	nextChunk chan struct{} // /stream writes a chunk for each receive
	hanging   chan struct{} // /hang has started
	hangDone  chan error    // /hang saw its context end, with this cause
}

func newAPIServer(t *testing.T) *apiServer {
	t.Helper()
	a := &apiServer{nextChunk: make(chan struct{}), hanging: make(chan struct{}, 1), hangDone: make(chan error, 1)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/items", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "items for %s", r.URL.Query().Get("owner"))
	})
	mux.HandleFunc("POST /upload", func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "%d %x", n, h.Sum(nil))
	})
	mux.HandleFunc("GET /stream", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush() // the headers go now, the body chunk by chunk
		for i := range 3 {
			select {
			case <-a.nextChunk:
			case <-r.Context().Done():
				return
			}
			fmt.Fprintf(w, "chunk %d\n", i)
			w.(http.Flusher).Flush()
		}
	})
	mux.HandleFunc("GET /old", func(w http.ResponseWriter, r *http.Request) {
		// An absolute URL built from Host, as many frameworks do.
		http.Redirect(w, r, "http://"+r.Host+"/v1/items?owner=a", http.StatusFound)
	})
	mux.HandleFunc("POST /headers", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) // trailers arrive after the body
		for _, h := range []http.Header{r.Header, r.Trailer} {
			for k, vs := range h {
				for _, v := range vs {
					fmt.Fprintf(w, "%s: %s\n", k, v)
				}
			}
		}
	})
	mux.HandleFunc("GET /hang", func(w http.ResponseWriter, r *http.Request) {
		a.hanging <- struct{}{}
		select {
		case <-r.Context().Done():
			a.hangDone <- r.Context().Err()
		case <-time.After(30 * time.Second):
			a.hangDone <- errors.New("the request context never ended")
		}
	})
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		a.auths = append(a.auths, r.Header.Values("Authorization"))
		a.keys = append(a.keys, r.Header.Get("X-Api-Key"))
		a.mu.Unlock()
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(a.Close)
	return a
}

func (a *apiServer) seen() (auths [][]string, keys []string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([][]string(nil), a.auths...), append([]string(nil), a.keys...)
}

// httpWorld serves staging-api with an injected Authorization header and
// an X-Api-Key read from a file.
func httpWorld(t *testing.T) (*world, *apiServer, *http.Client, string) {
	t.Helper()
	api := newAPIServer(t)
	keyFile := filepath.Join(t.TempDir(), "api-key")
	if err := os.WriteFile(keyFile, []byte("key-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	w := newWorld(t, connector.Service{
		Name: "staging-api", Kind: postern.KindHTTP, Upstream: api.Listener.Addr().String(), Environment: "staging",
		HTTP: &connector.HTTP{Headers: map[string]connector.Secret{
			"Authorization": {Value: "Bearer upstream-secret"},
			"x-api-key":     {File: keyFile},
		}},
	})
	hc, err := w.open(t, "staging-api").HTTPClient()
	if err != nil {
		t.Fatal(err)
	}
	return w, api, hc, keyFile
}

func get(t *testing.T, hc *http.Client, url string, header http.Header) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(testCtx(t), "GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	return send(t, hc, req)
}

// send sends req and returns the answer's status and body.
func send(t *testing.T, hc *http.Client, req *http.Request) (int, string) {
	t.Helper()
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// TestHTTPInjectsCredentials: the upstream sees the connector's
// Authorization and never the agent's, however the agent sends it; a
// header secret rotated on disk is used from the next request.
func TestHTTPInjectsCredentials(t *testing.T) {
	_, api, hc, keyFile := httpWorld(t)
	tests := []struct {
		name   string
		url    string
		header http.Header
	}{
		{name: "path only", url: "/v1/items?owner=a"},
		{name: "binding as host", url: "http://staging-api/v1/items?owner=a"},
		{name: "relative path", url: "v1/items?owner=a"},
		{name: "agent's Authorization", url: "/v1/items?owner=a", header: http.Header{"Authorization": {"Bearer agent-forged"}}},
		{name: "two Authorizations", url: "/v1/items?owner=a", header: http.Header{"Authorization": {"Bearer a", "Bearer b"}}},
		{name: "Connection names Authorization", url: "/v1/items?owner=a",
			header: http.Header{"Connection": {"Authorization, X-Api-Key"}, "X-Api-Key": {"agent-key"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, _ := api.seen()
			code, body := get(t, hc, tt.url, tt.header)
			if code != http.StatusOK || body != "items for a" {
				t.Fatalf("GET %s = %d %q", tt.url, code, body)
			}
			auths, keys := api.seen()
			if len(auths) != len(before)+1 {
				t.Fatalf("upstream saw %d requests, want 1", len(auths)-len(before))
			}
			if got := auths[len(auths)-1]; len(got) != 1 || got[0] != "Bearer upstream-secret" {
				t.Fatalf("upstream saw Authorization %q, want only the connector's", got)
			}
			if got := keys[len(keys)-1]; got != "key-1" {
				t.Fatalf("upstream saw X-Api-Key %q, want key-1", got)
			}
		})
	}

	if err := os.WriteFile(keyFile, []byte("key-2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	get(t, hc, "/v1/items", nil)
	if _, keys := api.seen(); keys[len(keys)-1] != "key-2" {
		t.Fatalf("after rotation the upstream saw X-Api-Key %q, want key-2", keys[len(keys)-1])
	}
}

// TestHTTPInjectedHeadersCannotBeShadowed: an agent cannot get its own
// value to the upstream under an injected header's name, neither as a
// trailer nor under a look-alike name (X_Api_Key, which CGI-style servers
// read as X-Api-Key).
func TestHTTPInjectedHeadersCannotBeShadowed(t *testing.T) {
	_, _, hc, _ := httpWorld(t)
	req, err := http.NewRequestWithContext(testCtx(t), "POST", "/headers", io.NopCloser(strings.NewReader("a chunked body")))
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = -1 // chunked, so that trailers can follow
	req.Header.Set("Authorization", "Bearer agent-forged")
	req.Header["X_Api_Key"] = []string{"agent-key-underscore"}
	req.Header["X-Api_key"] = []string{"agent-key-mixed"}
	req.Trailer = http.Header{"Authorization": {"Bearer agent-trailer"}, "X-Api-Key": {"agent-key-trailer"}}
	code, body := send(t, hc, req)
	if code != http.StatusOK {
		t.Fatalf("POST /headers = %d %q", code, body)
	}
	if strings.Contains(body, "agent") {
		t.Fatalf("the upstream received a value of the agent's under an injected name:\n%s", body)
	}
	for _, want := range []string{"Authorization: Bearer upstream-secret\n", "X-Api-Key: key-1\n"} {
		if !strings.Contains(body, want) {
			t.Fatalf("the upstream did not receive %q:\n%s", want, body)
		}
	}
}

// TestHTTPTrailersReachTheUpstream: an agent's request trailers arrive at
// the upstream with their values, while a trailer under an injected or a
// forwarding header's name (or a look-alike of one) does not arrive at
// all; nor does an X-Real-IP header, which upstreams trust as they trust
// X-Forwarded-For.
func TestHTTPTrailersReachTheUpstream(t *testing.T) {
	_, _, hc, _ := httpWorld(t)
	req, err := http.NewRequestWithContext(testCtx(t), "POST", "/headers", io.NopCloser(strings.NewReader("a chunked body")))
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = -1 // chunked, so that trailers can follow
	req.Header.Set("X-Real-IP", "203.0.113.7")
	req.Header["X_Real_Ip"] = []string{"203.0.113.8"}
	req.Header.Set("X-Forwarded-For", "203.0.113.9")
	req.Trailer = http.Header{
		"X-Checksum":      {"sha256:5d41402abc4b2a76"},
		"X-Row-Count":     {"42"},
		"Authorization":   {"Bearer agent-trailer"},
		"X_api_key":       {"agent-key-trailer"},
		"X-Real-Ip":       {"203.0.113.10"},
		"X-Forwarded-For": {"203.0.113.11"},
	}
	code, body := send(t, hc, req)
	if code != http.StatusOK {
		t.Fatalf("POST /headers = %d %q", code, body)
	}
	for _, want := range []string{"X-Checksum: sha256:5d41402abc4b2a76\n", "X-Row-Count: 42\n", "Authorization: Bearer upstream-secret\n"} {
		if !strings.Contains(body, want) {
			t.Fatalf("the upstream did not receive %q:\n%s", want, body)
		}
	}
	for _, leak := range []string{"agent", "203.0.113."} {
		if strings.Contains(body, leak) {
			t.Fatalf("the upstream received %q from the agent:\n%s", leak, body)
		}
	}
}

// TestHTTPRedirectHidesTheUpstream: an upstream's redirect to an absolute
// URL on itself reaches the agent as a path on the binding: the agent does
// not learn the upstream's address, and the redirect works.
func TestHTTPRedirectHidesTheUpstream(t *testing.T) {
	_, api, hc, _ := httpWorld(t)
	_, port, _ := net.SplitHostPort(api.Listener.Addr().String())
	noFollow := *hc
	noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := noFollow.Get("/old")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusFound || loc != "/v1/items?owner=a" {
		t.Fatalf("redirect %d to %q, want 302 to /v1/items?owner=a", resp.StatusCode, loc)
	}
	code, body := get(t, hc, "/old", nil)
	if code != http.StatusOK || body != "items for a" {
		t.Fatalf("GET /old, following its redirect = %d %q", code, body)
	}
	if strings.Contains(body, port) {
		t.Fatalf("the agent saw the upstream's port in %q", body)
	}
}

// TestHTTPRefusesOtherHosts: the client of one binding reaches nothing
// else, and says so before sending anything.
func TestHTTPRefusesOtherHosts(t *testing.T) {
	_, api, hc, _ := httpWorld(t)
	tests := []struct{ name, url, want string }{
		{name: "other host", url: "http://other-api/v1/items", want: `request for host "other-api"`},
		{name: "an address", url: "http://10.0.0.1:8080/", want: `request for host "10.0.0.1:8080"`},
		{name: "https", url: "https://staging-api/v1/items", want: "use http:// or a path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := hc.Get(tt.url)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "binding: staging-api") {
				t.Fatalf("GET %s: err = %v, want one saying %q", tt.url, err, tt.want)
			}
		})
	}
	if auths, _ := api.seen(); len(auths) != 0 {
		t.Fatalf("upstream saw %d requests, want none", len(auths))
	}
}

// TestHTTPBodies: a 4 MiB upload arrives whole, and a streamed response
// is read chunk by chunk while the upstream is still writing it.
func TestHTTPBodies(t *testing.T) {
	_, api, hc, _ := httpWorld(t)

	t.Run("POST 4 MiB", func(t *testing.T) {
		payload := make([]byte, 4<<20)
		rand.Read(payload)
		sum := sha256.Sum256(payload)
		req, err := http.NewRequestWithContext(testCtx(t), "POST", "/upload", bytes.NewReader(payload))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if want := fmt.Sprintf("%d %s", len(payload), hex.EncodeToString(sum[:])); resp.StatusCode != http.StatusOK || string(body) != want {
			t.Fatalf("upload answered %d %q, want %q", resp.StatusCode, body, want)
		}
	})

	t.Run("streamed response", func(t *testing.T) {
		req, err := http.NewRequestWithContext(testCtx(t), "GET", "/stream", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.ContentLength != -1 {
			t.Fatalf("ContentLength = %d, want a chunked body", resp.ContentLength)
		}
		r := bufio.NewReader(resp.Body)
		for i := range 3 {
			// The upstream writes chunk i only now: reading it proves that
			// each chunk arrives while the response is still open.
			select {
			case api.nextChunk <- struct{}{}:
			case <-time.After(10 * time.Second):
				t.Fatal("the upstream handler is gone")
			}
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("chunk %d: %v", i, err)
			}
			if want := fmt.Sprintf("chunk %d\n", i); line != want {
				t.Fatalf("read %q, want %q", line, want)
			}
		}
		if rest, err := io.ReadAll(r); err != nil || len(rest) != 0 {
			t.Fatalf("after the last chunk: %q, %v", rest, err)
		}
	})
}

// TestHTTPCancel: cancelling a request's context ends the upstream's
// request: its handler sees its own context end.
func TestHTTPCancel(t *testing.T) {
	_, api, hc, _ := httpWorld(t)
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", "/hang", nil)
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	select {
	case <-api.hanging:
	case <-time.After(10 * time.Second):
		t.Fatal("the request never reached the upstream")
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("client: err = %v, want context.Canceled", err)
	}
	select {
	case err := <-api.hangDone:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("upstream handler: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the upstream's request context did not end after the agent cancelled")
	}
}

// TestHTTPUpstreamDown: an upstream that cannot be reached is a 502 from
// the connector that does not reveal the upstream's address.
func TestHTTPUpstreamDown(t *testing.T) {
	dead := meshtest.DeadAddr(t)
	w := newWorld(t, connector.Service{Name: "staging-api", Kind: postern.KindHTTP, Upstream: dead, Environment: "staging"})
	hc, err := w.open(t, "staging-api").HTTPClient()
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Get("/v1/items")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusBadGateway || resp.Header.Get("X-Postern-Error") != "upstream_unreachable" {
		t.Fatalf("answer %d (%s) %q, want 502 upstream_unreachable", resp.StatusCode, resp.Header.Get("X-Postern-Error"), body)
	}
	_, port, _ := net.SplitHostPort(dead)
	if !strings.Contains(string(body), "staging-api") || strings.Contains(string(body), port) {
		t.Fatalf("502 body %q: want the binding named and the upstream address hidden", body)
	}
}
