// Package daemon wires scaledownd together: it resolves the instance's
// identity, builds the AWS and Trino clients, starts the HTTP listener, the
// SQS source and the supervisor, and stops them all when its context ends.
// cmd/scaledownd only parses flags and calls Run.
package daemon

import (
	"cmp"
	"context"
	"errors"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"go.uber.org/zap"

	"github.com/scaledownd/scaledownd/internal/config"
	"github.com/scaledownd/scaledownd/internal/metrics"
	"github.com/scaledownd/scaledownd/internal/server"
	"github.com/scaledownd/scaledownd/internal/statefile"
	"github.com/scaledownd/scaledownd/internal/supervisor"
	"github.com/scaledownd/scaledownd/pkg/lifecycle"
)

// shutdownTimeout bounds the HTTP server's shutdown; the whole stop must fit
// in 5 s so a restart never lets the instance terminate early.
const shutdownTimeout = 2 * time.Second

// Options are the daemon's inputs besides the configuration.
type Options struct {
	Logger  *zap.Logger
	Metrics *metrics.Metrics
	// Ready, if set, is called with the listener's address once the daemon
	// is set up (tests use it to find a :0 listener).
	Ready func(addr string)
	// Queries, if set, lists the queries that hold a drain (for the drain
	// report and /status), every QueryInterval (default 10 s).
	Queries       supervisor.QueryLister
	QueryInterval time.Duration
}

