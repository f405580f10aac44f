package policy

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	cedar "github.com/cedar-policy/cedar-go"
	xast "github.com/cedar-policy/cedar-go/x/exp/ast"
)

// A Set is an immutable collection of named Cedar policies, indexed for
// [Set.Authorize], with a cache of its decisions (bounded: at most a few
// MiB). It is safe for concurrent use. A nil or zero Set holds no policies
// and denies every request.
type Set struct {
	entries []*entry                  // document order: files in load order, policies in file order
	byID    map[cedar.PolicyID]*entry // every entry, by its @id
	idx     index
	openers index // the openers of the permits that admit a data action; see openerOf
	writers index // likewise for the permits that admit a write; see writerOf
	cache   decisionCache
	sources []Source // what it was parsed from, in order
}

// A Source is one policy document: its file name (which labels positions
// in errors and diagnostics) and its text.
type Source struct {
	Filename string
	Text     []byte
}

// An entry is one policy of a Set.
type entry struct {
	id     cedar.PolicyID
	policy *cedar.Policy
	forbid bool
	ord    int            // position in Set.entries; orders the IDs of a Decision
	pos    cedar.Position // the first line of the policy, its annotations included

	// reads says which parts of the context the conditions read: a policy
	// that reads none decides the same with any context, which then need
	// not be built.
	reads contextReads
}

// An Error is a problem located in a policy document: a syntax error, a
// missing or duplicate @id, or a validation finding. Parse, LoadFiles,
// LoadDir and Validate report every such problem as an *Error; a file or
// directory that cannot be read is reported with its os error wrapped.
type Error struct {
	File     string // as given to Parse, or the path read by LoadFiles
	Line     int    // 1-based; 0 when the problem has no position
	Column   int    // 1-based; 0 when unknown
	PolicyID string // the @id of the policy concerned; empty for syntax errors
	Message  string
}

// Error returns "policy: FILE:LINE:COL: policy "ID": MESSAGE", leaving out
// the parts that are unknown.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("policy: ")
	if e.File != "" || e.Line > 0 {
		b.WriteString(e.where())
		b.WriteString(": ")
	}
	if e.PolicyID != "" {
		b.WriteString("policy ")
		b.WriteString(strconv.Quote(e.PolicyID))
		b.WriteString(": ")
	}
	b.WriteString(e.Message)
	return b.String()
}

func (e *Error) where() string {
	s := e.File
	if s == "" {
		s = "<input>"
	}
	if e.Line > 0 {
		s += ":" + strconv.Itoa(e.Line)
		if e.Column > 0 {
			s += ":" + strconv.Itoa(e.Column)
		}
	}
	return s
}

func posError(pos cedar.Position, id cedar.PolicyID, format string, args ...any) *Error {
	return &Error{
		File:     pos.Filename,
		Line:     pos.Line,
		Column:   pos.Column,
		PolicyID: string(id),
		Message:  fmt.Sprintf(format, args...),
	}
}

// Parse parses one Cedar policy document. Every policy must carry an
// @id("...") annotation, unique within the document; filename only labels
// positions in errors and diagnostics. All problems are reported, joined,
// each an *Error.
func Parse(filename string, src []byte) (*Set, error) {
	var b builder
	b.add(filename, src)
	return b.finish()
}

// ParseSources parses several policy documents into one Set, as
// [LoadFiles] does with files: an @id must be unique across all of them,
// and every problem in every document is reported. A connector builds the
// relay's Set from the sources the relay sends ([Set.Sources]).
func ParseSources(srcs ...Source) (*Set, error) {
	var b builder
	for _, src := range srcs {
		b.add(src.Filename, src.Text)
	}
	return b.finish()
}

// Sources returns the documents s was parsed from, in order: ParseSources
// of them builds a Set that decides as s does. The caller must not modify
// the texts.
func (s *Set) Sources() []Source {
	if s == nil {
		return nil
	}
	return slices.Clone(s.sources)
}

// LoadFiles reads and parses the given policy files into one Set. An @id
// must be unique across all of them. It reports every problem in every file.
func LoadFiles(paths ...string) (*Set, error) {
	var b builder
	for _, p := range paths {
		src, err := os.ReadFile(p)
		if err != nil {
			b.errs = append(b.errs, fmt.Errorf("policy: %w", err))
			continue
		}
		b.add(p, src)
	}
	return b.finish()
}

