package config

import (
	"errors"

	"github.com/postern/postern/policy"
)

// LoadPolicies loads every *.cedar file in dir and validates each policy
// against Postern's schema with opts. It returns the set only when all of
// it parses and validates: a policy that names an unknown entity type,
// action or attribute would silently never apply, and a forbid that never
// applies is a hole. The error lists every problem, each naming the file,
// the line and the policy's @id. A directory without policies gives an
// empty set, which denies everything: callers warn about it (Set.Len).
func LoadPolicies(dir string, opts policy.ValidateOptions) (*policy.Set, error) {
	set, err := policy.LoadDir(dir)
	if err != nil {
		return nil, err
	}
	if errs := set.Validate(opts); len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return set, nil
}
