package identity

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// jwksServer serves a JWK set that a test can replace, on 127.0.0.1.
type jwksServer struct {
	*httptest.Server
	set    atomic.Pointer[[]byte]
	status atomic.Int32 // 0: 200 OK
	hits   atomic.Int64
}

func newJWKSServer(t *testing.T, set []byte) *jwksServer {
	t.Helper()
	s := &jwksServer{}
	s.serve(set)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		if code := s.status.Load(); code != 0 {
			http.Error(w, "unavailable", int(code))
			return
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		w.Write(*s.set.Load())
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) serve(set []byte) { s.set.Store(&set) }

// waitFor polls cond until it holds or the test has waited too long.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// syncBuffer is a log destination that the refresher and the test share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestJWKSURL(t *testing.T) {
	k := newKey(t, EdDSA)
	srv := newJWKSServer(t, jwks(t, k))
	tests := []struct {
		name   string
		client *http.Client
	}{
		{"own client", nil},
		{"caller's client", srv.Client()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := newVerifier(t, VerifierConfig{JWKSURL: srv.URL + "/jwks.json", HTTPClient: tt.client})
			if _, err := v.Verify(issue(t, k, goodClaims(RoleAgent)), RoleAgent); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestJWKSRotation: the issuer publishes a new set; the verifier picks it up
// on its periodic refresh, without any token asking for it.
func TestJWKSRotation(t *testing.T) {
	oldKey, newKeyToo := newKey(t, EdDSA), newKey(t, ES256)
	srv := newJWKSServer(t, jwks(t, oldKey))
	v := newVerifier(t, VerifierConfig{JWKSURL: srv.URL, RefreshInterval: 20 * time.Millisecond})
	oldTok := issue(t, oldKey, goodClaims(RoleAgent))
	newTok := issue(t, newKeyToo, goodClaims(RoleAgent))
	if _, err := v.Verify(oldTok, RoleAgent); err != nil {
		t.Fatal(err)
	}

	srv.serve(jwks(t, newKeyToo))
	hits := srv.hits.Load()
	waitFor(t, "two refreshes", func() bool { return srv.hits.Load() >= hits+2 })

	if _, err := v.Verify(newTok, RoleAgent); err != nil {
		t.Fatalf("token of the new key: %v", err)
	}
	if _, err := v.Verify(oldTok, RoleAgent); !errors.Is(err, ErrSignature) {
		t.Fatalf("token of the retired key: %v, want ErrSignature", err)
	}
}

// TestJWKSRefreshOnUnknownKid: with a long interval, a token signed by a key
// the verifier has not seen yet makes it refresh soon.
func TestJWKSRefreshOnUnknownKid(t *testing.T) {
	a, b := newKey(t, EdDSA), newKey(t, EdDSA)
	srv := newJWKSServer(t, jwks(t, a))
	v := newVerifier(t, VerifierConfig{JWKSURL: srv.URL, RefreshInterval: time.Hour})
	merged, err := MergeJWKS(jwks(t, a), jwks(t, b))
	if err != nil {
		t.Fatal(err)
	}
	srv.serve(merged)
	tok := issue(t, b, goodClaims(RoleAgent))
	if _, err := v.Verify(tok, RoleAgent); !errors.Is(err, ErrSignature) {
		t.Fatalf("first Verify = %v, want ErrSignature (kid not fetched yet)", err)
	}
	waitFor(t, "the new key", func() bool { _, err := v.Verify(tok, RoleAgent); return err == nil })
}

// TestJWKSRefreshRateLimit: forged kids cannot make the verifier hammer the
// key server.
func TestJWKSRefreshRateLimit(t *testing.T) {
	saved := minRefreshInterval
	minRefreshInterval = 100 * time.Millisecond
	t.Cleanup(func() { minRefreshInterval = saved }) // runs after the verifier's Close

	k, stranger := newKey(t, EdDSA), newKey(t, EdDSA)
	srv := newJWKSServer(t, jwks(t, k))
	v := newVerifier(t, VerifierConfig{JWKSURL: srv.URL, RefreshInterval: time.Hour})
	forged := issue(t, stranger, goodClaims(RoleAgent))
	start := time.Now()
	for time.Since(start) < 450*time.Millisecond {
		v.Verify(forged, RoleAgent)
		time.Sleep(time.Millisecond)
	}
	// One fetch at start, then at most one per minRefreshInterval.
	limit := 2 + int64(time.Since(start)/minRefreshInterval)
	got := srv.hits.Load()
	t.Logf("%d fetches, limit %d", got, limit)
	if got > limit {
		t.Errorf("%d fetches of the key set for a flood of forged kids; want at most %d", got, limit)
	}
	// But the flood did cause a refresh.
	waitFor(t, "a refresh caused by an unknown kid", func() bool { return srv.hits.Load() >= 2 })
}

func TestJWKSRefreshFailureKeepsKeys(t *testing.T) {
	k := newKey(t, EdDSA)
	srv := newJWKSServer(t, jwks(t, k))
	var logs syncBuffer
	v := newVerifier(t, VerifierConfig{
		JWKSURL:         srv.URL,
		RefreshInterval: 10 * time.Millisecond,
		Logger:          slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	tok := issue(t, k, goodClaims(RoleAgent))
	srv.status.Store(http.StatusServiceUnavailable)
	hits := srv.hits.Load()
	waitFor(t, "failed refreshes", func() bool { return srv.hits.Load() >= hits+2 })
	if _, err := v.Verify(tok, RoleAgent); err != nil {
		t.Fatalf("Verify after failed refreshes: %v", err)
	}
	waitFor(t, "a warning", func() bool { return strings.Contains(logs.String(), "HTTP status 503") })

	v.Verify(tok+"x", RoleAgent) // a refusal is logged at debug level
	out := logs.String()
	if !strings.Contains(out, "reason=bad_signature") && !strings.Contains(out, "reason=malformed_token") {
		t.Errorf("refusal not logged:\n%s", out)
	}
	assertNoLeak(t, out, tok)
}

func TestJWKSAtStart(t *testing.T) {
	k := newKey(t, EdDSA)
	closed := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		return "http://" + addr + "/jwks"
	}()
	status := newJWKSServer(t, jwks(t, k))
	status.status.Store(http.StatusNotFound)
	garbage := newJWKSServer(t, []byte("<html>login</html>"))
	huge := newJWKSServer(t, bytes.Repeat([]byte(" "), maxJWKSSize+1))
	redirect := httptest.NewServer(http.RedirectHandler("http://idp.example.com/jwks", http.StatusFound))
	t.Cleanup(redirect.Close)
	canceled, cancel := context.WithCancel(context.Background())
	cancel()

	tests := []struct {
		name string
		ctx  context.Context
		url  string
		want []string
	}{
		{"unreachable", context.Background(), closed, []string{"fetch key set from " + closed, "connection refused"}},
		{"404", context.Background(), status.URL, []string{"HTTP status 404 Not Found"}},
		{"not a key set", context.Background(), garbage.URL, []string{"not a JWK set"}},
		{"too large", context.Background(), huge.URL, []string{"larger than"}},
		{"redirect to plain http", context.Background(), redirect.URL, []string{"refusing a redirect"}},
		{"context canceled", canceled, status.URL, []string{"context canceled"}},
		{"password not shown", context.Background(), strings.Replace(closed, "http://", "http://user:hunter2@", 1), []string{"user:xxxxx@"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := NewVerifier(tt.ctx, VerifierConfig{Audience: testAudience, JWKSURL: tt.url})
			if err == nil {
				v.Close()
				t.Fatal("NewVerifier succeeded")
			}
			t.Logf("%v", err)
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if !strings.HasPrefix(err.Error(), "identity: ") || strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error %q", err)
			}
		})
	}
}

func TestCloseStopsRefresher(t *testing.T) {
	k := newKey(t, EdDSA)
	srv := newJWKSServer(t, jwks(t, k))
	v, err := NewVerifier(context.Background(), VerifierConfig{
		Audience: testAudience, JWKSURL: srv.URL, RefreshInterval: 10 * time.Millisecond,
		Now: func() time.Time { return testNow },
	})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a refresh", func() bool { return srv.hits.Load() >= 2 })
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	if err := v.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	time.Sleep(20 * time.Millisecond) // let a request cancelled by Close reach the server, or not
	hits := srv.hits.Load()
	time.Sleep(50 * time.Millisecond)
	if got := srv.hits.Load(); got != hits {
		t.Errorf("%d fetches after Close", got-hits)
	}
	// Verify still works with the last keys, and a forged kid does not block.
	if _, err := v.Verify(issue(t, k, goodClaims(RoleAgent)), RoleAgent); err != nil {
		t.Fatalf("Verify after Close: %v", err)
	}
	for range 3 {
		v.Verify(issue(t, newKey(t, EdDSA), goodClaims(RoleAgent)), RoleAgent)
	}
}

func TestRefreshIntervalClamp(t *testing.T) {
	k := newKey(t, EdDSA)
	srv := newJWKSServer(t, jwks(t, k))
	tests := []struct {
		name string
		in   time.Duration
		want time.Duration
	}{
		{"zero is the default", 0, DefaultRefreshInterval},
		{"too small is raised", time.Nanosecond, minRefreshInterval},
		{"negative is raised", -time.Second, minRefreshInterval},
		{"kept", time.Hour, time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := newVerifier(t, VerifierConfig{JWKSURL: srv.URL, RefreshInterval: tt.in})
			if v.interval != tt.want {
				t.Errorf("interval = %v, want %v", v.interval, tt.want)
			}
		})
	}
}

// TestVerifyDuringRefresh runs Verify from several goroutines while the key
// set is replaced underneath them (run with -race).
func TestVerifyDuringRefresh(t *testing.T) {
	a, b := newKey(t, EdDSA), newKey(t, ES256)
	both, err := MergeJWKS(jwks(t, a), jwks(t, b))
	if err != nil {
		t.Fatal(err)
	}
	srv := newJWKSServer(t, both)
	v := newVerifier(t, VerifierConfig{JWKSURL: srv.URL, RefreshInterval: 10 * time.Millisecond})
	tokA, tokB := issue(t, a, goodClaims(RoleAgent)), issue(t, b, goodClaims(RoleAgent))

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				for _, tok := range []string{tokA, tokB} {
					if _, err := v.Verify(tok, RoleAgent); err != nil {
						t.Errorf("Verify: %v", err)
						return
					}
				}
			}
		})
	}
	// Republish the same keys in another order until a few refreshes have
	// swapped the set under the verifying goroutines.
	orders := [][][]byte{{jwks(t, b), jwks(t, a)}, {jwks(t, a), jwks(t, b)}}
	hits := srv.hits.Load()
	for i := 0; srv.hits.Load() < hits+4; i++ {
		both, _ = MergeJWKS(orders[i%2]...)
		srv.serve(both)
		time.Sleep(5 * time.Millisecond)
		if i > 2000 {
			t.Fatal("the key set was not refreshed")
		}
	}
	close(stop)
	wg.Wait()
	if c := v.Counts(); c["ok"] == 0 {
		t.Errorf("Counts = %v", c)
	}
}

