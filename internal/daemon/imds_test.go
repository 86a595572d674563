package daemon_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/scaledownd/scaledownd/internal/daemon"
	"github.com/scaledownd/scaledownd/internal/metrics"
	"github.com/scaledownd/scaledownd/internal/testenv"
	"github.com/scaledownd/scaledownd/internal/testpeers"
)

func freePort(t *testing.T) string {
	t.Helper()
	port, err := testpeers.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// TestIdentityFromRealIMDSMock resolves instance id and region through
// IMDSv2 from amazon-ec2-metadata-mock and then drains and completes an
// action for that instance.
func TestIdentityFromRealIMDSMock(t *testing.T) {
	imdsURL := testpeers.RunAEMM(t, nil)
	env := world(t, testenv.Options{InstanceID: testpeers.AEMMInstance})
	cfg := env.Config("")
	cfg.AWS.Region = ""
	cfg.AWS.IMDSEndpoint = imdsURL
	_, logs := start(t, cfg)
	if logs.FilterMessage("identity resolved").Len() != 1 {
		t.Fatal("identity not resolved from instance metadata")
	}
	token, msg := env.Terminate(testpeers.AEMMInstance)
	id := env.SQS.Send(env.QueueURL, msg.Direct())
	completedContinue(t, finished(t, env, token, 30*time.Second))
	deleted(t, env, id, 10*time.Second)
}

// TestIMDSDownAtStart: the daemon retries, is not ready, does not crash,
// and becomes ready once IMDS answers.
func TestIMDSDownAtStart(t *testing.T) {
	fake := testpeers.NewIMDS(testpeers.IMDSOptions{InstanceID: testenv.InstanceID, Region: testenv.Region})
	defer fake.Close()
	fake.SetDown(true)
	env := world(t, testenv.Options{})
	cfg := env.Config("")
	cfg.AWS.Region = ""
	cfg.AWS.IMDSEndpoint = fake.URL()
	cfg.Listen = "127.0.0.1:" + freePort(t)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- daemon.Run(ctx, cfg, daemon.Options{Logger: zaptest.NewLogger(t), Metrics: metrics.New("test")})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("daemon: %v", err)
		}
	}()
	readyz := func() (int, string) {
		resp, err := http.Get("http://" + cfg.Listen + "/readyz")
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	testpeers.Eventually(t, 10*time.Second, "not ready while IMDS is down, naming it", func() bool {
		code, body := readyz()
		return code == http.StatusServiceUnavailable && strings.Contains(body, "instance metadata")
	})
	testpeers.Eventually(t, 5*time.Second, "IMDS was retried", func() bool { return fake.CallCount("GetToken") >= 2 })
	select {
	case err := <-done:
		t.Fatalf("daemon gave up while IMDS was down: %v", err)
	default:
	}
	fake.SetDown(false)
	testpeers.Eventually(t, 40*time.Second, "ready once IMDS answers", func() bool {
		code, body := readyz()
		return code == http.StatusOK && strings.TrimSpace(body) == "ok"
	})
}

// imdsWorld is a test world plus a fake IMDS for this instance.
func imdsWorld(t *testing.T, opts testenv.Options) (*testenv.Env, *testpeers.IMDS) {
	t.Helper()
	env := world(t, opts)
	fake := testpeers.NewIMDS(testpeers.IMDSOptions{InstanceID: env.Instance, Region: testenv.Region})
	t.Cleanup(fake.Close)
	fake.SetTargetLifecycleState("InService")
	return env, fake
}

func TestIMDSModeCompletesByInstanceID(t *testing.T) {
	env, fake := imdsWorld(t, testenv.Options{})
	env.Trino.AddTask(500 * time.Millisecond)
	cfg := env.Config(env.Instance)
	cfg.AWS.Mode = "imds"
	cfg.AWS.QueueURL = ""
	cfg.AWS.IMDSEndpoint = fake.URL()
	cfg.AWS.IMDSPollInterval = 100 * time.Millisecond
	start(t, cfg)

	token, _ := env.Terminate(env.Instance) // no message is sent: IMDS alone
	fake.SetTargetLifecycleState("Terminated")
	act := finished(t, env, token, 30*time.Second)
	completedContinue(t, act)
	if stateAt(env.Trino, "DRAINED").IsZero() || act.CompletedAt.Before(stateAt(env.Trino, "DRAINED")) {
		t.Fatal("completed before the worker was drained")
	}
	for _, c := range env.ASG.Calls() {
		if c.Op == "CompleteLifecycleAction" && (c.Params["LifecycleActionToken"] != "" || c.Params["InstanceId"] != env.Instance) {
			t.Fatalf("completion by %v, want by instance id", c.Params)
		}
	}
}

func TestBothModesDeduplicateAndLendTheToken(t *testing.T) {
	env, fake := imdsWorld(t, testenv.Options{})
	finish := env.Trino.AddBlockedTask()
	defer finish()
	cfg := env.Config(env.Instance)
	cfg.AWS.Mode = "both"
	cfg.AWS.IMDSEndpoint = fake.URL()
	cfg.AWS.IMDSPollInterval = 100 * time.Millisecond
	start(t, cfg)

	// IMDS first: the drain starts without a token.
	token, msg := env.Terminate(env.Instance)
	fake.SetTargetLifecycleState("Terminated")
	testpeers.Eventually(t, 10*time.Second, "drain started from IMDS", func() bool { return statePuts(env.Trino, "DRAINING") == 1 })
	// Then the queue's message: it joins the drain and lends its token.
	id := env.SQS.Send(env.QueueURL, msg.Direct())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := env.SQS.WaitReceives(ctx, env.QueueURL, id, 1); err != nil {
		t.Fatal(err)
	}
	finish()
	completedContinue(t, finished(t, env, token, 30*time.Second))
	deleted(t, env, id, 10*time.Second)
	if n := statePuts(env.Trino, "DRAINING"); n != 1 {
		t.Fatalf("DRAINING requested %d times, want 1", n)
	}
	var completions []map[string]string
	for _, c := range env.ASG.Calls() {
		if c.Op == "CompleteLifecycleAction" {
			completions = append(completions, c.Params)
		}
	}
	if len(completions) != 1 || completions[0]["LifecycleActionToken"] != token {
		t.Fatalf("completions %v, want one with the lent token", completions)
	}
}

