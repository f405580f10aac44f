package cli

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/postern/postern/internal/config"
	"github.com/postern/postern/internal/gcfloor"
	"github.com/postern/postern/mesh/identity"
	"github.com/postern/postern/mesh/relay"
	"github.com/postern/postern/policy"
	"github.com/postern/postern/transport"
)

const relayAbout = `
Run a relay: the one Postern component with a public address. It listens
on one port number, UDP for QUIC and TCP for TLS 1.3 over TCP, verifies
every agent's and connector's token, decides every binding open with the
Cedar policies in policy.dir, splices agents' streams to connectors and
writes one audit event (JSON) per decision.

The policies are reloaded when a file in policy.dir changes and on SIGHUP;
a reload that fails keeps the policies in force and logs why. SIGHUP also
reads tokens.jwks_file again, for key rotation (postern keygen --merge).
Every reload decides the live streams again: a stream that the new
policies deny is cut. tokens.revocation_file is reloaded the same way
(polled every policy.poll, and on SIGHUP); a token or subject listed in it
loses its sessions and streams at once and cannot reconnect.
SIGTERM or SIGINT stops taking new opens, waits up to drain_timeout for
open streams to end, and exits 0. A second SIGTERM or SIGINT stops at once.

Operational logs go to stderr; audit events go where "audit" says
(stdout by default). The start-up line gives the address and, for a
self-signed certificate, the pin that connectors and agents trust.`

func runRelay(ctx context.Context, env Env, args []string) int {
	fs := flagSet(env, "relay", "relay --config relay.yaml", relayAbout)
	path := fs.String("config", "relay.yaml", "the relay's configuration `file`")
	pos, code, done := parse(fs, env, args)
	if done {
		return code
	}
	if len(pos) > 0 {
		return failf(env, ExitUsage, "relay: unexpected argument %q (the configuration is given with --config)", pos[0])
	}
	cfg, err := config.LoadRelay(*path)
	if err != nil {
		return failf(env, ExitUsage, "relay: %v", err)
	}
	log := newLogger(env.Stderr, cfg.Log)
	gc := gcfloor.Start(cfg.GCHeadroom)
	defer gc.Stop()
	if gc == nil && cfg.GCHeadroom > 0 { // Start stands aside for GOGC
		log.Info("relay: GOGC is set: gc_headroom_mib does not apply", "GOGC", os.Getenv("GOGC"))
	}

	loaded, _ := dirState(cfg.PolicyDir)
	set, err := config.LoadPolicies(cfg.PolicyDir, cfg.PolicyOptions)
	if err != nil {
		return failf(env, ExitUsage, "relay: %s: policy.dir: %v", cfg.File, err)
	}
	if set.Len() == 0 {
		log.Warn("relay: no policies in policy.dir: every open is denied until some are added", "dir", cfg.PolicyDir)
	}
	engine := policy.NewEngine(set)

	audit, flushAudit, closeAudit, err := auditLogger(env, cfg.Audit)
	if err != nil {
		return failf(env, ExitUsage, "relay: %s: audit: %v", cfg.File, err)
	}
	defer closeAudit()

	vcfg := cfg.Verifier
	vcfg.Logger = log
	verifier, err := identity.NewVerifier(ctx, vcfg)
	if err != nil {
		return failf(env, ExitUsage, "relay: %s: tokens: %v", cfg.File, err)
	}
	defer verifier.Close()

	var revocations relay.Revocations
	var revList *relay.RevocationList
	revLoaded := ""
	if cfg.RevocationFile != "" {
		revLoaded = fileState(cfg.RevocationFile)
		revList = relay.NewRevocationList()
		// Read again after taking its state, so that an edit since
		// LoadRelay is not missed.
		rev, err := config.LoadRevocations(cfg.RevocationFile)
		if err != nil {
			return failf(env, ExitUsage, "relay: %s: tokens.revocation_file: %v", cfg.File, err)
		}
		revList.Replace(rev)
		revocations = revList
	}
	obs, err := newObserver(ctx, "postern-relay", cfg.MetricsListen, log)
	if err != nil {
		return failf(env, ExitUsage, "relay: %v", err)
	}
	defer obs.close()

	r, err := relay.Listen(relay.Config{
		Addr:               cfg.Listen,
		Certificate:        cfg.Certificate,
		Verifier:           verifier,
		RequireBoundTokens: cfg.RequireBound,
		Policy:             engine,
		PolicyOptions:      &cfg.PolicyOptions,
		Bindings:           cfg.Bindings,
		Limits:             cfg.Limits,
		Revocations:        revocations,
		Transport:          &transport.Config{Network: cfg.Transport},
		Logger:             log,
		Audit:              audit,
		AuditQueue: relay.AuditQueue{
			Size:  cfg.AuditQueue.Size,
			Drop:  cfg.AuditQueue.Drop,
			Flush: flushAudit,
		},
		RejectInterval: cfg.RejectInterval,
		HideDenied:     cfg.HideDenied,
		Metrics:        obs.registerer(),
		TracerProvider: obs.tp,
	})
	if err != nil {
		return failf(env, ExitFailure, "%v", err) // "relay: ..." already
	}
	if err := obs.serve(r.CheckReady); err != nil {
		r.Close()
		return failf(env, ExitFailure, "relay: %v", err)
	}
	if cfg.CertSource == "ephemeral" {
		log.Warn("relay: no tls section: using a self-signed certificate made for this run; its pin changes at every start (set tls.self_signed with cert_file and key_file to keep it)")
	}
	// Signals are caught before the ready line: a supervisor that stops
	// the relay as soon as it is ready gets a drain, not a kill.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)

	// The ready line is printed whatever log.level says: it is how people
	// and scripts learn the address and the pin.
	newLogger(env.Stderr, config.Log{Level: slog.LevelInfo, JSON: cfg.Log.JSON}).Info("postern relay ready",
		"addr", r.Addr().String(),
		"pin", transport.Pin(cfg.Certificate),
		"certificate", cfg.CertSource,
		"policies", set.Len(),
		"audit", cfg.Audit,
		"metrics", metricsField(obs))

	w := startPolicyWatcher(cfg.PolicyDir, loaded, cfg.PolicyOptions, engine, cfg.PolicyPoll, log)
	defer w.stop()
	var rw *revocationWatcher
	if revList != nil {
		rw = startRevocationWatcher(cfg.RevocationFile, revLoaded, revList, cfg.PolicyPoll, log)
		defer rw.stop()
	}

	why := waitStop(ctx, sigs, func() {
		w.reload("SIGHUP")
		if rw != nil {
			rw.reload("SIGHUP")
		}
		reloadKeys(verifier, cfg.JWKSFile, log)
	})
	log.Info("relay: draining", "signal", why, "timeout", cfg.DrainTimeout)
	return drain(r, cfg.DrainTimeout, sigs, log)
}

