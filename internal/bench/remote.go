package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"
)

// A testSpec is one run of a byte-moving test, as the driver runs it on a
// path of its own or asks a measuring child (the agent side of a path in
// another network namespace) to run it.
type testSpec struct {
	Test    string `json:"test"` // testBulk, testRTT or testOpen
	Streams int    `json:"streams,omitempty"`
	Total   int64  `json:"total,omitempty"`
	Down    bool   `json:"down,omitempty"`
	Size    int    `json:"size,omitempty"`
	Warm    int    `json:"warm,omitempty"`
	N       int    `json:"n,omitempty"`
}

const (
	testBulk = "bulk"
	testRTT  = "rtt"
	testOpen = "open"
)

// testOutcome is what a run measured: the time of a bulk transfer, the
// latencies of the others, and the CPU of the path's processes over the
// measured operations, by name.
type testOutcome struct {
	Elapsed time.Duration            `json:"elapsed_ns,omitempty"`
	Lat     latencies                `json:"lat_ns,omitempty"`
	CPU     map[string]time.Duration `json:"cpu_ns,omitempty"`
	Error   string                   `json:"error,omitempty"`
}

// runTest runs spec on p, here or in p's measuring child, and records the
// CPU in m.
func runTest(ctx context.Context, p *path, spec testSpec, m *meter) (testOutcome, error) {
	if p.remote == nil {
		return runSpec(ctx, p, spec, m)
	}
	line, err := json.Marshal(spec)
	if err != nil {
		return testOutcome{}, err
	}
	var out testOutcome
	if err := p.remote.commandWait(cmdTest+" "+string(line), &out, 15*time.Minute); err != nil {
		return testOutcome{}, err
	}
	if out.Error != "" {
		return out, errors.New(out.Error)
	}
	m.set(out.CPU)
	return out, nil
}

func runSpec(ctx context.Context, p *path, spec testSpec, m *meter) (testOutcome, error) {
	var out testOutcome
	var err error
	switch spec.Test {
	case testBulk:
		out.Elapsed, err = bulk(ctx, p, spec.Streams, spec.Total, spec.Down, m)
	case testRTT:
		out.Lat, err = rtt(ctx, p, spec.Size, spec.Warm, spec.N, m)
	case testOpen:
		out.Lat, err = opens(ctx, p, spec.Warm, spec.N, m)
	default:
		err = fmt.Errorf("unknown test %q", spec.Test)
	}
	return out, err
}

// cmdTest asks a measuring child to run a testSpec (JSON after the
// command) and answer with its testOutcome.
const cmdTest = "test"

// agentConfig configures a measuring child: the address of the upstream
// as its namespace reaches it, and the other processes of the path, whose
// CPU it samples with its own.
type agentConfig struct {
	Addr  string    `json:"addr"`
	Procs []procRef `json:"procs"`
}

// startAgent is the measuring child: the agent side of a path whose
// upstream it reaches only from another network namespace.
func startAgent(b []byte) (any, func(), error) {
	var cfg agentConfig
	if err := decodeConfig(b, &cfg); err != nil {
		return nil, nil, err
	}
	if err := waitTCP(cfg.Addr, 15*time.Second); err != nil {
		return nil, nil, fmt.Errorf("upstream %s: %w", cfg.Addr, err)
	}
	p := tcpPath("agent", cfg.Addr, nil)
	procs := append(fromRefs(cfg.Procs), &proc{name: "agent", pid: os.Getpid()})
	commandHook = func(cmd, arg string) (any, bool) {
		if cmd != cmdTest {
			return nil, false
		}
		var spec testSpec
		if err := json.Unmarshal([]byte(arg), &spec); err != nil {
			return testOutcome{Error: err.Error()}, true
		}
		m := newMeter(procs)
		out, err := runSpec(context.Background(), p, spec, m)
		if err != nil {
			return testOutcome{Error: err.Error()}, true
		}
		out.CPU = m.used
		return out, true
	}
	return struct{}{}, func() {}, nil
}