func TestSpotNoticeDrainsWithoutALifecycleAction(t *testing.T) {
	env := world(t, testenv.Options{})
	// Only a Spot instance gets interruption notices.
	fake := testpeers.NewIMDS(testpeers.IMDSOptions{InstanceID: env.Instance, Region: testenv.Region, InstanceLifeCycle: "spot"})
	t.Cleanup(fake.Close)
	fake.SetTargetLifecycleState("InService")
	env.Trino.AddTask(300 * time.Millisecond)
	cfg := env.Config(env.Instance)
	cfg.AWS.Mode = "both"
	cfg.AWS.IMDSEndpoint = fake.URL()
	cfg.AWS.IMDSPollInterval = 100 * time.Millisecond
	d, logs := start(t, cfg)
	fake.SetSpotAction("terminate", time.Now().Add(2*time.Minute))
	testpeers.Eventually(t, 20*time.Second, "worker drained for the spot notice", func() bool {
		return !stateAt(env.Trino, "DRAINED").IsZero()
	})
	waitMetric(t, d, func(v float64) bool { return v == 1 }, "scaledownd_lifecycle_actions_completed_total", "result", "none", "reason", "drained")
	if n := env.ASG.CallCount("CompleteLifecycleAction") + env.ASG.CallCount("RecordLifecycleActionHeartbeat"); n != 0 {
		t.Fatalf("%d lifecycle calls for a spot notice", n)
	}
	if logs.FilterMessageSnippet("spot interruption notice").Len() != 1 {
		t.Fatal("the notice should be logged once (de-duplicated by presence)")
	}
}

// TestIMDSTerminationFromRealIMDSMock: amazon-ec2-metadata-mock switches
// target-lifecycle-state to Terminated after a delay (404s and IMDSv2
// tokens on the way); the daemon drains and completes by instance id.
func TestIMDSTerminationFromRealIMDSMock(t *testing.T) {
	imdsURL := testpeers.RunAEMM(t, nil, "--asg-termination-delay-sec", "3")
	// The action starts now; the mock reports it after its delay, well
	// within the heartbeat timeout.
	env := world(t, testenv.Options{InstanceID: testpeers.AEMMInstance, HeartbeatTimeout: 30 * time.Second})
	cfg := env.Config("")
	cfg.AWS.Region = ""
	cfg.AWS.Mode = "imds"
	cfg.AWS.QueueURL = ""
	cfg.AWS.IMDSEndpoint = imdsURL
	cfg.AWS.IMDSPollInterval = 200 * time.Millisecond
	token, _ := env.Terminate(testpeers.AEMMInstance)
	_, logs := start(t, cfg)
	act := finished(t, env, token, 30*time.Second)
	completedContinue(t, act)
	if stateAt(env.Trino, "DRAINED").IsZero() {
		t.Fatal("worker not drained")
	}
	if logs.FilterMessage("target lifecycle state").FilterField(zap.String("target_state", "Terminated")).Len() != 1 {
		t.Fatal("the switch to Terminated should be logged once")
	}
}

// TestSpotAndRebalanceFromRealIMDSMock: on a Spot instance, the mock's
// rebalance recommendation and then its interruption notice (whose time it
// recomputes on every request) drain once, with no lifecycle call.
func TestSpotAndRebalanceFromRealIMDSMock(t *testing.T) {
	imdsURL := testpeers.RunAEMM(t, testpeers.AEMMSpot, "--mock-delay-sec", "3", "--rebalance-delay-sec", "2")
	env := world(t, testenv.Options{InstanceID: testpeers.AEMMInstance})
	cfg := env.Config("")
	cfg.AWS.Region = ""
	cfg.AWS.Mode = "imds"
	cfg.AWS.QueueURL = ""
	cfg.AWS.IMDSEndpoint = imdsURL
	cfg.AWS.IMDSPollInterval = 200 * time.Millisecond
	cfg.AWS.DrainOnRebalance = true
	d, logs := start(t, cfg)
	testpeers.Eventually(t, 20*time.Second, "rebalance and spot notices handled", func() bool {
		return logs.FilterMessageSnippet("spot interruption notice").Len() == 1 &&
			logs.FilterMessageSnippet("rebalance recommendation").Len() == 1
	})
	testpeers.Eventually(t, 20*time.Second, "worker drained", func() bool { return !stateAt(env.Trino, "DRAINED").IsZero() })
	waitMetric(t, d, func(v float64) bool { return v >= 1 }, "scaledownd_lifecycle_actions_completed_total", "result", "none")
	if n := env.ASG.CallCount("CompleteLifecycleAction") + env.ASG.CallCount("RecordLifecycleActionHeartbeat"); n != 0 {
		t.Fatalf("%d lifecycle calls for spot signals", n)
	}
	// Polled many times, the notice is still handled once.
	time.Sleep(time.Second) // proving an absence: more polls of the same notice
	if n := logs.FilterMessageSnippet("spot interruption notice").Len(); n != 1 {
		t.Fatalf("spot notice handled %d times", n)
	}
}
