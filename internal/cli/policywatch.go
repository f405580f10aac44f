package cli

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/postern/postern/internal/config"
	"github.com/postern/postern/policy"
)

// policyWatcher reloads a relay's policies when the *.cedar files of its
// directory change (it compares names, sizes and modification times every
// poll interval: no file-notification dependency, and it works on every
// file system) and when asked (SIGHUP). A reload that fails to parse or
// validate keeps the policies in force and logs every problem.
type policyWatcher struct {
	dir    string
	opts   policy.ValidateOptions
	engine *policy.Engine
	log    *slog.Logger

	mu   sync.Mutex // serializes reloads
	last string     // the directory's state at the last load attempt

	done chan struct{}
	wg   sync.WaitGroup
}

// startPolicyWatcher watches dir for changes since loaded, the state of
// dir (dirState) taken before the engine's policies were loaded from it,
// so that a file changed while the relay was starting is reloaded at the
// first poll rather than missed.
func startPolicyWatcher(dir, loaded string, opts policy.ValidateOptions, engine *policy.Engine, every time.Duration, log *slog.Logger) *policyWatcher {
	w := &policyWatcher{dir: dir, opts: opts, engine: engine, log: log, done: make(chan struct{}), last: loaded}
	w.wg.Add(1)
	go w.poll(every)
	return w
}

func (w *policyWatcher) stop() {
	close(w.done)
	w.wg.Wait()
}

func (w *policyWatcher) poll(every time.Duration) {
	defer w.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-w.done:
			return
		case <-t.C:
		}
		state, err := dirState(w.dir)
		if err != nil {
			w.mu.Lock()
			changed := w.last != "error"
			w.last = "error"
			w.mu.Unlock()
			if changed {
				w.log.Error("relay: cannot read the policy directory; keeping the policies in force", "dir", w.dir, "err", err)
			}
			continue
		}
		w.mu.Lock()
		changed := state != w.last
		w.mu.Unlock()
		if changed {
			w.reload("files changed")
		}
	}
}

// reload loads and validates the directory and swaps the result in, or
// keeps the policies in force and logs why not.
func (w *policyWatcher) reload(why string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.last, _ = dirState(w.dir)
	set, err := config.LoadPolicies(w.dir, w.opts)
	if err != nil {
		w.log.Error("relay: policy reload failed; keeping the policies in force", "trigger", why, "dir", w.dir, "err", err)
		return false
	}
	w.engine.Swap(set)
	w.log.Info("relay: policies reloaded", "trigger", why, "policies", set.Len(), "ids", strings.Join(set.IDs(), ","))
	if set.Len() == 0 {
		w.log.Warn("relay: no policies in policy.dir: every open is denied until some are added", "dir", w.dir)
	}
	return true
}

// dirState summarizes the *.cedar files directly in dir: names, sizes
// and modification times. Symbolic links are followed: a policy mounted
// as a link (a Kubernetes ConfigMap's p.cedar -> ..data/p.cedar) changes
// when its target does, while the link itself stays the same.
func dirState(dir string) (string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	var parts []string
	for _, e := range entries {
		if e.IsDir() || filepath.Ext(e.Name()) != ".cedar" {
			continue
		}
		info, err := os.Stat(filepath.Join(dir, e.Name()))
		if err != nil {
			continue // removed since ReadDir: the next poll sees it gone
		}
		parts = append(parts, fmt.Sprintf("%s\x00%d\x00%d", e.Name(), info.Size(), info.ModTime().UnixNano()))
	}
	slices.Sort(parts)
	return strings.Join(parts, "\n"), nil
}
