package daemon_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/scaledownd/scaledownd/internal/config"
	"github.com/scaledownd/scaledownd/internal/testenv"
	"github.com/scaledownd/scaledownd/internal/testpeers"
)

func TestMain(m *testing.M) {
	testenv.HermeticAWS()
	code := m.Run()
	testpeers.StopSharedMoto()
	os.Exit(code)
}

// world starts the peers for one test.
func world(t *testing.T, opts testenv.Options) *testenv.Env {
	t.Helper()
	env, err := testenv.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(env.Close)
	return env
}

// start runs the daemon in-process; its logs go to the test log and to the
// returned observer.
func start(t *testing.T, cfg config.Config) (*testenv.Daemon, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zap.DebugLevel)
	log := zap.New(zapcore.NewTee(core, zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel)).Core()))
	d, err := testenv.StartDaemon(context.Background(), cfg, log)
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

// finished waits until the lifecycle action is no longer pending.
func finished(t *testing.T, env *testenv.Env, token string, within time.Duration) testpeers.AutoScalingAction {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	act, err := env.ASG.WaitAction(ctx, token)
	if err != nil {
		t.Fatalf("lifecycle action still pending after %s: %v", within, err)
	}
	return act
}

func deleted(t *testing.T, env *testenv.Env, id string, within time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	if err := env.SQS.WaitDeleted(ctx, env.QueueURL, id); err != nil {
		for _, m := range env.SQS.Messages(env.QueueURL) {
			t.Logf("message %s: receives %d, visible %v (at %s), deleted %v", m.ID, m.ReceiveCount, m.Visible, m.VisibleAt.Format("15:04:05.000"), m.Deleted)
		}
		for _, c := range env.SQS.Calls() {
			if c.Op != "ReceiveMessage" {
				t.Logf("sqs call %s %s %v", c.At.Format("15:04:05.000"), c.Op, c.Params["VisibilityTimeout"])
			}
		}
		t.Fatalf("message %s not deleted within %s: %v", id, within, err)
	}
}

func completedContinue(t *testing.T, act testpeers.AutoScalingAction) {
	t.Helper()
	if act.State != testpeers.AutoScalingActionCompleted || act.Result != "CONTINUE" {
		t.Fatalf("action ended %s/%s (%s), want completed with CONTINUE", act.State, act.Result, act.ExpiryReason)
	}
}

// stateAt returns when the worker first entered state, or the zero time.
func stateAt(w *testpeers.TrinoWorker, state string) time.Time {
	for _, c := range w.StateHistory() {
		if c.State == state {
			return c.At
		}
	}
	return time.Time{}
}

// statePuts counts PUT /v1/info/state requests to the worker with body state.
func statePuts(w *testpeers.TrinoWorker, state string) int {
	n := 0
	for _, r := range w.Requests() {
		if r.Method == http.MethodPut && r.Path == "/v1/info/state" && (state == "" || strings.Contains(r.Body, state)) {
			n++
		}
	}
	return n
}

func TestDrainAndCompleteForEveryMessageShape(t *testing.T) {
	shapes := []struct {
		name string
		body func(testpeers.LifecycleMessage) string
	}{
		{"direct", testpeers.LifecycleMessage.Direct},
		{"sns", testpeers.LifecycleMessage.SNS},
		{"eventbridge", testpeers.LifecycleMessage.EventBridge},
	}
	for _, s := range shapes {
		t.Run(s.name, func(t *testing.T) {
			env := world(t, testenv.Options{})
			env.Trino.AddTask(600 * time.Millisecond)
			d, logs := start(t, env.Config(env.Instance))

			token, msg := env.Terminate(env.Instance)
			id := env.SQS.Send(env.QueueURL, s.body(msg))
			act := finished(t, env, token, 30*time.Second)
			completedContinue(t, act)
			deleted(t, env, id, 10*time.Second)

			drained := stateAt(env.Trino, "DRAINED")
			if drained.IsZero() {
				t.Fatalf("worker never reached DRAINED: %v", env.Trino.StateHistory())
			}
			if act.CompletedAt.Before(drained) {
				t.Fatalf("completed at %s, before the worker was DRAINED at %s", act.CompletedAt, drained)
			}
			// Shutdown after drain: the idle worker is told to exit.
			select {
			case <-env.Trino.Exited():
			case <-time.After(10 * time.Second):
				t.Fatal("drained worker was not shut down")
			}
			waitMetric(t, d, func(v float64) bool { return v == 1 }, "scaledownd_lifecycle_actions_completed_total", "result", "CONTINUE", "reason", "drained")
			checkActionLogs(t, logs, token)
			// No token, token prefix or instance id in /metrics: no
			// high-cardinality labels, no secrets.
			m := string(scrape(t, d.Addr))
			for _, leak := range []string{token[:8], env.Instance} {
				if strings.Contains(m, leak) {
					t.Fatalf("/metrics contains %q", leak)
				}
			}
		})
	}
}

