// Command demo runs one whole graceful scale-down on this machine: it
// starts the test peers (SQS, Auto Scaling, instance metadata, a Trino
// worker with running tasks), runs the real scaledownd binary against them
// in its default mode, lets Auto Scaling terminate the instance and prints
// the timeline as the peers saw it, then the daemon's drain report and
// `scaledownd history`. No AWS account and no Trino are needed. `make demo`
// runs it.
package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/scaledownd/scaledownd/internal/testenv"
	"github.com/scaledownd/scaledownd/internal/testpeers"
)

func main() {
	binary := flag.String("binary", "bin/scaledownd", "scaledownd binary to run")
	timeout := flag.Duration("timeout", 55*time.Second, "give up after this long")
	verbose := flag.Bool("v", false, "also print the daemon's own log lines")
	flag.Parse()
	if err := run(*binary, *timeout, *verbose); err != nil {
		fmt.Printf("OUTCOME: FAILED — %v\n", err)
		os.Exit(1)
	}
}

// timeline prints events relative to the demo's start.
type timeline struct {
	mu    sync.Mutex
	start time.Time
}

func (t *timeline) say(who, format string, args ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	fmt.Printf("%7.2fs  %-11s %s\n", time.Since(t.start).Seconds(), who, fmt.Sprintf(format, args...))
}

func run(binary string, timeout time.Duration, verbose bool) error {
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, timeout)
	defer cancelTimeout()
	tl := &timeline{start: time.Now()}

	const hbt = 3 * time.Second
	env, err := testenv.New(testenv.Options{
		HeartbeatTimeout: hbt,
		Trino:            testpeers.TrinoOptions{Version: "476", GracePeriod: 1500 * time.Millisecond},
	})
	if err != nil {
		return err
	}
	defer env.Close()
	imds := testpeers.NewIMDS(testpeers.IMDSOptions{InstanceID: env.Instance, Region: testenv.Region})
	defer imds.Close()
	imds.SetTargetLifecycleState("InService")
	fmt.Println("scaledownd demo: one Trino worker in an Auto Scaling group is scaled in while it runs three query tasks.")
	fmt.Printf("peers: SQS %s, Auto Scaling %s, instance metadata %s, Trino 476 worker %s (shutdown.grace-period 1.5s); hook heartbeat timeout %s\n",
		env.SQS.URL(), env.ASG.URL(), imds.URL(), env.Trino.URL(), hbt)
	fmt.Println("scaledownd runs in its default mode, both: instance metadata is the fast signal, the queue's message lends its token.")
	fmt.Println()

	for _, d := range []time.Duration{3 * time.Second, 5 * time.Second, 7 * time.Second} {
		env.Trino.AddTask(d)
	}
	tl.say("trino", "worker ACTIVE with %d running tasks (they finish after 3 s, 5 s and 7 s)", env.Trino.ActiveTasks())

	cfg := env.Config(env.Instance)
	// A state directory of its own, so that its history holds this demo's
	// report alone.
	stateDir := env.StateDir(env.Instance)
	daemonEnv := append(os.Environ(),
		"AWS_ACCESS_KEY_ID=AKIADEMODEMODEMODEMO", "AWS_SECRET_ACCESS_KEY=demo", "AWS_SESSION_TOKEN=",
		"AWS_CONFIG_FILE="+os.DevNull, "AWS_SHARED_CREDENTIALS_FILE="+os.DevNull, "AWS_EC2_METADATA_DISABLED=true",
		"SCALEDOWND_CONFIG_FILE="+os.DevNull,
		"SCALEDOWND_AWS_REGION="+cfg.AWS.Region,
		"SCALEDOWND_AWS_INSTANCE_ID="+cfg.AWS.InstanceID,
		"SCALEDOWND_AWS_QUEUE_URL="+cfg.AWS.QueueURL,
		"SCALEDOWND_AWS_IMDS_ENDPOINT="+imds.URL(),
		"SCALEDOWND_AWS_ASG_NAME="+cfg.AWS.Group,
		"SCALEDOWND_AWS_SQS_ENDPOINT="+cfg.AWS.SQSEndpoint,
		"SCALEDOWND_AWS_AUTOSCALING_ENDPOINT="+cfg.AWS.AutoScalingEP,
		"SCALEDOWND_AWS_WAIT_TIME=2s",
		"SCALEDOWND_TRINO_URL="+cfg.Trino.URL,
		"SCALEDOWND_TRINO_POLL_INTERVAL=250ms",
		"SCALEDOWND_LIFECYCLE_MAX_DRAIN_TIME=2m",
		"SCALEDOWND_LISTEN_ADDRESS=127.0.0.1:0",
		"SCALEDOWND_STATE_DIR="+stateDir,
	)
	cmd := exec.CommandContext(ctx, binary)
	cmd.Env = daemonEnv
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	logs, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w (run make build first)", binary, err)
	}
	tl.say("scaledownd", "started (pid %d)", cmd.Process.Pid)
	ready := make(chan string, 1)
	reports := make(chan json.RawMessage, 4)
	go follow(logs, tl, verbose, ready, reports)

	select {
	case addr := <-ready:
		if err := waitReady(ctx, addr); err != nil {
			return err
		}
	case <-ctx.Done():
		return errors.New("daemon not ready in time")
	}

	token, msg := env.Terminate(env.Instance)
	tl.say("autoscaling", "scale-in: instance %s enters Terminating:Wait (lifecycle token %s…)", env.Instance, token[:8])
	imds.SetTargetLifecycleState("Terminated")
	tl.say("imds", "autoscaling/target-lifecycle-state: Terminated")
	// The notification reaches the queue a moment later; by then the
	// metadata poll has usually started the drain.
	sendAt := time.Now().Add(1500 * time.Millisecond)
	draining := func(c testpeers.TrinoStateChange) bool { return c.State == "DRAINING" }
	for time.Now().Before(sendAt) && !slices.ContainsFunc(env.Trino.StateHistory(), draining) {
		time.Sleep(20 * time.Millisecond)
	}
	id := env.SQS.Send(env.QueueURL, msg.Direct())
	tl.say("sqs", "lifecycle notification queued (message %s…)", id[:8])

	outcome, err := watch(ctx, env, tl, token, id)
	var report json.RawMessage
	if err == nil {
		// The report is the action's last word: logged once its message is
		// deleted.
		select {
		case report = <-reports:
		case <-time.After(5 * time.Second):
			err = errors.New("no drain report logged within 5 s of the end")
		}
	}
	// The daemon stops either way; the first failure is the one to tell.
	if err := cmp.Or(err, stop(cmd, tl)); err != nil {
		return err
	}
	if err := showReport(binary, daemonEnv, report); err != nil {
		return err
	}
	fmt.Println()
	fmt.Println(outcome)
	return nil
}

