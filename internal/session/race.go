package session

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/postern/postern/internal/wire"
)

// Pace says how DialAny spaces its attempts.
type Pace struct {
	// Redial is how often a new attempt goes to a relay that has not
	// answered yet: a fresh handshake, whose first packet leaves at once,
	// rather than the retransmissions of an older one, which back off
	// (QUIC doubles its probe timeout: 0.3s, 0.6s, 1.2s, ...). It bounds
	// how long a relay that comes back waits for a client that wants it.
	// Zero means 500ms.
	Redial time.Duration
	// Stagger is the head start each address in order has over the next.
	// Zero means 250ms.
	Stagger time.Duration
	// AttemptLife bounds one attempt (handshake, Hello and Welcome); the
	// newer ones carry on. Zero means 3s.
	AttemptLife time.Duration
}

func (p Pace) withDefaults() Pace {
	if p.Redial <= 0 {
		p.Redial = 500 * time.Millisecond
	}
	if p.Stagger <= 0 {
		p.Stagger = 250 * time.Millisecond
	}
	if p.AttemptLife <= 0 {
		p.AttemptLife = 3 * time.Second
	}
	return p
}

// jitter returns d shortened by up to a fifth, so that the attempts of
// many clients to a relay that restarted do not arrive in step.
func jitter(d time.Duration) time.Duration {
	return d - rand.N(d/5+1)
}

// DialAny connects to the first of addrs that welcomes the session, within
// ctx. addrs[0] is tried at once, each next one a Stagger later, and each
// address that has not answered gets a fresh attempt every Redial; the
// first Welcome wins and every other attempt is abandoned. An address that
// refused (a Reject, or the relay's CONNECTION_CLOSE) is not tried again:
// when every address has refused, DialAny returns the first refusal. The
// token is asked of cfg.Token once for all attempts. cfg.Addr is ignored;
// cfg.TLSFor, when set, gives each address its TLS configuration.
func DialAny(ctx context.Context, addrs []string, cfg Config, pace Pace) (*Session, error) {
	if len(addrs) == 0 {
		return nil, errors.New("session: no relay address")
	}
	pace = pace.withDefaults()
	tok, err := cfg.Token(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTokenSource, err)
	}
	if tok == "" {
		return nil, fmt.Errorf("%w: empty token", ErrTokenSource)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	type result struct {
		i   int
		s   *Session
		err error
	}
	results := make(chan result)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		// Late winners are closed: the caller has its session.
		go func() {
			for r := range results {
				if r.s != nil {
					r.s.Close()
				}
			}
		}()
		wg.Wait()
		close(results)
	}()

	next := make([]time.Time, len(addrs)) // when each address gets its next attempt
	refused := make([]error, len(addrs))
	now := time.Now()
	for i := range next {
		next[i] = now.Add(time.Duration(i) * pace.Stagger)
	}
	var last error
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		// Start every attempt that is due, and find when the next is.
		now := time.Now()
		var wake time.Time
		for i, addr := range addrs {
			if refused[i] != nil {
				continue
			}
			if !next[i].After(now) {
				next[i] = now.Add(jitter(pace.Redial))
				wg.Add(1)
				go func() {
					defer wg.Done()
					actx, acancel := context.WithTimeout(ctx, pace.AttemptLife)
					defer acancel()
					c := cfg
					c.Addr = addr
					if cfg.TLSFor != nil {
						c.TLS = cfg.TLSFor(addr)
					}
					s, err := dial(actx, c, tok)
					select {
					case results <- result{i, s, err}:
					case <-ctx.Done():
						if s != nil {
							s.Close()
						}
					}
				}()
			}
			if wake.IsZero() || next[i].Before(wake) {
				wake = next[i]
			}
		}
		if wake.IsZero() {
			// Every address refused.
			for _, err := range refused {
				if err != nil {
					return nil, err
				}
			}
		}
		timer.Reset(time.Until(wake))
		select {
		case r := <-results:
			if r.err == nil {
				return r.s, nil
			}
			last = r.err
			if definitive(r.err) {
				refused[r.i] = r.err
			}
		case <-timer.C:
		case <-ctx.Done():
			if last == nil {
				last = ctx.Err()
			}
			return nil, last
		}
	}
}

// definitive reports whether err is a relay's own answer, or a name that
// does not exist, which a new attempt would only repeat.
func definitive(err error) bool {
	var (
		rej *RejectError
		dns *net.DNSError
	)
	return errors.As(err, &rej) || CloseReason(err) != nil || errors.Is(err, wire.ErrMalformed) ||
		errors.As(err, &dns) && dns.IsNotFound
}
