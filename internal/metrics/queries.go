package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// newOldestBlockingQuery is the age of the longest-running query that
// still holds the drain in progress (the count is scaledownd_trino_blocking_queries).
func newOldestBlockingQuery() prometheus.Gauge {
	return prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Subsystem: "trino", Name: "oldest_blocking_query_age_seconds",
		Help: "How long the longest-running query with tasks still on the worker has run, as the coordinator last listed it (trino.coordinator-url); 0 when none or idle.",
	})
}

// OldestBlockingQuery records how long the longest-running query that
// holds the drain has run (0: none).
func (m *Metrics) OldestBlockingQuery(age time.Duration) { m.oldestBlocking.Set(age.Seconds()) }
