package quicnet

import (
	"context"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/postern/postern/internal/idle"
	"github.com/postern/postern/internal/wire"
	"github.com/postern/postern/transport"
)

// QUICConfig is the quic-go configuration that c stands for, with every
// zero field at its documented default. A nil c means all defaults.
func QUICConfig(c *transport.Config) *quic.Config {
	var z transport.Config
	if c == nil {
		c = &z
	}
	q := &quic.Config{
		HandshakeIdleTimeout:           or(c.HandshakeTimeout, 10*time.Second) / 2, // quic-go aborts at twice this
		MaxIdleTimeout:                 or(c.IdleTimeout, 60*time.Second),
		KeepAlivePeriod:                or(c.KeepAlive, 15*time.Second),
		MaxIncomingStreams:             or(c.MaxIncomingStreams, 1024),
		MaxIncomingUniStreams:          -1, // the protocol uses none
		InitialStreamReceiveWindow:     or(c.StreamWindow, 1<<20),
		MaxStreamReceiveWindow:         or(c.MaxStreamWindow, 16<<20),
		InitialConnectionReceiveWindow: or(c.ConnWindow, 2<<20),
		MaxConnectionReceiveWindow:     or(c.MaxConnWindow, 64<<20),
	}
	if c.KeepAlive < 0 {
		q.KeepAlivePeriod = 0
	}
	return q
}

func or[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Listener accepts sessions that negotiated ALPN: QUIC connections on a
// UDP socket and TLS-over-TCP connections on the TCP port of the same
// number, as transport.Config.Network says.
type Listener struct {
	adm Admission // the admission hooks of both transports
	udp *net.UDPConn
	tr  *quic.Transport
	ln  *quic.Listener // nil without QUIC
	tcp net.Listener   // nil without TCP

	tlsConf *tls.Config
	certs   []tls.Certificate // as given: tlsConf chooses through GetCertificate
	cfg     *transport.Config
	hs      chan struct{} // TLS handshakes in progress

	sessions  chan Session
	done      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup

	mu   sync.Mutex
	live map[*tcpSession]struct{} // TCP sessions, closed with the listener
}

// maxTCPHandshakes bounds the TLS handshakes a listener runs at once; a
// connection beyond it is closed at once.
const maxTCPHandshakes = 1024

// Listen listens on addr ("127.0.0.1:0" picks a free port): UDP for
// QUIC and TCP for TLS over TCP, on the same port number, unless
// cfg.Network names one. tlsConf must carry the server certificate;
// Listen copies it and sets TLS 1.3 and ALPN. The stateless-reset key is
// derived from the certificate's private key, so that a relay restarted
// with the same certificate tells clients of its previous life at once
// that their connections are gone, instead of leaving them to time out.
func Listen(addr string, tlsConf *tls.Config, cfg *transport.Config) (*Listener, error) {
	return ListenAdmit(addr, tlsConf, cfg, Admission{})
}

// ListenAdmit is Listen with hooks that decide, before any state is kept,
// which new connections the listener takes, QUIC and TLS over TCP alike
// (see Admission).
func ListenAdmit(addr string, tlsConf *tls.Config, cfg *transport.Config, adm Admission) (*Listener, error) {
	if tlsConf == nil || (len(tlsConf.Certificates) == 0 && tlsConf.GetCertificate == nil) {
		return nil, errors.New("quicnet: listen: no TLS certificate")
	}
	var network string
	if cfg != nil {
		network = cfg.Network
	}
	if err := transport.CheckNetwork(network); err != nil {
		return nil, fmt.Errorf("quicnet: listen: %w", err)
	}
	l := &Listener{adm: adm, tlsConf: serverTLS(tlsConf), certs: tlsConf.Certificates, cfg: cfg, hs: make(chan struct{}, maxTCPHandshakes),
		sessions: make(chan Session), done: make(chan struct{}), live: map[*tcpSession]struct{}{}}
	if network == transport.NetworkTCP {
		tl, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("quicnet: listen: %w", err)
		}
		l.tcp = tl
	} else {
		if err := l.listenUDP(addr, network != transport.NetworkQUIC); err != nil {
			return nil, err
		}
	}
	if l.ln != nil {
		l.wg.Add(1)
		go l.acceptQUIC()
	}
	if l.tcp != nil {
		l.wg.Add(1)
		go l.acceptTCP()
	}
	return l, nil
}

