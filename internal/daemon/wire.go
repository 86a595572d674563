package daemon

import (
	"context"
	"errors"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"go.uber.org/zap"

	"github.com/scaledownd/scaledownd/internal/config"
	"github.com/scaledownd/scaledownd/internal/metrics"
	"github.com/scaledownd/scaledownd/internal/supervisor"
	"github.com/scaledownd/scaledownd/pkg/lifecycle"
	"github.com/scaledownd/scaledownd/pkg/trinoadmin"
)

// This file turns the configuration into the daemon's parts.

// newDrainer drains and activates the worker behind tc; with
// trino.coordinator-url, activation also waits for the coordinator (same
// credentials and TLS settings as the worker).
func newDrainer(cfg config.Config, tc *trinoadmin.Client, log *zap.Logger, m *metrics.Metrics) *trinoadmin.Drainer {
	opts := trinoadmin.DrainOptions{
		Strategy:           trinoadmin.Strategy(cfg.Trino.Strategy),
		PollInterval:       cfg.Trino.PollInterval,
		QuietPeriod:        cfg.Trino.QuietPeriod,
		ShutdownAfterDrain: cfg.Trino.ShutdownAfterDrain,
		NotRunningWindow:   cfg.Trino.NotRunningWindow,
		Logger:             log.With(zap.String("component", "trino")),
		Recorder:           m,
		DryRun:             cfg.DryRun,
	}
	if cfg.Trino.CoordinatorURL != "" {
		opts.Coordinator = tc.Coordinator(cfg.Trino.CoordinatorURL)
	}
	return trinoadmin.NewDrainer(tc, opts)
}

func newSupervisor(cfg config.Config, actions *lifecycle.Actions, drainer *trinoadmin.Drainer, confirmer supervisor.Confirmer,
	store supervisor.Store, history supervisor.ReportStore, dopts Options, m *metrics.Metrics) *supervisor.Supervisor {
	log := dopts.Logger.With(zap.String("component", "supervisor"))
	return supervisor.New(actions, drainer, supervisor.Options{
		Plan: lifecycle.PlanOptions{
			HeartbeatInterval: time.Duration(cfg.Lifecycle.HeartbeatInterval),
			MaxDrainTime:      cfg.Lifecycle.MaxDrainTime,
			SafetyMargin:      cfg.Lifecycle.SafetyMargin,
		},
		Retry:         lifecycle.RetryPolicy{NotFoundWindow: cfg.Lifecycle.NotFoundWindow, Log: log},
		LaunchTimeout: cfg.Lifecycle.LaunchTimeout,
		Confirmer:     confirmer,
		ConfirmWindow: cfg.Lifecycle.ConfirmWindow,
		// Every 5 s, or four times within a shorter window.
		ConfirmInterval: max(min(supervisor.DefaultConfirmInterval, cfg.Lifecycle.ConfirmWindow/4), 100*time.Millisecond),
		DryRun:          cfg.DryRun,
		Logger:          log,
		Recorder:        m,
		Queries:         dopts.Queries,
		QueryInterval:   dopts.QueryInterval,
		Store:           store,
		Reports:         history,
	})
}

// newConfirmer asks AWS before an action from the queue changes the worker:
// with metadata (modes both and imds) a termination is confirmed by one
// read of this instance's target-lifecycle-state, through its own IMDSv2
// client; otherwise, and for launches, by DescribeAutoScalingInstances.
// The local read is not retried and gets 1 s: metadata that does not
// answer at once is asked no further, Auto Scaling is.
func newConfirmer(cfg config.Config, actions *lifecycle.Actions, metadata bool) *lifecycle.Confirmer {
	opts := lifecycle.ConfirmerOptions{AutoScaling: actions, CallTimeout: time.Second}
	if metadata {
		opts.Metadata = lifecycle.NewIMDSClient(lifecycle.IMDSClientOptions{
			Endpoint: cfg.AWS.IMDSEndpoint, Timeout: time.Second, Attempts: 1,
		})
	}
	return lifecycle.NewConfirmer(opts)
}

