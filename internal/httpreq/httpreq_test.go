package httpreq

import (
	"errors"
	"net/url"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name, method, target  string
		path, uri, wantMethod string // wantMethod empty: method uppercased
		query                 url.Values
	}{
		{name: "plain", method: "GET", target: "/v1/incidents/42", path: "/v1/incidents/42", uri: "/v1/incidents/42"},
		{name: "root", method: "GET", target: "/", path: "/", uri: "/"},
		{name: "method uppercased", method: "post", target: "/x", path: "/x", uri: "/x", wantMethod: "POST"},
		{name: "custom method", method: "PROPFIND", target: "/x", path: "/x", uri: "/x"},
		{name: "dot-dot resolved", method: "GET", target: "/v1/../admin", path: "/admin", uri: "/admin"},
		{name: "dot resolved", method: "GET", target: "/a/./b", path: "/a/b", uri: "/a/b"},
		{name: "final dot-dot keeps the slash", method: "GET", target: "/a/b/..", path: "/a/", uri: "/a/"},
		{name: "final dot keeps the slash", method: "GET", target: "/a/.", path: "/a/", uri: "/a/"},
		{name: "double slash collapsed", method: "GET", target: "/v1//incidents///1", path: "/v1/incidents/1", uri: "/v1/incidents/1"},
		{name: "only slashes", method: "GET", target: "//", path: "/", uri: "/"},
		{name: "trailing slash kept", method: "GET", target: "/v1/", path: "/v1/", uri: "/v1/"},
		{name: "decoded once", method: "GET", target: "/a%20b/%7Euser", path: "/a b/~user", uri: "/a%20b/~user"},
		{name: "percent stays encoded", method: "GET", target: "/100%25", path: "/100%", uri: "/100%25"},
		{name: "double encoding decoded once", method: "GET", target: "/%252e%252e/x", path: "/%2e%2e/x", uri: "/%252e%252e/x"},
		{name: "dots inside a name", method: "GET", target: "/a..b/...", path: "/a..b/...", uri: "/a..b/..."},
		{name: "encoded dot in a name", method: "GET", target: "/file%2Ejson", path: "/file.json", uri: "/file.json"},
		{name: "utf-8", method: "GET", target: "/caf%C3%A9", path: "/café", uri: "/caf%C3%A9"},
		{name: "encoded question mark", method: "GET", target: "/a%3Fb", path: "/a?b", uri: "/a%3Fb"},
		{name: "query parsed and kept", method: "GET", target: "/s?q=a+b&k=1&k=2&e", path: "/s", uri: "/s?q=a+b&k=1&k=2&e",
			query: url.Values{"q": {"a b"}, "k": {"1", "2"}, "e": {""}}},
		{name: "empty query dropped", method: "GET", target: "/s?", path: "/s", uri: "/s"},
		{name: "dot-dot then query", method: "GET", target: "/v1/x/../y?z=1", path: "/v1/y", uri: "/v1/y?z=1", query: url.Values{"z": {"1"}}},
		{name: "options star", method: "OPTIONS", target: "*", path: "*", uri: "*"},
		{name: "sub-delims kept", method: "GET", target: "/a:b@c!$&'()*+,;=", path: "/a:b@c!$&'()*+,;=", uri: "/a:b@c!$&'()*+,;="},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.method, tt.target)
			if err != nil {
				t.Fatalf("Parse(%q, %q): %v", tt.method, tt.target, err)
			}
			want := tt.wantMethod
			if want == "" {
				want = strings.ToUpper(tt.method)
			}
			if got.Method != want || got.Path != tt.path || got.RequestURI != tt.uri {
				t.Errorf("Parse(%q, %q) = %s %q -> %q, want %s %q -> %q", tt.method, tt.target, got.Method, got.Path, got.RequestURI, want, tt.path, tt.uri)
			}
			if tt.query == nil {
				tt.query = url.Values{}
			}
			if got.Query.Encode() != tt.query.Encode() {
				t.Errorf("Query = %v, want %v", got.Query, tt.query)
			}
		})
	}
}

