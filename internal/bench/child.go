package bench

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
)

// roleArg is the hidden first argument with which the bench re-executes
// its own binary as one of its child processes: argv is
// [exe, roleArg, role]. Nothing a person types starts with it.
const roleArg = "__postern-bench-role"

// RunRole runs this process as a bench child when args (os.Args) say so,
// and reports whether it did and the exit code. A main that exposes the
// bench calls it first:
//
//	if handled, code := bench.RunRole(os.Args); handled {
//		os.Exit(code)
//	}
//
// A child reads its configuration as one JSON line on stdin, starts,
// announces itself as one JSON line on stdout, then obeys the command lines
// that follow on stdin (cpu profiles, stats) and exits when stdin closes,
// so that no child outlives the driver.
func RunRole(args []string) (handled bool, code int) {
	if len(args) < 3 || args[1] != roleArg {
		return false, 0
	}
	return true, runChild(args[2], os.Stdin, os.Stdout, os.Stderr)
}

// A role starts one kind of child from its JSON configuration. It returns
// what to announce (marshalled as the ready line) and how to stop.
type role func(cfg []byte) (ready any, stop func(), err error)

var roles = map[string]role{
	"upstream":       startUpstream,
	"bare-relay":     startBareRelay,
	"bare-connector": startBareConnector,
	"relay":          startRelay,
	"connector":      startConnector,
	"agents":         startAgents,
	"forward":        startForward,
	"measure-agent":  startAgent,
	"wireguard":      startWireGuard,
	"attacker":       startAttacker,
	"burner":         startBurner,
}

// Commands a child obeys, one per stdin line after the configuration.
// Each is answered with one JSON line on stdout.
const (
	cmdProfile     = "profile"     // profile <path>: start a CPU profile
	cmdStopProfile = "stopprofile" // stop it and write the file
	cmdStats       = "stats"       // answer with childStats
	cmdSyncAudit   = "syncaudit"   // relay: write the audit trail out (relay.Relay.SyncAudit)
)

// childStats is a child's answer to cmdStats.
type childStats struct {
	HeapInuse  uint64 `json:"heap_inuse"`
	HeapSys    uint64 `json:"heap_sys"`
	Sys        uint64 `json:"sys"`
	Goroutines int    `json:"goroutines"`
	NumGC      uint32 `json:"num_gc"`
	Extra      any    `json:"extra,omitempty"`
}

// statsHook lets a role add its own numbers to the stats answer.
var statsHook func() any

// commandHook lets a role obey commands of its own: it answers cmd (with
// arg, the rest of the line) and true, or false for a command not its.
var commandHook func(cmd, arg string) (any, bool)

type reply struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

func runChild(name string, stdin io.Reader, stdout, stderr io.Writer) int {
	start, ok := roles[name]
	if !ok {
		fmt.Fprintf(stderr, "postern-bench: unknown role %q\n", name)
		return 2
	}
	in := bufio.NewReader(stdin)
	cfg, err := in.ReadBytes('\n')
	if err != nil {
		fmt.Fprintf(stderr, "postern-bench: %s: reading configuration: %v\n", name, err)
		return 2
	}
	ready, stop, err := start(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "postern-bench: %s: %v\n", name, err)
		return 1
	}
	out := json.NewEncoder(stdout)
	if err := out.Encode(ready); err != nil {
		stop()
		return 1
	}
	var (
		profile     *os.File
		profilePath string
	)
	stopProfile := func() error {
		if profile == nil {
			return nil
		}
		pprof.StopCPUProfile()
		err := profile.Close()
		profile = nil
		if aerr := writeAllocs(profilePath, ".allocs.pprof"); err == nil {
			err = aerr
		}
		return err
	}
	for {
		line, err := in.ReadString('\n')
		if err != nil {
			break // stdin closed: the driver is done with us, or gone
		}
		cmd, arg, _ := strings.Cut(strings.TrimSpace(line), " ")
		switch cmd {
		case cmdProfile:
			r := reply{OK: true}
			stopProfile()
			f, err := os.Create(arg)
			if err == nil {
				if err = pprof.StartCPUProfile(f); err != nil {
					f.Close()
				} else {
					profile, profilePath = f, arg
					err = writeAllocs(arg, ".allocs-before.pprof")
				}
			}
			if err != nil {
				r = reply{Error: err.Error()}
			}
			out.Encode(r)
		case cmdStopProfile:
			r := reply{OK: true}
			if err := stopProfile(); err != nil {
				r = reply{Error: err.Error()}
			}
			out.Encode(r)
		case cmdStats:
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			st := childStats{HeapInuse: ms.HeapInuse, HeapSys: ms.HeapSys, Sys: ms.Sys, Goroutines: runtime.NumGoroutine(), NumGC: ms.NumGC}
			if statsHook != nil {
				st.Extra = statsHook()
			}
			out.Encode(st)
		default:
			if commandHook != nil {
				if answer, ok := commandHook(cmd, arg); ok {
					out.Encode(answer)
					continue
				}
			}
			out.Encode(reply{Error: "unknown command " + cmd})
		}
	}
	stopProfile()
	stop()
	return 0
}

// writeAllocs writes the allocation profile beside a CPU profile at cpu,
// its name ending in suffix instead of ".pprof": one at the start of the
// CPU profile and one at its end, so that
// "go tool pprof -base X.allocs-before.pprof X.allocs.pprof" shows what
// was allocated while the CPU profile ran.
func writeAllocs(cpu, suffix string) error {
	f, err := os.Create(strings.TrimSuffix(cpu, ".pprof") + suffix)
	if err != nil {
		return err
	}
	err = pprof.Lookup("allocs").WriteTo(f, 0)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// decodeConfig decodes a child's configuration line into v.
func decodeConfig(cfg []byte, v any) error {
	if err := json.Unmarshal(cfg, v); err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	return nil
}
