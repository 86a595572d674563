package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/scaledownd/scaledownd/internal/drainreport"
)

// reportMetrics are recorded from drain reports and the drain's query
// listing.
type reportMetrics struct {
	phaseDuration   *prometheus.HistogramVec
	blockingQueries prometheus.Gauge
}

// registerReport registers the drain-report metrics on reg; every phase
// series exists from the start.
func (m *Metrics) registerReport(reg prometheus.Registerer) {
	m.report.phaseDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Subsystem: "drain", Name: "phase_duration_seconds",
		Help: "Duration of each phase of a finished drain (signal_to_draining, draining_to_tasks_zero, tasks_zero_to_drained, drained_to_completion), from its drain report.",
		// From the tenth of a second the coordinator takes to notice
		// DRAINING to the 48 h an action can last.
		Buckets: []float64{0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400, 172800},
	}, []string{"phase"})
	m.report.blockingQueries = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Subsystem: "trino", Name: "blocking_queries",
		Help: "Queries that still have tasks on the local worker during a drain, as the coordinator lists them (0 when idle or without trino.coordinator-url).",
	})
	reg.MustRegister(m.report.phaseDuration, m.report.blockingQueries)
	for _, p := range drainreport.PhaseNames {
		m.report.phaseDuration.WithLabelValues(p)
	}
}

// DrainPhase observes the duration of one phase of a finished drain.
func (m *Metrics) DrainPhase(phase string, d time.Duration) {
	m.report.phaseDuration.WithLabelValues(phase).Observe(d.Seconds())
}

// BlockingQueries records how many queries hold the drain in progress.
func (m *Metrics) BlockingQueries(n int) { m.report.blockingQueries.Set(float64(n)) }
