package daemon_test

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/scaledownd/scaledownd/internal/config"
	"github.com/scaledownd/scaledownd/internal/drainreport"
	"github.com/scaledownd/scaledownd/internal/statefile"
	"github.com/scaledownd/scaledownd/internal/testenv"
	"github.com/scaledownd/scaledownd/internal/testpeers"
	"github.com/scaledownd/scaledownd/pkg/trinoadmin"
)

// stubQueries stands in for the coordinator's listing of the queries that
// hold the drain.
type stubQueries struct {
	mu    sync.Mutex
	qs    []trinoadmin.Query
	calls int
}

func (s *stubQueries) set(qs ...trinoadmin.Query) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.qs = qs
}

func (s *stubQueries) BlockingQueries(context.Context) ([]trinoadmin.Query, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	return append([]trinoadmin.Query(nil), s.qs...), nil
}

// startWithQueries runs the daemon with queries listing the blocking
// queries.
func startWithQueries(t *testing.T, cfg config.Config, queries *stubQueries) (*testenv.Daemon, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zap.DebugLevel)
	log := zap.New(zapcore.NewTee(core, zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel)).Core()))
	var lister interface {
		BlockingQueries(context.Context) ([]trinoadmin.Query, error)
	}
	if queries != nil {
		lister = queries
	}
	d, err := testenv.StartDaemonWith(context.Background(), cfg, log, lister)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Stop(10 * time.Second); err != nil {
			t.Errorf("stop daemon: %v", err)
		}
	})
	return d, logs
}

// awaitReport waits for the one "drain report" event and returns its
// report; it fails if there is more than one.
func awaitReport(t *testing.T, logs *observer.ObservedLogs) drainreport.Report {
	t.Helper()
	testpeers.Eventually(t, 20*time.Second, "drain report logged", func() bool {
		return logs.FilterMessage("drain report").Len() > 0
	})
	events := logs.FilterMessage("drain report").All()
	if len(events) != 1 {
		t.Fatalf("%d drain reports logged, want 1", len(events))
	}
	r, ok := events[0].ContextMap()["report"].(drainreport.Report)
	if !ok {
		t.Fatalf("drain report field is %T", events[0].ContextMap()["report"])
	}
	return r
}

// storedReports reads the state directory's history, newest first.
func storedReports(t *testing.T, cfg config.Config) []drainreport.Report {
	t.Helper()
	entries, err := statefile.ReadHistory(cfg.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]drainreport.Report, 0, len(entries))
	for _, e := range entries {
		out = append(out, e.Report)
	}
	return out
}

// inOrder fails unless the named times are non-zero and never go back.
func inOrder(t *testing.T, steps ...any) {
	t.Helper()
	var prev time.Time
	prevName := ""
	for i := 0; i+1 < len(steps); i += 2 {
		name, at := steps[i].(string), steps[i+1].(time.Time)
		if at.IsZero() {
			t.Errorf("timeline lacks %s", name)
			continue
		}
		if at.Before(prev) {
			t.Errorf("%s (%s) before %s (%s)", name, at.Format("15:04:05.000"), prevName, prev.Format("15:04:05.000"))
		}
		prev, prevName = at, name
	}
}

func near(t *testing.T, what string, got, want time.Time, within time.Duration) {
	t.Helper()
	if d := got.Sub(want); d > within || d < -within {
		t.Errorf("%s at %s, want within %s of %s", what, got.Format("15:04:05.000"), within, want.Format("15:04:05.000"))
	}
}

func phaseCount(t *testing.T, d *testenv.Daemon, phase string) uint64 {
	t.Helper()
	mfs, err := d.Metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "scaledownd_drain_phase_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "phase" && l.GetValue() == phase {
					return m.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	return 0
}

