package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Error is one problem in a configuration file, located: the file, the
// line and column of the key (or of the nearest enclosing key when the
// field is missing), and the field's path ("services[1].postgres.user").
type Error struct {
	File   string
	Line   int // 1-based; 0 when the problem has no position
	Column int
	Field  string // empty for problems with the file as a whole
	Msg    string
	Err    error // an underlying cause, such as a file that cannot be read
}

// Error returns "FILE:LINE:COL: FIELD: MESSAGE".
func (e *Error) Error() string {
	s := e.File
	if e.Line > 0 {
		s += fmt.Sprintf(":%d:%d", e.Line, e.Column)
	}
	if e.Field != "" {
		s += ": " + e.Field
	}
	return s + ": " + e.Msg
}

// Unwrap returns the underlying cause, if any, for errors.Is and errors.As
// (fs.ErrNotExist for a file that is missing, say).
func (e *Error) Unwrap() error { return e.Err }

type pos struct{ line, col int }

// doc is a decoded configuration file: where each field was written, and
// the problems found so far. Decoding records every problem instead of
// stopping at the first, so that one run shows everything to fix.
type doc struct {
	file string
	dir  string // relative paths in the file are relative to it
	at   map[string]pos
	errs []error
}

// decodeFile reads path into v, a pointer to a struct whose fields carry
// `yaml:"name"` tags. Unknown keys, duplicate keys and values of the wrong
// type are errors. It returns the doc for the caller's own checks; the
// caller reports d.err() once those are done.
func decodeFile(path string, v any) (*doc, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, &Error{File: path, Msg: "cannot read the configuration file: " + errText(err), Err: err}
	}
	return decode(path, src, v), nil
}

// decode parses src with yaml.v3 and then walks the node tree itself
// rather than calling yaml.v3's Decode: yaml.v3 reports a problem with a
// line alone, in terms of Go types ("cannot unmarshal !!str `many` into
// int"), and is laxer than a configuration should be (1.5 into an int,
// "yes" into a bool). The walk knows the field path and column of each
// value, which later checks need too (d.at), and leaves the conversion of
// each scalar to yaml.v3.
func decode(path string, src []byte, v any) *doc {
	d := &doc{file: path, dir: dirOf(path), at: map[string]pos{"": {1, 1}}}
	var root yaml.Node
	if err := yaml.Unmarshal(src, &root); err != nil {
		d.errs = append(d.errs, yamlSyntaxError(path, err))
		return d
	}
	if root.Kind == 0 || len(root.Content) == 0 {
		d.errs = append(d.errs, &Error{File: path, Msg: "the file is empty"})
		return d
	}
	d.value(root.Content[0], reflect.ValueOf(v).Elem(), "")
	return d
}

// yamlSyntaxError turns the parser's "yaml: line 3: ..." into a located
// Error.
func yamlSyntaxError(path string, err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	e := &Error{File: path, Msg: "not valid YAML: " + msg}
	var line int
	if _, err := fmt.Sscanf(msg, "line %d:", &line); err == nil {
		_, after, _ := strings.Cut(msg, ":")
		e.Line, e.Column, e.Msg = line, 1, "not valid YAML:"+after
	}
	return e
}

// errorf records a problem with field. A field that was never written
// (a required one, say) is located at its nearest written ancestor.
func (d *doc) errorf(field, format string, args ...any) {
	d.fail(field, nil, format, args...)
}

// fail records a problem with field caused by err (a file that cannot be
// read, say).
func (d *doc) fail(field string, err error, format string, args ...any) {
	p, ok := d.at[field]
	for f := field; !ok; {
		f = parent(f)
		p, ok = d.at[f]
	}
	d.errs = append(d.errs, &Error{File: d.file, Line: p.line, Column: p.col, Field: field, Msg: fmt.Sprintf(format, args...), Err: err})
}

// wrong records a problem with what is written at n, located there.
func (d *doc) wrong(n *yaml.Node, field, format string, args ...any) {
	d.errs = append(d.errs, &Error{File: d.file, Line: n.Line, Column: n.Column, Field: field, Msg: fmt.Sprintf(format, args...)})
}

func (d *doc) err() error { return errors.Join(d.errs...) }

