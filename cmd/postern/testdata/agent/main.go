// Command agent is a minimal agent for the postern command's tests: it
// reads POSTERN_RELAY, POSTERN_RELAY_PIN, POSTERN_TOKEN_FILE and
// POSTERN_TRANSPORT, prints its catalog, and for each binding named on the
// command line sends a line through a TCP binding and prints what came
// back, or prints why the open was refused. A name written early:NAME is
// opened with DialEarly: the line goes out with the open, before the
// relay has answered. With -stall first, it opens each binding, sends a
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
	"github.com/postern/postern/transport"
)

func main() {
	tok, err := os.ReadFile(os.Getenv("POSTERN_TOKEN_FILE"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "agent:", err)
		os.Exit(1)
	}
	cfg := mesh.Config{
		Relay: os.Getenv("POSTERN_RELAY"),
		Pin:   os.Getenv("POSTERN_RELAY_PIN"),
		Token: strings.TrimSpace(string(tok)),
	}
	if n := os.Getenv("POSTERN_TRANSPORT"); n != "" {
		cfg.Transport = &transport.Config{Network: n}
	}
	c, err := mesh.NewClient(cfg)
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
	for _, arg := range os.Args[1:] {
		name, early := strings.CutPrefix(arg, "early:")
		dial := c.Dial
		if early {
			dial = c.DialEarly
		}
		conn, err := dial(ctx, "tcp", name)
		if err == nil && early {
			// The open's answer comes with the first read.
			var line string
			if _, err = fmt.Fprintf(conn, "hello %s\n", name); err == nil {
				line, err = bufio.NewReader(conn).ReadString('\n')
			}
			conn.Close()
			if err == nil {
				fmt.Printf("%s: allowed: %s\n", arg, strings.TrimSpace(line))
				continue
			}
		}
		var me *postern.Error
		switch {
		case errors.Is(err, postern.ErrDenied) && errors.As(err, &me):
			fmt.Printf("%s: denied by %s\n", arg, strings.Join(me.Policies, ","))
			continue
		case err != nil:
			fmt.Printf("%s: error: %v\n", arg, err)
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
