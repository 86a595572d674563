package daemon_test

import (
	"testing"
	"time"

	"github.com/scaledownd/scaledownd/internal/testenv"
	"github.com/scaledownd/scaledownd/internal/testpeers"
)

const launchHook = "trino-ready"

// launchWorld adds a launching hook and puts the instance in Pending:Wait
// with a lifecycle action on it.
func launchWorld(t *testing.T, opts testenv.Options) (*testenv.Env, string, testpeers.LifecycleMessage) {
	t.Helper()
	env := world(t, opts)
	env.ASG.AddHook(testpeers.AutoScalingHook{Group: testenv.Group, Name: launchHook,
		Transition: testpeers.AutoScalingTransitionLaunching, HeartbeatTimeout: 2 * time.Second, DefaultResult: "ABANDON"})
	token := env.ASG.StartAction(testenv.Group, launchHook, env.Instance)
	return env, token, env.ASG.Message(token)
}

func TestLaunchHookContinuesOnceTheWorkerIsActive(t *testing.T) {
	env, token, msg := launchWorld(t, testenv.Options{Trino: testpeers.TrinoOptions{StartupDelay: 3 * time.Second}})
	cfg := env.Config(env.Instance)
	start(t, cfg)
	id := env.SQS.Send(env.QueueURL, msg.Direct())
	act := finished(t, env, token, 30*time.Second)
	completedContinue(t, act)
	deleted(t, env, id, 10*time.Second)
	if since := act.CompletedAt.Sub(act.Started); since < 2500*time.Millisecond {
		t.Fatalf("completed %s after the start, before the worker finished starting (3 s)", since)
	}
	if len(act.Heartbeats) < 2 {
		t.Fatalf("%d heartbeats while the worker started (timeout 2 s)", len(act.Heartbeats))
	}
	if env.Trino.State() != "ACTIVE" || statePuts(env.Trino, "") != 0 {
		t.Fatalf("worker %s after %d state changes; a launch must not touch a starting worker", env.Trino.State(), statePuts(env.Trino, ""))
	}
}

// abandonedAtTimeout fails unless the launch action was completed with
// ABANDON, and not before its launch timeout.
func abandonedAtTimeout(t *testing.T, act testpeers.AutoScalingAction, timeout time.Duration) {
	t.Helper()
	if act.State != testpeers.AutoScalingActionCompleted || act.Result != "ABANDON" {
		t.Fatalf("action ended %s/%s (%s), want completed with ABANDON", act.State, act.Result, act.ExpiryReason)
	}
	if held := act.CompletedAt.Sub(act.Started); held < timeout-100*time.Millisecond {
		t.Fatalf("abandoned after %s, before the %s launch timeout", held, timeout)
	}
}

func TestLaunchHookAbandonsAWorkerThatNeverGetsReady(t *testing.T) {
	env, token, msg := launchWorld(t, testenv.Options{NoTrino: true})
	cfg := env.Config(env.Instance)
	cfg.Lifecycle.LaunchTimeout = 2 * time.Second
	start(t, cfg)
	env.SQS.Send(env.QueueURL, msg.Direct())
	act := finished(t, env, token, 30*time.Second)
	abandonedAtTimeout(t, act, 2*time.Second)
}

func TestPendingLaunchAtStartCompletesWithoutAMessage(t *testing.T) {
	env, token, _ := launchWorld(t, testenv.Options{})
	fake := testpeers.NewIMDS(testpeers.IMDSOptions{InstanceID: env.Instance, Region: testenv.Region})
	defer fake.Close()
	fake.SetTargetLifecycleState("InService")
	cfg := env.Config(env.Instance)
	cfg.AWS.Mode = "both"
	cfg.AWS.IMDSEndpoint = fake.URL()
	start(t, cfg)
	completedContinue(t, finished(t, env, token, 20*time.Second))
}

func TestWarmPoolKeepsTheWorkerAndReactivatesIt(t *testing.T) {
	env, fake := imdsWorld(t, testenv.Options{})
	cfg := env.Config(env.Instance)
	cfg.AWS.Mode = "imds"
	cfg.AWS.QueueURL = ""
	cfg.AWS.IMDSEndpoint = fake.URL()
	cfg.AWS.IMDSPollInterval = 100 * time.Millisecond
	start(t, cfg)

	// Scale-in into the warm pool: drain, complete, but the process stays.
	token, _ := env.Terminate(env.Instance)
	fake.SetTargetLifecycleState("Warmed:Stopped")
	completedContinue(t, finished(t, env, token, 20*time.Second))
	if env.Trino.State() != "DRAINED" || statePuts(env.Trino, "SHUTTING_DOWN") != 0 {
		t.Fatalf("worker %s; going to a warm pool it must stay DRAINED, not exit", env.Trino.State())
	}
	select {
	case <-env.Trino.Exited():
		t.Fatal("worker process exited")
	default:
	}
}
