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
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", e.Line, e.Column)
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
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
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if n, after, ok := strings.Cut(rest, ":"); ok {
			if line, err := strconv.Atoi(n); err == nil {
				e.Line, e.Column, e.Msg = line, 1, "not valid YAML:"+after
			}
		}
	}
	return e
}

// errorf records a problem with field. A field that was never written
// (a required one, say) is located at its nearest written ancestor.
func (d *doc) errorf(field, format string, args ...any) {
	d.errs = append(d.errs, d.errAt(field, nil, format, args...))
}

// fail records a problem with field caused by err (a file that cannot be
// read, say).
func (d *doc) fail(field string, err error, format string, args ...any) {
	d.errs = append(d.errs, d.errAt(field, err, format, args...))
}

func (d *doc) errAt(field string, cause error, format string, args ...any) *Error {
	p, ok := d.at[field]
	for f := field; !ok; {
		f = parent(f)
		p, ok = d.at[f]
	}
	return &Error{File: d.file, Line: p.line, Column: p.col, Field: field, Msg: fmt.Sprintf(format, args...), Err: cause}
}

// has reports whether field was written in the file.
func (d *doc) has(field string) bool { _, ok := d.at[field]; return ok }

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

// value decodes n into v, recording where path was written.
func (d *doc) value(n *yaml.Node, v reflect.Value, path string) {
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if path != "" {
		d.at[path] = pos{n.Line, n.Column}
	}
	if v.Type() == durationType {
		d.duration(n, v, path)
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if isNull(n) {
			return
		}
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.value(n, v.Elem(), path)
	case reflect.Struct:
		d.structure(n, v, path)
	case reflect.Map:
		d.mapping(n, v, path)
	case reflect.Slice:
		d.sequence(n, v, path)
	case reflect.String:
		if isNull(n) {
			return
		}
		if n.Kind != yaml.ScalarNode {
			d.errorf(path, "want a string, got %s", describe(n))
			return
		}
		v.SetString(n.Value)
	case reflect.Int, reflect.Int64:
		if isNull(n) {
			return
		}
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
			d.errorf(path, "want a whole number, got %s", describe(n))
			return
		}
		i, err := strconv.ParseInt(n.Value, 0, 64)
		if err != nil || v.OverflowInt(i) {
			d.errorf(path, "want a whole number, got %q", n.Value)
			return
		}
		v.SetInt(i)
	case reflect.Bool:
		if isNull(n) {
			return
		}
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
			d.errorf(path, "want true or false, got %s", describe(n))
			return
		}
		v.SetBool(n.Value == "true" || n.Value == "True" || n.Value == "TRUE")
	default:
		panic("config: cannot decode into " + v.Type().String())
	}
}

func (d *doc) duration(n *yaml.Node, v reflect.Value, path string) {
	if isNull(n) {
		return
	}
	if n.Kind != yaml.ScalarNode {
		d.errorf(path, "want a duration such as 10s or 1m30s, got %s", describe(n))
		return
	}
	if n.Tag == "!!int" && n.Value == "0" {
		v.SetInt(0)
		return
	}
	dur, err := time.ParseDuration(n.Value)
	if err != nil || dur < 0 {
		d.errorf(path, "want a duration such as 10s or 1m30s, got %q", n.Value)
		return
	}
	v.SetInt(int64(dur))
}

func (d *doc) structure(n *yaml.Node, v reflect.Value, path string) {
	if isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(path, "want a mapping of keys to values, got %s", describe(n))
		return
	}
	t := v.Type()
	fields := map[string]int{}
	var known []string
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		fields[name] = i
		known = append(known, name)
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		field := join(path, k.Value)
		if k.Kind != yaml.ScalarNode {
			d.errs = append(d.errs, &Error{File: d.file, Line: k.Line, Column: k.Column, Field: path, Msg: "keys must be plain names"})
			continue
		}
		idx, ok := fields[k.Value]
		if !ok {
			d.errs = append(d.errs, &Error{File: d.file, Line: k.Line, Column: k.Column, Field: field,
				Msg: "unknown field" + suggest(k.Value, known)})
			continue
		}
		if seen[k.Value] {
			d.errs = append(d.errs, &Error{File: d.file, Line: k.Line, Column: k.Column, Field: field, Msg: "set twice"})
			continue
		}
		seen[k.Value] = true
		d.at[field] = pos{k.Line, k.Column}
		// Record the key's position, not the value's: an error about a
		// field points at its name.
		d.valueAtKey(val, v.Field(idx), field, k)
	}
}

// valueAtKey decodes val for the key k, keeping k's position as the
// field's position.
func (d *doc) valueAtKey(val *yaml.Node, v reflect.Value, field string, k *yaml.Node) {
	d.value(val, v, field)
	d.at[field] = pos{k.Line, k.Column}
}

func (d *doc) mapping(n *yaml.Node, v reflect.Value, path string) {
	if isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(path, "want a mapping of keys to values, got %s", describe(n))
		return
	}
	if v.Type().Key().Kind() != reflect.String {
		panic("config: map keys must be strings")
	}
	if v.IsNil() {
		v.Set(reflect.MakeMap(v.Type()))
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		field := join(path, k.Value)
		if k.Kind != yaml.ScalarNode || seen[k.Value] {
			d.errs = append(d.errs, &Error{File: d.file, Line: k.Line, Column: k.Column, Field: field, Msg: "set twice or not a plain name"})
			continue
		}
		seen[k.Value] = true
		elem := reflect.New(v.Type().Elem()).Elem()
		d.valueAtKey(val, elem, field, k)
		v.SetMapIndex(reflect.ValueOf(k.Value).Convert(v.Type().Key()), elem)
	}
}

func (d *doc) sequence(n *yaml.Node, v reflect.Value, path string) {
	if isNull(n) {
		return
	}
	if n.Kind != yaml.SequenceNode {
		d.errorf(path, "want a list, got %s", describe(n))
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, e := range n.Content {
		d.value(e, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
	}
	v.Set(s)
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

// describe names what a node holds, for "want X, got Y".
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!str":
			return strconv.Quote(n.Value)
		case "!!int":
			return "the number " + n.Value
		case "!!float":
			return "the number " + n.Value
		case "!!bool":
			return n.Value
		}
		return n.Value
	}
	return "something else"
}

// suggest offers the known field closest to a misspelled one.
func suggest(key string, known []string) string {
	best, bestD := "", 3
	for _, k := range known {
		if dist := editDistance(key, k); dist < bestD {
			best, bestD = k, dist
		}
	}
	slices.Sort(known)
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