// listenUDP binds the UDP socket and, with withTCP, the TCP port of the
// same number. For port 0 it retries when the port the kernel chose for
// UDP is taken on TCP.
func (l *Listener) listenUDP(addr string, withTCP bool) error {
	uaddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return fmt.Errorf("quicnet: listen: %w", err)
	}
	for attempt := 0; ; attempt++ {
		udp, err := net.ListenUDP("udp", uaddr)
		if err != nil {
			return fmt.Errorf("quicnet: listen: %w", err)
		}
		if withTCP {
			port := udp.LocalAddr().(*net.UDPAddr).Port
			host, _, _ := net.SplitHostPort(addr)
			tl, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
			if err != nil {
				udp.Close()
				if uaddr.Port == 0 && attempt < 20 {
					continue
				}
				return fmt.Errorf("quicnet: listen: tcp: %w", err)
			}
			l.tcp = tl
		}
		tr := &quic.Transport{Conn: udp, VerifySourceAddress: l.adm.VerifySourceAddress, ConnContext: l.adm.ConnContext}
		if len(l.certs) > 0 {
			if key, err := resetKey(l.certs[0]); err == nil {
				tr.StatelessResetKey = key
			}
		}
		qc := QUICConfig(l.cfg)
		if pick := l.adm.Transport; pick != nil {
			base := qc
			qc = base.Clone()
			var made sync.Map // *transport.Config to its *quic.Config: no allocation per Initial
			qc.GetConfigForClient = func(info *quic.ClientInfo) (*quic.Config, error) {
				c := pick(info.RemoteAddr)
				if c == nil {
					return base, nil
				}
				if q, ok := made.Load(c); ok {
					return q.(*quic.Config), nil
				}
				q, _ := made.LoadOrStore(c, QUICConfig(c))
				return q.(*quic.Config), nil
			}
		}
		ln, err := tr.Listen(l.tlsConf, qc)
		if err != nil {
			tr.Close()
			udp.Close()
			if l.tcp != nil {
				l.tcp.Close()
			}
			return fmt.Errorf("quicnet: listen: %w", err)
		}
		l.udp, l.tr, l.ln = udp, tr, ln
		return nil
	}
}

func (l *Listener) acceptQUIC() {
	defer l.wg.Done()
	for {
		conn, err := l.ln.Accept(context.Background())
		if err != nil {
			return
		}
		select {
		case l.sessions <- QUICSession{conn}:
		case <-l.done:
			conn.CloseWithError(quic.ApplicationErrorCode(wire.CodeShutdown), "relay_shutdown: the relay is shutting down")
			return
		}
	}
}

func (l *Listener) acceptTCP() {
	defer l.wg.Done()
	for {
		c, err := l.tcp.Accept()
		if err != nil {
			select {
			case <-l.done:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // EMFILE and the like
			continue
		}
		// Admission first, before any TLS work: a connection refused costs
		// the listener an accept and a reset.
		base, end := context.WithCancel(context.Background())
		parent := base
		if l.adm.TCPConnContext != nil {
			if parent, err = l.adm.TCPConnContext(base, c.RemoteAddr()); err != nil {
				end()
				refuseTCP(c)
				continue
			}
		}
		select {
		case l.hs <- struct{}{}:
		default:
			end()
			refuseTCP(c)
			continue
		}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			defer func() { <-l.hs }()
			l.handshakeTCP(c, parent, end)
		}()
	}
}

