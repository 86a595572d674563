// Package metrics defines every Prometheus metric scaledownd exports, in
// one type built on an injected registry. Parts of the daemon record what
// happens through its methods; none of them touches a global registry.
package metrics

import (
	"context"
	"errors"
	"math"
	"net"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws/middleware"
	smithy "github.com/aws/smithy-go"
	smithymiddleware "github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/scaledownd/scaledownd/internal/drainreport"
)

const namespace = "scaledownd"

// Phases of the action in progress, exported as a state set.
var Phases = []string{"idle", "received", "draining", "activating", "completing"}

// Metrics holds scaledownd's collectors.
type Metrics struct {
	Registry *prometheus.Registry

	phase           *prometheus.GaugeVec
	trinoTasks      prometheus.Gauge
	trinoState      *prometheus.GaugeVec
	drainDuration   *prometheus.HistogramVec
	completed       *prometheus.CounterVec
	heartbeats      *prometheus.CounterVec
	messages        *prometheus.CounterVec
	awsCalls        *prometheus.CounterVec
	trinoRequests   *prometheus.CounterVec
	lastPoll        prometheus.Gauge
	pollErrors      prometheus.Counter
	staleDeleted    *prometheus.CounterVec
	receiveCount    prometheus.Histogram
	unconfirmed     *prometheus.CounterVec
	phaseDuration   *prometheus.HistogramVec // from drain reports
	blockingQueries prometheus.Gauge         // from the drain's query listing
	oldestBlocking  prometheus.Gauge
	deadline        atomic.Pointer[time.Time] // nil or zero: none
	now             func() time.Time
}

// CompletionReasons are the reasons an action is completed.
var CompletionReasons = []string{"drained", "exited", "not-running", "coordinator", "deadline", "lapsed", "active", "launch-timeout"}

// TrinoStates are the worker states exported by scaledownd_trino_state.
var TrinoStates = []string{"ACTIVE", "DRAINING", "DRAINED", "SHUTTING_DOWN", "GONE"}

func gaugeOpts(subsystem, name, help string) prometheus.GaugeOpts {
	return prometheus.GaugeOpts{Namespace: namespace, Subsystem: subsystem, Name: name, Help: help}
}

func counterOpts(subsystem, name, help string) prometheus.CounterOpts {
	return prometheus.CounterOpts(gaugeOpts(subsystem, name, help))
}

func histogramOpts(subsystem, name, help string, buckets ...float64) prometheus.HistogramOpts {
	return prometheus.HistogramOpts{Namespace: namespace, Subsystem: subsystem, Name: name, Help: help, Buckets: buckets}
}