// metricValue sums the samples of a metric whose labels match; labels come
// in name, value pairs.
func metricValue(t *testing.T, d *testenv.Daemon, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := d.Metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue next
				}
			}
			switch {
			case m.GetCounter() != nil:
				sum += m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				sum += m.GetGauge().GetValue()
			}
		}
	}
	return sum
}

func TestTestNotificationIsDeleted(t *testing.T) {
	env := world(t, testenv.Options{})
	d, _ := start(t, env.Config(env.Instance))
	id := env.SQS.Send(env.QueueURL, env.ASG.TestNotification(testenv.Group))
	deleted(t, env, id, 10*time.Second)
	if n := env.ASG.CallCount("CompleteLifecycleAction"); n != 0 {
		t.Fatalf("CompleteLifecycleAction called %d times for a test notification", n)
	}
	waitMetric(t, d, func(v float64) bool { return v == 1 }, "scaledownd_sqs_messages_received_total", "kind", "test")
}

func TestMalformedMessageIsKeptAndBackedOff(t *testing.T) {
	env := world(t, testenv.Options{})
	d, logs := start(t, env.Config(env.Instance))
	id := env.SQS.Send(env.QueueURL, `{"LifecycleTransition":"autoscaling:EC2_INSTANCE_TERMINATING","EC2InstanceId":42}`)
	testpeers.Eventually(t, 10*time.Second, "malformed message counted", func() bool {
		return metricValue(t, d, "scaledownd_sqs_messages_received_total", "kind", "malformed") >= 1
	})
	testpeers.Eventually(t, 5*time.Second, "visibility of the malformed message set", func() bool {
		for _, m := range env.SQS.Messages(env.QueueURL) {
			if m.ID == id {
				return !m.Visible && time.Until(m.VisibleAt) > 20*time.Second
			}
		}
		return false
	})
	for _, m := range env.SQS.Messages(env.QueueURL) {
		if m.ID == id && m.Deleted {
			t.Fatal("malformed message was deleted")
		}
	}
	if logs.FilterMessageSnippet("not a lifecycle action scaledownd understands").FilterField(zap.String("message_id", id)).Len() == 0 {
		t.Fatal("no log line names the malformed message")
	}
}

