package binding

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/postern/postern"
)

// HTTPClient returns an *http.Client for an http binding. Requests name
// only a path: client.Get("/v1/items"), or a URL whose host is the
// binding, "http://staging-api/v1/items". Connections are reused,
// request contexts and deadlines work, and bodies stream both ways. The
// connector adds the service's credentials (an Authorization header, say)
// on its side; the agent never holds them.
//
// The client has no overall Timeout; bound requests with their context.
// Each call returns a new client over the binding's one transport (see
// RoundTripper).
func (b *Binding) HTTPClient() (*http.Client, error) {
	rt, err := b.RoundTripper()
	if err != nil {
		return nil, err
	}
	return &http.Client{Transport: rt}, nil
}

// RoundTripper returns the binding's http.RoundTripper: an http.Transport
// whose connections are streams to the binding, behind a rewrite of
// relative URLs to the binding. It refuses requests for other hosts and
// https URLs (the mesh encrypts; the connector speaks TLS to the upstream
// when the service says so). Every call returns the same RoundTripper;
// Close on the Binding closes its idle connections.
func (b *Binding) RoundTripper() (http.RoundTripper, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.closedErr(); err != nil {
		return nil, err
	}
	if b.rt == nil {
		b.rt = &roundTripper{b: b, t: &http.Transport{
			Proxy: nil, // the binding is the destination: never a proxy from the environment
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				if err := b.expectKind(ctx, postern.KindHTTP); err != nil {
					return nil, err
				}
				return b.client.Dial(ctx, "tcp", b.name)
			},
			MaxIdleConns:          100,
			MaxIdleConnsPerHost:   16,
			IdleConnTimeout:       time.Minute, // under the connector's 2 minutes
			ExpectContinueTimeout: time.Second,
		}}
	}
	return b.rt, nil
}

type roundTripper struct {
	b      *Binding
	t      *http.Transport
	closed atomic.Bool
}

func (rt *roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	fail := func(format string, args ...any) (*http.Response, error) {
		if req.Body != nil {
			req.Body.Close() // a RoundTripper closes the body, even on error
		}
		return nil, fmt.Errorf("binding: %s: "+format, append([]any{rt.b.name}, args...)...)
	}
	if rt.closed.Load() {
		return fail("closed: %w", net.ErrClosed)
	}
	u := req.URL
	switch {
	case u == nil:
		return fail("request has no URL")
	case u.Scheme == "https":
		return fail("https URL %q: use http:// or a path (the mesh encrypts; TLS to the upstream is the connector's)", u.Redacted())
	case u.Scheme != "" && u.Scheme != "http":
		return fail("URL scheme %q is not http", u.Scheme)
	case u.Host != "" && u.Hostname() != rt.b.name && u.Hostname() != rt.b.host:
		return fail("request for host %q: this client reaches only %s (use a path)", u.Host, rt.b.name)
	}
	if u.Scheme == "" || u.Host == "" {
		// A relative URL: the binding is the host. RoundTrip must not
		// change req, so change a copy.
		r2 := new(http.Request)
		*r2 = *req
		u2 := *u
		u2.Scheme, u2.Host = "http", rt.b.host
		if !strings.HasPrefix(u2.Path, "/") {
			u2.Path = "/" + u2.Path
			if u2.RawPath != "" {
				u2.RawPath = "/" + u2.RawPath
			}
		}
		r2.URL = &u2
		if r2.Host == "" {
			r2.Host = rt.b.host
		}
		req = r2
	}
	return rt.t.RoundTrip(req)
}

func (rt *roundTripper) close() {
	rt.closed.Store(true)
	rt.t.CloseIdleConnections()
}
