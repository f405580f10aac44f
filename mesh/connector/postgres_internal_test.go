package connector

import (
	"bytes"
	"encoding/binary"
	"io"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

func encode(t testing.TB, msgs ...interface{ Encode([]byte) ([]byte, error) }) []byte {
	t.Helper()
	var b []byte
	for _, m := range msgs {
		var err error
		if b, err = m.Encode(b); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

// rw is an agent's side of the stream: what it sent, and what it was
// answered.
type rw struct {
	io.Reader
	out bytes.Buffer
}

func (r *rw) Write(p []byte) (int, error) { return r.out.Write(p) }

func TestPgAcceptStartup(t *testing.T) {
	startup := &pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: map[string]string{"user": "agent", "database": "staging-db"}}
	query := &pgproto3.Query{String: "SELECT 1"}
	header := func(n uint32, code uint32) []byte {
		b := binary.BigEndian.AppendUint32(nil, n)
		return binary.BigEndian.AppendUint32(b, code)
	}
	tests := []struct {
		name     string
		in       []byte
		want     pgproto3.FrontendMessage // nil: an error
		answered string                   // bytes written back
		errText  string
	}{
		{name: "startup", in: encode(t, startup), want: startup},
		{name: "SSL then startup", in: append(encode(t, &pgproto3.SSLRequest{}), encode(t, startup)...), want: startup, answered: "N"},
		{name: "GSS, SSL, startup", in: append(encode(t, &pgproto3.GSSEncRequest{}, &pgproto3.SSLRequest{}), encode(t, startup)...), want: startup, answered: "NN"},
		{name: "cancel", in: encode(t, &pgproto3.CancelRequest{ProcessID: 42, SecretKey: []byte{1, 2, 3, 4}}), want: &pgproto3.CancelRequest{ProcessID: 42, SecretKey: []byte{1, 2, 3, 4}}},
		{name: "SSL forever", in: encode(t, &pgproto3.SSLRequest{}, &pgproto3.SSLRequest{}, &pgproto3.SSLRequest{}), answered: "NNN", errText: "too many"},
		{name: "direct TLS", in: []byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc}, errText: "sslmode=disable"},
		{name: "length too small", in: header(4, 0), errText: "4 bytes"},
		{name: "length too large", in: header(1<<20, pgproto3.ProtocolVersion30), errText: "1048576 bytes"},
		{name: "truncated", in: encode(t, startup)[:12], errText: "unexpected EOF"},
		{name: "protocol 2.0", in: append(header(9, 2<<16), 0), errText: "version"},
		{name: "empty", in: nil, errText: "EOF"},
		{name: "a query first", in: encode(t, query), errText: "not the PostgreSQL protocol"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A query pipelined after the startup message must stay unread.
			var pipelined []byte
			if tt.want != nil {
				pipelined = encode(t, query)
			}
			conn := &rw{Reader: bytes.NewReader(append(append([]byte(nil), tt.in...), pipelined...))}
			befores := 0
			got, err := pgAcceptStartup(conn, func() error { befores++; return nil })
			if n := strings.Count(tt.answered, "N"); befores != n {
				t.Fatalf("before called %d times, want once per answer (%d)", befores, n)
			}
			if conn.out.String() != tt.answered {
				t.Fatalf("answered %q, want %q", conn.out.String(), tt.answered)
			}
			if tt.want == nil {
				if err == nil || !strings.Contains(err.Error(), tt.errText) {
					t.Fatalf("err = %v, want one saying %q", err, tt.errText)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %#v, want %#v", got, tt.want)
			}
			if rest, _ := io.ReadAll(conn.Reader); !bytes.Equal(rest, pipelined) {
				t.Fatalf("left %q unread, want the pipelined query", rest)
			}
		})
	}
}

// TestPgWelcome: the agent is told the upstream session's state in the
// order a server sends it, with the key the connector minted and never
// the upstream's, and a 3.2 request is answered as a 3.0 server would.
func TestPgWelcome(t *testing.T) {
	hc := &pgconn.HijackedConn{PID: 7, SecretKey: []byte{9, 9, 9, 9}, TxStatus: 'I',
		ParameterStatuses: map[string]string{"server_version": "15.0", "client_encoding": "UTF8", "TimeZone": "UTC"}}
	minted := pgKey{pid: 4242, secret: []byte{1, 2, 3, 4}}
	tests := []struct {
		name   string
		sm     *pgproto3.StartupMessage
		negoti *pgproto3.NegotiateProtocolVersion
	}{
		{name: "3.0", sm: &pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: map[string]string{"user": "x"}}},
		{name: "3.2", sm: &pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion32, Parameters: map[string]string{"user": "x"}},
			negoti: &pgproto3.NegotiateProtocolVersion{NewestMinorProtocol: 0}},
		{name: "3.0 with options", sm: &pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: map[string]string{"_pq_.b": "1", "_pq_.a": "1"}},
			negoti: &pgproto3.NegotiateProtocolVersion{NewestMinorProtocol: 0, UnrecognizedOptions: []string{"_pq_.a", "_pq_.b"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fe := pgproto3.NewFrontend(bytes.NewReader(pgWelcome(tt.sm, hc, minted)), io.Discard)
			next := func() pgproto3.BackendMessage {
				t.Helper()
				m, err := fe.Receive()
				if err != nil {
					t.Fatal(err)
				}
				return m
			}
			if tt.negoti != nil {
				if m, ok := next().(*pgproto3.NegotiateProtocolVersion); !ok || m.NewestMinorProtocol != 0 || !slices.Equal(m.UnrecognizedOptions, tt.negoti.UnrecognizedOptions) {
					t.Fatalf("first message %#v, want %#v", m, tt.negoti)
				}
			}
			if _, ok := next().(*pgproto3.AuthenticationOk); !ok {
				t.Fatal("no AuthenticationOk")
			}
			got := map[string]string{}
			var names []string
			var m pgproto3.BackendMessage
			for m = next(); ; m = next() {
				ps, ok := m.(*pgproto3.ParameterStatus)
				if !ok {
					break
				}
				got[ps.Name] = ps.Value
				names = append(names, ps.Name)
			}
			if !maps.Equal(got, hc.ParameterStatuses) || !slices.IsSorted(names) {
				t.Fatalf("parameters %v (in order %v), want %v sorted", got, names, hc.ParameterStatuses)
			}
			if k, ok := m.(*pgproto3.BackendKeyData); !ok || k.ProcessID != minted.pid || !bytes.Equal(k.SecretKey, minted.secret) {
				t.Fatalf("got %#v, want the minted BackendKeyData", m)
			}
			if r, ok := next().(*pgproto3.ReadyForQuery); !ok || r.TxStatus != 'I' {
				t.Fatalf("no ReadyForQuery idle")
			}
		})
	}
}

