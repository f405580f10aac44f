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
// Revoke frame travel apart, so either may arrive first.
type revocations struct {
	mu      sync.Mutex
	byID    map[uint64]*wire.Revoke
	arrived chan struct{} // closed and replaced at each frame
}

// maxHeldRevocations bounds what a session holds: a Revoke whose stream the
// application never reads again is never collected, and the relay must not
// be able to grow an agent's memory without end.
const maxHeldRevocations = 4096

// revokeWait is how long a stream reset as revoked waits for the Revoke
// frame that says why, before it reports the revocation without the
// deciding policies. The relay writes the frame as it resets, so it
// normally comes within a round trip.
const revokeWait = 500 * time.Millisecond

func (r *revocations) add(m *wire.Revoke) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byID == nil || len(r.byID) >= maxHeldRevocations {
		r.byID = make(map[uint64]*wire.Revoke)
	}
	r.byID[m.Stream] = m
	if r.arrived != nil {
		close(r.arrived)
		r.arrived = nil
	}
}

// take returns and forgets the Revoke of stream id, waiting until deadline
// for it; nil when none came.
func (r *revocations) take(id uint64, deadline time.Time) *wire.Revoke {
	for {
		r.mu.Lock()
		if m, ok := r.byID[id]; ok {
			delete(r.byID, id)
			r.mu.Unlock()
			return m
		}
		if r.arrived == nil {
			r.arrived = make(chan struct{})
		}
		wait := r.arrived
		r.mu.Unlock()
		d := time.Until(deadline)
		if d <= 0 {
			return nil
		}
		t := time.NewTimer(d)
		select {
		case <-wait:
			t.Stop()
		case <-t.C:
			return nil
		}
	}
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
