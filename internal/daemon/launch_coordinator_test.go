package daemon_test

import (
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"

	"github.com/scaledownd/scaledownd/internal/config"
	"github.com/scaledownd/scaledownd/internal/testenv"
	"github.com/scaledownd/scaledownd/internal/testpeers"
	"github.com/scaledownd/scaledownd/pkg/trinoadmin"
)

// The launch tests of launch_test.go with trino.coordinator-url set: the
// launch is continued only once the worker is ACTIVE and the coordinator
// lists it as active too.

// coordinatorLaunch is a launch world plus a fake coordinator, and the
// daemon's configuration for it (queue only, no instance metadata).
func coordinatorLaunch(t *testing.T, opts testenv.Options) (*testenv.Env, *testpeers.TrinoWorker, config.Config, string, testpeers.LifecycleMessage) {
	t.Helper()
	env, token, msg := launchWorld(t, opts)
	coord := testpeers.NewTrino(testpeers.TrinoOptions{Coordinator: true, GracePeriod: 200 * time.Millisecond})
	t.Cleanup(coord.Close)
	cfg := env.Config(env.Instance)
	cfg.AWS.Mode = "sqs"
	cfg.AWS.IMDSEndpoint = testenv.DeadEndpoint
	cfg.Trino.CoordinatorURL = coord.URL()
	return env, coord, cfg, token, msg
}

// nodeQueries returns when the daemon asked the coordinator about a node
// and what it sent.
func nodeQueries(coord *testpeers.TrinoWorker) (at []time.Time, sql []string) {
	for _, r := range coord.Requests() {
		if r.Method == http.MethodPost && r.Path == "/v1/statement" {
			at, sql = append(at, r.At), append(sql, r.Body)
		}
	}
	return at, sql
}

func TestLaunchContinuesOnlyOnceTheCoordinatorListsTheWorker(t *testing.T) {
	env, coord, cfg, token, msg := coordinatorLaunch(t, testenv.Options{})
	_, logs := start(t, cfg)
	id := env.SQS.Send(env.QueueURL, msg.Direct())

	// The worker is ACTIVE from the start; the coordinator notices it only
	// later (a real one some seconds after the worker started): here once
	// the daemon has asked a few times in vain.
	askedAtLeast := func(n int) func() bool {
		return func() bool { asked, _ := nodeQueries(coord); return len(asked) >= n }
	}
	testpeers.Eventually(t, 20*time.Second, "the daemon asks the coordinator", askedAtLeast(3))
	pending := func(when string) {
		t.Helper()
		if act, _ := env.ASG.Action(token); act.State != testpeers.AutoScalingActionPending {
			t.Fatalf("action %s/%s %s, want pending", act.State, act.Result, when)
		}
	}
	pending("while the coordinator does not list the worker")
	coord.SetNode("worker-1", "inactive") // listed, but not scheduled on
	asked, _ := nodeQueries(coord)
	testpeers.Eventually(t, 20*time.Second, "the daemon asks again", askedAtLeast(len(asked)+2))
	pending("while the coordinator lists the worker inactive")
	coord.SetNode("worker-1", trinoadmin.NodeActive)

	act := finished(t, env, token, 30*time.Second)
	completedContinue(t, act)
	deleted(t, env, id, 10*time.Second)
	ready := stateAt(env.Trino, "ACTIVE")
	listed := coord.NodeListedAt("worker-1", trinoadmin.NodeActive)
	asked, sql := nodeQueries(coord)
	switch {
	case listed.IsZero():
		t.Fatalf("the coordinator never listed the worker; history %v", coord.NodeHistory())
	case len(asked) == 0:
		t.Fatal("the daemon never asked the coordinator")
	case !asked[0].Before(listed):
		t.Fatalf("first asked the coordinator at %s, after it listed the worker at %s: the wait is not proven", asked[0].Format("15:04:05.000"), listed.Format("15:04:05.000"))
	case !act.CompletedAt.After(listed) || !act.CompletedAt.After(ready):
		t.Fatalf("CONTINUE at %s; worker ACTIVE at %s, listed by the coordinator at %s",
			act.CompletedAt.Format("15:04:05.000"), ready.Format("15:04:05.000"), listed.Format("15:04:05.000"))
	}
	for _, s := range sql {
		if s != trinoadmin.NodeStateQuery("worker-1") {
			t.Errorf("asked the coordinator %q", s)
		}
	}
	if n := logs.FilterMessage("trino worker is ACTIVE; waiting until the coordinator lists it as active").Len(); n != 1 {
		t.Errorf("%d logs that the worker is ACTIVE and the coordinator is awaited, want 1", n)
	}
	var views []string
	for _, e := range logs.FilterMessage("coordinator's view of this worker").All() {
		views = append(views, e.ContextMap()["coordinator_state"].(string))
	}
	if got := strings.Join(views, ", "); got != "not listed, inactive, active" {
		t.Errorf("coordinator's views logged: %s, want not listed, inactive, active", got)
	}
	if statePuts(env.Trino, "") != 0 {
		t.Errorf("%d state changes requested; a launch must not touch an ACTIVE worker", statePuts(env.Trino, ""))
	}
	t.Logf("worker ACTIVE %s, coordinator asked %d times from %s, listed %s, CONTINUE %s",
		ready.Format("15:04:05.000"), len(asked), asked[0].Format("15:04:05.000"), listed.Format("15:04:05.000"), act.CompletedAt.Format("15:04:05.000"))
}