// Run runs the daemon until ctx ends. It returns nil on a clean stop.
func Run(ctx context.Context, cfg config.Config, opts Options) error {
	log := opts.Logger
	m := opts.Metrics
	health := server.NewHealth()
	health.SetReady("identity", "resolving instance identity")
	health.SetReady("queue", "not set up yet")

	var sup *supervisor.Supervisor
	srv, err := server.New(server.Options{Addr: cfg.Listen, WebConfigFile: cfg.Web.Config.File, Logger: log}, m.Registry, health, func() any {
		if sup == nil {
			return supervisor.Status{Phase: supervisor.PhaseIdle}
		}
		return sup.Status()
	})
	if err != nil {
		return err
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve() }()
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	log.Info("listening", zap.String("address", srv.Addr()))

	id, err := resolveIdentity(ctx, cfg, log, func(reason string) { health.SetReady("identity", reason) })
	if errors.Is(err, context.Canceled) {
		return nil
	} else if err != nil {
		return err
	}
	health.SetReady("identity", "")
	log = log.With(zap.String("instance_id", id.InstanceID))
	log.Info("identity resolved", zap.String("region", id.Region))

	tc, err := TrinoClient(cfg)
	if err != nil {
		return err
	}
	if !cfg.Trino.TLSVerify {
		log.Warn("TLS verification of the trino worker is off (trino.tls-verify=false)")
	}

	sqsClient, asClient, err := Clients(ctx, cfg, id.Region, m, log)
	if err != nil {
		return err
	}
	actions := lifecycle.NewActions(asClient, cfg.AWS.CallTimeout)

	// Actions a previous run left unfinished are finished even if the
	// instance has since left its group (it is terminating).
	store, recs := openState(cfg, log)
	unfinished := 0
	for _, r := range recs {
		if r.Phase != statefile.PhaseAcked {
			unfinished++
		}
	}
	useSQS, useIMDS := cfg.AWS.Mode != "imds", cfg.AWS.Mode != "sqs"
	if useSQS && cfg.AWS.QueueURL == "" {
		if !useIMDS {
			return idle(ctx, log, health, opts, srv.Addr(),
				"no lifecycle queue configured (aws.queue-url) in mode sqs: the graceful scale-down handler is not running; "+
					"this worker's queries will fail when the Auto Scaling group terminates it (set aws.mode=imds to work without a queue)")
		}
		log.Info("no lifecycle queue configured (aws.queue-url): relying on instance metadata alone")
		useSQS = false
	}
	group := cfg.AWS.Group
	pendingLaunch := false
	if mem, err := actions.MembershipOf(ctx, id.InstanceID); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		log.Warn("cannot check Auto Scaling membership; polling anyway", zap.Error(err))
	} else if mem.Group == "" && unfinished == 0 {
		return idle(ctx, log, health, opts, srv.Addr(),
			"this instance is not in an Auto Scaling group: the graceful scale-down handler is not running")
	} else if mem.Group == "" {
		log.Warn("this instance is no longer in an Auto Scaling group; finishing the actions left from before the restart",
			zap.Int("unfinished", unfinished))
	} else {
		log.Info("auto scaling membership", zap.String("asg", mem.Group), zap.String("lifecycle_state", mem.State))
		group = cmp.Or(group, mem.Group)
		pendingLaunch = mem.State == "Pending:Wait"
		if cfg.AWS.Group != "" && cfg.AWS.Group != mem.Group {
			log.Warn("instance is in another Auto Scaling group than aws.asg-name; its lifecycle messages will be left to others",
				zap.String("asg", mem.Group), zap.String("expected_asg", cfg.AWS.Group))
		}
	}

	// In mode both, instance metadata paces the queue polling (unless
	// aws.sqs-idle-interval is 0) and tells the queue whether other
	// instances' terminations may be hidden: see lifecycle.Pacer.
	var pacer *lifecycle.Pacer
	if useSQS && useIMDS {
		pacer = lifecycle.NewPacer(cfg.AWS.SQSIdleInterval, nil, log.With(zap.String("component", "sqs")))
	}
	drainer := newDrainer(cfg, tc, log, m)
	if opts.Queries == nil {
		opts.Queries = QueryWatcher(cfg, tc, log, m)
	}
	sup = newSupervisor(cfg, actions, drainer, newConfirmer(cfg, actions, useIMDS), store, openHistory(cfg, log), opts, m)
	sqsSource := newSQSSource(cfg, sqsClient, id.InstanceID, actions, pacer, log, m)
	sup.Resume(recs, func(r statefile.MessageRef) *lifecycle.Message {
		return sqsSource.Adopt(r.ID, r.ReceiptHandle, r.ReceiveCount)
	})
	imdsSource := newIMDSSource(cfg, id.InstanceID, group, actions, pacer, log)

	supBeat := health.Watch("supervisor", 30*time.Second)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	deliveries := make(chan lifecycle.Delivery)
	var loops sync.WaitGroup // the sources, the supervisor and the watchdog, all ended by runCtx
	if useSQS {
		// A receive can take WaitTime + CallTimeout, then a backoff of up
		// to 30 s or an idle pause: a loop silent for twice that is stuck.
		pollBeat := health.Watch("sqs-poll", 2*(cfg.AWS.WaitTime+cfg.AWS.CallTimeout+30*time.Second+cfg.AWS.SQSIdleInterval))
		loops.Go(func() { _ = sqsSource.Run(runCtx, deliveries, pollBeat) })
	}
	if useIMDS {
		imdsBeat := health.Watch("imds-poll", 2*cfg.AWS.IMDSPollInterval+30*time.Second)
		loops.Go(func() { _ = imdsSource.Run(runCtx, deliveries, imdsBeat) })
	}
	if pendingLaunch && useIMDS {
		// A launch hook holds this instance: complete it once the worker
		// is ACTIVE, without waiting for the queue.
		loops.Go(func() { deliverPendingLaunch(runCtx, log, actions, cfg, id.InstanceID, group, deliveries) })
	}
	loops.Go(func() { sup.Run(runCtx, deliveries, supBeat) })

	health.SetReady("queue", "")
	log.Info("scaledownd ready: watching for lifecycle actions", zap.String("queue_url", cfg.AWS.QueueURL),
		zap.Bool("sqs", useSQS), zap.Bool("imds", useIMDS))
	notifyReady(log, "watching for lifecycle actions")
	loops.Go(func() { watchdog(runCtx, health, log) })
	if opts.Ready != nil {
		opts.Ready(srv.Addr())
	}

	select {
	case <-ctx.Done():
	case err := <-serveErr:
		log.Error("http listener failed", zap.Error(err))
	}
	log.Info("stopping: no new lifecycle actions are taken; an action in progress is left for the next start")
	cancel()
	loops.Wait()
	return nil
}

