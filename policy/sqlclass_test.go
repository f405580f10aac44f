package policy_test

import (
	"testing"

	"github.com/postern/postern/internal/sqlclass"
	"github.com/postern/postern/policy"
)

// TestSQLClassHierarchy keeps the classifier's actions and the policy
// hierarchy in step: every action Classify can return has the parent its
// class names, and every SQL action of the hierarchy can be returned.
func TestSQLClassHierarchy(t *testing.T) {
	for action, class := range sqlclass.ActionClass {
		if p, ok := policy.ActionParent(action); !ok || p != class {
			t.Errorf("sqlclass %s is %s; policy.ActionParent says %q, %v", action, class, p, ok)
		}
	}
	for _, a := range policy.Actions() {
		if len(a) > 4 && a[:4] == "sql:" {
			if _, ok := sqlclass.ActionClass[a]; !ok {
				t.Errorf("policy knows %s, which sqlclass never returns", a)
			}
		}
	}
}