// watch reports what the peers see until the action is completed and its
// message deleted, and returns the demo's closing line.
func watch(ctx context.Context, env *testenv.Env, tl *timeline, token, id string) (string, error) {
	var (
		seenStates           = map[string]bool{}
		heartbeats           int
		lastTasks            = env.Trino.ActiveTasks()
		drainedAt, completed time.Time
		deleted              bool
		initialTasks         = lastTasks
	)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("scale-down not finished in time (phase: states %v, heartbeats %d)", slices.Sorted(maps.Keys(seenStates)), heartbeats)
		case <-tick.C:
		}
		for _, c := range env.Trino.StateHistory() {
			if !seenStates[c.State] {
				seenStates[c.State] = true
				if c.State != "ACTIVE" {
					tl.say("trino", "worker state %s", c.State)
				}
				if c.State == "DRAINED" {
					drainedAt = c.At
				}
			}
		}
		if n := env.Trino.ActiveTasks(); n != lastTasks {
			tl.say("trino", "active tasks: %d", n)
			lastTasks = n
		}
		act, _ := env.ASG.Action(token)
		for ; heartbeats < len(act.Heartbeats); heartbeats++ {
			tl.say("autoscaling", "RecordLifecycleActionHeartbeat #%d (the action now lives until %s)",
				heartbeats+1, act.Heartbeats[heartbeats].Add(3*time.Second).Format("15:04:05.0"))
		}
		switch act.State {
		case testpeers.AutoScalingActionExpired:
			return "", fmt.Errorf("lifecycle action expired (%s) with result %s", act.ExpiryReason, act.Result)
		case testpeers.AutoScalingActionCompleted:
			if completed.IsZero() {
				completed = act.CompletedAt
				tl.say("autoscaling", "CompleteLifecycleAction %s → instance proceeds to Terminating:Proceed", act.Result)
				if act.Result != "CONTINUE" {
					return "", fmt.Errorf("completed with %s", act.Result)
				}
				if drainedAt.IsZero() || completed.Before(drainedAt) {
					return "", errors.New("completed before the worker was DRAINED")
				}
			}
		}
		if !deleted && slices.Contains(env.SQS.Deleted(env.QueueURL), id) {
			deleted = true
			tl.say("sqs", "lifecycle message deleted")
		}
		if !completed.IsZero() && deleted {
			select {
			case <-env.Trino.Exited():
				tl.say("trino", "idle worker process exited (SHUTTING_DOWN after DRAINED)")
			case <-time.After(3 * time.Second):
			}
			failed := env.Trino.FailedTasks()
			return fmt.Sprintf("OUTCOME: success — the worker drained (%d tasks finished, %d failed), %d heartbeats kept the action alive, "+
				"CompleteLifecycleAction CONTINUE came %.1fs after DRAINED and the message was deleted.",
				initialTasks-failed, failed, heartbeats, completed.Sub(drainedAt).Seconds()), nil
		}
	}
}

