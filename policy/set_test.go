package policy

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParseIDs(t *testing.T) {
	set := mustParse(t, sentence)
	if got, want := set.IDs(), []string{"staging-connect", "forbid-financial"}; !slices.Equal(got, want) {
		t.Errorf("IDs() = %q, want %q", got, want)
	}
	if set.Len() != 2 {
		t.Errorf("Len() = %d, want 2", set.Len())
	}
}

// problems returns the *Errors joined in err, failing the test if any
// element is of another type.
func problems(t *testing.T, err error) []*Error {
	t.Helper()
	if err == nil {
		return nil
	}
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	var out []*Error
	for _, e := range errs {
		var pe *Error
		if !errors.As(e, &pe) {
			t.Fatalf("%v (%T) is not a *policy.Error", e, e)
		}
		out = append(out, pe)
	}
	return out
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string // one per expected problem, each the full Error() text
	}{
		{
			name: "missing @id",
			src: `@id("ok")
permit (principal, action, resource);

forbid (principal, action, resource);
`,
			want: []string{`policy: p.cedar:4:1: forbid policy has no @id annotation; add @id("...") so that decisions can name it`},
		},
		{
			name: "other annotations are not an @id",
			src:  "@advice(\"x\")\npermit (principal, action, resource);",
			want: []string{`policy: p.cedar:1:1: permit policy has no @id annotation; add @id("...") so that decisions can name it`},
		},
		{
			name: "empty @id",
			src:  `@id("") permit (principal, action, resource);`,
			want: []string{`policy: p.cedar:1:1: permit policy has an empty @id`},
		},
		{
			name: "duplicate @id names both places",
			src: `@id("a")
permit (principal, action, resource);
@id("a")
forbid (principal, action, resource);
`,
			want: []string{`policy: p.cedar:3:1: policy "a": duplicate @id, first used at p.cedar:1`},
		},
		{
			name: "every problem is reported",
			src: `permit (principal, action, resource);
@id("a") permit (principal, action, resource);
@id("a") permit (principal, action, resource);
`,
			want: []string{
				`policy: p.cedar:1:1: permit policy has no @id annotation; add @id("...") so that decisions can name it`,
				`policy: p.cedar:3:1: policy "a": duplicate @id, first used at p.cedar:2`,
			},
		},
		{
			name: "syntax error names file, line and column",
			src: `@id("a")
permit (principal, action, resource);

@id("b")
permit (principal, action resource);
`,
			want: []string{`policy: p.cedar:5:35: syntax error at ")": exact got resource want ,`},
		},
		{
			name: "unknown expression",
			src:  "@id(\"a\")\npermit (principal, action, resource) when { foo };",
			want: []string{`policy: p.cedar:2:49: syntax error at "}": invalid primary`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set, err := Parse("p.cedar", []byte(tt.src))
			if err == nil {
				t.Fatalf("no error; IDs %q", set.IDs())
			}
			if set != nil {
				t.Errorf("a Set came with the error")
			}
			got := problems(t, err)
			var msgs []string
			for _, p := range got {
				msgs = append(msgs, p.Error())
			}
			if !slices.Equal(msgs, tt.want) {
				t.Errorf("problems:\n  %s\nwant:\n  %s", strings.Join(msgs, "\n  "), strings.Join(tt.want, "\n  "))
			}
			if err.Error() != strings.Join(tt.want, "\n") {
				t.Errorf("err.Error() = %q", err)
			}
		})
	}
}

func TestParseErrorFields(t *testing.T) {
	_, err := Parse("dir/x.cedar", []byte("@id(\"a\") permit (principal, action, resource);\n@id(\"a\")\npermit (principal, action, resource);"))
	got := problems(t, err)
	if len(got) != 1 {
		t.Fatalf("%d problems, want 1", len(got))
	}
	want := Error{File: "dir/x.cedar", Line: 2, Column: 1, PolicyID: "a", Message: "duplicate @id, first used at dir/x.cedar:1"}
	if *got[0] != want {
		t.Errorf("got %+v, want %+v", *got[0], want)
	}
}

// writeFiles creates the named files under dir.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestLoadDir(t *testing.T) {
	tests := []struct {
		name    string
		files   map[string]string
		ids     []string
		wantErr []string // substrings, one per problem
	}{
		{
			name: "several files in lexical order, others ignored",
			files: map[string]string{
				"20-forbid.cedar":  `@id("forbid-financial") forbid (principal, action, resource) when { resource.labels.contains("financial") };`,
				"10-staging.cedar": "@id(\"staging-connect\")\npermit (principal in Group::\"coding-agents\", action, resource in Environment::\"staging\");\n@id(\"staging-read\") permit (principal, action == Action::\"read\", resource in Environment::\"staging\");",
				"README.md":        "not policy",
				"old.cedar.bak":    "not policy",
				"sub/30.cedar":     `@id("nested") permit (principal, action, resource);`,
				"dir.cedar/x":      "a directory named like a policy file",
			},
			ids: []string{"staging-connect", "staging-read", "forbid-financial"},
		},
		{
			name:  "empty directory is an empty set",
			files: map[string]string{},
		},
		{
			name: "duplicate @id across files names both",
			files: map[string]string{
				"a.cedar": "\n@id(\"x\") permit (principal, action, resource);",
				"b.cedar": "@id(\"y\") permit (principal, action, resource);\n@id(\"x\") forbid (principal, action, resource);",
			},
			wantErr: []string{`b.cedar:2:1: policy "x": duplicate @id, first used at ` /* dir */},
		},
		{
			name: "problems in several files are all reported",
			files: map[string]string{
				"a.cedar": "@id(\"x\") permit (principal, action, resource)",
				"b.cedar": "permit (principal, action, resource);",
			},
			wantErr: []string{"a.cedar:1:46: syntax error", "b.cedar:1:1: permit policy has no @id"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, tt.files)
			set, err := LoadDir(dir)
			if len(tt.wantErr) > 0 {
				got := problems(t, err)
				if len(got) != len(tt.wantErr) {
					t.Fatalf("problems = %v, want %d", err, len(tt.wantErr))
				}
				for i, p := range got {
					if !strings.Contains(p.Error(), tt.wantErr[i]) {
						t.Errorf("problem %d = %q, want it to contain %q", i, p, tt.wantErr[i])
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := set.IDs(); !slices.Equal(got, tt.ids) {
				t.Errorf("IDs() = %q, want %q", got, tt.ids)
			}
			if set.Len() != len(tt.ids) {
				t.Errorf("Len() = %d, want %d", set.Len(), len(tt.ids))
			}
		})
	}
}

func TestLoadDirDuplicateNamesFirstFile(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"a.cedar": "\n@id(\"x\") permit (principal, action, resource);",
		"b.cedar": "@id(\"x\") forbid (principal, action, resource);",
	})
	_, err := LoadDir(dir)
	want := "policy: " + filepath.Join(dir, "b.cedar") + `:1:1: policy "x": duplicate @id, first used at ` + filepath.Join(dir, "a.cedar") + ":2"
	if err == nil || err.Error() != want {
		t.Errorf("err = %v, want %s", err, want)
	}
}

