// Package pgconnstr writes values into PostgreSQL keyword/value connection
// strings ("host=... user=..."), for the agent's binding, the connector's
// upstream login and the test server alike.
package pgconnstr

import "strings"

var quoter = strings.NewReplacer(`\`, `\\`, `'`, `\'`)

// Quote quotes v as one value of a keyword/value connection string: in
// single quotes, with backslashes and single quotes escaped, so that
// spaces, '=' and quotes in a user, database or file name stay in it.
func Quote(v string) string { return "'" + quoter.Replace(v) + "'" }
