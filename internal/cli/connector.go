package cli

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/postern/postern/internal/config"
	"github.com/postern/postern/mesh/connector"
)

const connectorAbout = `
Run a connector inside a private network. It dials out to every relay in
"relays" (nothing listens: no inbound port), authenticates with the token
in token_file, advertises its services, and for each stream a relay opens
dials that service's upstream, and nothing else. Upstream credentials
(PostgreSQL passwords, HTTP headers) stay here: the configuration names
the file or environment variable of each.

The token file is read again at every connect and before the token in use
expires, so a token renewed on disk is picked up without a restart.
When a relay goes away the connector reconnects with backoff. SIGTERM or
SIGINT ends its sessions and exits 0; a refusal that retrying cannot fix
(a token the relay rejects, a service it does not grant) exits 1.`

func runConnector(ctx context.Context, env Env, args []string) int {
	fs := flagSet(env, "connector", "connector --config connector.yaml", connectorAbout)
	path := fs.String("config", "connector.yaml", "the connector's configuration `file`")
	pos, code, done := parse(fs, env, args)
	if done {
		return code
	}
	if len(pos) > 0 {
		return failf(env, ExitUsage, "connector: unexpected argument %q (the configuration is given with --config)", pos[0])
	}
	cfg, err := config.LoadConnector(*path)
	if err != nil {
		return failf(env, ExitUsage, "connector: %v", err)
	}
	log := newLogger(env.Stderr, cfg.Log)
	cc := cfg.Config
	cc.Logger = log
	cc.Audit = log // each HTTP request's decision, with the operational log
	obs, err := newObserver(ctx, "postern-connector", cfg.MetricsListen, log)
	if err != nil {
		return failf(env, ExitUsage, "connector: %v", err)
	}
	defer obs.close()
	cc.Metrics, cc.TracerProvider = obs.registerer(), obs.tp
	c, err := connector.New(cc)
	if err != nil {
		return failf(env, ExitUsage, "connector: %s: %v", cfg.File, err)
	}
	if err := obs.serve(c.CheckReady); err != nil {
		return failf(env, ExitFailure, "connector: %v", err)
	}
	var names []string
	for _, s := range cc.Services {
		names = append(names, s.Name)
	}
	log.Info("postern connector starting", "relays", strings.Join(cc.Relays, ","), "services", strings.Join(names, ","), "metrics", metricsField(obs))

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	result := make(chan error, 1)
	go func() { result <- c.Run(runCtx) }()
	go func() {
		select {
		case <-c.Ready():
			// Printed whatever log.level says, like the relay's ready line.
			newLogger(env.Stderr, config.Log{Level: slog.LevelInfo, JSON: cfg.Log.JSON}).Info("postern connector ready: connected to every relay")
		case <-runCtx.Done():
		}
	}()
	for {
		select {
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				log.Info("connector: SIGHUP: nothing to reload (the token file is read at every connect and refresh)")
				continue
			}
			log.Info("connector: stopping", "signal", sig.String())
			cancel()
			err := <-result
			return connectorExit(env, log, err)
		case <-ctx.Done():
			cancel()
			return connectorExit(env, log, <-result)
		case err := <-result:
			return connectorExit(env, log, err)
		}
	}
}

func connectorExit(env Env, log *slog.Logger, err error) int {
	if err == nil || errors.Is(err, context.Canceled) {
		log.Info("connector: stopped")
		return ExitOK
	}
	return failf(env, ExitFailure, "connector: %v", err)
}