// refuseTCP drops a connection the listener does not serve with a reset
// rather than a FIN, so that it leaves nothing in TIME_WAIT.
func refuseTCP(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

// handshakeTCP runs the TLS handshake and the mux settings exchange within
// the handshake timeout, and hands the session to Accept. parent is the
// admission's context: the session's descends from it, and end, which
// cancels it, is called once the session has ended, or at once when there
// is none.
func (l *Listener) handshakeTCP(c net.Conn, parent context.Context, end context.CancelFunc) {
	var hsTimeout time.Duration
	if l.cfg != nil {
		hsTimeout = l.cfg.HandshakeTimeout
	}
	ok := false
	defer func() {
		if !ok {
			end()
		}
	}()
	ctx, cancel := context.WithTimeout(parent, or(hsTimeout, 10*time.Second))
	defer cancel()
	// The TLS handshake's deadline is the connection's, and its context
	// has none: crypto/tls closes the connection as its context ends, and
	// a peer that saw that close could connect again before the timeout
	// was recorded against its source. Close and the parent still end it.
	hctx, hcancel := context.WithCancel(parent)
	defer hcancel()
	go func() {
		select {
		case <-l.done:
			cancel()
			hcancel()
		case <-ctx.Done():
		}
	}()
	deadline, _ := ctx.Deadline()
	c.SetDeadline(deadline)
	tc := tls.Server(c, l.tlsConf)
	if err := tc.HandshakeContext(hctx); err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) && parent.Err() == nil && l.adm.TCPHandshakeTimeout != nil {
			l.adm.TCPHandshakeTimeout(c.RemoteAddr())
		}
		c.Close()
		return
	}
	c.SetDeadline(time.Time{})
	if tc.ConnectionState().NegotiatedProtocol != wire.ALPN {
		c.Close() // a client that offered no ALPN
		return
	}
	s, err := newTCPSession(ctx, parent, tc, false, l.cfg)
	if err != nil {
		return
	}
	ok = true
	context.AfterFunc(s.Context(), end)
	l.mu.Lock()
	select {
	case <-l.done:
		l.mu.Unlock()
		s.CloseWithError(quic.ApplicationErrorCode(wire.CodeShutdown), "relay_shutdown: the relay is shutting down")
		return
	default:
	}
	l.live[s] = struct{}{}
	l.mu.Unlock()
	context.AfterFunc(s.Context(), func() {
		l.mu.Lock()
		delete(l.live, s)
		l.mu.Unlock()
	})
	select {
	case l.sessions <- s:
	case <-l.done:
		s.CloseWithError(quic.ApplicationErrorCode(wire.CodeShutdown), "relay_shutdown: the relay is shutting down")
	}
}

// Accept waits for the next session whose handshake completed.
func (l *Listener) Accept(ctx context.Context) (Session, error) {
	select {
	case s := <-l.sessions:
		return s, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-l.done:
		return nil, fmt.Errorf("quicnet: accept: %w", net.ErrClosed)
	}
}

// Addr is the address the listener is bound to: the UDP address, or the
// TCP one when it listens on TCP only. Both have the same port.
func (l *Listener) Addr() net.Addr {
	if l.ln != nil {
		return l.ln.Addr()
	}
	return l.tcp.Addr()
}

// TCPAddr is the TCP address the listener is bound to; nil when it
// listens on UDP only.
func (l *Listener) TCPAddr() net.Addr {
	if l.tcp == nil {
		return nil
	}
	return l.tcp.Addr()
}

// Close stops accepting and closes the sockets. Sessions already
// accepted are closed by their owners first (see Session.CloseWithError);
// those still open are torn down.
func (l *Listener) Close() error {
	var err error
	l.closeOnce.Do(func() {
		l.mu.Lock()
		close(l.done)
		live := make([]*tcpSession, 0, len(l.live))
		for s := range l.live {
			live = append(live, s)
		}
		l.mu.Unlock()
		if l.tcp != nil {
			err = l.tcp.Close()
		}
		for _, s := range live {
			s.CloseWithError(quic.ApplicationErrorCode(wire.CodeShutdown), "relay_shutdown: the relay is shutting down")
		}
		if l.ln != nil {
			if err2 := l.ln.Close(); err == nil {
				err = err2
			}
			if err2 := l.tr.Close(); err == nil {
				err = err2
			}
			// The transport does not close a socket it was handed.
			if err2 := l.udp.Close(); err == nil {
				err = err2
			}
		}
		l.wg.Wait()
	})
	return err
}

// resetKey derives a stateless-reset key from the certificate's private
// key: stable across restarts, secret, and unrelated to any other use of
// the key.
func resetKey(cert tls.Certificate) (*quic.StatelessResetKey, error) {
	der, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		return nil, err
	}
	b, err := hkdf.Key(sha256.New, der, nil, "postern quic stateless reset v1", 32)
	if err != nil {
		return nil, err
	}
	var k quic.StatelessResetKey
	copy(k[:], b)
	return &k, nil
}

