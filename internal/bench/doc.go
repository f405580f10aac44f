// Package bench is the instrument that measures what the Postern mesh
// path costs an agent, side by side with the alternatives, in one run on
// one machine, with every endpoint in its own OS process.
//
// # Overview
//
// The instrument is its own binary, cmd/postern-bench; the postern
// binary carries none of it. The driver (the process that runs [Main])
// is the agent. It starts the other endpoints by re-executing its own
// binary in a hidden role (see [RunRole]): an upstream server, a bare
// QUIC relay and its connector, a Postern relay and connector, when ssh
// and sshd are installed an sshd of its own with ssh -L in front of it,
// and, as root with /dev/net/tun, two wireguard-go endpoints. It
// measures these paths to the same upstream:
//
//   - direct: TCP straight to the upstream, on loopback;
//   - bare-quic: the floor of a QUIC relay, quic-go alone with the same
//     quic.Config as each Postern endpoint (quicnet.QUICConfig of
//     transport.Config), agent -> relay <- connector -> upstream, one
//     stream per use on each leg and a plain 64 KiB copy loop; no
//     identity, policy, framing or audit;
//   - postern: agent -> relay -> connector -> upstream through mesh.Client,
//     with a signed token, Cedar policy and the audit trail on;
//   - postern-tcp: postern over TLS 1.3 on TCP (yamux streams) instead
//     of QUIC, with a relay listening on TCP only and a connector of its
//     own, everyone told to use TCP: what the transport for networks that
//     drop UDP costs, side by side with postern (the "tcp ÷ quic"
//     column), in the stream tests;
//   - postern-nogate: postern with a relay and connector of its own, the
//     connector's per-statement and per-request gate off
//     (internal/measure, which no deployment can set: a postgres session
//     is spliced after the login, an HTTP request goes up undecided), in
//     the binding tests only; what the gate costs is its difference from
//     postern (the "postern ÷ nogate" column);
//   - ssh: ssh -L through a temporary sshd with fresh host and user keys;
//   - wireguard: TCP through a tunnel of userspace wireguard-go (the
//     engine Tailscale builds on) between two network namespaces joined
//     by a veth pair, which carries the encrypted UDP. The upstream runs
//     in one namespace and a measuring child, the agent of this path, in
//     the other; each namespace has a wireguard-go endpoint, a child
//     started under ip netns exec that makes its TUN device there. Every
//     address is from the benchmarking range 198.18.0.0/15 (veth
//     198.18.0.1 and .2, tunnel 198.19.0.1 and .2); nothing leaves the
//     namespaces. They are named postern-bench-PID-up and -agent, and
//     removed when the run ends, fails or is interrupted (SIGINT,
//     SIGTERM); a run also removes those of earlier runs whose driver is
//     gone. Without root or a TUN device the path is skipped, with a line
//     saying why. Unlike the loopback paths it crosses a veth pair, at
//     wireguard-go's default MTU of 1420.
//
// On each: bulk throughput on one stream and on 8, both directions, every
// byte checked by SHA-256; 1 KiB request/response round trips on a warm
// connection, every echo checked against its request; opening a new
// connection and getting the first byte back (Postern opens with
// DialEarly, so the open rides with the first bytes); and the CPU each
// process used, from the kernel's accounting (/proc/<pid>/stat), sampled
// right before and right after the measured operations, so that neither
// warm-up nor setup counts. Over bindings, direct against Postern:
// PostgreSQL SELECT 1 latency and a TPC-B-like transaction rate with 8
// clients against one server (internal/pgtest), and small HTTP GETs.
// Through postern forward (-phases forward), what the local hop costs a
// program without the Go SDK: a forward child (its own process, as the
// command is) in front of the PostgreSQL binding, with SELECT 1 on a warm
// pgx connection direct, through the forward port and through the SDK's
// dial, and pgbench -S with one client direct and through the port.
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
// A relay-failure test (-relayfail N, relayfail.go) runs two relays on
// fixed addresses and two connectors connected to both, kills a relay
// with SIGKILL in each of N rounds and times, from the kill, an agent's
// first open through the other relay and a download's Read error
// through the killed one, and, from the restarted relay's ready line,
// the first open of an agent that kept opening through a 2 s outage and
// the connectors' sessions with it.
//
// A soak test (-soak DURATION, soak.go) runs the same mesh with 20
// agents in the driver opening, echoing and closing streams for
// DURATION, kills a connector at a third of it and a relay at two
// thirds (both SIGKILL, then started again), and samples the goroutines,
// RSS and open file descriptors of every process at the start, middle
// and end, with the agents paused; it fails unless each role's totals
// come back flat (goroutines within +20% or +20, fds +10, RSS +50%).
//
// # Usage
//
//	go run ./cmd/postern-bench -quick            # under a minute
//	go run ./cmd/postern-bench -json bench.json  # the full run
//	go run ./cmd/postern-bench -phases none -scale 1000,10000
//	go run ./cmd/postern-bench -phases none -relayfail 8
//	go run ./cmd/postern-bench -phases none -soak 3m
//
// It prints a Markdown table with each path's value, its spread and the
// ratios to direct, to the bare relay and to WireGuard; -json writes the
// same and the raw results. -cpuprofile DIR runs one extra round of the
// bulk and 1 KiB tests before the measured rounds, with every Go process
// of every path profiled (the relays, connectors, wireguard-go endpoints
// and agents; ssh and sshd are not Go) and its numbers dropped: no
// measured round runs a profiler, on any path. It also profiles the relay
// while the scale test idles and opens, and during each phase of the
// attack test. Beside each child's CPU profile X.pprof go two allocation
// profiles, X.allocs-before.pprof and X.allocs.pprof, taken as it starts
// and ends: "go tool pprof -sample_index=alloc_space -base
// X.allocs-before.pprof X.allocs.pprof" shows what was allocated meanwhile.
//
// # Children
//
// A child reads its configuration as one JSON line on stdin, announces
// itself (its addresses) as one JSON line on stdout, answers the command
// lines that follow ("profile <file>", "stopprofile", "stats", and for
// the measuring child "test <spec>") with one JSON line each, and exits
// when its stdin closes: when the driver ends, however it ends, nothing
// is left running.
package bench
