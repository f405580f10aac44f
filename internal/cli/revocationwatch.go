package cli

import (
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/postern/postern/internal/config"
	"github.com/postern/postern/mesh/relay"
)

// revocationWatcher reloads a relay's tokens.revocation_file as
// policyWatcher reloads policy.dir: when its size or modification time
// changes (polled every policy.poll) and on SIGHUP. A reload that fails
// keeps the list in force: an unreadable or broken file must not un-revoke
// anything.
type revocationWatcher struct {
	file string
	list *relay.RevocationList
	log  *slog.Logger

	mu   sync.Mutex // serializes reloads
	last string     // the file's state at the last load attempt

	done chan struct{}
	wg   sync.WaitGroup
}

// startRevocationWatcher watches file, whose state (fileState) was loaded
// taken before its content was read.
func startRevocationWatcher(file, loaded string, list *relay.RevocationList, every time.Duration, log *slog.Logger) *revocationWatcher {
	w := &revocationWatcher{file: file, list: list, log: log, last: loaded, done: make(chan struct{})}
	w.wg.Add(1)
	go w.poll(every)
	return w
}

func (w *revocationWatcher) stop() {
	close(w.done)
	w.wg.Wait()
}

func (w *revocationWatcher) poll(every time.Duration) {
	defer w.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-w.done:
			return
		case <-t.C:
		}
		state := fileState(w.file)
		w.mu.Lock()
		changed := state != w.last
		w.mu.Unlock()
		if changed {
			w.reload("file changed")
		}
	}
}

func (w *revocationWatcher) reload(why string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.last = fileState(w.file)
	rev, err := config.LoadRevocations(w.file)
	if err != nil {
		w.log.Error("relay: revocation list reload failed; keeping the list in force", "trigger", why, "file", w.file, "err", err)
		return false
	}
	w.list.Replace(rev)
	w.log.Info("relay: revocation list reloaded", "trigger", why, "tokens", len(rev.Tokens), "subjects", len(rev.Subjects))
	return true
}

// fileState is a file's size and modification time, or why it cannot be
// read; a link is followed.
func fileState(path string) string {
	info, err := os.Stat(path)
	if err != nil {
		return "error: " + err.Error()
	}
	return fmt.Sprintf("%d\x00%d", info.Size(), info.ModTime().UnixNano())
}
