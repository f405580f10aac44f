package config

import (
	"strings"
	"testing"
)

// FuzzDecode: no input makes the decoder panic, and every problem it
// reports is located in the file.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(goodRelay))
	f.Add([]byte(goodConnector("sha256:0000000000000000000000000000000000000000000000000000000000000000")))
	f.Add([]byte("a: &x [1, 2]\nb: *x\n<<: {c: 1}\n"))
	f.Add([]byte("services:\n  - name: db\n    http: {headers: {A: {file: x}}}\n"))
	f.Add([]byte("limits: {streams_per_agent: 1.5}\ntls: {self_signed: yes, hosts: &h [a]}\nlisten: *h\ndrain_timeout: -5s\n"))
	f.Fuzz(func(t *testing.T, src []byte) {
		for _, v := range []any{new(RelayFile), new(ConnectorFile)} {
			d := decode("f.yaml", src, v)
			for _, err := range d.errs {
				if !strings.HasPrefix(err.Error(), "f.yaml") {
					t.Errorf("error does not name the file: %v", err)
				}
			}
		}
	})
}