func TestForeignMessageIsReleasedAndHandledByItsOwner(t *testing.T) {
	const other = "i-0fedcba9876543210"
	env := world(t, testenv.Options{})
	env.AddInstance(other)
	// Only this instance's daemon runs at first: it must hand the other
	// instance's message back, never delete it.
	start(t, env.Config(env.Instance))
	token, msg := env.Terminate(other)
	id := env.SQS.Send(env.QueueURL, msg.Direct())
	testpeers.Eventually(t, 10*time.Second, "foreign message handed back with visibility 0", func() bool {
		for _, c := range env.SQS.Calls() {
			if c.Op == "ChangeMessageVisibilityBatch" && c.Params["Entries.1.VisibilityTimeout"] == "0" {
				return true
			}
		}
		return false
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := env.SQS.WaitReceives(ctx, env.QueueURL, id, 2); err != nil {
		t.Fatalf("released message should be received again at once: %v", err)
	}
	if n := env.SQS.CallCount("DeleteMessage"); n != 0 {
		t.Fatalf("a daemon deleted %d messages that were not its own", n)
	}
	if act, _ := env.ASG.Action(token); act.State != testpeers.AutoScalingActionPending {
		t.Fatalf("foreign action touched: %+v", act)
	}
	if n := statePuts(env.Trino, ""); n != 0 {
		t.Fatalf("this worker got %d state changes for another instance's action", n)
	}

	// The owner starts and handles it.
	owner := testpeers.NewTrino(testpeers.TrinoOptions{Version: "476", GracePeriod: 100 * time.Millisecond})
	defer owner.Close()
	cfg := env.Config(other)
	cfg.Trino.URL = owner.URL()
	start(t, cfg)
	completedContinue(t, finished(t, env, token, 60*time.Second))
	deleted(t, env, id, 10*time.Second)
	if stateAt(owner, "DRAINED").IsZero() {
		t.Fatal("owner's worker was not drained")
	}
	if env.Trino.State() != "ACTIVE" {
		t.Fatalf("the other worker's state changed to %s", env.Trino.State())
	}
}

func TestDuplicateDeliveryDrainsAndCompletesOnce(t *testing.T) {
	env := world(t, testenv.Options{})
	env.Trino.AddTask(time.Second)
	token, msg := env.Terminate(env.Instance)
	// The same notification twice (at-least-once delivery), plus the same
	// action through SNS: one drain, one completion, every message deleted.
	ids := []string{
		env.SQS.Send(env.QueueURL, msg.Direct()),
		env.SQS.Send(env.QueueURL, msg.Direct()),
		env.SQS.Send(env.QueueURL, msg.SNS()),
	}
	start(t, env.Config(env.Instance))
	completedContinue(t, finished(t, env, token, 30*time.Second))
	for _, id := range ids {
		deleted(t, env, id, 10*time.Second)
	}
	if n := env.ASG.CallCount("CompleteLifecycleAction"); n != 1 {
		t.Fatalf("CompleteLifecycleAction called %d times, want 1", n)
	}
	if n := statePuts(env.Trino, "DRAINING"); n != 1 {
		t.Fatalf("DRAINING requested %d times, want 1", n)
	}
	// A redelivery after completion is recognised and deleted, not drained.
	late := env.SQS.Send(env.QueueURL, msg.EventBridge())
	deleted(t, env, late, 10*time.Second)
	if n := env.ASG.CallCount("CompleteLifecycleAction"); n != 1 {
		t.Fatalf("CompleteLifecycleAction called %d times after a late redelivery, want 1", n)
	}
}

func TestCoordinatorIsNeverDrained(t *testing.T) {
	env := world(t, testenv.Options{Trino: testpeers.TrinoOptions{Coordinator: true}})
	d, logs := start(t, env.Config(env.Instance))
	token, msg := env.Terminate(env.Instance)
	id := env.SQS.Send(env.QueueURL, msg.Direct())
	completedContinue(t, finished(t, env, token, 20*time.Second))
	deleted(t, env, id, 10*time.Second)
	if n := statePuts(env.Trino, ""); n != 0 {
		t.Fatalf("coordinator got %d state change requests", n)
	}
	if logs.FilterLevelExact(zap.ErrorLevel).FilterMessageSnippet("coordinator").Len() == 0 {
		t.Fatal("no error log names the coordinator problem")
	}
	waitMetric(t, d, func(v float64) bool { return v == 1 }, "scaledownd_lifecycle_actions_completed_total", "reason", "coordinator")
}

func TestForbiddenIsReportedAndCompletesAtTheDeadline(t *testing.T) {
	env := world(t, testenv.Options{Trino: testpeers.TrinoOptions{WriteUsers: []string{"admin"}}})
	cfg := env.Config(env.Instance)
	cfg.Lifecycle.MaxDrainTime = 3 * time.Second
	d, logs := start(t, cfg)
	token, msg := env.Terminate(env.Instance)
	env.SQS.Send(env.QueueURL, msg.Direct())
	act := finished(t, env, token, 20*time.Second)
	completedContinue(t, act)
	if early := act.Started.Add(cfg.Lifecycle.MaxDrainTime - 100*time.Millisecond); act.CompletedAt.Before(early) {
		t.Fatalf("completed %s after start, before the %s deadline", act.CompletedAt.Sub(act.Started), cfg.Lifecycle.MaxDrainTime)
	}
	if env.Trino.State() != "ACTIVE" {
		t.Fatalf("worker state %s, want ACTIVE (the drain was refused)", env.Trino.State())
	}
	if logs.FilterLevelExact(zap.ErrorLevel).FilterMessageSnippet("access control must allow").Len() == 0 {
		t.Fatal("no error log names the access-control fix")
	}
	waitMetric(t, d, func(v float64) bool { return v >= 1 }, "scaledownd_trino_api_requests_total", "outcome", "forbidden")
	waitMetric(t, d, func(v float64) bool { return v == 1 }, "scaledownd_lifecycle_actions_completed_total", "reason", "deadline")
}

func TestWorkerNotRunningCompletesAtOnce(t *testing.T) {
	env := world(t, testenv.Options{NoTrino: true})
	d, _ := start(t, env.Config(env.Instance))
	token, msg := env.Terminate(env.Instance)
	id := env.SQS.Send(env.QueueURL, msg.Direct())
	act := finished(t, env, token, 20*time.Second)
	completedContinue(t, act)
	deleted(t, env, id, 10*time.Second)
	waitMetric(t, d, func(v float64) bool { return v == 1 }, "scaledownd_lifecycle_actions_completed_total", "reason", "not-running")
}

func TestHeartbeatsKeepAShortTimeoutActionAlive(t *testing.T) {
	const hbt = time.Second
	env := world(t, testenv.Options{HeartbeatTimeout: hbt})
	env.Trino.AddTask(4 * time.Second) // the drain outlasts the timeout four times
	start(t, env.Config(env.Instance))
	token, msg := env.Terminate(env.Instance)
	env.SQS.Send(env.QueueURL, msg.Direct())
	act := finished(t, env, token, 30*time.Second)
	completedContinue(t, act)
	if len(act.Heartbeats) < 4 {
		t.Fatalf("%d heartbeats over a %s drain with a %s heartbeat timeout", len(act.Heartbeats), act.CompletedAt.Sub(act.Started), hbt)
	}
	prev := act.Started
	for _, hb := range append(act.Heartbeats, act.CompletedAt) {
		if gap := hb.Sub(prev); gap >= hbt {
			t.Fatalf("gap of %s between heartbeats reaches the %s timeout", gap, hbt)
		}
		prev = hb
	}
	if stateAt(env.Trino, "DRAINED").IsZero() {
		t.Fatal("worker not drained")
	}
}

func TestContinueIsSentBeforeTheGlobalTimeout(t *testing.T) {
	env := world(t, testenv.Options{HeartbeatTimeout: time.Second, GlobalTimeout: 5 * time.Second})
	finish := env.Trino.AddBlockedTask() // a query that never ends
	defer finish()
	cfg := env.Config(env.Instance)
	cfg.Lifecycle.MaxDrainTime = time.Hour
	cfg.Lifecycle.SafetyMargin = time.Second // capped to a tenth: 0.5 s
	d, _ := start(t, cfg)
	token, msg := env.Terminate(env.Instance)
	env.SQS.Send(env.QueueURL, msg.Direct())
	act := finished(t, env, token, 30*time.Second)
	completedContinue(t, act)
	if !act.CompletedAt.Before(act.GlobalDeadline) {
		t.Fatalf("completed at %s, not before the global deadline %s", act.CompletedAt, act.GlobalDeadline)
	}
	waitMetric(t, d, func(v float64) bool { return v == 1 }, "scaledownd_lifecycle_actions_completed_total", "reason", "deadline")
}

func TestStopDuringDrainLeavesTheActionForTheNextStart(t *testing.T) {
	env := world(t, testenv.Options{HeartbeatTimeout: 5 * time.Second})
	finish := env.Trino.AddBlockedTask()
	defer finish()
	d, _ := start(t, env.Config(env.Instance))
	token, msg := env.Terminate(env.Instance)
	id := env.SQS.Send(env.QueueURL, msg.Direct())
	testpeers.Eventually(t, 10*time.Second, "drain started", func() bool { return statePuts(env.Trino, "DRAINING") == 1 })

	stopped := time.Now()
	if err := d.Stop(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(stopped); took > 5*time.Second {
		t.Fatalf("stop took %s", took)
	}
	if n := env.ASG.CallCount("CompleteLifecycleAction"); n != 0 {
		t.Fatalf("a stopping daemon completed the action (%d calls)", n)
	}
	for _, m := range env.SQS.Messages(env.QueueURL) {
		if m.ID == id && m.Deleted {
			t.Fatal("a stopping daemon deleted the message")
		}
	}

	// The next start resumes from its state directory: it joins the drain
	// under way (the worker is already DRAINING) and completes the action.
	finish()
	start(t, env.Config(env.Instance))
	completedContinue(t, finished(t, env, token, 30*time.Second))
	// The message may have been taken by the stopped daemon's last long
	// poll, so the resumed job could only delete it through an old receipt
	// handle. When its visibility runs out it comes back, is recognised as a
	// finished action and deleted. Let it run out as often as needed.
	testpeers.Eventually(t, 20*time.Second, "message deleted", func() bool {
		for _, m := range env.SQS.Messages(env.QueueURL) {
			if m.ID == id && m.Deleted {
				return true
			}
		}
		env.SQS.ExpireVisibility(env.QueueURL, id)
		return false
	})
	if n := statePuts(env.Trino, "DRAINING"); n != 1 {
		t.Fatalf("DRAINING requested %d times; the resumed drain should join the one under way", n)
	}
}

func TestIdleWithoutQueue(t *testing.T) {
	env := world(t, testenv.Options{})
	cfg := env.Config(env.Instance)
	cfg.AWS.QueueURL = ""
	d, logs := start(t, cfg)
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get("http://" + d.Addr + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s = %d %s while idle", path, resp.StatusCode, body)
		}
	}
	if logs.FilterLevelExact(zap.WarnLevel).FilterMessageSnippet("graceful scale-down handler is not running").Len() != 1 {
		t.Fatal("want exactly one warning that the handler is not running")
	}
	if n := env.SQS.CallCount("ReceiveMessage"); n != 0 {
		t.Fatalf("idle daemon polled %d times", n)
	}
}

func TestIdleWhenNotInAGroup(t *testing.T) {
	env := world(t, testenv.Options{})
	d, logs := start(t, env.Config("i-00000000000000042"))
	_ = d
	if logs.FilterMessageSnippet("not in an Auto Scaling group").Len() != 1 {
		t.Fatal("want one warning that the instance is in no group")
	}
	if n := env.SQS.CallCount("ReceiveMessage"); n != 0 {
		t.Fatalf("daemon outside any group polled %d times", n)
	}
}

// checkActionLogs asserts that every log line about the action carries its
// identifying fields, and that no line holds the whole token.
func checkActionLogs(t *testing.T, logs *observer.ObservedLogs, token string) {
	t.Helper()
	about := 0
	for _, e := range logs.All() {
		fields := e.ContextMap()
		for k, v := range fields {
			if s, ok := v.(string); ok && strings.Contains(s, token) {
				t.Errorf("log %q field %s holds the whole token", e.Message, k)
			}
		}
		if strings.Contains(e.Message, token) {
			t.Errorf("log message %q holds the whole token", e.Message)
		}
		if _, ok := fields["token"]; !ok {
			continue
		}
		about++
		for _, k := range []string{"instance_id", "asg", "hook", "state"} {
			if v, ok := fields[k].(string); !ok || v == "" {
				t.Errorf("log %q lacks %s: %v", e.Message, k, fields)
			}
		}
	}
	if about < 5 {
		t.Errorf("only %d log lines about the action", about)
	}
}

// waitMetric waits until the metric satisfies ok: metrics are recorded just
// after the peers see the effect, so a check must not race them.
func waitMetric(t *testing.T, d *testenv.Daemon, ok func(float64) bool, name string, labels ...string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		v := metricValue(t, d, name, labels...)
		if ok(v) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s%v = %v after 5 s", name, labels, v)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestDryRunChangesNothing(t *testing.T) {
	env := world(t, testenv.Options{})
	cfg := env.Config(env.Instance)
	cfg.DryRun = true
	d, logs := start(t, cfg)
	token, msg := env.Terminate(env.Instance)
	own := env.SQS.Send(env.QueueURL, msg.Direct())
	test := env.SQS.Send(env.QueueURL, env.ASG.TestNotification(testenv.Group))
	waitMetric(t, d, func(v float64) bool { return v >= 1 }, "scaledownd_lifecycle_actions_completed_total", "result", "dry-run")
	for _, want := range []string{"dry run: would request trino state", "dry run: would record a lifecycle action heartbeat",
		"dry run: would complete the lifecycle action", "dry run: would delete the lifecycle message"} {
		if logs.FilterMessageSnippet(want).Len() == 0 {
			t.Errorf("no log line %q", want)
		}
	}
	if n := statePuts(env.Trino, ""); n != 0 {
		t.Fatalf("%d state changes in a dry run", n)
	}
	for _, op := range []string{"RecordLifecycleActionHeartbeat", "CompleteLifecycleAction"} {
		if n := env.ASG.CallCount(op); n != 0 {
			t.Fatalf("%d %s calls in a dry run", n, op)
		}
	}
	if n := env.SQS.CallCount("DeleteMessage"); n != 0 {
		t.Fatalf("%d deletions in a dry run", n)
	}
	if a, _ := env.ASG.Action(token); a.State != testpeers.AutoScalingActionPending {
		t.Fatalf("action %s in a dry run", a.State)
	}
	// Every message was handed straight back once, and is never hidden
	// for more than a minute.
	testpeers.Eventually(t, 5*time.Second, "messages handed back", func() bool {
		n := 0
		for _, c := range env.SQS.Calls() {
			if c.Op == "ChangeMessageVisibility" && c.Params["VisibilityTimeout"] == "0" {
				n++
			}
		}
		return n >= 2
	})
	for _, m := range env.SQS.Messages(env.QueueURL) {
		if (m.ID == own || m.ID == test) && time.Until(m.VisibleAt) > 61*time.Second {
			t.Fatalf("message %s hidden until %s in a dry run", m.ID, m.VisibleAt)
		}
	}
}

// TestResumeAfterTheInstanceLeftItsGroup: a daemon killed after completion
// restarts when Auto Scaling no longer lists the instance; it still finishes
// what its state directory holds (deletes the message) instead of idling.
func TestResumeAfterTheInstanceLeftItsGroup(t *testing.T) {
	env := world(t, testenv.Options{})
	env.SQS.InjectFault("DeleteMessage", testpeers.Fault{Hang: true})
	d, _ := start(t, env.Config(env.Instance))
	token, msg := env.Terminate(env.Instance)
	id := env.SQS.Send(env.QueueURL, msg.Direct())
	completedContinue(t, finished(t, env, token, 20*time.Second))
	testpeers.Eventually(t, 5*time.Second, "delete attempted", func() bool { return env.SQS.CallCount("DeleteMessage") > 0 })
	if err := d.Stop(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	env.SQS.ClearFaults()
	if _, ok := env.ASG.Instance(env.Instance); ok {
		t.Fatal("the fake still lists the terminated instance")
	}
	_, logs := start(t, env.Config(env.Instance))
	testpeers.Eventually(t, 20*time.Second, "message deleted after the restart", func() bool {
		for _, m := range env.SQS.Messages(env.QueueURL) {
			if m.ID == id && m.Deleted {
				return true
			}
		}
		env.SQS.ExpireVisibility(env.QueueURL, id) // the hung delete's receive may still hold it
		return false
	})
	if logs.FilterMessageSnippet("no longer in an Auto Scaling group").Len() != 1 {
		t.Fatal("want one warning that the instance left its group")
	}
}