// TestSetKeySet: a static verifier takes a new key set (a rotation read
// again from its file); a set that does not parse leaves the keys in
// force; a JWKS URL verifier refuses it.
func TestSetKeySet(t *testing.T) {
	oldKey, newKey2 := newKey(t, EdDSA), newKey(t, EdDSA)
	v := newVerifier(t, VerifierConfig{KeySet: jwks(t, oldKey)})
	oldTok, newTok := issue(t, oldKey, goodClaims(RoleAgent)), issue(t, newKey2, goodClaims(RoleAgent))
	if _, err := v.Verify(newTok, RoleAgent); !errors.Is(err, ErrSignature) {
		t.Fatalf("new key before the rotation: %v", err)
	}
	merged, err := MergeJWKS(jwks(t, oldKey), jwks(t, newKey2))
	if err != nil {
		t.Fatal(err)
	}
	if err := v.SetKeySet(merged); err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{oldTok, newTok} {
		if _, err := v.Verify(tok, RoleAgent); err != nil {
			t.Fatalf("after the rotation: %v", err)
		}
	}
	if err := v.SetKeySet([]byte(`{"keys": 7}`)); err == nil {
		t.Fatal("a broken set was taken")
	}
	if _, err := v.Verify(newTok, RoleAgent); err != nil {
		t.Fatalf("a refused set changed the keys: %v", err)
	}
	srv := newJWKSServer(t, jwks(t, oldKey))
	u := newVerifier(t, VerifierConfig{JWKSURL: srv.URL})
	if err := u.SetKeySet(merged); err == nil {
		t.Fatal("a JWKS URL verifier took a static set")
	}
}
