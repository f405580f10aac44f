package relay

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseRevocations(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		tokens   []string
		subjects []string
		err      string
	}{
		{name: "empty", in: ""},
		{name: "comments and blanks", in: "# revoked\n\n   \n\t# indented comment\n"},
		{name: "entries", in: "token abc\nsubject ci-runner-7\n  token   def  \nsubject agent with spaces\n",
			tokens: []string{"abc", "def"}, subjects: []string{"ci-runner-7", "agent with spaces"}},
		{name: "crlf", in: "token abc\r\nsubject s\r\n", tokens: []string{"abc"}, subjects: []string{"s"}},
		{name: "unknown keyword", in: "token a\njti b\n", err: `line 2: want "token ID" or "subject NAME", got "jti b"`},
		{name: "no value", in: "subject\n", err: "line 1: subject without a value"},
		{name: "no value, trailing space", in: "token   \n", err: "line 1: token without a value"},
		{name: "control character", in: "token a\x01b\n", err: "line 1: token contains a control character"},
		{name: "entry too long", in: "token " + strings.Repeat("x", MaxRevocationEntry+1) + "\n", err: "line 1: token is 8193 bytes, more than the 8192 allowed"},
		{name: "line too long", in: "token " + strings.Repeat("x", MaxRevocationEntry+100) + "\n", err: "line 1: bufio.Scanner: token too long"},
		{name: "not utf-8", in: "token \xff\n", err: "not UTF-8"},
		{name: "every problem, up to ten", in: strings.Repeat("bad\n", 12), err: "line 10: want"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rev, err := ParseRevocations([]byte(tt.in))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(rev.Tokens, tt.tokens) || !slices.Equal(rev.Subjects, tt.subjects) {
				t.Errorf("got %+v, want tokens %q subjects %q", rev, tt.tokens, tt.subjects)
			}
		})
	}
	t.Run("file too large", func(t *testing.T) {
		_, err := ParseRevocations(make([]byte, MaxRevocationFile+1))
		if err == nil || !strings.Contains(err.Error(), "more than the") {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestRevocationList(t *testing.T) {
	l := NewRevocationList()
	if _, ok := l.Revoked("abc", "s"); ok {
		t.Fatal("an empty list revokes")
	}
	changed := l.Changed()
	l.Replace(Revoked{Tokens: []string{"abc"}, Subjects: []string{"bad-agent"}})
	select {
	case <-changed:
	case <-time.After(time.Second):
		t.Fatal("Changed not closed by Replace")
	}
	for _, tt := range []struct {
		name, id, sub, reason string
		revoked               bool
	}{
		{"listed token", "abc", "fine", "token_revoked", true},
		{"listed subject", "other", "bad-agent", "subject_revoked", true},
		{"both", "abc", "bad-agent", "subject_revoked", true},
		{"neither", "other", "fine", "", false},
		{"no jti", "", "fine", "", false},
		{"no jti, listed subject", "", "bad-agent", "subject_revoked", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			reason, ok := l.Revoked(tt.id, tt.sub)
			if ok != tt.revoked || reason != tt.reason {
				t.Errorf("Revoked(%q, %q) = %q, %v; want %q, %v", tt.id, tt.sub, reason, ok, tt.reason, tt.revoked)
			}
		})
	}
	if tok, sub := l.Len(); tok != 1 || sub != 1 {
		t.Errorf("Len = %d, %d", tok, sub)
	}
	select {
	case <-l.Changed():
		t.Fatal("a fresh Changed channel is already closed")
	default:
	}
	l.Replace(Revoked{})
	if _, ok := l.Revoked("abc", "bad-agent"); ok {
		t.Error("entries survive a Replace that removes them")
	}
}

// FuzzParseRevocations: whatever the file holds, parsing does not panic,
// and what it accepts holds no empty entry, no control character and no
// entry over the limit.
func FuzzParseRevocations(f *testing.F) {
	f.Add([]byte("# revoked\ntoken abc\nsubject ci-runner-7\n"))
	f.Add([]byte("token \r\nsubject x y\n\n#\n"))
	f.Add([]byte("jti abc\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rev, err := ParseRevocations(data)
		if err != nil {
			return
		}
		for _, e := range append(rev.Tokens, rev.Subjects...) {
			if e == "" || len(e) > MaxRevocationEntry || strings.ContainsFunc(e, isControl) || strings.TrimSpace(e) != e {
				t.Fatalf("accepted entry %q", e)
			}
		}
	})
}