func parent(field string) string {
	i := strings.LastIndexAny(field, ".[")
	if i < 0 {
		return ""
	}
	return field[:i]
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

var durationType = reflect.TypeFor[time.Duration]()

// expect says how a field of type t is written: the kind of node, the
// tag yaml.v3 must resolve a scalar to (any, when empty), and what to
// write, for errors.
func expect(t reflect.Type) (kind yaml.Kind, tag, want string) {
	if t == durationType {
		return yaml.ScalarNode, "", "a duration such as 10s or 1m30s"
	}
	switch t.Kind() {
	case reflect.Struct, reflect.Map:
		return yaml.MappingNode, "", "a mapping of keys to values"
	case reflect.Slice:
		return yaml.SequenceNode, "", "a list"
	case reflect.String:
		return yaml.ScalarNode, "", "a string"
	case reflect.Int, reflect.Int64:
		return yaml.ScalarNode, "!!int", "a whole number"
	case reflect.Bool:
		return yaml.ScalarNode, "!!bool", "true or false"
	}
	panic("config: cannot decode into " + t.String())
}

// value decodes n into v. A null leaves v as it is.
func (d *doc) value(n *yaml.Node, v reflect.Value, path string) {
	written := n // where an alias is written, not where its anchor is
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return
	}
	if v.Kind() == reflect.Pointer {
		v.Set(reflect.New(v.Type().Elem()))
		v = v.Elem()
	}
	kind, tag, want := expect(v.Type())
	ok := n.Kind == kind
	switch {
	case !ok:
	case kind == yaml.MappingNode:
		d.mapping(n, v, path)
	case kind == yaml.SequenceNode:
		v.Set(reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content)))
		for i, e := range n.Content {
			elem := fmt.Sprintf("%s[%d]", path, i)
			d.at[elem] = pos{e.Line, e.Column}
			d.value(e, v.Index(i), elem)
		}
	case v.Type() == durationType:
		// Not yaml.v3's: it takes a negative duration.
		dur, err := time.ParseDuration(n.Value)
		ok = err == nil && dur >= 0
		v.SetInt(int64(dur))
	default:
		// yaml.v3 alone would take 1.5 as an int and "yes" as a bool.
		ok = (tag == "" || n.ShortTag() == tag) && n.Decode(v.Addr().Interface()) == nil
	}
	if !ok {
		d.wrong(written, path, "want %s, got %s", want, describe(n))
	}
}

// mapping decodes n into v, a struct or a map with string keys,
// recording where each key is written: an error about a field points at
// its name.
func (d *doc) mapping(n *yaml.Node, v reflect.Value, path string) {
	t := v.Type()
	var names []string // of the struct's fields, by index
	if t.Kind() == reflect.Map {
		v.Set(reflect.MakeMap(t))
	} else {
		for i := range t.NumField() {
			name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
			if name == "-" {
				name = ""
			}
			names = append(names, name)
		}
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		field := join(path, k.Value)
		if k.Kind != yaml.ScalarNode {
			d.wrong(k, path, "keys must be plain names")
			continue
		}
		var elem reflect.Value
		if names == nil {
			elem = reflect.New(t.Elem()).Elem()
		} else if idx := slices.Index(names, k.Value); idx >= 0 && k.Value != "" {
			elem = v.Field(idx)
		} else {
			d.wrong(k, field, "unknown field%s", suggest(k.Value, names))
			continue
		}
		if seen[k.Value] {
			d.wrong(k, field, "set twice")
			continue
		}
		seen[k.Value] = true
		d.at[field] = pos{k.Line, k.Column}
		d.value(val, elem, field)
		if names == nil {
			v.SetMapIndex(reflect.ValueOf(k.Value), elem)
		}
	}
}

// describe names what a node holds, for "want X, got Y".
func describe(n *yaml.Node) string {
	switch {
	case n.Kind == yaml.MappingNode:
		return "a mapping"
	case n.Kind == yaml.SequenceNode:
		return "a list"
	case n.ShortTag() == "!!str":
		return strconv.Quote(n.Value)
	case n.ShortTag() == "!!int" || n.ShortTag() == "!!float":
		return "the number " + n.Value
	}
	return n.Value
}

// suggest offers the known field closest to a misspelled one, or else
// the list of them.
func suggest(key string, names []string) string {
	best, bestD := "", 3
	for _, k := range names {
		if dist := editDistance(key, k); k != "" && dist < bestD {
			best, bestD = k, dist
		}
	}
	known := slices.DeleteFunc(slices.Sorted(slices.Values(names)), func(s string) bool { return s == "" })
	if best != "" {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	return " (known fields: " + strings.Join(known, ", ") + ")"
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// errText is an error's text without the path that our own message
// already names: "no such file or directory" for a *PathError.
func errText(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}
