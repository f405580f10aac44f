// Package config reads the YAML configuration files of the postern
// command: the relay's and the connector's.
//
// Decoding is strict: an unknown key, a key set twice or a value of the
// wrong type is an error, and every error is an *Error naming the file,
// the line and the field ("relay.yaml:12:3: tokens.jwks_file: cannot read
// jwks.json: no such file or directory"). All the problems of a file are
// reported at once. Durations are written as Go durations ("10s", "1m30s").
// Relative paths are relative to the directory of the configuration file.
// Secrets are never written in a file: a configuration names the file or
// the environment variable that holds each one.
package config
