package mesh

import (
	"context"
	"fmt"
	"slices"

	"github.com/postern/postern/internal/wire"
)

// detailsKey is the context key of the details WithDetail attaches.
type detailsKey struct{}

// WithDetail returns a copy of ctx whose opens carry the detail key=value:
// every Dial, DialEarly or typed handle's connection opened with the
// returned context (or one derived from it) sends it in its Open. A later
// WithDetail of the same key replaces the value.
//
// The relay hands details to policy as context.details (so a policy may
// say `context.details.tool == "staging-db_query"`) and names them in
// its open and close audit events; the connector names them in the
// events of each statement and request of the stream. They are the
// agent's own words, not a verified fact: policy should use them only to
// narrow what the agent's identity already allows, and audit readers
// should read them as what the agent claimed (postern mcp names the tool
// a call came from, for instance).
//
// A key is 1 to 128 bytes of letters, digits and . _ / -; a value at most
// 4096 bytes; an open carries at most 64 details. An open whose details
// break these limits fails with postern.ErrProtocol and sends nothing.
func WithDetail(ctx context.Context, key, value string) context.Context {
	old, _ := ctx.Value(detailsKey{}).([]*wire.Detail)
	ds := make([]*wire.Detail, 0, len(old)+1)
	for _, d := range old {
		if d.Key != key {
			ds = append(ds, d)
		}
	}
	ds = append(ds, &wire.Detail{Key: key, Value: value})
	slices.SortFunc(ds, func(a, b *wire.Detail) int {
		switch {
		case a.Key < b.Key:
			return -1
		case a.Key > b.Key:
			return 1
		}
		return 0
	})
	return context.WithValue(ctx, detailsKey{}, ds)
}

// Details returns the details that opens made with ctx carry, as
// WithDetail set them; nil when there are none.
func Details(ctx context.Context) map[string]string {
	ds, _ := ctx.Value(detailsKey{}).([]*wire.Detail)
	if len(ds) == 0 {
		return nil
	}
	m := make(map[string]string, len(ds))
	for _, d := range ds {
		m[d.Key] = d.Value
	}
	return m
}

// openDetails returns ctx's details for an Open, checked against the
// protocol's limits.
func openDetails(ctx context.Context) ([]*wire.Detail, error) {
	ds, _ := ctx.Value(detailsKey{}).([]*wire.Detail)
	if len(ds) == 0 {
		return nil, nil
	}
	if len(ds) > wire.MaxDetails {
		return nil, fmt.Errorf("%d details, at most %d may go with an open", len(ds), wire.MaxDetails)
	}
	for _, d := range ds {
		if err := wire.ValidName(d.Key); err != nil {
			return nil, fmt.Errorf("detail key %.64q: %v", d.Key, err)
		}
		if len(d.Value) > wire.MaxDetailValue {
			return nil, fmt.Errorf("detail %s: the value is %d bytes, at most %d", d.Key, len(d.Value), wire.MaxDetailValue)
		}
	}
	return ds, nil
}
