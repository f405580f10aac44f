package policy

import (
	"encoding/binary"
	"hash/maphash"
	"slices"
	"strings"
	"sync/atomic"
)

// A decisionCache remembers the decisions of one Set for prepared principals
// and resources (those of NewPrincipal and NewResource). It is keyed on the
// identity of their forms, not on their fields: a form never changes, and
// Authorize uses it only while the request's fields still match it, so a
// new token (a new NewPrincipal) or a new catalog entry is a new key, and
// what an old key decided stays true for as long as the Set lives. The Set
// never changes either, so nothing is ever invalidated: a reload is a new
// Set with an empty cache.
//
// Only decisions that depend on nothing outside the key are stored: those
// whose candidate policies read no part of the context (time, source_ip and
// details change with every request) but context.sql, which the key holds
// in full, and context.http only when the request has none (a path and a
// query are too varied to key on).
//
// It is a direct-mapped table of a fixed number of slots, each an atomic
// pointer to an immutable entry: a lookup is two atomic loads and a
// comparison, and takes no lock and writes no shared memory, so readers on
// many cores do not contend. A store replaces whatever held the slot. The
// slots are allocated on the first store, so that a Set that never sees a
// prepared request (a policy check, a fuzz input) does not pay for them.
type decisionCache struct {
	slots atomic.Pointer[[cacheSlots]atomic.Pointer[cacheEntry]]
}

// cacheSlots bounds the cache: 16384 slots are 128 KiB of pointers, plus
// about 2 MiB of entries when all are filled (some 120 bytes each with one
// or two policy IDs), per Set. Enough for the bindings that a few thousand
// active sessions open; a collision only costs an evaluation.
const (
	cacheBits  = 14
	cacheSlots = 1 << cacheBits
)

type cacheKey struct {
	principal, resource uint64 // the seq of each form
	action              string
	sql                 string // sqlKey of the statement, "" for none
	http                bool   // whether the request is an HTTP request
	open                bool   // AuthorizeOpen rather than Authorize
}

// sqlKey encodes every field of q, so that two statements share a key only
// when they make the same context.sql: the fingerprint alone would be
// exact only as long as the classifier's tables and functions follow from
// it, and it is a 64-bit hash.
func sqlKey(q *SQL) string {
	if q == nil {
		return ""
	}
	lists := [...][]string{{q.Fingerprint}, q.Kinds, q.TablesRead, q.TablesWritten, q.Functions}
	n := 1
	for _, l := range lists {
		n += binary.MaxVarintLen32
		for _, s := range l {
			n += binary.MaxVarintLen32 + len(s)
		}
	}
	// Each list is its length and then each string its length and bytes:
	// one encoding per statement, and never one for two.
	var b strings.Builder
	b.Grow(n)
	var buf [binary.MaxVarintLen64]byte
	b.WriteByte('s')
	for _, l := range lists {
		b.Write(binary.AppendUvarint(buf[:0], uint64(len(l))))
		for _, s := range l {
			b.Write(binary.AppendUvarint(buf[:0], uint64(len(s))))
			b.WriteString(s)
		}
	}
	return b.String()
}

type cacheEntry struct {
	key cacheKey
	d   Decision // never handed out: callers get copies
}

// formSeq numbers the forms of NewPrincipal and NewResource, from 1: the
// identity a decision is cached under. A form built for a Principal or
// Resource literal has seq 0 and is never cached, being rebuilt (and so a
// new identity) on every decision.
var formSeq atomic.Uint64

var actionSeed = maphash.MakeSeed()

func (k *cacheKey) slot() uint64 {
	h := k.principal*0x9e3779b97f4a7c15 ^ k.resource*0xc2b2ae3d27d4eb4f
	if k.action != ActionConnect {
		h ^= maphash.String(actionSeed, k.action)
	}
	if k.sql != "" {
		h ^= maphash.String(actionSeed, k.sql) * 0x85ebca6b
	}
	if k.http {
		h ^= 0x27d4eb2f165667c5
	}
	if k.open {
		h ^= 0x165667b19e3779f9
	}
	// Fibonacci hashing: the top bits of the product are well mixed even
	// when the seqs are small and consecutive.
	return (h * 0x9e3779b97f4a7c15) >> (64 - cacheBits)
}

func (c *decisionCache) load(k *cacheKey) (Decision, bool) {
	slots := c.slots.Load()
	if slots == nil {
		return Decision{}, false
	}
	e := slots[k.slot()].Load()
	if e == nil || e.key != *k {
		return Decision{}, false
	}
	return e.d.clone(), true
}

// store keeps a copy of d, which the caller may then hand out.
func (c *decisionCache) store(k *cacheKey, d Decision) {
	slots := c.slots.Load()
	if slots == nil {
		c.slots.CompareAndSwap(nil, new([cacheSlots]atomic.Pointer[cacheEntry]))
		slots = c.slots.Load()
	}
	slots[k.slot()].Store(&cacheEntry{key: *k, d: d.clone()})
}

// clone copies the slices of d, so that a caller that modifies them does not
// change what the cache hands out next.
func (d Decision) clone() Decision {
	d.Policies = slices.Clone(d.Policies)
	d.Errors = slices.Clone(d.Errors)
	return d
}
