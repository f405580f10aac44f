package relay

import (
	"fmt"
	"sync"
	"time"

	"github.com/postern/postern/internal/wire"
)

// A verified token is still a peer that can ask for a lot: sessions,
// binding streams, refreshes (each a signature check and, for an agent, a
// catalog recomputation). These caps are per subject, across all of its
// sessions, so that one stolen or runaway token cannot take the relay.

// subject is what one subject holds of the relay now.
type subject struct {
	sessions int
	streams  int

	refreshTokens float64 // token bucket of refreshes
	refreshAt     time.Time
}

type subjects struct {
	limits Limits

	mu sync.Mutex
	m  map[string]*subject
}

func newSubjects(l Limits) *subjects { return &subjects{limits: l, m: make(map[string]*subject)} }

func (s *subjects) get(name string) *subject {
	sub := s.m[name]
	if sub == nil {
		sub = &subject{refreshTokens: float64(s.limits.RefreshesPerMinute), refreshAt: time.Now()}
		s.m[name] = sub
	}
	return sub
}

func (s *subjects) gc(name string, sub *subject) {
	if sub.sessions == 0 && sub.streams == 0 {
		delete(s.m, name)
	}
}

// startSession counts a session of name, or refuses it over the cap.
func (s *subjects) startSession(name string) *wire.Reject {
	s.mu.Lock()
	defer s.mu.Unlock()
	sub := s.get(name)
	if sub.sessions >= s.limits.SessionsPerSubject {
		return &wire.Reject{Code: wire.CodeLimit, Reason: ReasonSessionsPerSubject,
			Message: fmt.Sprintf("subject %.128q has %d sessions open, the limit is %d", name, sub.sessions, s.limits.SessionsPerSubject)}
	}
	sub.sessions++
	return nil
}

func (s *subjects) endSession(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sub := s.get(name)
	sub.sessions--
	s.gc(name, sub)
}

// startStream counts a binding stream of name, or refuses it over the cap.
func (s *subjects) startStream(name string) *wire.Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	sub := s.get(name)
	if sub.streams >= s.limits.StreamsPerSubject {
		return &wire.Result{Code: wire.CodeLimit, Reason: ReasonStreamsPerSubject,
			Message: fmt.Sprintf("subject %.128q has %d binding streams open across its sessions, the limit is %d", name, sub.streams, s.limits.StreamsPerSubject)}
	}
	sub.streams++
	return nil
}

func (s *subjects) endStream(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sub := s.get(name)
	sub.streams--
	s.gc(name, sub)
}

// refresh takes one refresh from name's budget (RefreshesPerMinute,
// refilled continuously), or refuses it when none is left. It is checked
// before the token is: a refused refresh costs no signature check.
func (s *subjects) refresh(name string) *wire.Reject {
	s.mu.Lock()
	defer s.mu.Unlock()
	sub := s.get(name)
	per := float64(s.limits.RefreshesPerMinute)
	now := time.Now()
	sub.refreshTokens = min(per, sub.refreshTokens+now.Sub(sub.refreshAt).Minutes()*per)
	sub.refreshAt = now
	if sub.refreshTokens < 1 {
		return &wire.Reject{Code: wire.CodeLimit, Reason: ReasonRefreshRate,
			Message: fmt.Sprintf("subject %.128q refreshed its token more than %d times in a minute; the session goes on with its current token", name, s.limits.RefreshesPerMinute)}
	}
	sub.refreshTokens--
	return nil
}
