package config

import (
	"slices"
	"testing"
	"time"
)

// TestDecode: the rules the decoder adds to yaml.v3's, which alone would
// take 1.5 as an int, "yes" as a bool and -5s as a duration, and would
// locate a problem by its line only.
func TestDecode(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want string // the error, or "" for none
		ok   func(*RelayFile) bool
	}{
		{name: "float into int", yaml: "limits: {streams_per_agent: 1.5}", want: "f.yaml:1:29: limits.streams_per_agent: want a whole number, got the number 1.5"},
		{name: "hex int", yaml: "limits: {streams_per_agent: 0x10}", ok: func(f *RelayFile) bool { return f.Limits.StreamsPerAgent == 16 }},
		{name: "yes into bool", yaml: "tls: {self_signed: yes}", want: "f.yaml:1:20: tls.self_signed: want true or false, got \"yes\""},
		{name: "bool", yaml: "tls: {self_signed: true}", ok: func(f *RelayFile) bool { return f.TLS != nil && f.TLS.SelfSigned }},
		{name: "negative duration", yaml: "drain_timeout: -5s", want: `f.yaml:1:16: drain_timeout: want a duration such as 10s or 1m30s, got "-5s"`},
		{name: "zero duration", yaml: "drain_timeout: 0", ok: func(f *RelayFile) bool { return f.DrainTimeout == 0 }},
		{name: "duration", yaml: "drain_timeout: 1m30s", ok: func(f *RelayFile) bool { return f.DrainTimeout == 90*time.Second }},
		{name: "mapping for a string", yaml: "listen: {a: b}", want: "f.yaml:1:9: listen: want a string, got a mapping"},
		{name: "number as a string", yaml: "audit: 7", ok: func(f *RelayFile) bool { return f.Audit == "7" }},
		{name: "map key set twice", yaml: "policy: {principal_attributes: {a: String, a: Long}}", want: "f.yaml:1:44: policy.principal_attributes.a: set twice"},
		{name: "key not a name", yaml: "policy: {[a]: 1}", want: "f.yaml:1:10: policy: keys must be plain names"},
		{name: "merge key", yaml: "<<: {listen: x}", want: "f.yaml:1:1: <<: unknown field (known fields: audit, audit_queue, bindings, drain_timeout, gc_headroom_mib, hide_denied, limits, listen, log, metrics, policy, tls, tokens, transport)"},
		{name: "null section", yaml: "tls: ~\nlisten:", ok: func(f *RelayFile) bool { return f.TLS == nil && f.Listen == "" }},
		{name: "alias", yaml: "listen: &l 127.0.0.1:1\ntls: {hosts: [*l, b]}", ok: func(f *RelayFile) bool {
			return f.TLS != nil && slices.Equal(f.TLS.Hosts, []string{"127.0.0.1:1", "b"})
		}},
		{name: "alias of the wrong type", yaml: "tls: {hosts: &a [x]}\nlisten: *a", want: "f.yaml:2:9: listen: want a string, got a list"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var f RelayFile
			d := decode("f.yaml", []byte(tt.yaml), &f)
			err := d.err()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.want != "" && (err == nil || err.Error() != tt.want):
				t.Fatalf("error\n%v\nwant\n%s", err, tt.want)
			case tt.ok != nil && !tt.ok(&f):
				t.Errorf("decoded %+v", f)
			}
		})
	}
}