// New registers every metric on a new registry, together with the Go and
// process collectors. version is the daemon's version for build info.
func New(version string) *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := &Metrics{Registry: reg, now: time.Now}
	f := promauto.With(reg) // every collector below is registered on reg

	f.NewGaugeVec(gaugeOpts("", "build_info",
		"A metric with a constant '1' value labelled by the version and Go version scaledownd was built with."), []string{"version", "goversion"}).
		WithLabelValues(version, runtime.Version()).Set(1)
	m.phase = f.NewGaugeVec(gaugeOpts("", "phase",
		"Phase of the lifecycle action in progress: 1 for the current phase, 0 for the others."), []string{"phase"})
	m.trinoState = f.NewGaugeVec(gaugeOpts("trino", "state",
		"Last node state read from the local Trino worker during a drain: 1 for that state, 0 for the others."), []string{"state"})
	m.trinoTasks = f.NewGauge(gaugeOpts("trino", "active_tasks",
		"Active tasks on the local Trino worker as its executor reports them during a drain (a hint; DRAINED or the exit is the truth)."))
	m.drainDuration = f.NewHistogramVec(histogramOpts("", "drain_duration_seconds",
		"Time from the start of a lifecycle action to its completion, by outcome.",
		1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 43200, 86400, 172800), []string{"outcome"})
	m.completed = f.NewCounterVec(counterOpts("lifecycle", "actions_completed_total",
		"Lifecycle actions finished, by result (CONTINUE, ABANDON, already-done, error, none for Spot signals) and reason (drained, exited, not-running, coordinator, deadline, lapsed, active, launch-timeout)."), []string{"result", "reason"})
	m.heartbeats = f.NewCounterVec(counterOpts("lifecycle", "heartbeats_total",
		"RecordLifecycleActionHeartbeat calls, by result (ok, not-found, error)."), []string{"result"})
	f.NewGaugeFunc(gaugeOpts("lifecycle", "deadline_remaining_seconds",
		"Seconds left until the action in progress is completed regardless of the drain; NaN when idle."), m.deadlineRemaining)
	m.messages = f.NewCounterVec(counterOpts("sqs", "messages_received_total",
		"SQS messages received, by kind (own, foreign, test, malformed)."), []string{"kind"})
	m.receiveCount = f.NewHistogram(histogramOpts("sqs", "own_message_receive_count",
		"ApproximateReceiveCount of this instance's lifecycle messages when they reached it: how often others handed them back.",
		1, 2, 5, 10, 20, 50, 100, 200, 500, 1000))
	m.lastPoll = f.NewGauge(gaugeOpts("sqs", "last_successful_poll_timestamp_seconds",
		"Unix time of the last successful ReceiveMessage."))
	m.pollErrors = f.NewCounter(counterOpts("sqs", "poll_errors_total",
		"Failed ReceiveMessage calls (after the SDK's retries)."))
	m.staleDeleted = f.NewCounterVec(counterOpts("sqs", "stale_messages_deleted_total",
		"Other instances' lifecycle messages deleted because their action can no longer be completed, by reason (expired, instance-gone, not-waiting)."), []string{"reason"})
	m.unconfirmed = f.NewCounterVec(counterOpts("lifecycle", "unconfirmed_total",
		"Lifecycle actions from the queue that AWS did not confirm for this instance within lifecycle.confirm-window, by transition (terminating, launching): never drained, never completed."), []string{"transition"})
	m.awsCalls = f.NewCounterVec(counterOpts("aws", "api_calls_total",
		"AWS API calls, by operation and outcome (ok, throttled, client-error, server-error, network, canceled)."), []string{"operation", "outcome"})
	m.trinoRequests = f.NewCounterVec(counterOpts("trino", "api_requests_total",
		"Requests to the local Trino worker, by outcome (ok, forbidden, not-running, error)."), []string{"outcome"})
	m.phaseDuration = f.NewHistogramVec(histogramOpts("drain", "phase_duration_seconds",
		"Duration of each phase of a finished drain (signal_to_draining, draining_to_tasks_zero, tasks_zero_to_drained, drained_to_completion), from its drain report.",
		// From the tenth of a second the coordinator takes to notice
		// DRAINING to the 48 h an action can last.
		0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400, 172800), []string{"phase"})
	m.blockingQueries = f.NewGauge(gaugeOpts("trino", "blocking_queries",
		"Queries that still have tasks on the local worker during a drain, as the coordinator lists them (0 when idle or without trino.coordinator-url)."))
	// The count is scaledownd_trino_blocking_queries.
	m.oldestBlocking = f.NewGauge(gaugeOpts("trino", "oldest_blocking_query_age_seconds",
		"How long the longest-running query with tasks still on the worker has run, as the coordinator last listed it (trino.coordinator-url); 0 when none or idle."))

	// Every series of a closed label set exists from the start, so rate()
	// and absent() behave and dashboards show zeros, not gaps.
	m.SetPhase("idle")
	for vec, values := range map[*prometheus.MetricVec][]string{
		m.trinoState.MetricVec:    TrinoStates,
		m.messages.MetricVec:      {"own", "foreign", "test", "malformed"},
		m.staleDeleted.MetricVec:  {"expired", "instance-gone", "not-waiting"},
		m.unconfirmed.MetricVec:   {"terminating", "launching"},
		m.heartbeats.MetricVec:    {"ok", "not-found", "error"},
		m.trinoRequests.MetricVec: {"ok", "forbidden", "not-running", "error"},
		m.phaseDuration.MetricVec: drainreport.PhaseNames,
	} {
		for _, v := range values {
			if _, err := vec.GetMetricWithLabelValues(v); err != nil {
				panic(err)
			}
		}
	}
	for _, result := range []string{"CONTINUE", "ABANDON", "already-done", "error"} {
		for _, reason := range CompletionReasons {
			m.completed.WithLabelValues(result, reason)
		}
	}
	return m
}

// SetPhase marks phase as the current one.
func (m *Metrics) SetPhase(phase string) { setStateSet(m.phase, Phases, phase) }

// setStateSet sets current to 1 and every other state of all to 0.
func setStateSet(g *prometheus.GaugeVec, all []string, current string) {
	for _, s := range all {
		v := 0.0
		if s == current {
			v = 1
		}
		g.WithLabelValues(s).Set(v)
	}
}

// SetDeadline records the deadline of the action in progress; the zero
// time means none.
func (m *Metrics) SetDeadline(t time.Time) {
	m.deadline.Store(&t)
}

