package relay

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"
	"sync"
	"unicode/utf8"
)

// RevocationList is a [Revocations] held in memory: token IDs and
// subjects, replaced whole by [RevocationList.Replace]. The zero value is
// not usable; make one with [NewRevocationList]. It is safe for
// concurrent use.
type RevocationList struct {
	mu       sync.RWMutex
	tokens   map[string]struct{}
	subjects map[string]struct{}
	changed  chan struct{}
}

// NewRevocationList returns an empty list.
func NewRevocationList() *RevocationList {
	return &RevocationList{changed: make(chan struct{})}
}

// Revoked implements [Revocations].
func (l *RevocationList) Revoked(tokenID, subject string) (string, bool) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if _, ok := l.subjects[subject]; ok {
		return "subject_revoked", true
	}
	if tokenID == "" {
		return "", false
	}
	if _, ok := l.tokens[tokenID]; ok {
		return "token_revoked", true
	}
	return "", false
}

// Changed implements [Revocations].
func (l *RevocationList) Changed() <-chan struct{} {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.changed
}

// Replace makes the list hold exactly rev, and wakes the relays watching
// it.
func (l *RevocationList) Replace(rev Revoked) {
	tokens := make(map[string]struct{}, len(rev.Tokens))
	for _, t := range rev.Tokens {
		tokens[t] = struct{}{}
	}
	subjects := make(map[string]struct{}, len(rev.Subjects))
	for _, s := range rev.Subjects {
		subjects[s] = struct{}{}
	}
	l.mu.Lock()
	l.tokens, l.subjects = tokens, subjects
	close(l.changed)
	l.changed = make(chan struct{})
	l.mu.Unlock()
}

// Len returns how many token IDs and subjects the list holds.
func (l *RevocationList) Len() (tokens, subjects int) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return len(l.tokens), len(l.subjects)
}

// Revoked is the content of a revocation file.
type Revoked struct {
	Tokens   []string // token IDs (jti)
	Subjects []string // subjects (sub), every token of which is revoked
}

// Limits of a revocation file.
const (
	// MaxRevocationFile is the largest revocation file ParseRevocations
	// reads: a million entries of a typical 22-byte token ID fit.
	MaxRevocationFile = 32 << 20
	// MaxRevocationEntry is the longest token ID or subject in it (the
	// default limit of a whole token).
	MaxRevocationEntry = 8 << 10
)

// ParseRevocations reads a revocation file: one entry a line, "token ID"
// (a token's jti, as "postern token issue" prints it) or "subject NAME"
// (every token of that subject, whatever its ID). Blank lines and lines
// starting with "#" are ignored; the value is the rest of the line, with
// surrounding spaces removed. Every problem is reported with its line.
//
//	# revoked.txt
//	token 4c6Hq2p1oK0wJbq3d9y1ZQ
//	subject ci-runner-7
func ParseRevocations(data []byte) (Revoked, error) {
	var rev Revoked
	if len(data) > MaxRevocationFile {
		return rev, fmt.Errorf("relay: revocation file is %d bytes, more than the %d allowed", len(data), MaxRevocationFile)
	}
	if !utf8.Valid(data) {
		return rev, fmt.Errorf("relay: revocation file is not UTF-8 text")
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), MaxRevocationEntry+64)
	var errs []string
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		kind, value, _ := strings.Cut(text, " ")
		value = strings.TrimSpace(value)
		switch {
		case kind != "token" && kind != "subject":
			errs = append(errs, fmt.Sprintf("line %d: want \"token ID\" or \"subject NAME\", got %q", line, truncate(text, 64)))
		case value == "":
			errs = append(errs, fmt.Sprintf("line %d: %s without a value", line, kind))
		case len(value) > MaxRevocationEntry:
			errs = append(errs, fmt.Sprintf("line %d: %s is %d bytes, more than the %d allowed", line, kind, len(value), MaxRevocationEntry))
		case strings.ContainsFunc(value, isControl):
			errs = append(errs, fmt.Sprintf("line %d: %s contains a control character", line, kind))
		case kind == "token":
			rev.Tokens = append(rev.Tokens, value)
		default:
			rev.Subjects = append(rev.Subjects, value)
		}
		if len(errs) == 10 {
			errs = append(errs, "(more problems not shown)")
			break
		}
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, fmt.Sprintf("line %d: %v (a line is at most %d bytes)", line+1, err, MaxRevocationEntry+64))
	}
	if len(errs) > 0 {
		return Revoked{}, fmt.Errorf("relay: revocation file: %s", strings.Join(errs, "; "))
	}
	return rev, nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }
