package connector

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/postern/postern/internal/httpreq"
	"github.com/postern/postern/internal/quicnet"

	"go.opentelemetry.io/otel/propagation"

	"github.com/postern/postern/internal/tracectx"
	"github.com/postern/postern/internal/wire"
)

// HTTP brokering. For an http service the connector serves each stream
// as one HTTP/1.1 connection (an http.Server over a listener that yields
// just that connection) in front of an httputil.ReverseProxy to the
// upstream. The proxy sets the configured headers, replacing any the agent
// sent under those names, and streams bodies both ways; an agent that
// cancels a request closes the stream, which cancels the upstream request.
// A redirect of the upstream's to an absolute URL on itself reaches the
// agent as a path on the binding, so that the upstream's address does not.
//
// Each stream has its own upstream transport, closed with it: an agent's
// keep-alive connection maps onto one upstream connection, and nothing
// outlives the stream.

// Limits on what an agent sends. The upstream is the judge of bodies.
const (
	httpReadHeaderTimeout = 10 * time.Second
	httpIdleTimeout       = 2 * time.Minute // longer than a client's idle timeout (binding's: 1m)
	httpMaxHeaderBytes    = 64 << 10
	httpMaxRespHeader     = 1 << 20
)

// serveHTTP serves one stream of an http service.
func (c *Connector) serveHTTP(sctx context.Context, ack *heldAck, down *quicnet.Conn, svc *Service, dial *wire.Dial, pol *relayPolicy, log *slog.Logger) {
	tr, target, err := httpUpstream(svc)
	if err != nil {
		log.Error("connector: http upstream configuration", "err", err)
		c.refuse(ack, svc.Name, &wire.Result{Code: wire.CodeUpstream, Reason: "connector_config",
			Message: "the connector could not set up its connection to the upstream of " + svc.Name})
		return
	}
	defer tr.CloseIdleConnections()
	tr.DialContext = c.instrumentDial(svc.Name, tr.DialContext)
	gate, err := newHTTPGate(c, svc, dial, pol)
	if err != nil {
		log.Warn("connector: the dial's identity cannot be decided on", "err", err)
		c.refuse(ack, svc.Name, &wire.Result{Code: wire.CodeDenied, Reason: "invalid_identity",
			Message: "the connector cannot decide requests for this identity: " + err.Error()})
		return
	}
	c.m.answered(svc.Name, wire.CodeOK)
	if err := ack.write(down, &wire.Result{Code: wire.CodeOK}); err != nil {
		down.Abort(quicnet.StreamAborted)
		return
	}
	errLog := slog.NewLogLogger(log.Handler(), slog.LevelDebug)
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			// Exactly the target policy judged, not the agent's spelling
			// of it: Opaque is sent as is (httpreq never yields "//").
			if t, ok := pr.In.Context().Value(targetKey{}).(*httpreq.Target); ok {
				pr.Out.URL.Path, pr.Out.URL.RawPath = t.Path, ""
				pr.Out.URL.Opaque, _, _ = strings.Cut(t.RequestURI, "?")
				pr.Out.URL.RawQuery = t.RawQuery
				pr.Out.URL.ForceQuery = false
			}
			if svc.HTTP != nil && svc.HTTP.Host != "" {
				pr.Out.Host = svc.HTTP.Host
			}
			// After the hop-by-hop headers are gone (so an agent's
			// "Connection: Authorization" cannot strip what is injected),
			// replace the agent's values with the connector's.
			inject, _ := pr.In.Context().Value(injectKey{}).(http.Header)
			dropLookalikes(pr.Out.Header, inject)
			dropLookalikes(pr.Out.Header, forwardingHeaders)
			for k, v := range inject {
				pr.Out.Header[k] = v
			}
			passTrailers(pr, inject)
			// The request's span is the upstream's parent; without one,
			// the agent's own traceparent, if any, goes on as it came.
			tracectx.InjectHeader(pr.Out.Context(), propagation.HeaderCarrier(pr.Out.Header))
		},
		// The upstream is sent its own address as Host (or HTTP.Host), so
		// redirects built from Host name it: turn those into paths on the
		// binding, which the agent can follow and which hide the address.
		ModifyResponse: func(resp *http.Response) error {
			// X-Postern-Error marks the connector's own answers (a
			// denial, an unreachable upstream): an upstream may not
			// pass for the connector.
			resp.Header.Del("X-Postern-Error")
			hosts := []string{target.Host}
			if svc.HTTP != nil && svc.HTTP.Host != "" {
				hosts = append(hosts, svc.HTTP.Host)
			}
			relativeToUpstream(resp.Header, hosts)
			return nil
		},
		Transport:    tr,
		ErrorLog:     errLog,
		ErrorHandler: httpErrorHandler(svc.Name, svc.Upstream, log),
	}
	var handlers sync.WaitGroup
	handler := http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		handlers.Add(1)
		defer handlers.Done()
		start := time.Now()
		w := &countingWriter{ResponseWriter: rw}
		var body *countingBody
		if r.Body != nil && r.Body != http.NoBody {
			body = &countingBody{ReadCloser: r.Body}
			r.Body = body
		}
		var v verdict
		defer gate.auditRequest(r, &v, w, body, start)
		r, endSpan := c.startRequest(r)
		defer endSpan(&v, w)
		decided := gate.decide(w, r, &v)
		c.m.decided(svc.Name, "http", []string{v.metricAction()}, v.decision, time.Since(start))
		if !decided {
			return
		}
		inject, err := httpHeaders(svc.HTTP)
		if err != nil {
			log.Error("connector: reading a header secret", "err", err)
			httpFail(w, http.StatusBadGateway, "connector_secret_unavailable", "postern: the connector could not read its credentials for "+svc.Name)
			return
		}
		ctx := context.WithValue(r.Context(), injectKey{}, inject)
		proxy.ServeHTTP(w, r.WithContext(context.WithValue(ctx, targetKey{}, &v.target)))
	})

	ln := newOneConnListener(down)
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: httpReadHeaderTimeout,
		IdleTimeout:       httpIdleTimeout,
		MaxHeaderBytes:    httpMaxHeaderBytes,
		ErrorLog:          errLog,
		BaseContext:       func(net.Listener) context.Context { return sctx },
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateClosed || s == http.StateHijacked {
				ln.Close() // Serve returns: there is only ever this one connection
			}
		},
	}
	start := time.Now()
	err = srv.Serve(ln)
	// A hijacked connection (an Upgrade) is still served by its handler.
	handlers.Wait()
	log.Debug("connector: http stream closed", "duration", time.Since(start), "err", err)
}

