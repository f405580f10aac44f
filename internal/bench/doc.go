// Package bench is the instrument that measures what the Postern mesh
// path costs an agent, side by side with the alternatives, in one run on
// loopback, with every endpoint in its own OS process.
//
// # Overview
//
// The instrument is its own binary, cmd/postern-bench; the postern
// binary carries none of it. The driver (the process that runs [Main])
// is the agent. It starts the other endpoints by re-executing its own
// binary in a hidden role (see [RunRole]): an upstream server, a bare QUIC relay and its connector,
// a Postern relay and connector, and, when ssh and sshd are installed,
// an sshd of its own with ssh -L in front of it. It measures four paths
// to the same upstream:
//
//   - direct: TCP straight to the upstream;
//   - bare-quic: the floor of a QUIC relay, quic-go alone with its
//     defaults, agent -> relay <- connector -> upstream, one stream per
//     use on each leg and a plain 64 KiB copy loop; no identity, policy,
//     framing or audit;
//   - postern: agent -> relay -> connector -> upstream through mesh.Client,
//     with a signed token, Cedar policy and the audit trail on;
//   - ssh: ssh -L through a temporary sshd with fresh host and user keys.
//
// On each: bulk throughput on one stream and on 8, both directions, every
// byte checked by SHA-256; 1 KiB request/response round trips on a warm
// connection, every echo checked against its request; opening a new
// connection and getting the first byte back (Postern opens with
// DialEarly, so the open rides with the first bytes); and the CPU each
// process used, from the kernel's accounting (/proc/<pid>/stat), sampled
// right before and right after the measured operations, so that neither
// warm-up nor setup counts. Over bindings, direct against Postern: PostgreSQL
// SELECT 1 latency and a TPC-B-like transaction rate with 8 clients
// against one server (internal/pgtest), and small HTTP GETs.
//
// The tests run in interleaved rounds so that what is compared was
// measured close in time; throughput is the median of the rounds,
// latencies are pooled. Every metric also has its spread over the
// rounds, the minimum, median and maximum of its value computed in each
// round alone, and so has every ratio, formed round by round: a ratio
// whose spread straddles 1 is noise.
//
// A scale test (-scale) holds thousands of idle agent sessions open
// against one relay process, reports its resident memory per session,
// and then opens bindings at offered rates.
//
// # Usage
//
//	go run ./cmd/postern-bench -quick            # under a minute
//	go run ./cmd/postern-bench -json bench.json  # the full run
//	go run ./cmd/postern-bench -phases none -scale 1000,10000
//
// It prints a Markdown table with each path's value, its spread and the
// ratios to direct and to the bare relay; -json writes the same and the
// raw results. -cpuprofile DIR runs one extra round of the bulk and 1 KiB
// tests before the measured rounds, with every Go process of every path
// profiled (the relays, connectors and agent; ssh and sshd are not Go)
// and its numbers dropped: no measured round runs a profiler, on any
// path. It also profiles the relay while the scale test idles and opens.
//
// # Children
//
// A child reads its configuration as one JSON line on stdin, announces
// itself (its addresses) as one JSON line on stdout, answers the command
// lines that follow ("profile <file>", "stopprofile", "stats") with one
// JSON line each, and exits when its stdin closes: when the driver ends,
// however it ends, nothing is left running.
package bench
