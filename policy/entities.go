package policy

import (
	"reflect"
	"slices"

	"github.com/cedar-policy/cedar-go/types"
)

// A principalForm is a Principal turned into its Cedar entity, together
// with the fields it was made from.
type principalForm struct {
	id     string
	groups []string // a copy
	attrs  uintptr  // the identity of the Attributes map
	entity types.Entity
	uids   []types.EntityUID // the distinct groups, as entity UIDs
	seq    uint64            // from NewPrincipal: its identity in the decision cache; 0 otherwise
}

// NewPrincipal returns a Principal that carries its Cedar form, so that
// decisions do not convert it again, and whose decisions a Set caches (see
// [Set.Authorize]); the error is what Authorize would deny every request
// with (an empty id, an attribute Cedar cannot hold). Changing the returned
// Principal's fields is safe: a form that no longer matches them is ignored,
// and so is the cache. Only a change made inside the attrs map after the
// call goes unseen, by the form and the cache alike; build a new Principal
// instead (on token refresh), which is a new key of the cache.
func NewPrincipal(id string, groups []string, attrs map[string]any) (Principal, error) {
	p := Principal{ID: id, Groups: groups, Attributes: attrs}
	f, err := newPrincipalForm(&p)
	if f != nil {
		f.seq = formSeq.Add(1)
	}
	p.form = f
	return p, err
}

func (p *Principal) cedarForm() (*principalForm, error) {
	if f := p.form; f != nil && f.id == p.ID && f.attrs == mapIdentity(p.Attributes) && slices.Equal(f.groups, p.Groups) {
		return f, nil
	}
	return newPrincipalForm(p)
}

func newPrincipalForm(p *Principal) (*principalForm, error) {
	if p.ID == "" {
		return nil, errNoPrincipal
	}
	attrs, err := convertAttributes(p.Attributes)
	if err != nil {
		return nil, err
	}
	f := &principalForm{
		id:     p.ID,
		groups: slices.Clone(p.Groups),
		attrs:  mapIdentity(p.Attributes),
	}
	for _, g := range p.Groups {
		uid := types.NewEntityUID(typeGroup, types.String(g))
		if !slices.Contains(f.uids, uid) {
			f.uids = append(f.uids, uid)
		}
	}
	f.entity = types.Entity{
		UID:        types.NewEntityUID(typeAgent, types.String(p.ID)),
		Parents:    types.NewEntityUIDSet(f.uids...),
		Attributes: attrs,
	}
	return f, nil
}

func mapIdentity(m map[string]any) uintptr {
	return reflect.ValueOf(m).Pointer()
}

// A resourceForm is a Resource turned into its Cedar entity, together with
// the fields it was made from.
type resourceForm struct {
	name, kind, environment string
	labels                  []string // a copy, without duplicates
	rawLabels               []string // a copy, as given
	entity                  types.Entity
	env                     *types.EntityUID // the parent environment, if any
	seq                     uint64           // from NewResource: its identity in the decision cache; 0 otherwise
}

// NewResource returns a Resource that carries its Cedar form, so that
// decisions do not convert it again, and whose decisions a Set caches (see
// [Set.Authorize]). Changing the returned Resource's fields is safe: a form
// that no longer matches them is ignored, and so is the cache.
func NewResource(name, kind, environment string, labels ...string) Resource {
	r := Resource{Name: name, Kind: kind, Environment: environment, Labels: labels}
	r.form, _ = newResourceForm(&r) // an empty name is reported by Authorize
	if r.form != nil {
		r.form.seq = formSeq.Add(1)
	}
	return r
}

func (r *Resource) cedarForm() (*resourceForm, error) {
	if f := r.form; f != nil && f.name == r.Name && f.kind == r.Kind && f.environment == r.Environment && slices.Equal(f.rawLabels, r.Labels) {
		return f, nil
	}
	return newResourceForm(r)
}

func newResourceForm(r *Resource) (*resourceForm, error) {
	if r.Name == "" {
		return nil, errNoResource
	}
	f := &resourceForm{
		name:        r.Name,
		kind:        r.Kind,
		environment: r.Environment,
		rawLabels:   slices.Clone(r.Labels),
	}
	labels := emptySet
	if len(r.Labels) > 0 {
		vals := make([]types.Value, 0, len(r.Labels))
		for _, l := range r.Labels {
			if !slices.Contains(f.labels, l) {
				f.labels = append(f.labels, l)
				vals = append(vals, types.String(l))
			}
		}
		labels = types.NewSet(vals...)
	}
	var parents []types.EntityUID
	if r.Environment != "" {
		env := types.NewEntityUID(typeEnvironment, types.String(r.Environment))
		f.env = &env
		parents = append(parents, env)
	}
	f.entity = types.Entity{
		UID:     types.NewEntityUID(typeBinding, types.String(r.Name)),
		Parents: types.NewEntityUIDSet(parents...),
		Attributes: types.NewRecord(types.RecordMap{
			"kind":        types.String(r.Kind),
			"environment": types.String(r.Environment),
			"labels":      labels,
		}),
	}
	return f, nil
}
