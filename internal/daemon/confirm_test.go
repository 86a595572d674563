package daemon_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/scaledownd/scaledownd/internal/config"
	"github.com/scaledownd/scaledownd/internal/testenv"
	"github.com/scaledownd/scaledownd/internal/testpeers"
)

// No drain AWS did not ask for: a message on the queue changes the worker
// only once AWS confirms its action for this instance — instance metadata
// in mode both, DescribeAutoScalingInstances in mode sqs.

// confirmConfig is the daemon for one mode with a short confirmation
// window; mode both polls the queue continuously (no pacing), so only the
// confirmation decides.
func confirmConfig(env *testenv.Env, fake *testpeers.IMDS, mode string, window time.Duration) config.Config {
	cfg := env.Config(env.Instance)
	if mode == "both" {
		cfg = pacedConfig(env, fake, 0)
	}
	cfg.Lifecycle.ConfirmWindow = window
	return cfg
}

// noWorkerChanges fails if the worker got any request that changes it.
func noWorkerChanges(t *testing.T, env *testenv.Env) {
	t.Helper()
	for _, r := range env.Trino.Requests() {
		if r.Method != http.MethodGet {
			t.Fatalf("the worker got %s %s %q: a change AWS did not ask for", r.Method, r.Path, r.Body)
		}
	}
}

// noActionCalls fails if the daemon heartbeated or completed anything.
func noActionCalls(t *testing.T, env *testenv.Env) {
	t.Helper()
	for _, op := range []string{"RecordLifecycleActionHeartbeat", "CompleteLifecycleAction"} {
		if n := env.ASG.CallCount(op); n != 0 {
			t.Fatalf("%d %s calls for an action AWS did not confirm", n, op)
		}
	}
}

// rejection waits for the error line of a rejected message and checks
// what it names.
func rejection(t *testing.T, logs *observer.ObservedLogs, id, said string) observer.LoggedEntry {
	t.Helper()
	testpeers.Eventually(t, 30*time.Second, "the unconfirmed message logged as an error", func() bool {
		return logs.FilterMessageSnippet("not confirmed by AWS for this instance").Len() > 0
	})
	lines := logs.FilterMessageSnippet("not confirmed by AWS for this instance").All()
	if len(lines) != 1 {
		t.Fatalf("%d error lines, want exactly one", len(lines))
	}
	l := lines[0]
	f := l.ContextMap()
	awsSaid, _ := f["aws_said"].(string)
	if l.Level != zapcore.ErrorLevel || f["message_id"] != id || f["instance_id"] != testenv.InstanceID ||
		f["asg"] != testenv.Group || f["hook"] != testenv.Hook || !strings.Contains(awsSaid, said) {
		t.Fatalf("rejection logged at %s with %v, want an error naming message %s, instance, group, hook and %q", l.Level, f, id, said)
	}
	return l
}

func TestOwnMessageWithoutAnActionNeverChangesTheWorker(t *testing.T) {
	for _, tt := range []struct{ mode, said string }{
		{"both", "target-lifecycle-state InService; Auto Scaling: InService in " + testenv.Group},
		{"sqs", "Auto Scaling: InService in " + testenv.Group},
	} {
		t.Run(tt.mode, func(t *testing.T) {
			env, fake := imdsWorld(t, testenv.Options{})
			d, logs := start(t, confirmConfig(env, fake, tt.mode, 2*time.Second))
			// Well-formed, for this instance, group and hook; but Auto
			// Scaling never started an action: the instance is InService.
			id := env.SQS.Send(env.QueueURL, testpeers.LifecycleMessage{Group: testenv.Group, Hook: testenv.Hook,
				InstanceID: env.Instance, Token: "0f0f0f0f-dead-4bad-8bad-0f0f0f0f0f0f"}.Direct())

			rejection(t, logs, id, tt.said)
			waitMetric(t, d, func(v float64) bool { return v == 1 }, "scaledownd_lifecycle_unconfirmed_total", "transition", "terminating")
			// Auto Scaling shows nothing to act on: deleted like a stale message.
			deleted(t, env, id, 30*time.Second)
			waitMetric(t, d, func(v float64) bool { return v == 1 }, "scaledownd_sqs_stale_messages_deleted_total", "reason", "not-waiting")
			noWorkerChanges(t, env)
			noActionCalls(t, env)
			if tt.mode == "both" {
				// The re-checks within the window read metadata only; Auto
				// Scaling is asked at start-up, by the window's last check
				// and by the stale check.
				if n := env.ASG.CallCount("DescribeAutoScalingInstances"); n != 3 {
					t.Errorf("%d DescribeAutoScalingInstances calls, want 3 (start-up, last check, stale check)", n)
				}
			}
		})
	}
}