func serverTLS(c *tls.Config) *tls.Config {
	c = c.Clone()
	c.MinVersion = tls.VersionTLS13
	c.NextProtos = []string{wire.ALPN}
	// A handshake's key exchange and its signature, the costliest work a
	// peer can cause before it has shown a token, each wait for the
	// packets of the sessions already running (see package idle): under
	// a flood of handshakes an agent's round trip then waits mostly for
	// the one step of one handshake running when its packet arrives,
	// not for all of them. GetConfigForClient comes before the key
	// exchange, GetCertificate after it and before the signature. (Set
	// here rather than in a configuration GetConfigForClient returns:
	// quic-go clones a returned configuration, at every handshake.)
	prev := c.GetConfigForClient
	c.GetCertificate = certificateAfterWait(c)
	c.Certificates = nil
	c.GetConfigForClient = func(hi *tls.ClientHelloInfo) (*tls.Config, error) {
		idle.Wait(hi.Context())
		if prev != nil {
			// A caller's own choice of configuration: only the first
			// wait applies, unless it keeps this GetCertificate.
			return prev(hi)
		}
		return nil, nil
	}
	return c
}

// certificateAfterWait is c's choice of certificate (GetCertificate, or
// the first of Certificates that the client supports, as crypto/tls
// chooses) after an idle.Wait.
func certificateAfterWait(c *tls.Config) func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	get, certs := c.GetCertificate, c.Certificates
	return func(hi *tls.ClientHelloInfo) (*tls.Certificate, error) {
		idle.Wait(hi.Context())
		if get != nil {
			if cert, err := get(hi); cert != nil || err != nil || len(certs) == 0 {
				return cert, err
			}
		}
		if len(certs) == 0 {
			return nil, errors.New("quicnet: no certificate configured")
		}
		for i := range certs {
			if hi.SupportsCertificate(&certs[i]) == nil {
				return &certs[i], nil
			}
		}
		return &certs[0], nil
	}
}

// Dial connects to a relay at addr as cfg.Network says: QUIC, TLS over
// TCP, or (the default) QUIC with a head start and TCP as the fallback;
// see transport.Config.Network. tlsConf says how to trust the server (see
// ClientTLS); Dial copies it and sets TLS 1.3 and ALPN. ctx bounds the
// handshake.
func Dial(ctx context.Context, addr string, tlsConf *tls.Config, cfg *transport.Config) (Session, error) {
	if tlsConf == nil {
		return nil, errors.New("quicnet: dial: no TLS configuration (trust a CA or pin the relay's certificate)")
	}
	var network string
	var delay time.Duration
	if cfg != nil {
		network, delay = cfg.Network, cfg.FallbackDelay
	}
	if err := transport.CheckNetwork(network); err != nil {
		return nil, fmt.Errorf("quicnet: dial: %w", err)
	}
	switch network {
	case transport.NetworkQUIC, transport.NetworkTCP:
		return dialNetwork(ctx, network, addr, tlsConf, cfg)
	}
	return dialRace(ctx, addr, or(delay, 300*time.Millisecond), tlsConf, cfg)
}

func dialNetwork(ctx context.Context, network, addr string, tlsConf *tls.Config, cfg *transport.Config) (Session, error) {
	if network == transport.NetworkTCP {
		return dialTCP(ctx, addr, tlsConf, cfg)
	}
	return dialQUIC(ctx, addr, tlsConf, cfg)
}

func dialQUIC(ctx context.Context, addr string, tlsConf *tls.Config, cfg *transport.Config) (Session, error) {
	c := tlsConf.Clone()
	c.MinVersion = tls.VersionTLS13
	c.NextProtos = []string{wire.ALPN}
	conn, err := quic.DialAddr(ctx, addr, c, QUICConfig(cfg))
	if err != nil {
		if te := (*quic.TransportError)(nil); errors.As(err, &te) && te.Remote && te.ErrorCode == quic.ConnectionRefused {
			return nil, fmt.Errorf("quicnet: dial %s: %s: %w", addr, refusedMsg, err)
		}
		return nil, fmt.Errorf("quicnet: dial %s: %w", addr, err)
	}
	return QUICSession{conn}, nil
}

// refusedMsg says what a relay's CONNECTION_REFUSED means: its gate for
// connections that have shown no token refused this one before any TLS
// work.
const refusedMsg = "the relay refused the connection before its handshake " +
	"(too many connections wait for their hello, this address had too many refused, " +
	"or the relay is under a flood of refused handshakes and admits new addresses slowly); try again later"

// dialTCP connects over TLS 1.3 on TCP and sets up the mux, within the
// handshake timeout.
func dialTCP(ctx context.Context, addr string, tlsConf *tls.Config, cfg *transport.Config) (Session, error) {
	return DialTCPFrom(ctx, nil, addr, tlsConf, cfg)
}

