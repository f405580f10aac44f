package wire

import "sync"

// Frames on the hot path (Open, Dial, Result) are a few hundred bytes;
// buffers that grew past maxPooled for a large Hello or catalog are left to
// the garbage collector rather than kept alive in the pool.
const (
	pooledSize = 4 << 10
	maxPooled  = 64 << 10
)

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, pooledSize); return &b }}

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

func putBuf(b *[]byte) {
	if cap(*b) > maxPooled {
		return
	}
	*b = (*b)[:0]
	bufPool.Put(b)
}