func TestDrainReportOfATermination(t *testing.T) {
	env := world(t, testenv.Options{})
	finish := env.Trino.AddBlockedTask()
	defer finish()
	queries := &stubQueries{}
	created := time.Now()
	queries.set(
		trinoadmin.Query{ID: "20261202_short", User: "bob", Source: "cli", State: "RUNNING", Created: created, Elapsed: 2 * time.Second},
		trinoadmin.Query{ID: "20261202_long", User: "alice", Source: "superset", State: "RUNNING", Created: created, Elapsed: 42 * time.Second},
	)
	cfg := env.Config(env.Instance)
	d, logs := startWithQueries(t, cfg, queries)
	token, msg := env.Terminate(env.Instance)
	id := env.SQS.Send(env.QueueURL, msg.Direct())

	// While it drains, /status follows it: worker state, tasks left, the
	// queries holding it and the time to the deadline.
	testpeers.Eventually(t, 10*time.Second, "/status shows the drain", func() bool {
		var st struct {
			Phase           string              `json:"phase"`
			TrinoState      string              `json:"trino_state"`
			TasksLeft       *int                `json:"tasks_left"`
			BlockingQueries *int                `json:"blocking_queries"`
			Queries         []drainreport.Query `json:"queries"`
			DeadlineIn      *float64            `json:"deadline_in_s"`
		}
		resp, err := http.Get("http://" + d.Addr + "/status")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		if json.NewDecoder(resp.Body).Decode(&st) != nil {
			return false
		}
		return st.Phase == "draining" && st.TrinoState == "DRAINING" && st.TasksLeft != nil && *st.TasksLeft == 1 &&
			st.BlockingQueries != nil && *st.BlockingQueries == 2 && len(st.Queries) == 2 &&
			st.Queries[0].QueryID == "20261202_long" && st.DeadlineIn != nil && *st.DeadlineIn > 0 &&
			*st.DeadlineIn <= cfg.Lifecycle.MaxDrainTime.Seconds()
	})
	waitMetric(t, d, func(v float64) bool { return v == 2 }, "scaledownd_trino_blocking_queries")
	queries.set(queries.qs[1]) // the short one ends
	finish()                   // the last task ends
	queries.set()

	act := finished(t, env, token, 30*time.Second)
	completedContinue(t, act)
	deleted(t, env, id, 10*time.Second)
	r := awaitReport(t, logs)
	if r.Kind != "terminate" || r.Source != "sqs" || r.Result != "CONTINUE" || r.Reason != "drained" ||
		r.InstanceID != env.Instance || r.ASG != testenv.Group || r.Hook != testenv.Hook || r.TokenPrefix != token[:8] {
		t.Errorf("report header %+v", r)
	}
	tl := r.Timeline
	inOrder(t, "signal", tl.Signal, "received", tl.Received, "confirmed", tl.Confirmed, "draining_requested", tl.DrainingRequested,
		"tasks_zero", tl.TasksZero, "drained", tl.Drained, "shutting_down", tl.ShuttingDown, "completed", tl.Completed,
		"message_deleted", tl.MessageDeleted)
	// The worker's own history and Auto Scaling's record agree with the
	// report within a poll interval (plus a request's round trip).
	within := cfg.Trino.PollInterval + 100*time.Millisecond
	near(t, "drained", tl.Drained, stateAt(env.Trino, "DRAINED"), within)
	near(t, "draining requested", tl.DrainingRequested, stateAt(env.Trino, "DRAINING"), within)
	near(t, "completed", tl.Completed, act.CompletedAt, within)
	near(t, "signal", tl.Signal, act.Started, time.Second)
	for _, p := range drainreport.PhaseNames {
		n := 0
		r.Phases.Each(func(name string, _ time.Duration) {
			if name == p {
				n++
			}
		})
		if n != 1 {
			t.Errorf("phase %s missing from %+v", p, r.Phases)
		}
	}
	if held := tl.Completed.Sub(tl.Signal).Seconds(); r.InstanceSeconds < held-0.01 || r.InstanceSeconds > held+0.01 {
		t.Errorf("instance_seconds %.3f, want %.3f", r.InstanceSeconds, held)
	}
	if r.HeartbeatsSent < 1 || r.HeartbeatsSent > len(act.Heartbeats) || r.HeartbeatsFailed != 0 {
		t.Errorf("heartbeats %d sent, %d failed; Auto Scaling recorded %d", r.HeartbeatsSent, r.HeartbeatsFailed, len(act.Heartbeats))
	}
	if r.QueriesTotal != 2 || len(r.Queries) != 2 || r.Queries[0].QueryID != "20261202_long" || r.Queries[0].User != "alice" ||
		r.Queries[0].Source != "superset" || r.Queries[0].ElapsedS != 42 || r.Queries[1].QueryID != "20261202_short" {
		t.Errorf("queries %+v (total %d), want the long one first", r.Queries, r.QueriesTotal)
	}
	stored := storedReports(t, cfg)
	if len(stored) != 1 {
		t.Fatalf("%d reports in the history, want 1", len(stored))
	}
	a, _ := json.Marshal(stored[0])
	b, _ := json.Marshal(r)
	if string(a) != string(b) {
		t.Errorf("stored report differs from the logged one:\n%s\n%s", a, b)
	}
	for _, p := range drainreport.PhaseNames {
		if n := phaseCount(t, d, p); n != 1 {
			t.Errorf("scaledownd_drain_phase_duration_seconds{phase=%q} count %d, want 1", p, n)
		}
	}
	waitMetric(t, d, func(v float64) bool { return v == 0 }, "scaledownd_trino_blocking_queries")
}

