package relay

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"log/slog"
	"maps"
	"slices"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/postern/postern/internal/wire"
	"github.com/postern/postern/policy"
)

// Connectors decide statements and HTTP requests themselves, with the
// relay's policy set: the relay sends it in a Policy frame to every
// connector that asks (Hello.features lists "policy"), right after the
// Welcome and again after every swap of Config.Policy. Each Set the relay
// sends gets the next version; the frame is built once per Set.

// maxPolicyFrame is the largest Policy payload the relay sends: what
// clients read on the control stream (internal/session.MaxControlFrame),
// less room for the header.
const maxPolicyFrame = 4<<20 - 64

// policyFrames builds and remembers the Policy frame of the current Set.
type policyFrames struct {
	mu      sync.Mutex
	set     *policy.Set // the Set msg was built from
	built   bool
	version uint64
	msg     *wire.Policy
}

// current returns the Policy frame of the engine's current Set, building it
// (with the next version) when the Set is not the one last built.
func (f *policyFrames) current(e *policy.Engine, opts *policy.ValidateOptions, log *slog.Logger) *wire.Policy {
	set := e.Set()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.built && f.set == set {
		return f.msg
	}
	f.version++
	f.set, f.built = set, true
	f.msg = buildPolicy(f.version, set, opts)
	if f.msg.Withheld != "" {
		log.Error("relay: the policy set cannot be sent to connectors; they will refuse every statement and request", "version", f.version, "reason", f.msg.Withheld)
	}
	return f.msg
}

func buildPolicy(version uint64, set *policy.Set, opts *policy.ValidateOptions) *wire.Policy {
	m := &wire.Policy{Version: version}
	h := sha256.New()
	for _, src := range set.Sources() {
		m.Sources = append(m.Sources, &wire.PolicySource{Filename: src.Filename, Text: string(src.Text)})
		hashField(h, src.Filename)
		hashField(h, string(src.Text))
	}
	if opts != nil {
		d := &wire.PolicyDeclarations{
			PrincipalAttributes: maps.Clone(opts.PrincipalAttributes),
			DetailKeys:          slices.Clone(opts.DetailKeys),
			Actions:             slices.Clone(opts.Actions),
		}
		m.Declarations = d
		h.Write([]byte{1})
		for _, k := range slices.Sorted(maps.Keys(d.PrincipalAttributes)) {
			hashField(h, k)
			hashField(h, d.PrincipalAttributes[k])
		}
		h.Write([]byte{2})
		for _, k := range d.DetailKeys {
			hashField(h, k)
		}
		h.Write([]byte{3})
		for _, a := range d.Actions {
			hashField(h, a)
		}
	}
	m.Hash = hex.EncodeToString(h.Sum(nil))
	if size := proto.Size(m); size > maxPolicyFrame {
		m.Sources, m.Declarations = nil, nil
		m.Withheld = fmt.Sprintf("the relay's policy set is %d bytes encoded, more than a control frame holds (%d)", size, maxPolicyFrame)
	}
	return m
}

// hashField writes s length-prefixed, so that no two different sequences
// of fields hash alike.
func hashField(h hash.Hash, s string) {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(s)))
	h.Write(n[:])
	h.Write([]byte(s))
}

// pushPolicy sends the connector the current Policy frame unless it has it
// already. Pushes to one connector are serialized, so that a reload racing
// the session's first push never leaves it an older version.
func (c *connectorSession) pushPolicy() {
	if !c.wantsPolicy {
		return
	}
	c.policyMu.Lock()
	defer c.policyMu.Unlock()
	if !c.welcomed {
		return // registered, but the Welcome is not out yet: it pushes then
	}
	m := c.r.policyFrames.current(c.r.policy, c.r.cfg.PolicyOptions, c.r.log)
	if m.Version <= c.policySent {
		return
	}
	if err := c.write(m); err != nil {
		c.r.log.Debug("relay: policy push failed", "session", c.id, "connector", c.name(), "version", m.Version, "err", err)
		return
	}
	c.policySent = m.Version
	c.r.log.Debug("relay: policy sent", "session", c.id, "connector", c.name(), "version", m.Version, "hash", m.Hash)
}

// pushPolicyAll sends the current set to every connector, in parallel: one
// that stopped reading holds only its own push, for the write deadline.
func (r *Relay) pushPolicyAll() {
	r.mu.RLock()
	conns := make([]*connectorSession, 0, len(r.connectors))
	for c := range r.connectors {
		conns = append(conns, c)
	}
	r.mu.RUnlock()
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(c.pushPolicy)
	}
	wg.Wait()
}
