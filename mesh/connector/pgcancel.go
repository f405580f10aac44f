package connector

import (
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"encoding/binary"
	"sync"
)

// Cancel keys. PostgreSQL cancels a query when a new connection presents
// the backend's PID and secret key; whoever holds them can cancel, with
// no login. The connector keeps the upstream's to itself and hands each
// agent session a pair it mints, mapped here to the real one and to the
// agent and binding the session serves, for as long as the session lives.

// pgKey is a backend PID and secret key as an agent sees them.
type pgKey struct {
	pid    uint32
	secret []byte
}

// pgSession is what a minted key stands for.
type pgSession struct {
	subject string // the agent the session was opened for
	binding string
	pid     uint32 // the upstream backend's
	secret  []byte
	tls     *tls.Config // as the login was encrypted, for the cancel's connection
}

type pgMinted struct {
	secret []byte
	sess   pgSession
}

// pgKeyring maps minted PIDs to sessions. The zero value is ready.
type pgKeyring struct {
	mu   sync.Mutex
	keys map[uint32]pgMinted
}

// add mints a key for s. The PID is random (a positive int32, as servers
// and clients read it), unused among live sessions; the secret is 4
// random bytes, the length of protocol 3.0's, which the upstream is asked
// for and every client accepts.
func (k *pgKeyring) add(s pgSession) pgKey {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.keys == nil {
		k.keys = make(map[uint32]pgMinted)
	}
	var b [8]byte
	for {
		rand.Read(b[:])
		pid := binary.BigEndian.Uint32(b[:4]) & 0x7fffffff
		if pid == 0 {
			continue
		}
		if _, used := k.keys[pid]; used {
			continue
		}
		key := pgKey{pid: pid, secret: append([]byte(nil), b[4:]...)}
		k.keys[pid] = pgMinted{secret: key.secret, sess: s}
		return key
	}
}

// remove forgets a key when its session ends: a later cancel naming it
// is dropped.
func (k *pgKeyring) remove(key pgKey) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.keys, key.pid)
}

// match returns the session of a presented key when the key is live and
// was minted for subject's session on binding.
func (k *pgKeyring) match(key pgKey, subject, binding string) (pgSession, bool) {
	k.mu.Lock()
	m, ok := k.keys[key.pid]
	k.mu.Unlock()
	if !ok || subtle.ConstantTimeCompare(m.secret, key.secret) != 1 {
		return pgSession{}, false
	}
	if m.sess.subject != subject || m.sess.binding != binding {
		return pgSession{}, false
	}
	return m.sess, true
}

// len is how many sessions hold a key, for tests.
func (k *pgKeyring) len() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.keys)
}