// reloadKeys reads tokens.jwks_file again (a key merged in for rotation,
// an old one retired); a file that cannot be read or parsed keeps the keys
// in force.
func reloadKeys(v *identity.Verifier, file string, log *slog.Logger) {
	if file == "" {
		return // jwks_url: the verifier refreshes it itself
	}
	b, err := os.ReadFile(file)
	if err == nil {
		err = v.SetKeySet(b)
	}
	if err != nil {
		log.Error("relay: key set reload failed; keeping the keys in force", "file", file, "err", err)
		return
	}
	log.Info("relay: key set reloaded", "file", file)
}

// drain shuts r down, waiting up to timeout for open streams; a second
// SIGINT or SIGTERM ends the wait. Streams still open then are cut, which
// is still a clean stop: the exit code is 0.
func drain(r *relay.Relay, timeout time.Duration, sigs <-chan os.Signal, log *slog.Logger) int {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	go cutOnSignal(ctx, sigs, cancel, log)
	st := r.Stats()
	if err := r.Shutdown(ctx); err != nil {
		log.Warn("relay: drain ended with streams still open; they were closed", "err", err)
	}
	log.Info("relay: stopped", "agents", st.Agents, "connectors", st.Connectors)
	return ExitOK
}

// cutOnSignal calls cut when SIGINT or SIGTERM arrives on sigs before ctx
// ends. A SIGHUP asks for a policy reload, not for a stop: it must not cut
// the streams that a drain is waiting for.
func cutOnSignal(ctx context.Context, sigs <-chan os.Signal, cut func(), log *slog.Logger) {
	for {
		select {
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				log.Info("relay: SIGHUP while draining: ignored")
				continue
			}
			log.Warn("relay: second signal: closing open streams now", "signal", sig.String())
			cut()
			return
		case <-ctx.Done():
			return
		}
	}
}

// waitStop waits for SIGINT, SIGTERM or the end of ctx and says which;
// each SIGHUP meanwhile calls hup.
func waitStop(ctx context.Context, sigs <-chan os.Signal, hup func()) string {
	for {
		select {
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				hup()
				continue
			}
			return sig.String()
		case <-ctx.Done():
			return "context done"
		}
	}
}
