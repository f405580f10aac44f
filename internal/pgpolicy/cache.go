package pgpolicy

import (
	"hash/maphash"
	"sync"

	"github.com/postern/postern/internal/sqlclass"
)

// Parsing is most of what deciding a statement costs (tens of
// microseconds through libpg_query), and agents send the same text again
// and again: a simple Query is parsed again on every run, unlike a
// prepared statement. [sqlclass.Classify] depends on nothing but the text,
// so its result is kept, for every session of the process, in a fixed
// number of slots, each new text replacing whichever it collides with.
const (
	classifySlots   = 4096
	classifyMaxText = 8 << 10 // longer texts are parsed every time
)

type classified struct {
	text  string
	stmts []sqlclass.Statement
}

var classifyCache struct {
	seed  maphash.Seed
	mu    sync.Mutex
	slots [classifySlots]*classified
}

func init() { classifyCache.seed = maphash.MakeSeed() }

// classify is sqlclass.Classify, cached. The statements returned are
// shared: they must not be modified.
func classify(text string) ([]sqlclass.Statement, error) {
	if len(text) > classifyMaxText {
		return sqlclass.Classify(text)
	}
	i := maphash.String(classifyCache.seed, text) % classifySlots
	classifyCache.mu.Lock()
	c := classifyCache.slots[i]
	classifyCache.mu.Unlock()
	if c != nil && c.text == text {
		return c.stmts, nil
	}
	stmts, err := sqlclass.Classify(text)
	if err != nil {
		return nil, err // not cached: parse errors are rare and cheap to repeat
	}
	classifyCache.mu.Lock()
	classifyCache.slots[i] = &classified{text: text, stmts: stmts}
	classifyCache.mu.Unlock()
	return stmts, nil
}
