package doccheck

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"go/ast"
	"go/build"
	"go/doc"
	"go/doc/comment"
	"go/parser"
	"go/scanner"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// A block is one code block of the documentation.
type block struct {
	file  string   // relative to the module root, slash-separated
	line  int      // line of its first line in file
	lines []string // as written, without the comment's "//\t"
	fence bool     // a ```go fence says it is Go
}

// An example is the body of one Example function.
type example struct {
	file, name string
	lines      []string // non-blank, trimmed
}

// moduleRoot is the directory of the module's go.mod, found by walking up
// from the test's directory.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("doccheck: no go.mod above the test's directory")
		}
		dir = parent
	}
}

// modulePath reads the module path from root's go.mod.
func modulePath(t *testing.T, root string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(strings.TrimSpace(l), "module "); ok {
			return strings.Trim(strings.TrimSpace(p), `"`)
		}
	}
	t.Fatal("doccheck: go.mod names no module")
	return ""
}

// walk calls fn for every file of the module, skipping testdata, vendor,
// hidden directories and nested modules.
func walk(t *testing.T, root string, fn func(path string)) {
	t.Helper()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if path != root && (name == "testdata" || name == "vendor" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
				return filepath.SkipDir
			}
			if path != root {
				if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil {
					return filepath.SkipDir
				}
			}
			return nil
		}
		fn(path)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// docBlocks returns the code blocks of the package comment in src.
func docBlocks(file string, src []byte) ([]block, error) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, file, src, parser.PackageClauseOnly|parser.ParseComments)
	if err != nil {
		return nil, err
	}
	if f.Doc == nil {
		return nil, nil
	}
	var blocks []block
	var cur *block
	end := func() {
		if cur == nil {
			return
		}
		for len(cur.lines) > 0 && cur.lines[len(cur.lines)-1] == "" {
			cur.lines = cur.lines[:len(cur.lines)-1]
		}
		blocks = append(blocks, *cur)
		cur = nil
	}
	for _, c := range f.Doc.List {
		line := fset.Position(c.Pos()).Line
		for i, text := range commentLines(c.Text) {
			switch {
			case strings.HasPrefix(text, "\t"):
				if cur == nil {
					cur = &block{file: file, line: line + i}
				}
				cur.lines = append(cur.lines, text[1:])
			case strings.TrimSpace(text) == "":
				// A blank line inside a code block belongs to it when
				// more code follows.
				if cur != nil {
					cur.lines = append(cur.lines, "")
				}
			default:
				end()
			}
		}
	}
	end()
	return blocks, nil
}

// commentLines is the text of one comment, line by line, without its
// comment markers.
func commentLines(text string) []string {
	if s, ok := strings.CutPrefix(text, "//"); ok {
		return []string{s}
	}
	s := strings.TrimSuffix(strings.TrimPrefix(text, "/*"), "*/")
	return strings.Split(s, "\n")
}

// readmeBlocks returns the ```go fenced blocks of a Markdown file.
func readmeBlocks(file string, src []byte) []block {
	var blocks []block
	var cur *block
	sc := bufio.NewScanner(bytes.NewReader(src))
	for n := 1; sc.Scan(); n++ {
		l := sc.Text()
		fenceLine := strings.HasPrefix(strings.TrimSpace(l), "```")
		switch {
		case cur == nil && fenceLine:
			if strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(l), "```")) == "go" {
				cur = &block{file: file, line: n + 1, fence: true}
			} else {
				cur = &block{} // another language: read to its end, keep nothing
			}
		case cur != nil && fenceLine:
			if cur.fence {
				blocks = append(blocks, *cur)
			}
			cur = nil
		case cur != nil:
			cur.lines = append(cur.lines, l)
		}
	}
	return blocks
}

var looksGo = regexp.MustCompile(`:=|\berr\b|\bfunc `)

// classify says whether b is Go. A block that is Go by its fence or by
// its look but does not parse as statements is an error.
func classify(b block) (isGo bool, err error) {
	src := strings.Join(b.lines, "\n")
	_, perr := parser.ParseFile(token.NewFileSet(), "", "package p; func _() {\n"+src+"\n}", parser.ParseComments)
	if perr == nil {
		return true, nil
	}
	if !b.fence && !looksGo.MatchString(src) {
		return false, nil
	}
	var list scanner.ErrorList
	if errors.As(perr, &list) && len(list) > 0 {
		// Line 1 of the wrapper is the func line; the block starts on 2.
		return true, fmt.Errorf("%s:%d: looks like Go but does not parse: %s", b.file, b.line+list[0].Pos.Line-2, list[0].Msg)
	}
	return true, fmt.Errorf("%s:%d: looks like Go but does not parse: %v", b.file, b.line, perr)
}

// examples returns the Example functions of a _test.go file.
func examples(file string, src []byte) ([]example, error) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, file, src, parser.ParseComments)
	if err != nil {
		return nil, err
	}
	var out []example
	for _, d := range f.Decls {
		fn, ok := d.(*ast.FuncDecl)
		if !ok || fn.Recv != nil || fn.Body == nil || !strings.HasPrefix(fn.Name.Name, "Example") {
			continue
		}
		body := src[fset.Position(fn.Body.Lbrace).Offset+1 : fset.Position(fn.Body.Rbrace).Offset]
		out = append(out, example{file: file, name: fn.Name.Name, lines: trimmed(strings.Split(string(body), "\n"))})
	}
	return out, nil
}

