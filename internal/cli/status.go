package cli

import (
	"context"
	"net/http"
	"time"

	"github.com/postern/postern/internal/telemetry"
)

const statusAbout = `
Print a short live summary of a running relay or connector, read from its
metrics listener (metrics.listen in relay.yaml or connector.yaml): for a
relay its readiness, sessions, the bindings served and by how many
connectors, opens per second over the interval with their p99 to the
first byte, and the opens policy denied in the last minute; for a
connector its relay sessions, streams, statements and requests decided,
and failed upstream dials. It scrapes /metrics twice, --interval apart.`

func runStatus(ctx context.Context, env Env, args []string) int {
	fs := flagSet(env, "status", "status --metrics http://127.0.0.1:9464 [--interval 2s]", statusAbout)
	base := fs.String("metrics", "http://127.0.0.1:9464", "the metrics listener's `URL`")
	interval := fs.Duration("interval", 2*time.Second, "time between the two scrapes, over which rates are computed")
	pos, code, done := parse(fs, env, args)
	if done {
		return code
	}
	if len(pos) > 0 {
		return failf(env, ExitUsage, "status: unexpected argument %q", pos[0])
	}
	if *interval < 100*time.Millisecond || *interval > time.Minute {
		return failf(env, ExitUsage, "status: --interval must be between 100ms and 1m, got %s", *interval)
	}
	hc := &http.Client{Timeout: 10 * time.Second}
	before, err := telemetry.Scrape(ctx, hc, *base)
	if err != nil {
		return failf(env, ExitFailure, "%v", err)
	}
	select {
	case <-time.After(*interval):
	case <-ctx.Done():
		return failf(env, ExitFailure, "status: %v", ctx.Err())
	}
	after, err := telemetry.Scrape(ctx, hc, *base)
	if err != nil {
		return failf(env, ExitFailure, "%v", err)
	}
	telemetry.Summarize(env.Stdout, before, after)
	return ExitOK
}