func TestLoadErrors(t *testing.T) {
	if _, err := LoadDir(filepath.Join(t.TempDir(), "missing")); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LoadDir(missing) = %v, want an error wrapping os.ErrNotExist", err)
	}
	if _, err := LoadFiles(filepath.Join(t.TempDir(), "missing.cedar")); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LoadFiles(missing) = %v, want an error wrapping os.ErrNotExist", err)
	}
	set, err := LoadFiles()
	if err != nil || set.Len() != 0 {
		t.Errorf("LoadFiles() = %v, %v; want an empty set", set.IDs(), err)
	}
}

func TestLoadedSetAuthorizes(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"staging.cedar": "@id(\"staging-connect\")\npermit (principal in Group::\"coding-agents\", action == Action::\"connect\", resource in Environment::\"staging\");",
		"forbid.cedar":  "@id(\"forbid-financial\")\nforbid (principal, action, resource) when { resource has labels && resource.labels.contains(\"financial\") };",
	})
	set, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	got := set.Authorize(Request{Principal: agent("a", "coding-agents"), Resource: binding("staging-ledger", "staging", "financial")})
	checkDecision(t, got, false, []string{"forbid-financial"}, nil)
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(sentence))
	f.Add([]byte(`@id("a") permit (principal == Agent::"x", action in [Action::"connect", Action::"read"], resource is Binding in Environment::"prod") unless { context.time < datetime("2025-01-01") };`))
	f.Add([]byte(`@id("a") permit (principal, action, resource); @id("a") forbid (principal, action, resource);`))
	f.Add([]byte(`permit (principal, action, resource);`))
	f.Add([]byte(`@id("x") permit (principal, action resource);`))
	f.Add([]byte(model))
	f.Fuzz(func(t *testing.T, src []byte) {
		set, err := Parse("f.cedar", src)
		if err != nil {
			for _, p := range problems(t, err) {
				if p.File != "f.cedar" {
					t.Errorf("problem without the file name: %v", p)
				}
			}
			return
		}
		ids := set.IDs()
		if len(ids) != set.Len() {
			t.Fatalf("IDs %d, Len %d", len(ids), set.Len())
		}
		seen := map[string]bool{}
		for _, id := range ids {
			if id == "" || seen[id] {
				t.Fatalf("bad or duplicate id %q", id)
			}
			seen[id] = true
		}
		// Whatever parsed must decide without panicking: an open, a
		// statement and a request.
		set.Authorize(Request{Principal: agent("x", "g"), Resource: binding("b", "prod", "l")})
		set.AuthorizeOpen(Request{Principal: agent("x", "g"), Resource: binding("b", "prod", "l")})
		set.Authorize(Request{Principal: agent("x", "g"), Action: "sql:drop", Resource: binding("b", "prod", "l"), SQL: &SQL{Kinds: []string{"drop_stmt"}}})
		set.Authorize(Request{Principal: agent("x", "g"), Action: "http:POST", Resource: binding("b", "prod", "l"), HTTP: &HTTP{Method: "POST", Path: "/"}})
	})
}

func TestParseSources(t *testing.T) {
	srcs := []Source{
		{Filename: "a.cedar", Text: []byte(`@id("a") permit (principal, action, resource);`)},
		{Filename: "b.cedar", Text: []byte(`@id("b") forbid (principal, action, resource) when { resource.labels.contains("x") };`)},
	}
	s, err := ParseSources(srcs...)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.IDs(); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("IDs = %v", got)
	}
	again, err := ParseSources(s.Sources()...)
	if err != nil || !slices.Equal(again.IDs(), s.IDs()) {
		t.Fatalf("a Set parsed from Sources differs: %v, %v", again.IDs(), err)
	}
	if _, err := ParseSources(srcs[0], Source{Filename: "dup.cedar", Text: srcs[0].Text}); err == nil || !strings.Contains(err.Error(), "dup.cedar") {
		t.Fatalf("a duplicate @id across sources: %v", err)
	}
	if (*Set)(nil).Sources() != nil {
		t.Fatal("a nil Set has sources")
	}
}
