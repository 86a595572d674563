package daemon_test

import (
	"context"
	"testing"
	"time"

	"github.com/scaledownd/scaledownd/internal/config"
	"github.com/scaledownd/scaledownd/internal/testenv"
	"github.com/scaledownd/scaledownd/internal/testpeers"
)

// The default mode, both, paces the shared queue by instance metadata: an
// instance in service polls the queue once per aws.sqs-idle-interval, and
// continuously once metadata shows it leaving or cannot be read.

// pacedConfig is mode both against the fake IMDS with the given idle
// interval.
func pacedConfig(env *testenv.Env, fake *testpeers.IMDS, idle time.Duration) config.Config {
	cfg := env.Config(env.Instance)
	cfg.AWS.Mode = "both"
	cfg.AWS.IMDSEndpoint = fake.URL()
	cfg.AWS.IMDSPollInterval = 100 * time.Millisecond
	cfg.AWS.SQSIdleInterval = idle
	return cfg
}

// waitReceives waits until message id was received n times and returns
// when the test saw it.
func waitReceives(t *testing.T, env *testenv.Env, id string, n int, within time.Duration) time.Time {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	if err := env.SQS.WaitReceives(ctx, env.QueueURL, id, n); err != nil {
		t.Fatal(err)
	}
	return time.Now()
}

func TestBothModePacesTheQueueWhileInService(t *testing.T) {
	const idle = 2 * time.Second
	env, fake := imdsWorld(t, testenv.Options{})
	// Other instances' live actions circulate on the shared queue: a
	// launch, which the daemon hands back at once (metadata cannot tell an
	// owner its launch), and a termination, which it hides for a minute
	// (its owner's metadata tells it).
	other, leaving := "i-0aaaaaaaaaaaaaaa1", "i-0aaaaaaaaaaaaaaa2"
	env.AddInstance(other)
	env.AddInstance(leaving)
	env.ASG.AddHook(testpeers.AutoScalingHook{Group: testenv.Group, Name: launchHook,
		Transition: testpeers.AutoScalingTransitionLaunching, HeartbeatTimeout: time.Hour, DefaultResult: "ABANDON"})
	id := env.SQS.Send(env.QueueURL, env.ASG.Message(env.ASG.StartAction(testenv.Group, launchHook, other)).Direct())
	_, term := env.Terminate(leaving)
	hidden := env.SQS.Send(env.QueueURL, term.Direct())
	_, logs := start(t, pacedConfig(env, fake, idle))
	// Until metadata has been read once, the queue is the only signal and
	// is polled continuously.
	testpeers.Eventually(t, 10*time.Second, "queue polling paced", func() bool {
		return logs.FilterMessageSnippet("polling the lifecycle queue once per idle interval").Len() > 0
	})
	paced := env.SQS.Receives(env.QueueURL, id)
	// (Until metadata answered, the termination message too was handed
	// back at once: the queue was the only signal.)
	hiddenAt := env.SQS.Receives(env.QueueURL, hidden)

	// Polling continuously, the daemon would take the message back within
	// milliseconds of handing it back; paced, once per idle interval.
	first := waitReceives(t, env, id, paced+1, 30*time.Second)
	third := waitReceives(t, env, id, paced+3, 30*time.Second)
	if gap := third.Sub(first); gap < 2*idle-500*time.Millisecond {
		t.Fatalf("2 paced receives of a foreign message took %s, want about %s or more (one receive per %s idle interval)", gap, 2*idle, idle)
	}
	if deleted := env.SQS.Deleted(env.QueueURL); len(deleted) != 0 {
		t.Fatalf("deleted %v: a live foreign action must never be deleted", deleted)
	}
	if n := env.SQS.Receives(env.QueueURL, hidden) - hiddenAt; n > 1 {
		t.Fatalf("the foreign termination message was received %d times since metadata answered, want at most once (hidden a minute)", n)
	}
}

func TestBothModePollsTheQueueOnceLeaving(t *testing.T) {
	env, fake := imdsWorld(t, testenv.Options{})
	finish := env.Trino.AddBlockedTask()
	defer finish()
	// An idle interval no test waits out: only the termination can make
	// the daemon take its message.
	_, logs := start(t, pacedConfig(env, fake, time.Hour))
	testpeers.Eventually(t, 10*time.Second, "queue polling paced", func() bool {
		return logs.FilterMessageSnippet("polling the lifecycle queue once per idle interval").Len() > 0
	})

	token, msg := env.Terminate(env.Instance)
	id := env.SQS.Send(env.QueueURL, msg.Direct())
	fake.SetTargetLifecycleState("Terminated")
	waitReceives(t, env, id, 1, 10*time.Second)
	finish()
	act := finished(t, env, token, 30*time.Second)
	completedContinue(t, act)
	deleted(t, env, id, 10*time.Second)
	if act.CompletedAt.Before(stateAt(env.Trino, "DRAINED")) {
		t.Fatal("completed before the worker was drained")
	}
}

func TestBothModePollsTheQueueWhenMetadataFails(t *testing.T) {
	env, fake := imdsWorld(t, testenv.Options{})
	env.Trino.AddTask(300 * time.Millisecond)
	_, logs := start(t, pacedConfig(env, fake, time.Hour))
	testpeers.Eventually(t, 10*time.Second, "queue polling paced", func() bool {
		return logs.FilterMessageSnippet("polling the lifecycle queue once per idle interval").Len() > 0
	})

	// Metadata fails, so the queue is the only signal: it is polled at
	// once, not an hour later.
	fake.SetDown(true)
	testpeers.Eventually(t, 30*time.Second, "queue polling continuous", func() bool {
		return logs.FilterMessageSnippet("instance metadata cannot be read").Len() > 0
	})
	token, msg := env.Terminate(env.Instance)
	id := env.SQS.Send(env.QueueURL, msg.Direct())
	completedContinue(t, finished(t, env, token, 30*time.Second))
	deleted(t, env, id, 10*time.Second)
}

// A receive hides messages only briefly, so one whose answer is lost (the
// daemon stopped mid-poll) is back for its owner in seconds; this
// instance's own message is then hidden for aws.visibility-timeout.
func TestReceiveHidesBrieflyAndOwnMessageLong(t *testing.T) {
	env := world(t, testenv.Options{})
	finish := env.Trino.AddBlockedTask()
	defer finish()
	cfg := env.Config(env.Instance)
	start(t, cfg)
	_, msg := env.Terminate(env.Instance)
	id := env.SQS.Send(env.QueueURL, msg.Direct())
	waitReceives(t, env, id, 1, 10*time.Second)
	testpeers.Eventually(t, 10*time.Second, "own message hidden for the visibility timeout", func() bool {
		for _, m := range env.SQS.Messages(env.QueueURL) {
			if m.ID == id {
				return time.Until(m.VisibleAt) > cfg.AWS.VisibilityTimeout-5*time.Second
			}
		}
		return false
	})
	for _, c := range env.SQS.Calls() {
		if c.Op == "ReceiveMessage" && c.Params["VisibilityTimeout"] != "10" {
			t.Fatalf("receive asked for visibility %q, want 10 (seconds)", c.Params["VisibilityTimeout"])
		}
	}
}
