// Command agent is a minimal agent for the postern command's tests: it
// reads POSTERN_RELAY, POSTERN_RELAY_PIN and POSTERN_TOKEN_FILE, prints
// its catalog, and for each binding named on the command line sends a
// line through a TCP binding and prints what came back, or prints why the
// open was refused. With -stall first, it opens each binding, sends a
// line, says so and then reads nothing, ever: an agent that stopped
// reading its downloads.
package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/postern/postern"
	"github.com/postern/postern/mesh"
)

func main() {
	tok, err := os.ReadFile(os.Getenv("POSTERN_TOKEN_FILE"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "agent:", err)
		os.Exit(1)
	}
	c, err := mesh.NewClient(mesh.Config{
		Relay: os.Getenv("POSTERN_RELAY"),
		Pin:   os.Getenv("POSTERN_RELAY_PIN"),
		Token: strings.TrimSpace(string(tok)),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "agent:", err)
		os.Exit(1)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cat, err := c.Catalog(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "agent:", err)
		os.Exit(1)
	}
	var names []string
	for _, b := range cat {
		names = append(names, b.Name)
	}
	fmt.Printf("catalog: %s\n", strings.Join(names, ","))
	if len(os.Args) > 2 && os.Args[1] == "-stall" {
		stall(c, os.Args[2:])
	}
	for _, name := range os.Args[1:] {
		conn, err := c.Dial(ctx, "tcp", name)
		var me *postern.Error
		switch {
		case errors.Is(err, postern.ErrDenied) && errors.As(err, &me):
			fmt.Printf("%s: denied by %s\n", name, strings.Join(me.Policies, ","))
			continue
		case err != nil:
			fmt.Printf("%s: error: %v\n", name, err)
			continue
		}
		fmt.Fprintf(conn, "hello %s\n", name)
		line, err := bufio.NewReader(conn).ReadString('\n')
		conn.Close()
		if err != nil {
			fmt.Printf("%s: error: %v\n", name, err)
			continue
		}
		fmt.Printf("%s: allowed: %s\n", name, strings.TrimSpace(line))
	}
}

// stall opens each binding, sends a line and never reads, until killed.
func stall(c *mesh.Client, bindings []string) {
	for _, name := range bindings {
		conn, err := c.Dial(context.Background(), "tcp", name)
		if err != nil {
			fmt.Printf("%s: error: %v\n", name, err)
			os.Exit(1)
		}
		fmt.Fprintf(conn, "hello %s\n", name)
		fmt.Printf("stalled: %s\n", name)
	}
	select {}
}