type injectKey struct{}

type targetKey struct{}

// httpUpstream builds the transport and URL that reach svc's upstream, and
// nothing else.
func httpUpstream(svc *Service) (*http.Transport, *url.URL, error) {
	h := svc.HTTP
	if h == nil {
		h = &HTTP{}
	}
	target := &url.URL{Scheme: "http", Host: svc.Upstream}
	tr := &http.Transport{
		Proxy: nil, // never through a proxy from the environment
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{Timeout: svc.DialTimeout}).DialContext(ctx, "tcp", svc.Upstream)
		},
		MaxIdleConnsPerHost:    4,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    10 * time.Second,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: httpMaxRespHeader,
		// The agent's Accept-Encoding and the upstream's Content-Encoding
		// pass through untouched.
		DisableCompression: true,
	}
	if h.TLS {
		target.Scheme = "https"
		host, _, _ := net.SplitHostPort(svc.Upstream)
		conf := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
		if h.ServerName != "" {
			conf.ServerName = h.ServerName
		}
		if h.RootCAFile != "" {
			pem, err := os.ReadFile(h.RootCAFile)
			if err != nil {
				return nil, nil, fmt.Errorf("HTTP.RootCAFile: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, nil, fmt.Errorf("HTTP.RootCAFile %s: no PEM certificate in it", h.RootCAFile)
			}
			conf.RootCAs = pool
		}
		tr.TLSClientConfig = conf
	}
	return tr, target, nil
}

// httpHeaders reads the values of the headers to inject.
func httpHeaders(h *HTTP) (http.Header, error) {
	if h == nil || len(h.Headers) == 0 {
		return nil, nil
	}
	out := make(http.Header, len(h.Headers))
	for name, s := range h.Headers {
		v, err := s.Read()
		if err != nil {
			return nil, fmt.Errorf("header %s: %w", name, err)
		}
		out.Set(name, v)
	}
	return out, nil
}

// forwardingHeaders are the fields that say who a request came through.
// ReverseProxy drops the agent's Forwarded and X-Forwarded-* (with Rewrite)
// before Rewrite runs; X-Real-IP, which nginx-style upstreams trust alike,
// and the look-alikes of all of them go too. The connector adds none: the
// upstream is not told the agent's address.
var forwardingHeaders = http.Header{
	"Forwarded": nil, "X-Forwarded-For": nil, "X-Forwarded-Host": nil,
	"X-Forwarded-Proto": nil, "X-Real-Ip": nil,
}

// passTrailers sends the agent's request trailers on to the upstream with
// their values. ReverseProxy copies the trailer map when the request
// starts, before the body (and so the trailers) has been read, and the
// upstream would get the names with empty values; the values are copied
// in when the agent's body ends, which is before the transport writes
// the trailers (it does so after the body, in the same goroutine). A
// trailer under an injected or forwarding name, or a look-alike of one,
// never reaches the upstream: trailers are merged into headers by many
// servers.
func passTrailers(pr *httputil.ProxyRequest, inject http.Header) {
	if len(pr.Out.Trailer) == 0 {
		return
	}
	dropLookalikes(pr.Out.Trailer, inject)
	dropLookalikes(pr.Out.Trailer, forwardingHeaders)
	if len(pr.Out.Trailer) == 0 || pr.Out.Body == nil || pr.Out.Body == http.NoBody {
		pr.Out.Trailer = nil
		return
	}
	pr.Out.Body = &trailerBody{ReadCloser: pr.Out.Body, in: pr.In.Trailer, out: pr.Out.Trailer}
}