func TestEndedActionWhileInServiceIsNotDrained(t *testing.T) {
	env, fake := imdsWorld(t, testenv.Options{})
	// An action that ran and ended (completed elsewhere); the instance is
	// back in service, as after a return from a warm pool. Its old
	// notification turns up again.
	token, msg := env.Terminate(env.Instance)
	client := autoscaling.New(autoscaling.Options{Region: testenv.Region, BaseEndpoint: aws.String(env.ASG.URL()),
		Credentials: aws.AnonymousCredentials{}})
	if _, err := client.CompleteLifecycleAction(context.Background(), &autoscaling.CompleteLifecycleActionInput{
		AutoScalingGroupName: aws.String(testenv.Group), LifecycleHookName: aws.String(testenv.Hook),
		LifecycleActionToken: aws.String(token), LifecycleActionResult: aws.String("CONTINUE"),
	}); err != nil {
		t.Fatal(err)
	}
	env.AddInstance(env.Instance)
	completes := env.ASG.CallCount("CompleteLifecycleAction")

	d, logs := start(t, confirmConfig(env, fake, "both", 2*time.Second))
	id := env.SQS.Send(env.QueueURL, msg.Direct())
	rejection(t, logs, id, "target-lifecycle-state InService; Auto Scaling: InService in "+testenv.Group)
	deleted(t, env, id, 30*time.Second)
	waitMetric(t, d, func(v float64) bool { return v == 1 }, "scaledownd_lifecycle_unconfirmed_total", "transition", "terminating")
	noWorkerChanges(t, env)
	if n := env.ASG.CallCount("CompleteLifecycleAction") - completes; n != 0 {
		t.Fatalf("%d completion calls by the daemon, want none", n)
	}
}

func TestMessageBeforeMetadataFlipsIsDrainedOnceConfirmed(t *testing.T) {
	env, fake := imdsWorld(t, testenv.Options{})
	env.Trino.AddTask(300 * time.Millisecond)
	d, logs := start(t, confirmConfig(env, fake, "both", time.Minute))
	// Auto Scaling has started the action, the message is on the queue,
	// but metadata still says InService.
	token, msg := env.Terminate(env.Instance)
	id := env.SQS.Send(env.QueueURL, msg.Direct())
	testpeers.Eventually(t, 10*time.Second, "the message waits for confirmation", func() bool {
		return logs.FilterMessageSnippet("AWS does not confirm this lifecycle action (yet)").Len() > 0
	})
	noWorkerChanges(t, env)
	fake.SetTargetLifecycleState("Terminated")
	act := finished(t, env, token, 30*time.Second)
	completedContinue(t, act)
	deleted(t, env, id, 10*time.Second)
	if n := statePuts(env.Trino, "DRAINING"); n != 1 {
		t.Fatalf("DRAINING requested %d times, want 1", n)
	}
	if n := logs.FilterLevelExact(zapcore.ErrorLevel).Len(); n != 0 {
		t.Fatalf("%d error lines for an action AWS confirmed within the window", n)
	}
	if v := metricValue(t, d, "scaledownd_lifecycle_unconfirmed_total"); v != 0 {
		t.Fatalf("unconfirmed_total = %v, want 0", v)
	}
}

// Metadata that answers but never shows the termination: Auto Scaling,
// asked at the end of the window, confirms it; the worker is drained late
// rather than not at all.
func TestMetadataThatNeverFlipsIsOverruledByAutoScaling(t *testing.T) {
	env, fake := imdsWorld(t, testenv.Options{HeartbeatTimeout: 30 * time.Second})
	_, logs := start(t, confirmConfig(env, fake, "both", 2*time.Second))
	token, msg := env.Terminate(env.Instance)
	id := env.SQS.Send(env.QueueURL, msg.Direct())
	completedContinue(t, finished(t, env, token, 30*time.Second))
	deleted(t, env, id, 10*time.Second)
	confirmed := logs.FilterMessage("lifecycle action confirmed by AWS").All()
	if len(confirmed) != 1 || confirmed[0].ContextMap()["confirmed_by"] != "autoscaling" {
		t.Fatalf("confirmation logged %v, want once, by autoscaling", confirmed)
	}
	if n := logs.FilterMessageSnippet("not confirmed by AWS").Len(); n != 0 {
		t.Fatalf("%d rejections of an action Auto Scaling holds", n)
	}
}

func TestSQSModeConfirmsThroughAutoScaling(t *testing.T) {
	env := world(t, testenv.Options{HeartbeatTimeout: 30 * time.Second})
	env.Trino.AddTask(300 * time.Millisecond)
	cfg := env.Config(env.Instance)
	cfg.Lifecycle.ConfirmWindow = 20 * time.Second // re-checked every 5 s
	_, logs := start(t, cfg)
	token, msg := env.Terminate(env.Instance)
	// DescribeAutoScalingInstances lags behind the notification.
	env.ASG.SetInstanceState(env.Instance, "InService")
	id := env.SQS.Send(env.QueueURL, msg.Direct())
	testpeers.Eventually(t, 10*time.Second, "the message waits for confirmation", func() bool {
		return logs.FilterMessageSnippet("AWS does not confirm this lifecycle action (yet)").Len() > 0
	})
	noWorkerChanges(t, env)
	env.ASG.SetInstanceState(env.Instance, "Terminating:Wait")
	completedContinue(t, finished(t, env, token, 30*time.Second))
	deleted(t, env, id, 10*time.Second)
	confirmed := logs.FilterMessage("lifecycle action confirmed by AWS").All()
	if len(confirmed) != 1 || confirmed[0].ContextMap()["confirmed_by"] != "autoscaling" {
		t.Fatalf("confirmation logged %v, want once, by autoscaling", confirmed)
	}
	if n := statePuts(env.Trino, "DRAINING"); n != 1 {
		t.Fatalf("DRAINING requested %d times, want 1", n)
	}
}
