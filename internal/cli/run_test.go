package cli

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/postern/postern/internal/meshtest"
	"github.com/postern/postern/policy"
)

// TestPolicyWatcher: an edited policy file is loaded; a broken one is
// refused and the policies in force stay; a forced reload works.
func TestPolicyWatcher(t *testing.T) {
	dir := t.TempDir()
	write := func(name, src string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("a.cedar", `@id("first") permit (principal, action, resource);`)
	loaded, _ := dirState(dir)
	set, err := policy.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	engine := policy.NewEngine(set)
	var logs meshtest.Log
	w := startPolicyWatcher(dir, loaded, policy.ValidateOptions{}, engine, 20*time.Millisecond, slog.New(slog.NewTextHandler(&logs, nil)))
	defer w.stop()
	ids := func() string { return strings.Join(engine.Set().IDs(), ",") }

	write("b.cedar", `@id("second") forbid (principal, action, resource) when { resource.labels.contains("financial") };`)
	meshtest.WaitFor(t, "the new file to be loaded", func() bool { return ids() == "first,second" })

	write("c.cedar", `@id("broken") permit (principal, action, resourc);`)
	meshtest.WaitFor(t, "the failed reload to be logged", func() bool { return strings.Contains(logs.String(), "policy reload failed") })
	if ids() != "first,second" {
		t.Errorf("after a broken file the policies are %q, want the previous ones", ids())
	}
	if !strings.Contains(logs.String(), "c.cedar:1") {
		t.Errorf("the log does not say where the problem is:\n%s", logs.String())
	}

	write("c.cedar", `@id("typo") forbid (principal, action, resource) when { resource.lables.contains("x") };`)
	meshtest.WaitFor(t, "the invalid policy to be refused", func() bool { return strings.Count(logs.String(), "policy reload failed") >= 2 })
	if ids() != "first,second" {
		t.Errorf("after an invalid policy the policies are %q", ids())
	}

	os.Remove(filepath.Join(dir, "c.cedar"))
	os.Remove(filepath.Join(dir, "b.cedar"))
	meshtest.WaitFor(t, "the removal to be loaded", func() bool { return ids() == "first" })
	if !w.reload("test") || ids() != "first" {
		t.Errorf("forced reload: %q", ids())
	}
}

// TestPolicyWatcherSymlinks: policies mounted as symbolic links, as a
// Kubernetes ConfigMap mounts them (p.cedar -> ..data/p.cedar, where
// ..data is a link swapped to a new directory on update), are reloaded
// when the files they point to change, not only when the links do.
func TestPolicyWatcherSymlinks(t *testing.T) {
	dir := t.TempDir()
	for name, src := range map[string]string{
		"v1/p.cedar": `@id("first") permit (principal, action, resource);`,
		"v2/p.cedar": `@id("second") permit (principal, action, resource);`,
	} {
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("v1", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join("..data", "p.cedar"), filepath.Join(dir, "p.cedar")); err != nil {
		t.Fatal(err)
	}
	loaded, _ := dirState(dir)
	set, err := policy.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	engine := policy.NewEngine(set)
	w := startPolicyWatcher(dir, loaded, policy.ValidateOptions{}, engine, 20*time.Millisecond, slog.New(slog.DiscardHandler))
	defer w.stop()

	// Swap ..data atomically, as the kubelet does.
	if err := os.Symlink("v2", filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	meshtest.WaitFor(t, "the policy behind the link to be reloaded", func() bool {
		return strings.Join(engine.Set().IDs(), ",") == "second"
	})
}

// TestPolicyWatcherChangeDuringStart: a policy file changed between the
// relay's first load and the start of its watcher (while it fetched a JWKS
// URL, say) is reloaded at the first poll, not missed until the next edit.
func TestPolicyWatcherChangeDuringStart(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.cedar")
	if err := os.WriteFile(path, []byte(`@id("first") permit (principal, action, resource);`), 0o644); err != nil {
		t.Fatal(err)
	}
	loaded, err := dirState(dir)
	if err != nil {
		t.Fatal(err)
	}
	set, err := policy.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	engine := policy.NewEngine(set)
	if err := os.WriteFile(path, []byte(`@id("changed") permit (principal, action, resource);`), 0o644); err != nil {
		t.Fatal(err)
	}
	w := startPolicyWatcher(dir, loaded, policy.ValidateOptions{}, engine, 20*time.Millisecond, slog.New(slog.DiscardHandler))
	defer w.stop()
	meshtest.WaitFor(t, "the change made during start to be loaded", func() bool {
		return strings.Join(engine.Set().IDs(), ",") == "changed"
	})
}

// TestCutOnSignal: during a drain, SIGINT or SIGTERM cuts the open
// streams; a SIGHUP (a reload request) does not.
func TestCutOnSignal(t *testing.T) {
	sigs := make(chan os.Signal, 2)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var cuts atomic.Int32
	done := make(chan struct{})
	go func() {
		defer close(done)
		cutOnSignal(ctx, sigs, func() { cuts.Add(1) }, slog.New(slog.DiscardHandler))
	}()
	sigs <- syscall.SIGHUP
	meshtest.WaitFor(t, "the SIGHUP to be taken", func() bool { return len(sigs) == 0 })
	sigs <- syscall.SIGTERM
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("SIGTERM did not end the wait")
	}
	if n := cuts.Load(); n != 1 || len(sigs) != 0 {
		t.Errorf("%d cuts, %d signals left: the SIGHUP cut the drain", n, len(sigs))
	}

	// The end of the drain ends the wait without a cut.
	ctx2, cancel2 := context.WithCancel(context.Background())
	cancel2()
	cutOnSignal(ctx2, make(chan os.Signal), func() { t.Error("cut without a signal") }, slog.New(slog.DiscardHandler))
}
