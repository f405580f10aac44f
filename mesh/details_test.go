package mesh_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/postern/postern"
	"github.com/postern/postern/internal/meshtest"
	"github.com/postern/postern/mesh"
)

// TestOpenDetails: details attached with mesh.WithDetail travel in the
// Open; policy reads them as context.details (a forbid matching one
// denies, naming itself), the relay's audit names them, a later value of
// the same key replaces the earlier one, and details that break the
// protocol's limits fail the open before anything is sent.
func TestOpenDetails(t *testing.T) {
	w := newWorld(t, meshtest.Options{Policies: meshtest.Policies + `
@id("no-bad-tool")
forbid (principal, action, resource) when { context.details has tool && context.details.tool == "bad" };
`})
	c := mesh.WithDetail(ctx(t), "tool", "bad")
	c = mesh.WithDetail(c, "ticket", "T-1")
	if got := fmt.Sprint(mesh.Details(c)); got != "map[ticket:T-1 tool:bad]" {
		t.Errorf("Details = %s", got)
	}
	if _, err := w.agent.Dial(c, "tcp", "staging-db"); !errors.Is(err, postern.ErrDenied) || !strings.Contains(err.Error(), "no-bad-tool") {
		t.Fatalf("open with tool=bad: %v, want a denial by no-bad-tool", err)
	}
	c = mesh.WithDetail(c, "tool", "good")
	conn, err := w.agent.Dial(c, "tcp", "staging-db")
	if err != nil {
		t.Fatalf("open with tool=good: %v", err)
	}
	conn.Close()
	var seen []string
	for _, ev := range w.Audit.Events("open.deny") {
		seen = append(seen, fmt.Sprint("deny ", ev["details"]))
	}
	for _, ev := range w.Audit.Events("open.allow") {
		seen = append(seen, fmt.Sprint("allow ", ev["details"]))
	}
	if got := strings.Join(seen, "; "); got != "deny map[ticket:T-1 tool:bad]; allow map[ticket:T-1 tool:good]" {
		t.Errorf("audited details: %s", got)
	}

	many := ctx(t)
	for i := range 65 {
		many = mesh.WithDetail(many, fmt.Sprintf("k%d", i), "v")
	}
	for name, c := range map[string]context.Context{
		"bad key":    mesh.WithDetail(ctx(t), "a:b", "v"),
		"empty key":  mesh.WithDetail(ctx(t), "", "v"),
		"long value": mesh.WithDetail(ctx(t), "k", strings.Repeat("v", 4097)),
		"65 details": many,
	} {
		opens := len(w.Audit.Events("open.deny")) + len(w.Audit.Events("open.allow"))
		_, err := w.agent.Dial(c, "tcp", "staging-db")
		if !errors.Is(err, postern.ErrProtocol) || len(err.Error()) > 300 {
			t.Errorf("%s: %v, want a short ErrProtocol", name, err)
		}
		if n := len(w.Audit.Events("open.deny")) + len(w.Audit.Events("open.allow")); n != opens {
			t.Errorf("%s: the relay saw an open", name)
		}
	}
}

// TestDialEarlyDetails: an open pipelined with its first bytes (DialEarly,
// whose Open says early) carries the context's details as Dial's does:
// policy decides on them and the audit names them.
func TestDialEarlyDetails(t *testing.T) {
	w := newWorld(t, meshtest.Options{Policies: meshtest.Policies + `
@id("no-bad-tool")
forbid (principal, action, resource) when { context.details has tool && context.details.tool == "bad" };
`})
	for _, tool := range []string{"bad", "good"} {
		conn, err := w.agent.DialEarly(mesh.WithDetail(ctx(t), "tool", tool), "tcp", "staging-db")
		if err != nil {
			t.Fatal(err)
		}
		_, err = conn.Write([]byte("ping"))
		if err == nil {
			buf := make([]byte, 4)
			_, err = io.ReadFull(conn, buf)
		}
		conn.Close()
		if tool == "bad" && (!errors.Is(err, postern.ErrDenied) || !strings.Contains(err.Error(), "no-bad-tool")) {
			t.Fatalf("early open with tool=bad: %v, want a denial by no-bad-tool", err)
		}
		if tool == "good" && err != nil {
			t.Fatalf("early open with tool=good: %v", err)
		}
	}
	if ev := w.Audit.Events("open.allow"); len(ev) != 1 || fmt.Sprint(ev[0]["details"]) != "map[tool:good]" {
		t.Fatalf("open.allow events %v, want one with tool=good", ev)
	}
}
