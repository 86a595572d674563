package daemon

import (
	"time"

	"go.uber.org/zap"

	"github.com/scaledownd/scaledownd/internal/config"
	"github.com/scaledownd/scaledownd/internal/metrics"
	"github.com/scaledownd/scaledownd/pkg/trinoadmin"
)

// QueryWatcher follows, while the worker drains, which queries still
// have tasks on it: from trino.coordinator-url (GET /v1/query, at most once
// per trinoadmin.MinQueryInterval, same credentials and TLS as the worker).
// It is the supervisor's QueryLister (each BlockingQueries call answers
// from the last question if that is under 10 s old), and its
// Run(ctx, deadline), started when DRAINING is requested, adds the
// deadline warning. Without a coordinator URL, Run says once that only the
// task count is known. m may be nil (scaledownd drain --wait has no
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
