// Package httpreq normalizes the target of an HTTP request once, so that
// the policy that judges a request and the upstream that serves it see the
// same path.
//
// [Parse] takes the method and the request target as they arrived (the
// request line's two first words) and returns a [Target]: Path, decoded,
// is what policy judges (context.http.path); RequestURI, re-encoded from
// Path, is what the upstream must receive, byte for byte. Sending the
// upstream anything else (the original target, say) would let a request
// be judged as one path and served as another.
//
// # Rules
//
// The method must be an HTTP token; it is uppercased ("get" becomes "GET",
// for policy and upstream alike).
//
// The target must be in origin form, "/path?query". Refused: the absolute
// form ("http://host/path") and the authority form ("host:443"), which a
// connector serving one upstream has no use for; "*", except with OPTIONS
// (Path and RequestURI are then "*"); a fragment ("#...").
//
// The path is percent-decoded once. Refused, because servers differ on
// what they mean: an encoded slash (%2F) or backslash (%5C), a raw
// backslash, a NUL or other control byte, raw or encoded; a segment that
// is "." or ".." once decoded but was encoded ("%2e%2e"); bytes that are
// not UTF-8 once decoded; a malformed escape ("%zz"); and a ".." that would
// climb above the root ("/../etc"). Then dot segments are resolved as RFC
// 3986 section 5.2.4 says ("/v1/../admin" is "/admin", "/a/./b" is "/a/b",
// "/a/b/.." is "/a/") and empty segments are removed ("/v1//x" is "/v1/x",
// "//" is "/"); a final slash is kept. RequestURI encodes each segment
// again, escaping exactly the bytes a segment may not hold raw, in
// upper-case hex ("/a b" arrives as "/a%20b"; "/%7e" is sent as "/~").
//
// The query is checked, not rewritten: it must hold no control byte,
// space, '#' or raw byte above 0x7E, and parse with [url.ParseQuery]
// (which refuses ';' as a separator and malformed escapes). Query holds
// the parsed parameters; RequestURI carries the query as it came, without
// a '?' when it is empty. An upstream that parses a query differently from
// Go (a '+' taken literally, the last of repeated keys) may read it
// otherwise than policy did: policies should test the keys they care about
// with context.http.query_keys and query.
package httpreq

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"unicode/utf8"
)

// A Target is a request target normalized for policy and upstream alike.
type Target struct {
	Method string // uppercased, a valid token
	// Path is decoded, dot segments resolved, empty segments removed: what
	// policy judges. "*" for OPTIONS *.
	Path string
	// RawQuery is the query as it came, without the '?'; Query, parsed.
	RawQuery string
	Query    url.Values
	// RequestURI is the target the upstream must receive: Path encoded
	// again, then '?' and RawQuery when RawQuery is not empty.
	RequestURI string
}

// ErrRefused is wrapped by every error of Parse.
var ErrRefused = errors.New("httpreq: request refused")

func refuse(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrRefused, fmt.Sprintf(format, args...))
}

// Parse normalizes a request's method and target (in origin form, as the
// request line carries it) by the rules of the package documentation.
func Parse(method, target string) (Target, error) {
	if method == "" {
		return Target{}, refuse("empty method")
	}
	for i := 0; i < len(method); i++ {
		if !isTchar(method[i]) {
			return Target{}, refuse("method %q is not an HTTP token", method)
		}
	}
	t := Target{Method: strings.ToUpper(method)}
	switch {
	case target == "":
		return Target{}, refuse("empty target")
	case target == "*":
		if t.Method != "OPTIONS" {
			return Target{}, refuse("target * is for OPTIONS only")
		}
		t.Path, t.RequestURI, t.Query = "*", "*", url.Values{}
		return t, nil
	case target[0] != '/':
		return Target{}, refuse("target %q is not in origin form (/path?query)", target)
	}
	if strings.IndexByte(target, '#') >= 0 {
		return Target{}, refuse("target has a fragment")
	}
	rawPath, rawQuery, _ := strings.Cut(target, "?")
	segs, err := decodeSegments(rawPath)
	if err != nil {
		return Target{}, err
	}
	if err := checkQuery(rawQuery); err != nil {
		return Target{}, err
	}
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return Target{}, refuse("query: %v", err)
	}
	t.RawQuery, t.Query = rawQuery, q

	var path, uri strings.Builder
	for _, s := range segs.names {
		path.WriteByte('/')
		path.WriteString(s)
		uri.WriteByte('/')
		escapeSegment(&uri, s)
	}
	if segs.dir || len(segs.names) == 0 {
		path.WriteByte('/')
		uri.WriteByte('/')
	}
	t.Path = path.String()
	if rawQuery != "" {
		uri.WriteByte('?')
		uri.WriteString(rawQuery)
	}
	t.RequestURI = uri.String()
	return t, nil
}