// FuzzPgAcceptStartup: whatever an agent sends first, the connector
// neither panics nor answers more than one byte per encryption request.
func FuzzPgAcceptStartup(f *testing.F) {
	for _, seed := range [][]byte{
		encode(f, &pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: map[string]string{"user": "a", "database": "b"}}),
		encode(f, &pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion32, Parameters: map[string]string{"user": "a", "_pq_.x": "y"}}),
		encode(f, &pgproto3.SSLRequest{}, &pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: map[string]string{"user": "a"}}),
		encode(f, &pgproto3.GSSEncRequest{}),
		encode(f, &pgproto3.CancelRequest{ProcessID: 1, SecretKey: []byte{1, 2, 3, 4}}),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		conn := &rw{Reader: bytes.NewReader(in)}
		msg, err := pgAcceptStartup(conn, func() error { return nil })
		if conn.out.Len() > 3 || strings.Trim(conn.out.String(), "N") != "" {
			t.Fatalf("answered %q", conn.out.String())
		}
		if err == nil && msg == nil {
			t.Fatal("no message and no error")
		}
	})
}

func TestApplicationName(t *testing.T) {
	tests := []struct{ name, subject, want string }{
		{name: "plain", subject: "coding-agent", want: "postern:coding-agent"},
		{name: "control bytes", subject: "a\x00b\nc", want: "postern:a?b?c"},
		{name: "non-ASCII", subject: "agent-é", want: "postern:agent-?"},
		{name: "long", subject: strings.Repeat("x", 100), want: "postern:" + strings.Repeat("x", 55)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := applicationName(tt.subject); got != tt.want {
				t.Fatalf("applicationName(%q) = %q, want %q", tt.subject, got, tt.want)
			}
		})
	}
}