func TestDrainReportOfAWarmPoolTermination(t *testing.T) {
	env, fake := imdsWorld(t, testenv.Options{})
	env.Trino.AddTask(300 * time.Millisecond)
	cfg := env.Config(env.Instance)
	cfg.AWS.Mode = "imds"
	cfg.AWS.QueueURL = ""
	cfg.AWS.IMDSEndpoint = fake.URL()
	cfg.AWS.IMDSPollInterval = 100 * time.Millisecond
	_, logs := startWithQueries(t, cfg, nil)
	token, _ := env.Terminate(env.Instance)
	fake.SetTargetLifecycleState("Warmed:Stopped")
	completedContinue(t, finished(t, env, token, 20*time.Second))
	r := awaitReport(t, logs)
	if r.Kind != "warm-pool" || r.Source != "imds" || r.Result != "CONTINUE" || r.Reason != "drained" || r.TokenPrefix != "" {
		t.Errorf("report header %+v", r)
	}
	tl := r.Timeline
	inOrder(t, "received", tl.Received, "draining_requested", tl.DrainingRequested, "tasks_zero", tl.TasksZero,
		"drained", tl.Drained, "completed", tl.Completed)
	if !tl.ShuttingDown.IsZero() || !tl.ProcessGone.IsZero() || !tl.MessageDeleted.IsZero() {
		t.Errorf("a warm-pool drain keeps the worker and has no message: %+v", tl)
	}
	if r.Queries == nil || r.QueriesTotal != 0 {
		t.Errorf("without a query listing: queries %v, total %d; want [] and 0", r.Queries, r.QueriesTotal)
	}
	if got := storedReports(t, cfg); len(got) != 1 || got[0].Kind != "warm-pool" {
		t.Fatalf("history %+v, want the one warm-pool report", got)
	}
}

func TestDrainReportOfALaunch(t *testing.T) {
	env, token, msg := launchWorld(t, testenv.Options{Trino: testpeers.TrinoOptions{StartupDelay: time.Second}})
	cfg := env.Config(env.Instance)
	_, logs := startWithQueries(t, cfg, nil)
	id := env.SQS.Send(env.QueueURL, msg.Direct())
	act := finished(t, env, token, 30*time.Second)
	completedContinue(t, act)
	deleted(t, env, id, 10*time.Second)
	r := awaitReport(t, logs)
	if r.Kind != "launch" || r.Hook != launchHook || r.Result != "CONTINUE" || r.Reason != "active" || r.HeartbeatsSent < 1 {
		t.Errorf("report %+v", r)
	}
	tl := r.Timeline
	inOrder(t, "received", tl.Received, "completed", tl.Completed, "message_deleted", tl.MessageDeleted)
	if !tl.DrainingRequested.IsZero() || !tl.Drained.IsZero() {
		t.Errorf("a launch drains nothing: %+v", tl)
	}
	n := 0
	r.Phases.Each(func(string, time.Duration) { n++ })
	if n != 0 {
		t.Errorf("a launch has no drain phases: %+v", r.Phases)
	}
}

