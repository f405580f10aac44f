package postern_test

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// The layering the architecture promises, checked on the import graph:
// the server side never compiles in the agent client, an agent never
// compiles in a server, the shipped binary carries no benchmark, and the
// vocabulary and the protocol depend on nothing of ours.
func TestLayering(t *testing.T) {
	const mod = "github.com/postern/postern"
	tests := []struct {
		name      string
		pkgs      []string
		forbidden []string // packages of ours that must not be among the deps
		// forbiddenPrefixes: no dep may start with any of these
		forbiddenPrefixes []string
		only              []string // when set, every dep outside the standard library must be one of these (a prefix when it ends in "/")
	}{
		{
			name:      "relay and connector do not import the agent client",
			pkgs:      []string{"./mesh/relay", "./mesh/connector"},
			forbidden: []string{mod + "/mesh", mod + "/binding"},
		},
		{
			name: "an agent does not compile in a relay or a connector",
			pkgs: []string{"./binding", "./mesh"},
			forbidden: []string{mod + "/mesh/relay", mod + "/mesh/connector", mod + "/policy",
				mod + "/internal/sqlclass", "github.com/pganalyze/pg_query_go/v6"}, // no cgo parser in an agent
		},
		{
			// The agent SDK reports through OpenTelemetry's API and the
			// global providers a program installs: no Prometheus client,
			// no OpenTelemetry SDK or exporter of ours.
			name: "an agent does not compile in Prometheus or an OpenTelemetry SDK",
			pkgs: []string{"./binding", "./mesh"},
			forbiddenPrefixes: []string{"github.com/prometheus/", "go.opentelemetry.io/otel/sdk", "go.opentelemetry.io/otel/exporters",
				mod + "/internal/telemetry"},
		},
		{
			name:      "the postern binary carries no benchmark",
			pkgs:      []string{"./cmd/postern"},
			forbidden: []string{mod + "/internal/bench", "golang.zx2c4.com/wireguard"},
		},
		{
			name: "the vocabulary imports only the standard library",
			pkgs: []string{"."},
			only: []string{mod},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}"}, tt.pkgs...)
			out, err := exec.Command("go", args...).Output()
			if err != nil {
				t.Fatalf("go %s: %v", strings.Join(args, " "), err)
			}
			deps := strings.Fields(string(out))
			for _, f := range tt.forbidden {
				if slices.Contains(deps, f) {
					t.Errorf("%s depends on %s", strings.Join(tt.pkgs, " "), f)
				}
			}
			for _, d := range deps {
				for _, p := range tt.forbiddenPrefixes {
					if strings.HasPrefix(d, p) {
						t.Errorf("%s depends on %s", strings.Join(tt.pkgs, " "), d)
					}
				}
			}
			if tt.only == nil {
				return
			}
			for _, d := range deps {
				if !slices.ContainsFunc(tt.only, func(p string) bool {
					return d == p || strings.HasSuffix(p, "/") && strings.HasPrefix(d, p)
				}) {
					t.Errorf("%s depends on %s", strings.Join(tt.pkgs, " "), d)
				}
			}
		})
	}
}