func TestLaunchIsAbandonedWhenTheCoordinatorNeverListsTheWorker(t *testing.T) {
	env, coord, cfg, token, msg := coordinatorLaunch(t, testenv.Options{})
	coord.SetNode("worker-2", "active") // another worker; never this one
	cfg.Lifecycle.LaunchTimeout = 2 * time.Second
	start(t, cfg)
	env.SQS.Send(env.QueueURL, msg.Direct())

	act := finished(t, env, token, 30*time.Second)
	abandonedAtTimeout(t, act, 2*time.Second)
	if asked, _ := nodeQueries(coord); len(asked) < 2 {
		t.Fatalf("asked the coordinator %d times in 2 s, want a poll every %s", len(asked), cfg.Trino.PollInterval)
	}
	if env.Trino.State() != "ACTIVE" {
		t.Errorf("worker %s; abandoning the launch leaves it alone", env.Trino.State())
	}
}

func TestLaunchRetriesAnUnreachableCoordinator(t *testing.T) {
	t.Run("never reachable: ABANDON at the deadline", func(t *testing.T) {
		env, _, cfg, token, msg := coordinatorLaunch(t, testenv.Options{})
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		cfg.Trino.CoordinatorURL = "http://" + ln.Addr().String()
		ln.Close() // nothing listens: connection refused on every poll
		cfg.Lifecycle.LaunchTimeout = 2 * time.Second
		_, logs := start(t, cfg)
		env.SQS.Send(env.QueueURL, msg.Direct())

		act := finished(t, env, token, 30*time.Second)
		abandonedAtTimeout(t, act, 2*time.Second)
		// About 2 s / 50 ms polls met the same refusal: it is logged once.
		warns := logs.FilterMessageSnippet("coordinator lists this worker").FilterLevelExact(zapcore.WarnLevel).All()
		if len(warns) != 1 || !strings.Contains(warns[0].ContextMap()["error"].(string), "connection refused") {
			t.Errorf("coordinator warnings: %v, want the refusal logged once", warns)
		}
	})

	t.Run("reachable later: CONTINUE once it answers", func(t *testing.T) {
		env, coord, cfg, token, msg := coordinatorLaunch(t, testenv.Options{})
		coord.SetNode("worker-1", trinoadmin.NodeActive)
		coord.Crash() // down while the instance launches
		_, logs := start(t, cfg)
		env.SQS.Send(env.QueueURL, msg.Direct())

		testpeers.Eventually(t, 20*time.Second, "the daemon reports the unreachable coordinator", func() bool {
			return logs.FilterMessageSnippet("coordinator lists this worker").FilterLevelExact(zapcore.WarnLevel).Len() > 0
		})
		if act, _ := env.ASG.Action(token); act.State != testpeers.AutoScalingActionPending {
			t.Fatalf("action %s/%s while the coordinator is down, want pending", act.State, act.Result)
		}
		back := time.Now()
		coord.Restart()
		act := finished(t, env, token, 30*time.Second)
		completedContinue(t, act)
		if !act.CompletedAt.After(back) {
			t.Fatalf("CONTINUE at %s, before the coordinator came back at %s", act.CompletedAt.Format("15:04:05.000"), back.Format("15:04:05.000"))
		}
	})
}

func TestLaunchQuotesTheNodeIDInTheCoordinatorQuery(t *testing.T) {
	const id = "o'brien-1' OR '1'='1"
	env, coord, cfg, token, msg := coordinatorLaunch(t, testenv.Options{Trino: testpeers.TrinoOptions{NodeID: id}})
	coord.SetNode("worker-2", trinoadmin.NodeActive) // an unescaped id would match this row
	start(t, cfg)
	env.SQS.Send(env.QueueURL, msg.Direct())

	// Not listed yet: the daemon keeps asking with the id quoted.
	testpeers.Eventually(t, 20*time.Second, "the daemon asks the coordinator", func() bool {
		_, sql := nodeQueries(coord)
		return len(sql) >= 2
	})
	if act, _ := env.ASG.Action(token); act.State != testpeers.AutoScalingActionPending {
		t.Fatalf("action %s/%s before the coordinator lists %q, want pending", act.State, act.Result, id)
	}
	coord.SetNode(id, trinoadmin.NodeActive)
	completedContinue(t, finished(t, env, token, 30*time.Second))
	_, sql := nodeQueries(coord)
	want := `SELECT state FROM system.runtime.nodes WHERE node_id = 'o''brien-1'' OR ''1''=''1'`
	for _, s := range sql {
		if s != want {
			t.Fatalf("asked %q, want %q", s, want)
		}
	}
}