// showReport prints the drain report the daemon logged and what
// `scaledownd history` shows afterwards: exactly one report.
func showReport(binary string, env []string, report json.RawMessage) error {
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, report, "", "  "); err != nil {
		return fmt.Errorf("drain report: %w", err)
	}
	fmt.Println()
	fmt.Println(`The action's last log event is its drain report (msg "drain report", field "report"); a log shipper carries it off the instance:`)
	fmt.Println(pretty.String())
	fmt.Println()
	fmt.Println("$ scaledownd history")
	hist := exec.Command(binary, "history")
	hist.Env = env
	out, err := hist.CombinedOutput()
	fmt.Print(string(out))
	if err != nil {
		return fmt.Errorf("scaledownd history: %w", err)
	}
	if n := strings.Count(strings.TrimSpace(string(out)), "\n") + 1; n != 1 {
		return fmt.Errorf("scaledownd history shows %d reports for one action", n)
	}
	return nil
}

// follow reads the daemon's JSON log and prints its key moments; the drain
// reports go to reports.
func follow(r io.Reader, tl *timeline, verbose bool, ready chan<- string, reports chan<- json.RawMessage) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			tl.say("scaledownd", "%s", line)
			continue
		}
		msg, _ := rec["msg"].(string)
		if verbose {
			tl.say("scaledownd", "%s", line)
		}
		switch msg {
		case "listening":
			if a, ok := rec["address"].(string); ok {
				ready <- a
			}
		case "scaledownd ready: watching for lifecycle actions":
			tl.say("scaledownd", "ready, watching instance metadata every second and the lifecycle queue")
		case "instance metadata answers and shows no termination: polling the lifecycle queue once per idle interval":
			tl.say("scaledownd", "instance in service: the shared queue is polled once a minute, not all the time")
		case "instance is leaving service: polling the lifecycle queue continuously":
			tl.say("scaledownd", "instance leaving service: polling the queue continuously for its message")
		case "lifecycle action received":
			tl.say("scaledownd", "lifecycle action learned from %v: heartbeat every %vs, complete by %v at the latest",
				rec["source"], rec["heartbeat_interval"], rec["deadline"])
		case "the action in progress was also reported by sqs; joining it":
			tl.say("scaledownd", "the queue's message joins the drain under way and lends its token")
		case "trino state change requested":
			tl.say("scaledownd", "PUT /v1/info/state %v", rec["trino_state"])
		case "trino worker drained":
			tl.say("scaledownd", "worker reports DRAINED: all tasks done plus Trino's quiet period")
		case "lifecycle action completed":
			tl.say("scaledownd", "completed the lifecycle action (%v, reason %v)", rec["result"], rec["reason"])
		case "drain report":
			tl.say("scaledownd", "drain report logged (below)")
			var ev struct {
				Report json.RawMessage `json:"report"`
			}
			if json.Unmarshal([]byte(line), &ev) == nil && len(ev.Report) > 0 {
				select {
				case reports <- ev.Report:
				default:
				}
			}
		default:
			if lvl, _ := rec["level"].(string); !verbose && (lvl == "error" || lvl == "warn") {
				tl.say("scaledownd", "%s: %s", strings.ToUpper(lvl), msg)
			}
		}
	}
}

func waitReady(ctx context.Context, addr string) error {
	for {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return errors.New("daemon never became ready")
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func stop(cmd *exec.Cmd, tl *timeline) error {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		tl.say("scaledownd", "demo over: daemon stopped on SIGTERM")
		if err != nil {
			return fmt.Errorf("daemon exited with %v", err)
		}
		return nil
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		return errors.New("daemon did not stop within 5 s of SIGTERM")
	}
}