// trailerBody fills out (the map the transport writes after the body)
// from in (the map the server fills when the agent's body ends) once the
// body is read to its end. Only the names declared at the start are
// copied, as a server would read no other.
type trailerBody struct {
	io.ReadCloser
	in, out http.Header
	done    bool
}

func (b *trailerBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF && !b.done {
		b.done = true
		for k := range b.out {
			b.out[k] = b.in[k]
		}
	}
	return n, err
}

// dropLookalikes deletes from h every field whose name is an injected
// one's up to case, '-' and '_': servers that read headers CGI-style
// (HTTP_X_API_KEY) take "X_Api_Key" for "X-Api-Key", so an agent's
// look-alike could shadow the injected value.
func dropLookalikes(h, inject http.Header) {
	if len(h) == 0 || len(inject) == 0 {
		return
	}
	for k := range h {
		for name := range inject {
			if sameFieldName(k, name) {
				delete(h, k)
				break
			}
		}
	}
}

func sameFieldName(a, b string) bool {
	return strings.EqualFold(strings.ReplaceAll(a, "_", "-"), strings.ReplaceAll(b, "_", "-"))
}

// relativeToUpstream rewrites the Location and Content-Location of a
// response that point at the upstream itself (one of hosts, host:port or
// a host alone with the scheme's default port) into a path on the binding.
func relativeToUpstream(h http.Header, hosts []string) {
	for _, k := range []string{"Location", "Content-Location"} {
		v := h.Get(k)
		if v == "" {
			continue
		}
		u, err := url.Parse(v)
		if err != nil || u.Host == "" || (u.Scheme != "" && u.Scheme != "http" && u.Scheme != "https") {
			continue
		}
		if !slices.ContainsFunc(hosts, func(host string) bool { return sameHost(u, host) }) {
			continue
		}
		u.Scheme, u.Host, u.User = "", "", nil
		if u.Path == "" {
			u.Path = "/"
		}
		h.Set(k, u.String())
	}
}

// sameHost reports whether u's host is host, allowing an omitted default
// port on either side.
func sameHost(u *url.URL, host string) bool {
	if strings.EqualFold(u.Host, host) {
		return true
	}
	name, port, err := net.SplitHostPort(host)
	if err != nil {
		name, port = host, ""
	}
	if !strings.EqualFold(u.Hostname(), name) {
		return false
	}
	def := map[string]string{"http": "80", "https": "443", "": ""}[u.Scheme]
	return (u.Port() == "" || u.Port() == def) && (port == "" || port == def)
}

// httpErrorHandler answers a request the upstream did not: 502, or 504
// for a timeout, with a message that names the binding, not the upstream.
func httpErrorHandler(name, upstream string, log *slog.Logger) func(http.ResponseWriter, *http.Request, error) {
	return func(w http.ResponseWriter, r *http.Request, err error) {
		if r.Context().Err() != nil {
			// The agent went away: nobody reads this answer.
			log.Debug("connector: http request cancelled by the agent", "method", r.Method, "path", r.URL.Path)
			httpFail(w, http.StatusBadGateway, "cancelled", "postern: request cancelled")
			return
		}
		log.Warn("connector: upstream http request failed", "upstream", upstream, "method", r.Method, "path", r.URL.Path, "err", err)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			httpFail(w, http.StatusGatewayTimeout, "upstream_timeout", "postern: the upstream of "+name+" timed out")
			return
		}
		httpFail(w, http.StatusBadGateway, "upstream_unreachable", "postern: the connector could not reach the upstream of "+name)
	}
}

// httpFail writes an error answer produced by the connector itself. The
// X-Postern-Error header tells it from an upstream's own 502.
func httpFail(w http.ResponseWriter, code int, reason, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("X-Postern-Error", reason)
	w.WriteHeader(code)
	fmt.Fprintln(w, msg)
}

// oneConnListener yields one connection, then blocks until closed.
type oneConnListener struct {
	conn   net.Conn
	once   sync.Once
	closed chan struct{}
	close  sync.Once
}

func newOneConnListener(c net.Conn) *oneConnListener {
	return &oneConnListener{conn: c, closed: make(chan struct{})}
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	var c net.Conn
	l.once.Do(func() { c = l.conn })
	if c != nil {
		return c, nil
	}
	<-l.closed
	return nil, net.ErrClosed
}

func (l *oneConnListener) Close() error {
	l.close.Do(func() { close(l.closed) })
	return nil
}

func (l *oneConnListener) Addr() net.Addr { return l.conn.LocalAddr() }