// LoadDir loads every file named *.cedar directly inside dir (not in its
// subdirectories), in lexical order, as [LoadFiles] does. A directory without
// policy files yields an empty Set, which denies every request: check
// [Set.Len] to tell that apart from a configured policy.
func LoadDir(dir string) (*Set, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	var paths []string
	for _, de := range des {
		if de.IsDir() || filepath.Ext(de.Name()) != ".cedar" {
			continue
		}
		paths = append(paths, filepath.Join(dir, de.Name()))
	}
	// os.ReadDir already sorts by name; keep the guarantee explicit.
	slices.Sort(paths)
	return LoadFiles(paths...)
}

// Len returns the number of policies in s.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return len(s.entries)
}

// IDs returns the @id of every policy in s, in load order: files in the
// order they were given (LoadDir: lexical), policies in document order.
func (s *Set) IDs() []string {
	if s == nil {
		return nil
	}
	ids := make([]string, len(s.entries))
	for i, e := range s.entries {
		ids[i] = string(e.id)
	}
	return ids
}

type builder struct {
	sources []Source
	entries []*entry
	byID    map[cedar.PolicyID]*entry
	errs    []error
}

// inputPos matches the position cedar-go puts in its syntax errors; it does
// not know the file name, so the message is rewritten to carry it.
var inputPos = regexp.MustCompile(`^(?:parser error: )?(?:parse error at )?<input>:(\d+):(\d+):? ?`)

func (b *builder) add(filename string, src []byte) {
	b.sources = append(b.sources, Source{Filename: filename, Text: src})
	list, err := cedar.NewPolicyListFromBytes(filename, src)
	if err != nil {
		b.errs = append(b.errs, syntaxError(filename, err))
		return
	}
	if b.byID == nil {
		b.byID = make(map[cedar.PolicyID]*entry)
	}
	for _, p := range list {
		pos := p.Position()
		raw, ok := p.Annotations()["id"]
		id := cedar.PolicyID(raw)
		switch {
		case !ok:
			b.errs = append(b.errs, posError(pos, "", `%s policy has no @id annotation; add @id("...") so that decisions can name it`, effectName(p.Effect())))
			continue
		case id == "":
			b.errs = append(b.errs, posError(pos, "", "%s policy has an empty @id", effectName(p.Effect())))
			continue
		}
		if first, dup := b.byID[id]; dup {
			b.errs = append(b.errs, posError(pos, id, "duplicate @id, first used at %s:%d", first.pos.Filename, first.pos.Line))
			continue
		}
		e := &entry{id: id, policy: p, forbid: p.Effect() == cedar.Forbid, ord: len(b.entries), pos: pos, reads: policyReads((*xast.Policy)(p.AST()))}
		b.entries = append(b.entries, e)
		b.byID[id] = e
	}
}

func syntaxError(filename string, err error) error {
	msg := err.Error()
	m := inputPos.FindStringSubmatchIndex(msg)
	if m == nil {
		return &Error{File: filename, Message: strings.TrimPrefix(msg, "parser error: ")}
	}
	line, _ := strconv.Atoi(msg[m[2]:m[3]])
	col, _ := strconv.Atoi(msg[m[4]:m[5]])
	rest := msg[m[1]:]
	if strings.HasPrefix(rest, `"`) {
		// The parser names the offending token first: `")": want ...`.
		rest = "syntax error at " + rest
	}
	return &Error{File: filename, Line: line, Column: col, Message: rest}
}

func (b *builder) finish() (*Set, error) {
	if len(b.errs) > 0 {
		return nil, errors.Join(b.errs...)
	}
	s := &Set{entries: b.entries, byID: b.byID, sources: b.sources}
	s.idx = buildIndex(s.entries)
	var openers []*entry
	for _, e := range s.entries {
		if o := openerOf(e); o != nil {
			openers = append(openers, o)
		}
	}
	s.openers = buildIndex(openers)
	var writers []*entry
	for _, e := range s.entries {
		if w := writerOf(e); w != nil {
			writers = append(writers, w)
		}
	}
	s.writers = buildIndex(writers)
	return s, nil
}

func effectName(e cedar.Effect) string {
	if e == cedar.Forbid {
		return "forbid"
	}
	return "permit"
}
