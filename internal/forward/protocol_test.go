package forward

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/postern/postern"
)

func startupMessage(t testing.TB) []byte {
	t.Helper()
	b, err := (&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: map[string]string{"user": "agent", "database": "app"}}).Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func pgRequest(code uint32) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint32(b, 8)
	binary.BigEndian.PutUint32(b[4:], code)
	return b
}

func TestSniff(t *testing.T) {
	cancel, _ := (&pgproto3.CancelRequest{ProcessID: 1, SecretKey: []byte{1, 2, 3, 4}}).Encode(nil)
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"ssl request", pgRequest(pgSSLRequest), postern.KindPostgres},
		{"gss request", pgRequest(pgGSSEncRequest), postern.KindPostgres},
		{"startup message", startupMessage(t), postern.KindPostgres},
		{"cancel request", cancel, postern.KindPostgres},
		{"http get", []byte("GET / HTTP/1.1\r\n"), postern.KindHTTP},
		{"http options", []byte("OPTIONS * HTTP/1.1\r\n"), postern.KindHTTP},
		{"ssh banner", []byte("SSH-2.0-OpenSSH_9.2\r\n"), ""},
		{"tls client hello", []byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01}, ""},
		{"short", []byte("GET"), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kind, prefix := sniff(bytes.NewReader(tt.in))
			if kind != tt.want {
				t.Errorf("sniff = %q, want %q", kind, tt.want)
			}
			if !bytes.HasPrefix(tt.in, prefix) || len(prefix) > 8 {
				t.Errorf("prefix %q is not what was read of %q", prefix, tt.in)
			}
		})
	}
}

type rw struct {
	*bytes.Reader
	out bytes.Buffer
}

func (r *rw) Write(p []byte) (int, error) { return r.out.Write(p) }

func TestPgStartup(t *testing.T) {
	sm := startupMessage(t)
	tests := []struct {
		name    string
		in      []byte
		wantMsg []byte
		wantOut string // what the client is answered
		wantErr bool
	}{
		{"startup alone", sm, sm, "", false},
		{"ssl then startup", append(pgRequest(pgSSLRequest), sm...), sm, "N", false},
		{"gss, ssl, startup", append(append(pgRequest(pgGSSEncRequest), pgRequest(pgSSLRequest)...), sm...), sm, "NN", false},
		{"too many requests", bytes.Repeat(pgRequest(pgSSLRequest), 4), nil, "NNN", true},
		{"not postgres", []byte("\x16\x03\x01\x02\x00\x01\x00\x01"), nil, "", true},
		{"truncated", sm[:len(sm)-2], nil, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &rw{Reader: bytes.NewReader(tt.in)}
			msg, _, err := pgStartup(c)
			if (err != nil) != tt.wantErr || !bytes.Equal(msg, tt.wantMsg) || c.out.String() != tt.wantOut {
				t.Errorf("pgStartup = %q, %v; answered %q", msg, err, c.out.String())
			}
		})
	}
}

func TestPgRefuse(t *testing.T) {
	tests := []struct {
		name string
		err  error
		code string
	}{
		{"denied", &postern.Error{Op: "open", Binding: "prod-db", Err: postern.ErrDenied, Policies: []string{"forbid-financial"}}, "28000"},
		{"unauthenticated", &postern.Error{Op: "connect", Err: postern.ErrUnauthenticated}, "28000"},
		{"no connector", &postern.Error{Op: "open", Binding: "prod-db", Err: postern.ErrNoConnector}, "08001"},
		{"limit", &postern.Error{Op: "open", Binding: "prod-db", Err: postern.ErrLimitExceeded}, "53300"},
		{"other", fmt.Errorf("boom: %w", errors.New("network")), "08001"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			pgRefuse(&buf, tt.err)
			fe := pgproto3.NewFrontend(&buf, nil)
			msg, err := fe.Receive()
			if err != nil {
				t.Fatal(err)
			}
			er, ok := msg.(*pgproto3.ErrorResponse)
			if !ok || er.Severity != "FATAL" || er.Code != tt.code || !strings.HasPrefix(er.Message, "postern: ") || !strings.HasSuffix(er.Message, tt.err.Error()) {
				t.Errorf("got %#v", msg)
			}
		})
	}
}

func FuzzPgStartup(f *testing.F) {
	f.Add(startupMessage(f))
	f.Add(append(pgRequest(pgSSLRequest), startupMessage(f)...))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		sniff(bytes.NewReader(in))
		msg, _, err := pgStartup(&rw{Reader: bytes.NewReader(in)})
		if err == nil && (len(msg) < 8 || int(binary.BigEndian.Uint32(msg)) != len(msg)) {
			t.Fatalf("message %q does not carry its own length", msg)
		}
	})
}
