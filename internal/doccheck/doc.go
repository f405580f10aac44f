// Package doccheck keeps the documentation honest. It has no code, only a
// test, which fails when a doc comment shows code that would not compile
// or links to a name that does not exist.
//
// # What it checks
//
// The test walks the module and reads the package comment of every doc.go
// and every fenced block marked go in README.md. In a doc comment, a code
// block is a run of lines indented by a tab ("//\t"). A block is Go when it
// parses as the statements of a function body, or when it looks like Go
// (it contains ":=", the word err, or "func "); a block that looks like Go but does
// not parse fails, so a placeholder such as "if err != nil { ... }" cannot
// stay in the docs. Diagrams, shell lines, Cedar policies and YAML are
// skipped.
//
// Every Go block must appear in the body of an Example function in a
// _test.go file: of the same directory for a doc.go, of any package for
// README.md. It appears when its non-blank lines, trimmed of surrounding
// white space, are found in the Example's body in the same order, comments
// included; the Example may have lines of its own around and between them
// (declaring ctx, using a result). go test compiles every Example, and runs
// those with an Output comment, so a snippet that drifts from the API
// breaks the build of its Example, and an Example that drifts from its
// snippet fails this test.
//
// It also checks that every doc link in a package comment (a name in
// square brackets: of the package, of a method or field of one of its
// types, or of an imported package) names something that exists: go vet
// does not, and go doc prints a link that does not resolve as plain text.
//
// # When it fails
//
// Each failure names the file, the line of the block's first line, and
// the first snippet line that no Example contains (for the Example that
// contains the most of the block). Edit the snippet and its Example
// together; if the API changed, the Example no longer compiles either.
package doccheck
