// Package policies holds the example Cedar policies of the README, the
// quickstart and postern dev, as files (one policy per file, each with an
// @id and a comment saying what it allows or forbids and why) and embedded
// in FS for programs that run the examples without a checkout.
//
// Together they make the product's sentence true: group coding-agents may
// read Environment staging; forbid anything labelled financial. Group
// oncall may read production and write the status page's incidents,
// financial records excepted; no agent runs DDL anywhere. Each permit for
// reading or writing also opens the binding it names.
//
// Check them with:
//
//	postern policy validate examples/policies
//	postern policy check --principal coding-agent --group coding-agents \
//	    --resource staging-db --kind postgres --env staging examples/policies
//	postern policy check --principal pager --group oncall --resource prod-status \
//	    --kind http --env prod --http "POST /v1/incidents/42" examples/policies
package policies

import "embed"

// FS holds the *.cedar files of this directory.
//
//go:embed *.cedar
var FS embed.FS

// Source returns every policy file of FS in lexical order, as one Cedar
// document for policy.Parse: the policies and their @ids are the same as
// policy.LoadDir("examples/policies") gives, without a checkout.
func Source() []byte {
	entries, _ := FS.ReadDir(".")
	var src []byte
	for _, e := range entries { // ReadDir sorts by name
		b, _ := FS.ReadFile(e.Name())
		src = append(src, "// "+e.Name()+"\n"...)
		src = append(append(src, b...), '\n')
	}
	return src
}
