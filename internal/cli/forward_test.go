package cli

import (
	"strings"
	"testing"
)

func TestParseForwards(t *testing.T) {
	tests := []struct {
		name        string
		args        []string
		allowRemote bool
		want        []string // addresses, in order
		err         string
	}{
		{"host and port", []string{"staging-db=127.0.0.1:5432"}, false, []string{"127.0.0.1:5432"}, ""},
		{"port alone", []string{"staging-db=5432"}, false, []string{"127.0.0.1:5432"}, ""},
		{"ipv6 loopback", []string{"staging-db=[::1]:5432"}, false, []string{"[::1]:5432"}, ""},
		{"localhost", []string{"staging-api=localhost:8080"}, false, []string{"localhost:8080"}, ""},
		{"several", []string{"a=1", "b=2", "c=127.0.0.1:0", "d=127.0.0.1:0"}, false, []string{"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:0", "127.0.0.1:0"}, ""},
		{"every interface", []string{"staging-db=0.0.0.0:5432"}, false, nil, "0.0.0.0 is not a loopback address"},
		{"empty host", []string{"staging-db=:5432"}, false, nil, "an empty host (every interface) is not a loopback address"},
		{"a name", []string{"staging-db=db.example.com:5432"}, false, nil, "--allow-remote"},
		{"remote allowed", []string{"staging-db=0.0.0.0:5432"}, true, []string{"0.0.0.0:5432"}, ""},
		{"no equals", []string{"staging-db"}, false, nil, "want BINDING=[HOST:]PORT"},
		{"no binding", []string{"=5432"}, false, nil, "want BINDING=[HOST:]PORT"},
		{"bad port", []string{"a=127.0.0.1:99999"}, false, nil, "not a number from 0 to 65535"},
		{"not an address", []string{"a=nowhere"}, false, nil, "is not HOST:PORT or PORT"},
		{"twice", []string{"a=5432", "b=127.0.0.1:5432"}, false, nil, `already forwarded by "a=5432"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rules, err := parseForwards(tt.args, tt.allowRemote)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range rules {
				got = append(got, r.addr)
			}
			if strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Errorf("addresses %q, want %q", got, tt.want)
			}
		})
	}
}

func TestForwardUsageErrors(t *testing.T) {
	for _, v := range []string{"POSTERN_RELAY", "POSTERN_TOKEN", "POSTERN_TOKEN_FILE", "POSTERN_RELAY_PIN", "POSTERN_RELAY_CA"} {
		t.Setenv(v, "")
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"nothing to forward", []string{"forward"}, "name at least one BINDING=[HOST:]PORT"},
		{"not loopback", []string{"forward", "staging-db=0.0.0.0:5432"}, "0.0.0.0 is not a loopback address"},
		{"bad log level", []string{"forward", "--log-level", "loud", "a=1"}, "--log-level"},
		{"bad log format", []string{"forward", "--log-format", "xml", "a=1"}, "--log-format"},
		{"no environment", []string{"forward", "a=127.0.0.1:0"}, "POSTERN_RELAY: not set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := run(t, tt.args...)
			if code != ExitUsage || out != "" || !strings.Contains(errOut, tt.want) {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit %d and %q", code, out, errOut, ExitUsage, tt.want)
			}
		})
	}
	code, out, _ := run(t, "forward", "--help")
	if code != ExitOK || !strings.Contains(out, "--allow-remote") || !strings.Contains(out, "BINDING=[HOST:]PORT") {
		t.Errorf("forward --help: exit %d:\n%s", code, out)
	}
}