func TestDrainReportOfASpotInterruption(t *testing.T) {
	env := world(t, testenv.Options{})
	fake := testpeers.NewIMDS(testpeers.IMDSOptions{InstanceID: env.Instance, Region: testenv.Region, InstanceLifeCycle: "spot"})
	t.Cleanup(fake.Close)
	fake.SetTargetLifecycleState("InService")
	env.Trino.AddTask(300 * time.Millisecond)
	cfg := env.Config(env.Instance)
	cfg.AWS.Mode = "both"
	cfg.AWS.IMDSEndpoint = fake.URL()
	cfg.AWS.IMDSPollInterval = 100 * time.Millisecond
	queries := &stubQueries{}
	queries.set(trinoadmin.Query{ID: "20261202_spot", User: "carol", State: "RUNNING", Elapsed: 5 * time.Second})
	_, logs := startWithQueries(t, cfg, queries)
	fake.SetSpotAction("terminate", time.Now().Add(2*time.Minute))
	r := awaitReport(t, logs)
	if r.Kind != "spot" || r.Source != "imds" || r.Result != "none" || r.Reason != "drained" || r.HeartbeatsSent != 0 {
		t.Errorf("report %+v", r)
	}
	tl := r.Timeline
	inOrder(t, "received", tl.Received, "draining_requested", tl.DrainingRequested, "drained", tl.Drained, "completed", tl.Completed)
	if !tl.MessageDeleted.IsZero() {
		t.Errorf("a spot drain has no message: %+v", tl)
	}
	if r.QueriesTotal != 1 || r.Queries[0].User != "carol" {
		t.Errorf("queries %+v", r.Queries)
	}
	if got := storedReports(t, cfg); len(got) != 1 || got[0].Kind != "spot" {
		t.Fatalf("history %+v, want the one spot report", got)
	}
}

// TestOneDrainReportAfterAResume: the daemon stops mid-drain and starts
// again on the same state directory. The first run logs no report; the
// second logs one, with the steps the first saw; the history holds one.
func TestOneDrainReportAfterAResume(t *testing.T) {
	env := world(t, testenv.Options{HeartbeatTimeout: 5 * time.Second})
	finish := env.Trino.AddBlockedTask()
	defer finish()
	cfg := env.Config(env.Instance)
	d, logs1 := startWithQueries(t, cfg, nil)
	token, msg := env.Terminate(env.Instance)
	id := env.SQS.Send(env.QueueURL, msg.Direct())
	testpeers.Eventually(t, 10*time.Second, "drain started", func() bool { return statePuts(env.Trino, "DRAINING") == 1 })
	// Counted by the daemon (the report is kept before the metric moves),
	// not only recorded by Auto Scaling.
	waitMetric(t, d, func(v float64) bool { return v >= 1 }, "scaledownd_lifecycle_heartbeats_total", "result", "ok")
	if err := d.Stop(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	if n := logs1.FilterMessage("drain report").Len(); n != 0 {
		t.Fatalf("a stopped daemon logged %d drain reports", n)
	}
	finish()
	restarted := time.Now()
	_, logs2 := startWithQueries(t, cfg, nil)
	completedContinue(t, finished(t, env, token, 30*time.Second))
	testpeers.Eventually(t, 20*time.Second, "message deleted", func() bool {
		for _, m := range env.SQS.Messages(env.QueueURL) {
			if m.ID == id && m.Deleted {
				return true
			}
		}
		env.SQS.ExpireVisibility(env.QueueURL, id)
		return false
	})
	r := awaitReport(t, logs2)
	if r.Timeline.DrainingRequested.IsZero() || r.Timeline.DrainingRequested.After(stopped) {
		t.Errorf("draining_requested %s: want the first run's time, before the stop at %s", r.Timeline.DrainingRequested, stopped)
	}
	// Both runs' heartbeats count: more than the second run sent, no more
	// than Auto Scaling recorded (one cut off by the stop is not counted).
	act, _ := env.ASG.Action(token)
	second := 0
	for _, hb := range act.Heartbeats {
		if hb.After(restarted) {
			second++
		}
	}
	if r.HeartbeatsSent <= second || r.HeartbeatsSent > len(act.Heartbeats) {
		t.Errorf("heartbeats_sent %d: want more than the second run's %d, at most the %d recorded", r.HeartbeatsSent, second, len(act.Heartbeats))
	}
	if r.Result != "CONTINUE" || r.Reason != "drained" || r.Timeline.Drained.IsZero() {
		t.Errorf("report %+v", r)
	}
	if got := storedReports(t, cfg); len(got) != 1 {
		t.Fatalf("%d reports in the history after a resume, want 1", len(got))
	}
}