// DialTCPFrom is Dial over TLS on TCP from the local address local (nil
// for the system's choice): for the bench's attacker, which floods a
// relay from many loopback addresses, each of them a source to the
// relay's gate.
func DialTCPFrom(ctx context.Context, local *net.TCPAddr, addr string, tlsConf *tls.Config, cfg *transport.Config) (Session, error) {
	if tlsConf == nil {
		return nil, errors.New("quicnet: dial: no TLS configuration (trust a CA or pin the relay's certificate)")
	}
	c := tlsConf.Clone()
	c.MinVersion = tls.VersionTLS13
	c.NextProtos = []string{wire.ALPN}
	var hsTimeout time.Duration
	if cfg != nil {
		hsTimeout = cfg.HandshakeTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, or(hsTimeout, 10*time.Second))
	defer cancel()
	d := tls.Dialer{Config: c}
	if local != nil {
		d.NetDialer = &net.Dialer{LocalAddr: local}
	}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("quicnet: dial %s over tls/tcp: %w", addr, err)
	}
	tc := nc.(*tls.Conn)
	if p := tc.ConnectionState().NegotiatedProtocol; p != wire.ALPN {
		tc.Close()
		return nil, fmt.Errorf("quicnet: dial %s over tls/tcp: the server did not agree on ALPN %q", addr, wire.ALPN)
	}
	s, err := newTCPSession(ctx, context.Background(), tc, true, cfg)
	if err != nil {
		return nil, fmt.Errorf("quicnet: dial %s over tls/tcp: %w", addr, err)
	}
	return s, nil
}

// winnerMemory is how long a client remembers which network reached a
// relay, and tries it first.
const winnerMemory = 10 * time.Minute

var winners struct {
	sync.Mutex
	m map[string]winner
}

type winner struct {
	network string
	until   time.Time
}

func remembered(addr string) string {
	winners.Lock()
	defer winners.Unlock()
	if w, ok := winners.m[addr]; ok && time.Now().Before(w.until) {
		return w.network
	}
	return ""
}

func remember(addr, network string) {
	winners.Lock()
	defer winners.Unlock()
	now := time.Now()
	if winners.m == nil {
		winners.m = map[string]winner{}
	}
	for k, w := range winners.m {
		if now.After(w.until) {
			delete(winners.m, k)
		}
	}
	winners.m[addr] = winner{network, now.Add(winnerMemory)}
}

// dialRace dials QUIC (or the network that won last time) first and the
// other network after delay, or as soon as the first fails; the first
// session up wins and the other attempt is cancelled or closed.
func dialRace(ctx context.Context, addr string, delay time.Duration, tlsConf *tls.Config, cfg *transport.Config) (Session, error) {
	first, second := transport.NetworkQUIC, transport.NetworkTCP
	if remembered(addr) == transport.NetworkTCP {
		first, second = second, first
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		s       Session
		err     error
		network string
	}
	results := make(chan result, 2)
	start := func(network string) {
		go func() {
			s, err := dialNetwork(ctx, network, addr, tlsConf, cfg)
			results <- result{s, err, network}
		}()
	}
	start(first)
	started := 1
	timer := time.NewTimer(delay)
	defer timer.Stop()
	var errs []error
	for {
		select {
		case <-timer.C:
			if started == 1 {
				start(second)
				started++
			}
		case r := <-results:
			if r.err == nil {
				remember(addr, r.network)
				if started == 2 && len(errs) == 0 {
					go func() {
						if r := <-results; r.err == nil {
							r.s.CloseWithError(0, "")
						}
					}()
				}
				return r.s, nil
			}
			errs = append(errs, r.err)
			if started == 1 {
				start(second)
				started++
				continue
			}
			if len(errs) == 2 {
				return nil, errors.Join(errs...)
			}
		}
	}
}

// IsConnClosed reports whether err says the QUIC connection itself is gone
// (closed by either side, timed out, reset), as opposed to one stream
// failing. A client reconnects on such errors.
func IsConnClosed(err error) bool {
	var (
		appErr   *quic.ApplicationError
		idleErr  *quic.IdleTimeoutError
		hsErr    *quic.HandshakeTimeoutError
		resetErr *quic.StatelessResetError
		trErr    *quic.TransportError
	)
	return errors.As(err, &appErr) || errors.As(err, &idleErr) || errors.As(err, &hsErr) ||
		errors.As(err, &resetErr) || errors.As(err, &trErr) || errors.Is(err, net.ErrClosed)
}
