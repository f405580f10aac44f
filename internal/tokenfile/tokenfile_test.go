package tokenfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestRead(t *testing.T) {
	file := func(content string) func(string) error {
		return func(path string) error { return os.WriteFile(path, []byte(content), 0o600) }
	}
	big := strings.Repeat("a", MaxSize)
	tests := []struct {
		name    string
		write   func(path string) error
		want    string
		wantErr error // what the *fs.PathError naming the file wraps
	}{
		{name: "trailing newline", write: file("eyJ.a.b\n"), want: "eyJ.a.b"},
		{name: "white space around", write: file("\r\n  eyJ.a.b \t\r\n\n"), want: "eyJ.a.b"},
		{name: "no newline", write: file("eyJ.a.b"), want: "eyJ.a.b"},
		{name: "empty", write: file(""), want: ""},
		{name: "white space only", write: file(" \n\t\n"), want: ""},
		{name: "largest", write: file(big), want: big},
		{name: "too large", write: file(big + "a"), wantErr: ErrTooLarge},
		{name: "missing", write: func(string) error { return nil }, wantErr: fs.ErrNotExist},
		{name: "directory", write: func(path string) error { return os.Mkdir(path, 0o700) }, wantErr: syscall.EISDIR},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "token")
			if err := tt.write(path); err != nil {
				t.Fatal(err)
			}
			got, err := Read(path)
			if tt.wantErr == nil {
				if err != nil || got != tt.want {
					t.Fatalf("Read = %.20q, %v; want %.20q", got, err, tt.want)
				}
				return
			}
			var pe *fs.PathError
			if !errors.As(err, &pe) || pe.Path != path || !errors.Is(err, tt.wantErr) {
				t.Fatalf("error %v: want an *fs.PathError naming %s and wrapping %v", err, path, tt.wantErr)
			}
			if strings.Contains(err.Error(), "aaaa") {
				t.Errorf("error shows the content: %v", err)
			}
		})
	}
}