func (m *Metrics) deadlineRemaining() float64 {
	d := m.deadline.Load()
	if d == nil || d.IsZero() {
		return math.NaN()
	}
	return d.Sub(m.now()).Seconds()
}

// DrainFinished observes one finished action.
func (m *Metrics) DrainFinished(outcome string, d time.Duration) {
	m.drainDuration.WithLabelValues(outcome).Observe(d.Seconds())
}

// ActionCompleted counts one finished action.
func (m *Metrics) ActionCompleted(result, reason string) {
	m.completed.WithLabelValues(result, reason).Inc()
}

// Heartbeat counts one heartbeat by result.
func (m *Metrics) Heartbeat(result string) { m.heartbeats.WithLabelValues(result).Inc() }

// MessageReceived counts one SQS message by kind.
func (m *Metrics) MessageReceived(kind string) { m.messages.WithLabelValues(kind).Inc() }

// StaleDeleted counts a stale foreign message deleted.
func (m *Metrics) StaleDeleted(reason string) { m.staleDeleted.WithLabelValues(reason).Inc() }

// OwnMessageReceiveCount observes the receive count of an own message.
func (m *Metrics) OwnMessageReceiveCount(n int) { m.receiveCount.Observe(float64(n)) }

// Unconfirmed counts an action from the queue AWS did not confirm.
func (m *Metrics) Unconfirmed(transition string) { m.unconfirmed.WithLabelValues(transition).Inc() }

// Polled records the outcome of a ReceiveMessage.
func (m *Metrics) Polled(ok bool) {
	if ok {
		m.lastPoll.Set(float64(m.now().UnixNano()) / 1e9)
		return
	}
	m.pollErrors.Inc()
}

// TrinoState records the worker's state.
func (m *Metrics) TrinoState(state string) { setStateSet(m.trinoState, TrinoStates, state) }

// TrinoTasks records the worker's active task count.
func (m *Metrics) TrinoTasks(n int) { m.trinoTasks.Set(float64(n)) }

// TrinoRequest counts one request to the worker by outcome.
func (m *Metrics) TrinoRequest(outcome string) { m.trinoRequests.WithLabelValues(outcome).Inc() }

// AWSCall counts one AWS API call.
func (m *Metrics) AWSCall(operation, outcome string) {
	m.awsCalls.WithLabelValues(operation, outcome).Inc()
}

// AWSMiddleware returns an SDK API option that counts every call by
// operation and outcome, after the SDK's retries.
func (m *Metrics) AWSMiddleware() func(*smithymiddleware.Stack) error {
	return func(st *smithymiddleware.Stack) error {
		return st.Initialize.Add(smithymiddleware.InitializeMiddlewareFunc("scaledownd/metrics",
			func(ctx context.Context, in smithymiddleware.InitializeInput, next smithymiddleware.InitializeHandler) (smithymiddleware.InitializeOutput, smithymiddleware.Metadata, error) {
				out, md, err := next.HandleInitialize(ctx, in)
				m.AWSCall(middleware.GetOperationName(ctx), Outcome(err))
				return out, md, err
			}), smithymiddleware.Before)
	}
}

// Outcome classifies an AWS SDK error for the outcome label.
func Outcome(err error) string {
	if err == nil {
		return "ok"
	}
	if errors.Is(err, context.Canceled) {
		return "canceled"
	}
	if api, ok := errors.AsType[smithy.APIError](err); ok {
		switch api.ErrorCode() {
		case "Throttling", "ThrottlingException", "RequestThrottled", "RequestLimitExceeded", "TooManyRequestsException":
			return "throttled"
		}
	}
	if resp, ok := errors.AsType[*smithyhttp.ResponseError](err); ok {
		if resp.HTTPStatusCode() >= 500 {
			return "server-error"
		}
		return "client-error"
	}
	if _, ok := errors.AsType[net.Error](err); ok || errors.Is(err, context.DeadlineExceeded) {
		return "network"
	}
	return "client-error"
}

// DrainPhase observes the duration of one phase of a finished drain.
func (m *Metrics) DrainPhase(phase string, d time.Duration) {
	m.phaseDuration.WithLabelValues(phase).Observe(d.Seconds())
}

// BlockingQueries records how many queries hold the drain in progress.
func (m *Metrics) BlockingQueries(n int) { m.blockingQueries.Set(float64(n)) }

// OldestBlockingQuery records how long the longest-running query that
// holds the drain has run (0: none).
func (m *Metrics) OldestBlockingQuery(age time.Duration) { m.oldestBlocking.Set(age.Seconds()) }