// TestPgKeyring: a minted key matches only its own session's agent and
// binding, with its exact secret, while the session lives; keys are
// unique and never the upstream's.
func TestPgKeyring(t *testing.T) {
	var k pgKeyring
	real := pgSession{subject: "coding-agent", binding: "staging-db", pid: 7, secret: []byte{9, 9, 9, 9}}
	key := k.add(real)
	if key.pid == 0 || key.pid > 0x7fffffff || len(key.secret) != 4 || key.pid == real.pid {
		t.Fatalf("minted %+v", key)
	}
	wrongSecret := pgKey{pid: key.pid, secret: []byte{key.secret[0] ^ 1, key.secret[1], key.secret[2], key.secret[3]}}
	tests := []struct {
		name             string
		key              pgKey
		subject, binding string
		ok               bool
	}{
		{name: "its session", key: key, subject: "coding-agent", binding: "staging-db", ok: true},
		{name: "another agent", key: key, subject: "other-agent", binding: "staging-db"},
		{name: "another binding", key: key, subject: "coding-agent", binding: "prod-db"},
		{name: "wrong secret", key: wrongSecret, subject: "coding-agent", binding: "staging-db"},
		{name: "short secret", key: pgKey{pid: key.pid, secret: key.secret[:3]}, subject: "coding-agent", binding: "staging-db"},
		{name: "the upstream's own key", key: pgKey{pid: real.pid, secret: real.secret}, subject: "coding-agent", binding: "staging-db"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, ok := k.match(tt.key, tt.subject, tt.binding)
			if ok != tt.ok {
				t.Fatalf("match = %v, want %v", ok, tt.ok)
			}
			if ok && (s.pid != real.pid || !bytes.Equal(s.secret, real.secret)) {
				t.Fatalf("matched %+v, want the upstream's key", s)
			}
		})
	}
	seen := map[uint32]bool{key.pid: true}
	for range 1000 {
		kk := k.add(real)
		if seen[kk.pid] {
			t.Fatalf("PID %d minted twice", kk.pid)
		}
		seen[kk.pid] = true
	}
	k.remove(key)
	if _, ok := k.match(key, "coding-agent", "staging-db"); ok {
		t.Fatal("a removed key still matches")
	}
	if k.len() != 1000 {
		t.Fatalf("%d keys live, want 1000", k.len())
	}
}

// TestPgAuth: the password goes out only by SCRAM-SHA-256, channel-bound
// over TLS, unless the server is verified or the service opted out; a
// login without a password is not restricted.
func TestPgAuth(t *testing.T) {
	tests := []struct {
		mode          string
		insecure, pw  bool
		auth, binding string
	}{
		{mode: "disable", pw: true, auth: "scram-sha-256", binding: "disable"},
		{mode: "require", pw: true, auth: "scram-sha-256", binding: "require"},
		{mode: "verify-ca", pw: true, auth: "scram-sha-256", binding: "require"},
		{mode: "verify-full", pw: true, auth: "", binding: "prefer"},
		{mode: "require", pw: true, insecure: true, auth: "", binding: "prefer"},
		{mode: "disable", pw: true, insecure: true, auth: "", binding: "prefer"},
		{mode: "require", pw: false, auth: "", binding: "prefer"},
	}
	for _, tt := range tests {
		auth, binding := pgAuth(&Postgres{InsecureAuth: tt.insecure}, tt.mode, tt.pw)
		if auth != tt.auth || binding != tt.binding {
			t.Errorf("%s insecure=%v password=%v: require_auth=%q channel_binding=%q, want %q %q", tt.mode, tt.insecure, tt.pw, auth, binding, tt.auth, tt.binding)
		}
	}
}

func TestPgReplication(t *testing.T) {
	for v, want := range map[string]bool{"database": true, "true": true, "on": true, "yes": true, "1": true, "TRUE": true,
		"false": false, "off": false, "no": false, "0": false, "": false} {
		if got := pgReplication(v); got != want {
			t.Errorf("pgReplication(%q) = %v, want %v", v, got, want)
		}
	}
}
