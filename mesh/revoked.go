package mesh

import (
	"sync"
	"time"

	"github.com/postern/postern"
	"github.com/postern/postern/internal/quicnet"
	sess "github.com/postern/postern/internal/session"
	"github.com/postern/postern/internal/wire"
)

// revocations holds the relay's Revoke frames of one session until the
// streams they name fail: a stream reset with STREAM_ERROR_REVOKED and its
// Revoke frame travel apart, so either may arrive first. Each stream
// waits on its own entry: a reload that cuts thousands of streams at
// once must not wake every waiter for every frame.
type revocations struct {
	mu   sync.Mutex
	byID map[uint64]*revocation
	held int // entries holding a frame nobody waits for
}

type revocation struct {
	m       *wire.Revoke
	arrived chan struct{} // closed when m is set; nil for an entry made by add
}

// maxHeldRevocations bounds the frames a session holds for streams not
// waiting yet: a Revoke whose stream the application never reads again is
// never collected, and the relay must not be able to grow an agent's
// memory without end.
const maxHeldRevocations = 4096

// revokeWait is how long a stream reset as revoked waits for the Revoke
// frame that says why, before it reports the revocation without the
// deciding policies. The relay queues the frame as it resets, so it
// normally comes within a round trip.
const revokeWait = 500 * time.Millisecond

func (r *revocations) add(m *wire.Revoke) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byID == nil {
		r.byID = make(map[uint64]*revocation)
	}
	if e, ok := r.byID[m.Stream]; ok && e.arrived != nil && e.m == nil {
		e.m = m
		close(e.arrived)
		return
	}
	if r.held >= maxHeldRevocations {
		for id, e := range r.byID {
			if e.arrived == nil {
				delete(r.byID, id)
			}
		}
		r.held = 0
	}
	r.byID[m.Stream] = &revocation{m: m}
	r.held++
}

// take returns and forgets the Revoke of stream id, waiting until deadline
// for it; nil when none came.
func (r *revocations) take(id uint64, deadline time.Time) *wire.Revoke {
	r.mu.Lock()
	if r.byID == nil {
		r.byID = make(map[uint64]*revocation)
	}
	e, ok := r.byID[id]
	if ok && e.m != nil {
		delete(r.byID, id)
		if e.arrived == nil {
			r.held--
		}
		r.mu.Unlock()
		return e.m
	}
	if !ok {
		e = &revocation{arrived: make(chan struct{})}
		r.byID[id] = e
	}
	r.mu.Unlock()
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-e.arrived:
	case <-t.C:
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byID[id] == e {
		delete(r.byID, id)
	}
	return e.m
}

// revokedErr turns err into an *postern.Error matching postern.ErrRevoked
// when it says the relay revoked the stream (a reset with
// STREAM_ERROR_REVOKED) or the session (a CONNECTION_CLOSE with
// CODE_REVOKED); other errors are returned as they are.
func (c *Conn) revokedErr(op string, err error) error {
	if code, ok := quicnet.StreamErrorCode(err); ok && code == quicnet.StreamRevoked {
		e := &postern.Error{Op: op, Binding: c.binding, Err: postern.ErrRevoked, Reason: "revoked",
			Message: "the relay cut the stream: access to it was revoked"}
		if m := c.revoked.take(uint64(c.qc.Stream().StreamID()), time.Now().Add(revokeWait)); m != nil {
			e.Reason, e.Message, e.Policies = m.Reason, m.Message, m.Policies
		}
		return e
	}
	if rej := sess.CloseReason(err); rej != nil && rej.Code == wire.CodeRevoked {
		return &postern.Error{Op: op, Binding: c.binding, Err: postern.ErrRevoked, Reason: rej.Reason, Message: rej.Message}
	}
	return err
}