func TestParseRefuses(t *testing.T) {
	tests := []struct {
		name, method, target, want string
	}{
		{"empty method", "", "/", "empty method"},
		{"method not a token", "GE T", "/", "not an HTTP token"},
		{"method with a slash", "GET/", "/", "not an HTTP token"},
		{"empty target", "GET", "", "empty target"},
		{"absolute form", "GET", "http://evil.example/admin", "origin form"},
		{"authority form", "CONNECT", "db.internal:5432", "origin form"},
		{"star without options", "GET", "*", "OPTIONS only"},
		{"relative", "GET", "admin", "origin form"},
		{"climbs above the root", "GET", "/../etc/passwd", "above the root"},
		{"climbs above the root later", "GET", "/a/../../b", "above the root"},
		{"encoded dot-dot", "GET", "/v1/%2e%2e/admin", "encoded dot segment"},
		{"upper-case encoded dot-dot", "GET", "/v1/%2E%2E/admin", "encoded dot segment"},
		{"half-encoded dot-dot", "GET", "/v1/.%2e/admin", "encoded dot segment"},
		{"encoded dot", "GET", "/v1/%2e/admin", "encoded dot segment"},
		{"encoded slash", "GET", "/v1/a%2fb", "encoded slash"},
		{"encoded backslash", "GET", "/v1/a%5Cb", "encoded backslash"},
		{"backslash", "GET", `/v1\..\admin`, "backslash"},
		{"NUL", "GET", "/a\x00b", "NUL"},
		{"encoded NUL", "GET", "/a%00b", "control byte"},
		{"control byte", "GET", "/a\nb", "control byte"},
		{"space", "GET", "/a b", "may not appear raw"},
		{"raw non-ascii", "GET", "/caf\xc3\xa9", "may not appear raw"},
		{"not utf-8 once decoded", "GET", "/%ff", "not UTF-8"},
		{"malformed escape", "GET", "/%zz", "malformed escape"},
		{"truncated escape", "GET", "/a%2", "malformed escape"},
		{"fragment", "GET", "/a#b", "fragment"},
		{"semicolon in query", "GET", "/a?x=1;y=2", "query"},
		{"bad escape in query", "GET", "/a?x=%zz", "query"},
		{"space in query", "GET", "/a?x= 1", "raw in a query"},
		{"backslash in query", "GET", `/a?x=\`, "raw in a query"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.method, tt.target)
			if err == nil {
				t.Fatalf("Parse(%q, %q) = %+v, want an error", tt.method, tt.target, got)
			}
			if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Parse(%q, %q): %v, want ErrRefused and %q", tt.method, tt.target, err, tt.want)
			}
		})
	}
}

// FuzzParse: a normalized target normalizes to itself, and neither its
// path nor what the upstream receives holds a dot segment, an empty
// segment or an encoded dot or slash.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"/", "/v1/../admin", "/a/./b/", "/a//b", "/%2e%2e/", "/a%2fb", "/a%20b?x=1&y", "/100%25", "/caf%C3%A9/..", "*", "/a\\b", "http://x/"} {
		f.Add("GET", s)
	}
	f.Add("OPTIONS", "*")
	f.Fuzz(func(t *testing.T, method, target string) {
		got, err := Parse(method, target)
		if err != nil {
			if !errors.Is(err, ErrRefused) {
				t.Fatalf("error %v does not wrap ErrRefused", err)
			}
			return
		}
		again, err := Parse(got.Method, got.RequestURI)
		if err != nil {
			t.Fatalf("Parse(%q, %q) = %q, which is refused: %v", method, target, got.RequestURI, err)
		}
		if again.Method != got.Method || again.Path != got.Path || again.RequestURI != got.RequestURI || again.Query.Encode() != got.Query.Encode() {
			t.Fatalf("not idempotent: %q -> %+v -> %+v", target, got, again)
		}
		if got.Path == "*" {
			return
		}
		uriPath, _, _ := strings.Cut(got.RequestURI, "?")
		for _, p := range []string{got.Path, uriPath} {
			for _, bad := range []string{"/../", "/./", "//"} {
				if strings.Contains(p, bad) || strings.HasSuffix(p, bad[:len(bad)-1]) && bad != "//" {
					t.Fatalf("%q normalizes to %q -> %q, which holds %q", target, got.Path, got.RequestURI, bad)
				}
			}
		}
		if l := strings.ToLower(uriPath); strings.Contains(l, "%2e") || strings.Contains(l, "%2f") || strings.Contains(l, "%5c") {
			t.Fatalf("%q is sent as %q", target, got.RequestURI)
		}
		if strings.ContainsAny(got.Path, "\\\x00") {
			t.Fatalf("%q normalizes to %q", target, got.Path)
		}
	})
}