func trimmed(lines []string) []string {
	var out []string
	for _, l := range lines {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// match reports whether the block's lines appear, in order, in one of the
// examples. If not, missing is the first line not found by the example
// that has the longest run of them, and closest names that example.
func match(lines []string, exs []example) (ok bool, missing, closest string) {
	want := trimmed(lines)
	best := -1
	for _, ex := range exs {
		n := 0
		for _, l := range ex.lines {
			if n < len(want) && l == want[n] {
				n++
			}
		}
		if n == len(want) {
			return true, "", ex.name
		}
		if n > best {
			best, closest = n, ex.name
		}
	}
	if best < 0 {
		best = 0
	}
	return false, want[best], closest
}

func TestSnippetsAreExamples(t *testing.T) {
	root := moduleRoot(t)
	var blocks []block
	byDir := map[string][]example{} // directory, relative to root
	var all []example
	walk(t, root, func(path string) {
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		base := filepath.Base(path)
		switch {
		case base == "doc.go":
			src, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			bs, err := docBlocks(rel, src)
			if err != nil {
				t.Fatal(err)
			}
			blocks = append(blocks, bs...)
		case rel == "README.md":
			src, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			blocks = append(blocks, readmeBlocks(rel, src)...)
		case strings.HasSuffix(base, "_test.go"):
			src, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			exs, err := examples(rel, src)
			if err != nil {
				t.Fatal(err)
			}
			dir := filepath.ToSlash(filepath.Dir(rel))
			byDir[dir] = append(byDir[dir], exs...)
			all = append(all, exs...)
		}
	})
	goBlocks := 0
	for _, b := range blocks {
		isGo, err := classify(b)
		if err != nil {
			t.Error(err)
			continue
		}
		if !isGo {
			continue
		}
		goBlocks++
		exs, where := all, "any package"
		if b.file != "README.md" {
			dir := filepath.ToSlash(filepath.Dir(b.file))
			exs, where = byDir[dir], dir
		}
		if ok, missing, closest := match(b.lines, exs); !ok {
			if closest == "" {
				t.Errorf("%s:%d: Go snippet, but %s has no Example function to hold it (first line %q)", b.file, b.line, where, missing)
				continue
			}
			t.Errorf("%s:%d: snippet line %q is in no Example function of %s after the lines before it (closest: %s)", b.file, b.line, missing, where, closest)
		}
	}
	if goBlocks == 0 {
		t.Error("found no Go snippet at all: is the walk looking in the right place?")
	}
}

func TestMatch(t *testing.T) {
	exs := []example{
		{name: "ExampleOpen", lines: trimmed([]string{
			"ctx := context.Background()",
			`db, err := binding.Open("staging-db")`,
			"if err != nil {",
			"log.Fatal(err)",
			"}",
			"sqlDB, err := db.SQL()",
			"_ = ctx",
		})},
		{name: "ExampleOther", lines: []string{"x := 1"}},
	}
	tests := []struct {
		name     string
		block    block
		isGo     bool
		parseErr bool
		ok       bool
		missing  string
	}{{
		name: "in order, indented, with blank lines and lines between",
		block: block{lines: []string{
			`db, err := binding.Open("staging-db")`,
			"",
			"if err != nil {",
			"\tlog.Fatal(err)",
			"}",
			"sqlDB, err := db.SQL()",
		}},
		isGo: true, ok: true,
	}, {
		name: "out of order",
		block: block{lines: []string{
			"sqlDB, err := db.SQL()",
			`db, err := binding.Open("staging-db")`,
		}},
		isGo: true, missing: `db, err := binding.Open("staging-db")`,
	}, {
		name: "a line no example has",
		block: block{lines: []string{
			`db, err := binding.Open("staging-db")`,
			`rows, err := db.Query("select 1")`,
		}},
		isGo: true, missing: `rows, err := db.Query("select 1")`,
	}, {
		name: "a comment that differs",
		block: block{lines: []string{
			`db, err := binding.Open("staging-db") // lazy`,
		}},
		isGo: true, missing: `db, err := binding.Open("staging-db") // lazy`,
	}, {
		name:  "Go-looking placeholder that does not parse",
		block: block{lines: []string{"db, err := binding.Open(name)", "if err != nil { ... }"}},
		isGo:  true, parseErr: true,
	}, {
		name:  "a go fence that does not parse",
		block: block{fence: true, lines: []string{"binding.Open(", "name"}},
		isGo:  true, parseErr: true,
	}, {
		name: "cedar",
		block: block{lines: []string{
			`@id("forbid-financial")`,
			"forbid (principal, action, resource)",
			`when { resource has labels && resource.labels.contains("financial") };`,
		}},
	}, {
		name:  "shell",
		block: block{lines: []string{"go run ./examples/quickstart", "go test -race ./..."}},
	}, {
		name:  "environment",
		block: block{lines: []string{"POSTERN_RELAY=relay.example.com:7443", "POSTERN_TOKEN=eyJ..."}},
	}, {
		name: "diagram",
		block: block{lines: []string{
			"agent process        relay (public)        private network",
			"binding.Open(name) --QUIC--> verify <--QUIC-- connector --TCP--> db",
		}},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			isGo, err := classify(tt.block)
			if isGo != tt.isGo || (err != nil) != tt.parseErr {
				t.Fatalf("classify = %v, %v; want Go %v, parse error %v", isGo, err, tt.isGo, tt.parseErr)
			}
			if !isGo || err != nil {
				return
			}
			ok, missing, _ := match(tt.block.lines, exs)
			if ok != tt.ok || missing != tt.missing {
				t.Errorf("match = %v, %q; want %v, %q", ok, missing, tt.ok, tt.missing)
			}
		})
	}
}

func TestBlocks(t *testing.T) {
	src := []byte("// Package p does things.\n" +
		"//\n" +
		"//\tx := 1\n" +
		"//\n" +
		"//\ty := x\n" +
		"//\n" +
		"// Text.\n" +
		"//\n" +
		"//\tz := 2\n" +
		"package p\n")
	bs, err := docBlocks("p/doc.go", src)
	if err != nil {
		t.Fatal(err)
	}
	want := []block{
		{file: "p/doc.go", line: 3, lines: []string{"x := 1", "", "y := x"}},
		{file: "p/doc.go", line: 9, lines: []string{"z := 2"}},
	}
	if !blocksEqual(bs, want) {
		t.Errorf("docBlocks = %+v, want %+v", bs, want)
	}

	md := []byte("# T\n\n```sh\ngo run x := y\n```\n\n```go\na := 1\n```\n")
	bs = readmeBlocks("README.md", md)
	want = []block{{file: "README.md", line: 8, lines: []string{"a := 1"}, fence: true}}
	if !blocksEqual(bs, want) {
		t.Errorf("readmeBlocks = %+v, want %+v", bs, want)
	}
}

func blocksEqual(a, b []block) bool {
	return slices.EqualFunc(a, b, func(x, y block) bool {
		return x.file == y.file && x.line == y.line && x.fence == y.fence && slices.Equal(x.lines, y.lines)
	})
}

// unresolved finds text that was meant as a doc link: go/doc leaves
// [Name] as plain text when Name does not resolve.
var unresolved = regexp.MustCompile(`\[\*?[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){0,2}\]`)

// TestDocLinks checks that every doc link of every package comment names
// something that exists.
func TestDocLinks(t *testing.T) {
	root := moduleRoot(t)
	modPath := modulePath(t, root)
	cache := map[string]*doc.Package{}
	load := func(dir string) (*doc.Package, error) {
		if p, ok := cache[dir]; ok {
			return p, nil
		}
		bp, err := build.Default.ImportDir(dir, build.ImportComment)
		if err != nil {
			return nil, err
		}
		fset := token.NewFileSet()
		var files []*ast.File
		for _, name := range bp.GoFiles {
			f, err := parser.ParseFile(fset, filepath.Join(dir, name), nil, parser.ParseComments)
			if err != nil {
				return nil, err
			}
			files = append(files, f)
		}
		importPath := bp.ImportPath // right for the standard library
		if rel, err := filepath.Rel(root, dir); err == nil && !strings.HasPrefix(rel, "..") {
			importPath = strings.TrimSuffix(modPath+"/"+filepath.ToSlash(rel), "/.")
		}
		p, err := doc.NewFromFiles(fset, files, importPath)
		if err != nil {
			return nil, err
		}
		cache[dir] = p
		return p, nil
	}
	// dirOf finds the source of an imported package: this module's or
	// the standard library's. Others are not checked.
	dirOf := func(importPath string) (string, bool) {
		if importPath == modPath {
			return root, true
		}
		if rest, ok := strings.CutPrefix(importPath, modPath+"/"); ok {
			return filepath.Join(root, filepath.FromSlash(rest)), true
		}
		if first, _, _ := strings.Cut(importPath, "/"); !strings.Contains(first, ".") {
			return filepath.Join(build.Default.GOROOT, "src", filepath.FromSlash(importPath)), true
		}
		return "", false
	}

	walk(t, root, func(path string) {
		if filepath.Base(path) != "doc.go" {
			return
		}
		dir := filepath.Dir(path)
		rel, _ := filepath.Rel(root, path)
		p, err := load(dir)
		if err != nil {
			t.Errorf("%s: %v", rel, err)
			return
		}
		d := p.Parser().Parse(p.Doc)
		check := func(l *comment.DocLink) {
			if l.ImportPath == "" {
				return // a name of this package, resolved by the parser
			}
			odir, ok := dirOf(l.ImportPath)
			if !ok {
				return
			}
			other, err := load(odir)
			if err != nil {
				t.Errorf("%s: doc link [%s]: package %s: %v", rel, linkText(l), l.ImportPath, err)
				return
			}
			if l.Name != "" && !other.Parser().LookupSym(l.Recv, l.Name) {
				t.Errorf("%s: doc link [%s]: %s has no %s", rel, linkText(l), l.ImportPath, strings.TrimPrefix(l.Recv+"."+l.Name, "."))
			}
		}
		plain := func(s string) {
			for _, m := range unresolved.FindAllString(s, -1) {
				t.Errorf("%s: %s is not a doc link: no such name in %s or its imports", rel, m, p.ImportPath)
			}
		}
		for _, b := range d.Content {
			forText(b, check, plain)
		}
	})
}

func linkText(l *comment.DocLink) string {
	var s []string
	if l.ImportPath != "" {
		s = append(s, l.ImportPath[strings.LastIndex(l.ImportPath, "/")+1:])
	}
	if l.Recv != "" {
		s = append(s, l.Recv)
	}
	if l.Name != "" {
		s = append(s, l.Name)
	}
	return strings.Join(s, ".")
}

// forText calls link for every doc link of a block and plain for its
// plain text, skipping code blocks.
func forText(b comment.Block, link func(*comment.DocLink), plain func(string)) {
	var text func([]comment.Text)
	text = func(ts []comment.Text) {
		for _, t := range ts {
			switch t := t.(type) {
			case comment.Plain:
				plain(string(t))
			case comment.Italic:
				plain(string(t))
			case *comment.DocLink:
				link(t)
			case *comment.Link:
				text(t.Text)
			}
		}
	}
	switch b := b.(type) {
	case *comment.Paragraph:
		text(b.Text)
	case *comment.Heading:
		text(b.Text)
	case *comment.List:
		for _, it := range b.Items {
			for _, c := range it.Content {
				forText(c, link, plain)
			}
		}
	}
}
