// Package tokenfile reads an identity token from a file: the connector's
// token_file and an agent's POSTERN_TOKEN_FILE, both read again each time
// a token is needed so that one replaced on disk is picked up.
package tokenfile

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"strings"
)

// MaxSize bounds a token file, well above the 8 KiB a relay takes by
// default: a path that names the wrong file (a log, /dev/zero) fails
// instead of filling memory at every refresh.
const MaxSize = 64 << 10

// ErrTooLarge is the cause of the *fs.PathError for a file larger than
// MaxSize.
var ErrTooLarge = errors.New("larger than 64 KiB: not a token file")

// Read returns the content of the file at path with the white space
// around it trimmed (a token is usually written with a newline after
// it), or "" for a file of white space only: callers say in their own
// words what an empty file or a malformed token means. Every error is an
// *fs.PathError, naming the file and never its content.
func Read(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return "", err
	}
	if len(b) > MaxSize {
		return "", &fs.PathError{Op: "read", Path: path, Err: ErrTooLarge}
	}
	return strings.TrimSpace(string(b)), nil
}