// idle keeps the daemon up and healthy without a queue: no crash loop, one
// clear warning.
func idle(ctx context.Context, log *zap.Logger, health *server.Health, opts Options, addr, why string) error {
	log.Warn(why)
	health.SetReady("queue", "")
	notifyReady(log, "idle: "+why)
	if opts.Ready != nil {
		opts.Ready(addr)
	}
	watchdog(ctx, health, log)
	<-ctx.Done()
	return nil
}

// notifyReady tells systemd (Type=notify) the daemon is up; a no-op
// elsewhere.
func notifyReady(log *zap.Logger, status string) {
	if _, err := daemon.SdNotify(false, daemon.SdNotifyReady+"\nSTATUS="+status); err != nil {
		log.Warn("sd_notify failed", zap.Error(err))
	}
}

// watchdog pets systemd's watchdog (WatchdogSec) at half its interval, but
// only while every loop makes progress: a stuck loop stops the pets and
// systemd restarts the daemon. It returns when ctx ends, at once when the
// watchdog is not enabled for this process.
func watchdog(ctx context.Context, h *server.Health, log *zap.Logger) {
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil || interval <= 0 {
		return
	}
	t := time.NewTicker(interval / 2)
	defer t.Stop()
	warned := false
	for {
		if ok, why := h.Live(); ok {
			warned = false
			if _, err := daemon.SdNotify(false, daemon.SdNotifyWatchdog); err != nil {
				log.Warn("watchdog notification failed", zap.Error(err))
			}
		} else if !warned {
			log.Error("a main loop is stuck; no longer petting the systemd watchdog", zap.String("stuck", why))
			warned = true
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// openState opens the state directory and reads the actions a previous run
// left. A state directory that cannot be used is logged and the daemon runs
// without persistence (a nil Store): the SQS message then carries the action
// alone.
func openState(cfg config.Config, log *zap.Logger) (supervisor.Store, []statefile.Record) {
	if cfg.DryRun {
		return nil, nil
	}
	store, err := statefile.Open(cfg.StateDir)
	if err != nil {
		log.Error("state directory unusable; running without crash-safe resume", zap.Error(err), zap.String("state_dir", cfg.StateDir))
		return nil, nil
	}
	recs, problems, err := store.Load()
	for _, p := range problems {
		log.Error(p.Error())
	}
	if err != nil {
		log.Error("cannot read the state directory; running without crash-safe resume", zap.Error(err))
		return nil, nil
	}
	return store, recs
}

// openHistory opens the drain report history in the state directory; like
// the records, a directory that cannot be used costs the reports, not the
// drains (each report is still logged).
func openHistory(cfg config.Config, log *zap.Logger) supervisor.ReportStore {
	if cfg.DryRun {
		return nil
	}
	h, err := statefile.OpenHistory(cfg.StateDir)
	if err != nil {
		log.Error("state directory unusable for drain reports; they are only logged", zap.Error(err), zap.String("state_dir", cfg.StateDir))
		return nil
	}
	return h
}

// deliverPendingLaunch hands the supervisor the launch action of an instance
// found in Pending:Wait at start-up (modes imds and both: no message needed).
func deliverPendingLaunch(ctx context.Context, log *zap.Logger, actions *lifecycle.Actions, cfg config.Config,
	instanceID, group string, out chan<- lifecycle.Delivery) {
	hooks := []string{cfg.AWS.LaunchHook}
	if cfg.AWS.LaunchHook == "" {
		var err error
		if hooks, err = actions.HooksFor(ctx, group, lifecycle.TransitionLaunching); err != nil || len(hooks) == 0 {
			log.Warn("instance is in Pending:Wait but no launching hook is known; set aws.launch-hook-name", zap.Error(err))
			return
		}
	}
	now := time.Now()
	for _, h := range hooks {
		d := lifecycle.Delivery{Event: lifecycle.Event{Transition: lifecycle.TransitionLaunching, InstanceID: instanceID,
			Group: group, Hook: h, Time: now, ReceivedAt: now, Source: "startup"}}
		select {
		case out <- d:
		case <-ctx.Done():
			return
		}
	}
}