// segments is a path resolved: its decoded segment names, and whether it
// ends with a slash.
type segments struct {
	names []string
	dir   bool
}

// decodeSegments decodes raw (starting with '/') segment by segment and
// resolves its dot segments.
func decodeSegments(raw string) (segments, error) {
	var out segments
	parts := strings.Split(raw[1:], "/")
	for i, p := range parts {
		last := i == len(parts)-1
		if p == "" {
			// An empty segment: "//" collapses; a final one means a
			// trailing slash.
			if last {
				out.dir = true
			}
			continue
		}
		name, encoded, err := decodeSegment(p)
		if err != nil {
			return segments{}, err
		}
		switch {
		case (name == "." || name == "..") && encoded:
			return segments{}, refuse("encoded dot segment %q", p)
		case name == ".":
			out.dir = last
			continue
		case name == "..":
			if len(out.names) == 0 {
				return segments{}, refuse("path climbs above the root")
			}
			out.names = out.names[:len(out.names)-1]
			out.dir = last
			continue
		}
		out.names = append(out.names, name)
		out.dir = false
	}
	return out, nil
}

// decodeSegment percent-decodes one segment, reporting whether it held an
// escape.
func decodeSegment(p string) (string, bool, error) {
	if !strings.ContainsRune(p, '%') {
		for i := 0; i < len(p); i++ {
			if !isPchar(p[i]) {
				return "", false, refuseByte(p[i])
			}
		}
		return p, false, nil
	}
	b := make([]byte, 0, len(p))
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c == '%' {
			if i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2]) {
				return "", true, refuse("malformed escape in %q", p)
			}
			c = unhex(p[i+1])<<4 | unhex(p[i+2])
			i += 2
			switch {
			case c == '/':
				return "", true, refuse("encoded slash (%%2F) in a path segment")
			case c == '\\':
				return "", true, refuse("encoded backslash (%%5C) in the path")
			case c < 0x20 || c == 0x7f:
				return "", true, refuse("encoded control byte %#02x in the path", c)
			}
		} else if !isPchar(c) {
			return "", true, refuseByte(c)
		}
		b = append(b, c)
	}
	if !utf8.Valid(b) {
		return "", true, refuse("path segment %q is not UTF-8 once decoded", p)
	}
	return string(b), true, nil
}

func refuseByte(c byte) error {
	switch {
	case c == '\\':
		return refuse("backslash in the path")
	case c == 0:
		return refuse("NUL in the path")
	case c < 0x20 || c == 0x7f:
		return refuse("control byte %#02x in the path", c)
	}
	return refuse("byte %q may not appear raw in a path", c)
}

func checkQuery(q string) error {
	for i := 0; i < len(q); i++ {
		if c := q[i]; c <= 0x20 || c >= 0x7f || c == '#' || c == '\\' {
			return refuse("byte %q may not appear raw in a query", c)
		}
	}
	return nil
}

// escapeSegment writes s with every byte that a segment may not hold raw
// escaped (RFC 3986 pchar: unreserved, sub-delims, ':' and '@' are kept).
func escapeSegment(b *strings.Builder, s string) {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isPchar(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
}

// isPchar reports whether c may appear raw in a path segment (RFC 3986
// pchar, less '%', which starts an escape).
func isPchar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("-._~!$&'()*+,;=:@", c) >= 0
}

// isTchar reports whether c may appear in an HTTP token (RFC 9110 5.6.2).
func isTchar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}