func newSQSSource(cfg config.Config, client *sqs.Client, instanceID string, actions *lifecycle.Actions,
	pacer *lifecycle.Pacer, log *zap.Logger, m *metrics.Metrics) *lifecycle.SQSSource {
	opts := lifecycle.SQSOptions{
		QueueURL: cfg.AWS.QueueURL,
		Filter: lifecycle.Filter{InstanceID: instanceID, Group: cfg.AWS.Group, Hook: cfg.AWS.Hook,
			LaunchHook: cfg.AWS.LaunchHook},
		WaitTime:          cfg.AWS.WaitTime,
		VisibilityTimeout: cfg.AWS.VisibilityTimeout,
		CallTimeout:       cfg.AWS.CallTimeout,
		Logger:            log.With(zap.String("component", "sqs")),
		Recorder:          m,
		DryRun:            cfg.DryRun,
	}
	if cfg.AWS.DeleteStale {
		opts.Stale = actions
	}
	if pacer != nil {
		opts.Pace = pacer
	}
	return lifecycle.NewSQSSource(client, opts)
}

// newIMDSSource polls this instance's metadata. An action learned there
// carries neither group nor hook: the configured ones are used, else the
// group's terminating hooks.
func newIMDSSource(cfg config.Config, instanceID, group string, actions *lifecycle.Actions, pacer *lifecycle.Pacer,
	log *zap.Logger) *lifecycle.IMDSSource {
	var observe func(bool, error)
	if pacer != nil {
		observe = pacer.Observe
	}
	// The poll loop has its own net/http IMDSv2 client, cheaper per poll
	// than the SDK's (see lifecycle.IMDSClient); identity and credentials
	// keep the SDK's.
	poller := lifecycle.NewIMDSClient(lifecycle.IMDSClientOptions{Endpoint: cfg.AWS.IMDSEndpoint})
	return lifecycle.NewIMDSSource(poller, lifecycle.IMDSOptions{
		InstanceID: instanceID,
		Interval:   cfg.AWS.IMDSPollInterval,
		Spot:       cfg.AWS.SpotNotices,
		Rebalance:  cfg.AWS.DrainOnRebalance,
		Observe:    observe,
		Logger:     log.With(zap.String("component", "imds")),
		Resolve: func(ctx context.Context) (string, []string, error) {
			if cfg.AWS.Hook != "" {
				return group, []string{cfg.AWS.Hook}, nil
			}
			if group == "" {
				return "", nil, errors.New("auto scaling group unknown")
			}
			hooks, err := actions.TerminatingHooks(ctx, group)
			return group, hooks, err
		},
	})
}

// QueryWatcher follows, while the worker drains, which queries still
// have tasks on it, asking trino.coordinator-url (same credentials and TLS
// as the worker) at most once per trinoadmin.MinQueryInterval: it is the
// supervisor's QueryLister, and its Run adds the deadline warning (see
// trinoadmin.Watcher). Without a coordinator URL, Run says once that only
// the task count is known. m may be nil (scaledownd drain --wait has no
// metrics).
func QueryWatcher(cfg config.Config, tc *trinoadmin.Client, log *zap.Logger, m *metrics.Metrics) *trinoadmin.Watcher {
	opts := trinoadmin.WatcherOptions{
		Interval:        trinoadmin.MinQueryInterval,
		Timeout:         trinoadmin.MinQueryInterval, // one question never outlasts the pause between two
		DeadlineWarning: cfg.Trino.DeadlineWarning,
		Logger:          log.With(zap.String("component", "trino-queries")),
	}
	if m != nil {
		opts.Recorder = queryMetrics{m}
	}
	if cfg.Trino.CoordinatorURL != "" {
		opts.Lister = tc.Coordinator(cfg.Trino.CoordinatorURL).WorkerQueries(tc)
	}
	return trinoadmin.NewWatcher(opts)
}

// queryMetrics records the watcher's figures: the oldest query's age. The
// count, scaledownd_trino_blocking_queries, is the supervisor's: it records
// every listing it takes.
type queryMetrics struct{ m *metrics.Metrics }

func (q queryMetrics) BlockingQueries(int) {}

func (q queryMetrics) OldestBlockingQuery(age time.Duration) { q.m.OldestBlockingQuery(age) }
