package wire

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestGeneratedCodeIsFresh regenerates wire.pb.go from wire.proto, as go
// generate does, and fails when the committed file differs: a change of
// wire.proto must come with its generated code. It needs protoc (Debian's
// protobuf-compiler) and skips without it, except under CI, which installs
// it; protoc-gen-go is the version pinned by go.mod's tool directive.
func TestGeneratedCodeIsFresh(t *testing.T) {
	if testing.Short() {
		t.Skip("builds protoc-gen-go")
	}
	protoc := lookProtoc(t)
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go is not on PATH")
	}
	plugin, err := exec.Command(goCmd, "tool", "-n", "protoc-gen-go").Output()
	if err != nil {
		t.Fatalf("go tool -n protoc-gen-go: %v", err)
	}
	out := t.TempDir()
	cmd := exec.Command(protoc, "--plugin=protoc-gen-go="+strings.TrimSpace(string(plugin)),
		"--go_out="+out, "--go_opt=paths=source_relative", "wire.proto")
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("protoc: %v\n%s", err, msg)
	}
	fresh, err := os.ReadFile(filepath.Join(out, "wire.pb.go"))
	if err != nil {
		t.Fatal(err)
	}
	committed, err := os.ReadFile("wire.pb.go")
	if err != nil {
		t.Fatal(err)
	}
	// Another protoc than the one that generated the file writes its own
	// version in the header; the rest must not differ.
	protocLine := regexp.MustCompile(`(?m)^// \tprotoc +v.*$`)
	if !bytes.Equal(protocLine.ReplaceAll(fresh, nil), protocLine.ReplaceAll(committed, nil)) {
		t.Fatal("wire.pb.go is stale: run go generate ./internal/wire and commit the result")
	}
}

// TestDecodeRaw checks what wire.proto tells a person debugging a capture:
// that protoc --decode_raw reads a frame's payload once the 5-byte header
// is stripped.
func TestDecodeRaw(t *testing.T) {
	protoc := lookProtoc(t)
	data, err := os.ReadFile(goldenPath(FrameOpen))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(protoc, "--decode_raw")
	cmd.Stdin = bytes.NewReader(data[FrameHeaderLen:])
	got, err := cmd.Output()
	if err != nil {
		t.Fatalf("protoc --decode_raw: %v", err)
	}
	if !strings.HasPrefix(string(got), `1: "staging-db"`+"\n") {
		t.Fatalf("protoc --decode_raw printed\n%s\nwant it to start with the binding, field 1", got)
	}
}

// TestImports keeps the package what the protocol needs and no more: the
// standard library and the protobuf runtime, so that it never grows a
// dependency on the rest of Postern or on QUIC.
func TestImports(t *testing.T) {
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go is not on PATH")
	}
	out, err := exec.Command(goCmd, "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		if p != "github.com/postern/postern/internal/wire" && !strings.HasPrefix(p, "google.golang.org/protobuf/") {
			t.Errorf("internal/wire depends on %s; it may use only the standard library and google.golang.org/protobuf", p)
		}
	}
}

// lookProtoc finds protoc, or skips the test without it, or fails it
// under CI (the environment variable CI set), which must not skip it.
func lookProtoc(t *testing.T) string {
	t.Helper()
	protoc, err := exec.LookPath("protoc")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("protoc is not installed (Debian: apt-get install protobuf-compiler)")
		}
		t.Skip("protoc is not installed (set CI=1 to make this a failure)")
	}
	return protoc
}
