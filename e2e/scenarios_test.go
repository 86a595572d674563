//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/scaledownd/scaledownd/internal/testenv"
	"github.com/scaledownd/scaledownd/internal/testpeers"
)

// The scenarios run in this order (go test runs a file's tests in source
// order): F and D leave worker 1 ACTIVE, A, C and B each end with it gone
// and the next one restarts it; L, last, starts it under a launch hook.

const (
	// hbTimeout is the hook's HeartbeatTimeout, AWS's smallest: heartbeats
	// every 15 s, so every drain below outlasts the interval. A daemon
	// that pauses its receives on a queue of seen messages finds its own
	// message up to 10 s late, which a shorter timeout would not absorb.
	hbTimeout = 30 * time.Second

	// longQuery keeps both workers busy for well over 30 s on this 2-core
	// machine (≈ 83 s of CPU; 40–110 s wall depending on load): every row
	// of tpch.tiny.lineitem meets every row of tpch.tiny.orders, and the
	// filter, always true (TPC-H comments are never empty), cannot be
	// folded away. tpch splits go to both workers.
	longQuery = "SELECT count(*) FROM tpch.tiny.lineitem a CROSS JOIN tpch.tiny.orders b WHERE length(a.comment || b.comment) > 0"
	// longQueryCount is its result: TPC-H tiny (SF 0.01) has 60,175
	// lineitem rows and 15,000 orders.
	longQueryCount = 60175 * 15000

	// blockerQuery would run for minutes; scenario C cancels it.
	blockerQuery = "SELECT count(*) FROM tpch.tiny.lineitem a CROSS JOIN tpch.tiny.lineitem b WHERE length(a.comment || b.comment) > 0"
)

// scenario is one scale-down of worker 1 by the real daemon.
type scenario struct {
	t      *testing.T
	name   string
	start  time.Time // after worker 1 was made fresh
	c      clusterEnv
	w1     trinoNode
	env    *testenv.Env
	d      *daemonRun
	states *statePoller
	pid    *pidWatch
}

// begin makes worker 1 fresh, starts the peers, watches worker 1 and runs
// the daemon for it with the scenario's SCALEDOWND_* settings.
func begin(t *testing.T, name string, settings map[string]string) *scenario {
	t.Helper()
	c := freshWorker(t, 1)
	s := &scenario{t: t, name: name, c: c, w1: c.Workers[1], start: time.Now()}
	s.env = world(t, hbTimeout)
	s.states = watchState(t, s.w1.URL)
	s.pid = watchPID(t, s.w1.PID)
	s.d = startDaemon(t, name, s.env, s.w1.URL, settings)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("worker-1 states seen: %s", s.states)
			t.Logf("worker-1 node-state log:%s", stateLines(trinoLog(t, c, "worker-1", s.start)))
			t.Logf("scaledownd log tail:\n%s", s.d.tail(40))
		}
	})
	return s
}

func (s *scenario) detail(key string, v any) { details(s.name, key, v) }

// checkSequence fails unless got walks forward through allowed (repeats and
// skips allowed), starts with allowed[0] and contains every required state.
func checkSequence(t *testing.T, p *statePoller, allowed, required []string) {
	t.Helper()
	got := p.states()
	pos := 0
	for i, st := range got {
		j := pos
		for j < len(allowed) && allowed[j] != st {
			j++
		}
		if j == len(allowed) || (i == 0 && j != 0) {
			t.Errorf("worker-1 states %v: %s out of order (allowed order %v); seen: %s", got, st, allowed, p)
			return
		}
		pos = j
	}
	for _, r := range required {
		if p.first(r).IsZero() {
			t.Errorf("worker-1 never reported %s; seen: %s", r, p)
		}
	}
}

// noErrorLogs fails on any error (or worse) line of the daemon.
func (s *scenario) noErrorLogs() {
	for _, lvl := range []string{"error", "dpanic", "panic", "fatal"} {
		for _, r := range s.d.levelLogs(lvl) {
			s.t.Errorf("unexpected %s log: %s", lvl, r)
		}
	}
}

// longQueryInFlight submits longQuery and returns once it runs tasks on
// both workers, a few seconds in.
func (s *scenario) longQueryInFlight(sql string) *trinoQuery {
	t := s.t
	t.Helper()
	q := submitQuery(t, s.c.CoordURL, sql)
	tasks := waitRunningOn(t, s.c, q, 2*time.Minute, s.w1.ID, s.c.Workers[2].ID)
	t.Logf("query %s is running on both workers: %s", q.ID, describeTasks(tasks))
	time.Sleep(3 * time.Second)
	if q.isDone() {
		r := q.wait(t, time.Second)
		t.Fatalf("query %s ended (%s %s) within 3 s of running; the scenario needs it in flight", q.ID, r.State, r.Err)
	}
	return q
}

// tasksOn returns the query's tasks on node (read from the coordinator).
func (s *scenario) tasksOn(q *trinoQuery, node string) (mine, all []taskRun) {
	t := s.t
	t.Helper()
	_, all, err := queryTasks(s.c, q.ID)
	if err != nil {
		t.Fatalf("query info: %v", err)
	}
	for _, tk := range all {
		if tk.Node == node {
			mine = append(mine, tk)
		}
	}
	return mine, all
}

// lastEnd is the latest end of the tasks; it fails if one has not ended.
func lastEnd(t *testing.T, tasks []taskRun) time.Time {
	t.Helper()
	var last time.Time
	for _, tk := range tasks {
		if tk.Ended.IsZero() {
			t.Fatalf("task of stage %s on %s has no end time (%s)", tk.Stage, tk.Node, tk.State)
		}
		if tk.Ended.After(last) {
			last = tk.Ended
		}
	}
	return last
}

// goneFromCoordinator waits until the coordinator no longer lists worker 1
// as active.
func (s *scenario) goneFromCoordinator() time.Time {
	s.t.Helper()
	err := waitNodeView(s.c, s.w1.ID, 60*time.Second, func(state string, listed bool) bool { return !listed || state != "active" })
	if err != nil {
		s.t.Fatal(err)
	}
	return time.Now()
}

func secs(d time.Duration) string { return fmt.Sprintf("%.1fs", d.Seconds()) }

// F: `scaledownd check` against the real worker: trino and trino-permission
// pass for scaledownd, the permission check fails for a user the access
// control does not allow, and the probe leaves the worker ACTIVE.
func TestF_CheckOnRealWorker(t *testing.T) {
	c := freshWorker(t, 1)
	w1 := c.Workers[1]
	env := world(t, hbTimeout)
	start := time.Now()
	states := watchState(t, w1.URL)

	type checkJSON struct {
		OK     bool `json:"ok"`
		Checks []struct {
			Name   string `json:"name"`
			OK     bool   `json:"ok"`
			Warn   bool   `json:"warning"`
			Detail string `json:"detail"`
		} `json:"checks"`
	}
	run := func(user string) (int, map[string]string, map[string]bool) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, binary, "check", "--json")
		cmd.Env = daemonEnv(env, w1.URL, "127.0.0.1:0", t.TempDir(), map[string]string{"SCALEDOWND_TRINO_USER": user})
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		code := 0
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee):
			code = ee.ExitCode()
		case err != nil:
			t.Fatalf("scaledownd check: %v", err)
		}
		t.Logf("scaledownd check (user %s): exit %d\n%s%s", user, code, out, stderr.String())
		var rep checkJSON
		if err := json.Unmarshal(out, &rep); err != nil {
			t.Fatalf("check --json output: %v\n%s", err, out)
		}
		detail, ok := map[string]string{}, map[string]bool{}
		for _, ch := range rep.Checks {
			detail[ch.Name], ok[ch.Name] = ch.Detail, ch.OK
		}
		if rep.OK != (code == 0) {
			t.Errorf("check reports ok=%v but exits %d", rep.OK, code)
		}
		return code, detail, ok
	}

	code, detail, ok := run("scaledownd")
	if code != 0 {
		t.Errorf("check for user scaledownd exits %d, want 0", code)
	}
	for _, name := range []string{"identity", "asg-membership", "lifecycle-hook", "queue", "trino", "trino-permission"} {
		if !ok[name] {
			t.Errorf("check %s failed for user scaledownd: %s", name, detail[name])
		}
	}
	for _, want := range []string{w1.URL, "Trino 476", "DRAINING → DRAINED"} {
		if !strings.Contains(detail["trino"], want) {
			t.Errorf("trino check %q lacks %q", detail["trino"], want)
		}
	}
	// Product shortcoming (reported, not fixed here): the check reads the
	// state from GET /v1/info, which Trino 476 does not include, so it
	// says "state unknown"; /v1/info/state has it.
	switch {
	case strings.Contains(detail["trino"], "state ACTIVE"):
	case strings.Contains(detail["trino"], "state unknown"):
		t.Logf("NOTE: the trino check reports %q for an ACTIVE 476 worker (state read from /v1/info, which 476 lacks)", detail["trino"])
		details("F-check", "NOTE trino check detail", detail["trino"])
	default:
		t.Errorf("trino check %q names neither state ACTIVE nor unknown", detail["trino"])
	}
	if !strings.Contains(detail["identity"], aemmInstance) {
		t.Errorf("identity check %q lacks the instance from amazon-ec2-metadata-mock", detail["identity"])
	}
	if !strings.Contains(detail["trino-permission"], "user scaledownd may change the node state") {
		t.Errorf("trino-permission check: %q", detail["trino-permission"])
	}

	code, detail, ok = run("intruder")
	if code != 1 {
		t.Errorf("check for user intruder exits %d, want 1", code)
	}
	if ok["trino-permission"] {
		t.Errorf("trino-permission passed for user intruder: %s", detail["trino-permission"])
	}
	for _, want := range []string{"intruder", "HTTP 403", "access control"} {
		if !strings.Contains(detail["trino-permission"], want) {
			t.Errorf("trino-permission check for intruder %q lacks %q", detail["trino-permission"], want)
		}
	}
	if !ok["trino"] {
		t.Errorf("trino check failed for user intruder (reading needs no permission): %s", detail["trino"])
	}

	// The probe changed nothing: the worker stayed ACTIVE throughout, Trino
	// logged only no-op requests, and the coordinator still schedules on it.
	time.Sleep(500 * time.Millisecond)
	if got := states.states(); len(got) != 1 || got[0] != "ACTIVE" {
		t.Errorf("worker-1 states during the checks: %s, want ACTIVE only", states)
	}
	if st := workerState(w1.URL); st != "ACTIVE" {
		t.Errorf("worker-1 is %s after the checks, want ACTIVE", st)
	}
	noops := 0
	for _, l := range trinoLog(t, c, "worker-1", start) {
		switch {
		case strings.Contains(l.Msg, "Worker State change requested: ACTIVE -> ACTIVE"):
			noops++
		case strings.Contains(l.Msg, "State change"):
			t.Errorf("worker-1 logged a state change during the checks: %s %s", l.At.Format("15:04:05.000"), l.Msg)
		}
	}
	if noops != 1 {
		t.Errorf("worker-1 logged %d no-op state requests, want 1 (scaledownd's probe; intruder's is refused before)", noops)
	}
	if err := waitNodeView(c, w1.ID, 10*time.Second, func(state string, _ bool) bool { return state == "active" }); err != nil {
		t.Error(err)
	}
	details("F-check", "worker state during checks", states.String())
}

// D: the daemon's user is refused by the worker's access control: the 403
// is reported (error log with the fix, forbidden metric), the action is held
// to the max drain deadline and completed then, and the worker stays ACTIVE.
func TestD_ForbiddenUserCompletesAtTheDeadline(t *testing.T) {
	const maxDrain = 40 * time.Second
	s := begin(t, "D-forbidden", map[string]string{
		"SCALEDOWND_TRINO_USER":               "intruder",
		"SCALEDOWND_LIFECYCLE_MAX_DRAIN_TIME": "40s",
		"SCALEDOWND_LIFECYCLE_SAFETY_MARGIN":  "0s",
	})
	token, msgID, sent := terminate(t, s.env)

	// Reported while the action is still held.
	deadline := time.Now().Add(30 * time.Second)
	var refused []logRec
	for len(refused) == 0 {
		refused = s.d.logs("access control must allow", func(r logRec) bool { return r.Level == "error" })
		if len(refused) == 0 && time.Now().After(deadline) {
			t.Fatalf("no error log about the refused state change within 30 s; log tail:\n%s", s.d.tail(30))
		}
		time.Sleep(200 * time.Millisecond)
	}
	r := refused[0]
	t.Logf("reported %s after the message: %s", r.TS.Sub(sent).Round(time.Millisecond), r)
	if r.str("user") != "intruder" || r.str("status") != "403" || !strings.Contains(r.str("body"), "Management only resource") {
		t.Errorf("refusal log lacks user/status/body: %s", r)
	}
	if !strings.Contains(r.Msg, "system_information") {
		t.Errorf("refusal log does not show the access-control rule to add: %q", r.Msg)
	}
	if act, _ := s.env.ASG.Action(token); act.State != "pending" {
		t.Fatalf("action %s right after the refusal, want pending", act.State)
	}
	if v := s.d.metric(t, "scaledownd_trino_api_requests_total", "outcome", "forbidden"); v < 1 {
		t.Errorf(`scaledownd_trino_api_requests_total{outcome="forbidden"} = %v, want > 0`, v)
	} else {
		s.detail("forbidden requests (metric, at first report)", v)
	}

	act := waitAction(t, s.env, token, maxDrain+90*time.Second)
	completedContinue(t, act)
	held := act.CompletedAt.Sub(act.Started)
	t.Logf("completed %s after the action started (max drain %s)", held.Round(time.Millisecond), maxDrain)
	if held < maxDrain-time.Second {
		t.Errorf("completed %s after the start, before the %s deadline", held, maxDrain)
	}
	if held > maxDrain+15*time.Second {
		t.Errorf("completed %s after the start, long after the %s deadline", held, maxDrain)
	}
	if n := s.env.ASG.CallCount("CompleteLifecycleAction"); n != 1 {
		t.Errorf("%d CompleteLifecycleAction calls, want 1", n)
	}
	recv := s.d.firstLog(t, "lifecycle action received", nil)
	if dl, err := time.Parse(time.RFC3339Nano, recv.str("deadline")); err != nil {
		t.Errorf("deadline field %q: %v", recv.str("deadline"), err)
	} else if diff := dl.Sub(act.Started.Add(maxDrain)); diff < -time.Second || diff > time.Second {
		t.Errorf("logged deadline %s, want start + %s = %s", dl, maxDrain, act.Started.Add(maxDrain))
	}
	s.d.firstLog(t, "lifecycle action completed", func(r logRec) bool { return r.str("reason") == "deadline" })
	waitDeleted(t, s.env, msgID, 30*time.Second)
	forbidden := s.d.metric(t, "scaledownd_trino_api_requests_total", "outcome", "forbidden")
	if forbidden < 2 {
		t.Errorf(`scaledownd_trino_api_requests_total{outcome="forbidden"} = %v after %s of retries, want several`, forbidden, held)
	}
	if v := s.d.metric(t, "scaledownd_lifecycle_actions_completed_total", "result", "CONTINUE", "reason", "deadline"); v != 1 {
		t.Errorf(`scaledownd_lifecycle_actions_completed_total{result="CONTINUE",reason="deadline"} = %v, want 1`, v)
	}

	// The worker was never touched.
	if got := s.states.states(); len(got) != 1 || got[0] != "ACTIVE" {
		t.Errorf("worker-1 states: %s, want ACTIVE only", s.states)
	}
	for _, l := range trinoLog(t, s.c, "worker-1", s.start) {
		if strings.Contains(l.Msg, "State change") {
			t.Errorf("worker-1 logged a state change: %s %s", l.At.Format("15:04:05.000"), l.Msg)
		}
	}
	if !procAlive(s.w1.PID) {
		t.Error("worker-1 process is gone")
	}
	if err := waitNodeView(s.c, s.w1.ID, 10*time.Second, func(state string, _ bool) bool { return state == "active" }); err != nil {
		t.Error(err)
	}
	s.detail("action held until CONTINUE", secs(held))
	s.detail("forbidden requests (metric)", forbidden)
	s.detail("heartbeats", len(act.Heartbeats))
}

// A: strategy auto: a query with tasks on both workers is in flight when the
// lifecycle message arrives; worker 1 goes DRAINING → DRAINED, the query
// finishes with the right result, CONTINUE follows DRAINED, heartbeats keep
// the action alive, the worker exits and the coordinator drops it.
func TestA_AutoDrainKeepsInFlightQuery(t *testing.T) {
	s := begin(t, "A-auto", map[string]string{"SCALEDOWND_TRINO_COORDINATOR_URL": readCluster(t).CoordURL})
	q := s.longQueryInFlight(longQuery)
	token, msgID, sent := terminate(t, s.env)
	t.Logf("lifecycle message sent %s after the query started", sent.Sub(q.Submitted).Round(time.Millisecond))

	s.states.waitFor(t, "DRAINING", 30*time.Second)
	// Which queries hold the drain, asked of the real coordinator as the
	// daemon asks it (see daemonReportsQueries).
	qw := watchBlockingQueries(t, s.c, s.w1, time.Now().Add(10*time.Minute))
	res := q.wait(t, 10*time.Minute)
	res.expectCount(t, q, longQueryCount)
	t.Logf("query %s FINISHED in %s with %d", q.ID, res.Elapsed.Round(time.Millisecond), longQueryCount)
	act := waitAction(t, s.env, token, 3*time.Minute)
	qw.stop()
	completedContinue(t, act)
	waitDeleted(t, s.env, msgID, 30*time.Second)
	goneAt := s.pid.wait(t, 60*time.Second)
	droppedAt := s.goneFromCoordinator()

	// Trino's own account of the drain.
	tl := trinoLog(t, s.c, "worker-1", s.start)
	drainReq, ok1 := findTrinoLog(tl, "Worker State change requested: ACTIVE -> DRAINING")
	drained, ok2 := findTrinoLog(tl, "Worker State change: DRAINING -> DRAINED")
	shutReq, ok3 := findTrinoLog(tl, "Worker State change requested: DRAINED -> SHUTTING_DOWN")
	if !ok1 || !ok2 || !ok3 {
		t.Fatalf("worker-1 log lacks DRAINING requested (%v), DRAINED (%v) or DRAINED -> SHUTTING_DOWN (%v):%s", ok1, ok2, ok3, stateLines(tl))
	}
	if _, ok := findTrinoLog(tl, "Waiting for 0 active tasks"); !ok {
		t.Errorf("worker-1 never waited for its tasks:%s", stateLines(tl))
	}

	// The query was in flight on worker 1 when the drain began and its
	// tasks there ran to the end.
	mine, all := s.tasksOn(q, s.w1.ID)
	if len(mine) == 0 {
		t.Fatalf("query %s ran no task on worker-1: %s", q.ID, describeTasks(all))
	}
	w1End := lastEnd(t, mine)
	created, ended := coordinatorTimes(t, s.c, q.ID)
	held := w1End.Sub(created)
	watched := checkQueryNamed(t, "the watcher", qw.loggedQueries(), asMaps(qw.w.Snapshot().Waited), q.ID, queryUser, held)
	if daemonReportsQueries {
		// The worker's own log dates DRAINED: the test's state polls can
		// miss it, as the daemon asks for the shutdown within milliseconds.
		checkDrainReport(t, s, q.ID, queryUser, held, drained.At, act.CompletedAt)
	}
	for _, tk := range all {
		if tk.State != "FINISHED" {
			t.Errorf("task of stage %s on %s ended %s", tk.Stage, tk.Node, tk.State)
		}
	}
	if !w1End.After(drainReq.At) || !res.Finished.After(drainReq.At) {
		t.Errorf("worker-1's tasks ended at %s, the query at %s: not after DRAINING was requested at %s", w1End, res.Finished, drainReq.At)
	}
	busy := s.d.logs("trino worker active tasks", func(r logRec) bool { n, _ := r.Fields["active_tasks"].(float64); return n > 0 })
	if len(busy) == 0 {
		t.Error("the daemon never saw an active task on worker-1 during the drain")
	}

	// CONTINUE only after DRAINED — by Trino's clock, by the daemon's log
	// and after the last task of the query on worker 1.
	daemonDrained := s.d.firstLog(t, "trino worker state", func(r logRec) bool { return r.str("trino_state") == "DRAINED" })
	if !act.CompletedAt.After(drained.At) || !act.CompletedAt.After(daemonDrained.TS) || !act.CompletedAt.After(w1End) {
		t.Errorf("CompleteLifecycleAction at %s; worker DRAINED at %s (Trino), %s (daemon log); last task on worker-1 ended %s",
			act.CompletedAt.Format("15:04:05.000"), drained.At.Format("15:04:05.000"), daemonDrained.TS.Format("15:04:05.000"), w1End.Format("15:04:05.000"))
	}
	completed := s.d.firstLog(t, "lifecycle action completed", nil)
	if completed.str("reason") != "drained" || completed.str("result") != "CONTINUE" {
		t.Errorf("completion log: %s", completed)
	}
	s.d.firstLog(t, "asked the drained worker to shut down", nil)
	if drainReq.At.Before(sent) {
		t.Errorf("DRAINING requested at %s, before the message was sent at %s", drainReq.At, sent)
	}
	checkSequence(t, s.states, []string{"ACTIVE", "DRAINING", "DRAINED", "SHUTTING_DOWN", "GONE"}, []string{"ACTIVE", "DRAINING", "GONE"})
	checkHeartbeats(t, act, hbTimeout)
	if ec := exitCode(s.c, "worker-1"); ec != "0" {
		t.Errorf("worker-1 exit code %q, want 0", ec)
	}
	if v := s.d.metric(t, "scaledownd_lifecycle_actions_completed_total", "result", "CONTINUE", "reason", "drained"); v != 1 {
		t.Errorf(`scaledownd_lifecycle_actions_completed_total{result="CONTINUE",reason="drained"} = %v, want 1`, v)
	}
	s.noErrorLogs()

	s.detail("query", longQuery)
	s.detail("query runtime", secs(res.Elapsed))
	s.detail("query elapsed (system.runtime.queries end - created)", secs(ended.Sub(created)))
	s.detail("query held worker-1 (created -> its last task there ended)", secs(held))
	s.detail("watcher's elapsed at its last look (10 s questions)", fmt.Sprintf("%.1fs", watched))
	s.detail("watcher's blocking-queries lines", len(qw.loggedQueries()))
	s.detail("message sent after query start", secs(sent.Sub(q.Submitted)))
	s.detail("DRAINING requested → DRAINED (Trino log)", secs(drained.At.Sub(drainReq.At)))
	s.detail("query end → DRAINED", secs(drained.At.Sub(res.Finished)))
	s.detail("DRAINED → CONTINUE", secs(act.CompletedAt.Sub(drained.At)))
	s.detail("DRAINED → SHUTTING_DOWN requested", secs(shutReq.At.Sub(drained.At)))
	s.detail("action held until CONTINUE", secs(act.CompletedAt.Sub(act.Started)))
	s.detail("heartbeats", len(act.Heartbeats))
	s.detail("process exit after CONTINUE", secs(goneAt.Sub(act.CompletedAt)))
	s.detail("coordinator dropped worker-1 after exit (≤, 1 s polls)", secs(droppedAt.Sub(goneAt)))
	s.detail("worker-1 states", s.states.String())
}

// C: queries submitted during the drain (once the coordinator has seen
// worker 1 DRAINING) run on worker 2 only and succeed; the drain waits for
// the query still on worker 1.
func TestC_QueriesDuringDrainRunOnTheOtherWorker(t *testing.T) {
	s := begin(t, "C-during-drain", nil)
	w2 := s.c.Workers[2]
	blocker := s.longQueryInFlight(blockerQuery)
	token, msgID, _ := terminate(t, s.env)
	drainingAt := s.states.waitFor(t, "DRAINING", 30*time.Second)

	// Trino's coordinator polls worker states every 5 s; until it has seen
	// DRAINING it may still place tasks on the worker (the drain would then
	// wait for them). Submit once it lists worker 1 as draining.
	if err := waitNodeView(s.c, s.w1.ID, 60*time.Second, func(state string, _ bool) bool { return state == "draining" }); err != nil {
		t.Fatal(err)
	}
	seenAt := time.Now()
	t.Logf("coordinator lists worker-1 draining %s after the worker reported DRAINING", seenAt.Sub(drainingAt).Round(time.Millisecond))

	short := []struct {
		sql  string
		want int64
	}{
		{"SELECT count(*) FROM tpch.tiny.orders", 15000},
		{"SELECT count(*) FROM tpch.tiny.lineitem", 60175},
		{"SELECT count(*) FROM tpch.tiny.orders o JOIN tpch.tiny.customer c ON o.custkey = c.custkey", 15000},
		{"SELECT count(*) FROM tpch.tiny.nation n JOIN tpch.tiny.region r ON n.regionkey = r.regionkey", 25},
	}
	qs := make([]*trinoQuery, len(short))
	for i, sq := range short {
		qs[i] = submitQuery(t, s.c.CoordURL, sq.sql)
	}
	var lastDone time.Time
	for i, q := range qs {
		r := q.wait(t, 4*time.Minute)
		r.expectCount(t, q, short[i].want)
		if r.Finished.After(lastDone) {
			lastDone = r.Finished
		}
		mine, all := s.tasksOn(q, s.w1.ID)
		if len(mine) != 0 {
			t.Errorf("query %s (%s), submitted while worker-1 was draining, ran on worker-1: %s", q.ID, short[i].sql, describeTasks(all))
		}
		on2 := 0
		for _, tk := range all {
			if tk.Node == w2.ID && tk.State == "FINISHED" {
				on2++
			}
		}
		if on2 == 0 {
			t.Errorf("query %s ran no task on worker-2: %s", q.ID, describeTasks(all))
		}
		t.Logf("query %s FINISHED in %s: %s", q.ID, r.Elapsed.Round(time.Millisecond), describeTasks(all))
		s.detail(fmt.Sprintf("short query %d runtime", i+1), secs(r.Elapsed))
	}

	// They ran during the drain: worker 1 was still DRAINING and the action
	// still held when the last one finished.
	if at := s.states.first("DRAINED"); !at.IsZero() && at.Before(lastDone) {
		t.Errorf("worker-1 was DRAINED at %s, before the short queries finished at %s", at, lastDone)
	}
	if act, _ := s.env.ASG.Action(token); act.State != "pending" {
		t.Fatalf("action %s before the blocking query ended, want pending", act.State)
	}
	if blocker.isDone() {
		t.Fatal("the blocking query ended on its own; the drain was not held by it")
	}

	// The drain must outlast the heartbeat interval for checkHeartbeats to
	// prove anything: the blocker holds it until the action has been kept
	// alive twice (the first heartbeat comes at once, the second one
	// interval later).
	ctx, cancel := context.WithTimeout(context.Background(), 2*hbTimeout)
	held, err := s.env.ASG.WaitActionUntil(ctx, token, func(a testpeers.AutoScalingAction) bool {
		return len(a.Heartbeats) >= 2 || a.State != testpeers.AutoScalingActionPending
	})
	cancel()
	if err != nil || held.State != testpeers.AutoScalingActionPending {
		t.Fatalf("waiting for two heartbeats while the blocker holds the drain: action %s, %d heartbeats: %v", held.State, len(held.Heartbeats), err)
	}
	if blocker.isDone() {
		t.Fatal("the blocking query ended on its own; the drain was not held by it")
	}

	// End the blocking query: the drain completes.
	cancelled := time.Now()
	blocker.cancel()
	br := blocker.wait(t, time.Minute)
	t.Logf("blocking query %s ended %s (%s)", blocker.ID, br.State, br.Err)
	act := waitAction(t, s.env, token, 2*time.Minute)
	completedContinue(t, act)
	tl := trinoLog(t, s.c, "worker-1", s.start)
	drained, ok := findTrinoLog(tl, "Worker State change: DRAINING -> DRAINED")
	if !ok {
		t.Fatalf("worker-1 log lacks DRAINED:%s", stateLines(tl))
	}
	if !act.CompletedAt.After(drained.At) || !drained.At.After(cancelled) {
		t.Errorf("blocking query cancelled %s, DRAINED %s, CONTINUE %s: not in that order", cancelled, drained.At, act.CompletedAt)
	}
	waitDeleted(t, s.env, msgID, 30*time.Second)
	s.pid.wait(t, 60*time.Second)
	checkSequence(t, s.states, []string{"ACTIVE", "DRAINING", "DRAINED", "SHUTTING_DOWN", "GONE"}, []string{"ACTIVE", "DRAINING", "GONE"})
	checkHeartbeats(t, act, hbTimeout)
	s.noErrorLogs()

	s.detail("coordinator saw DRAINING after", secs(seenAt.Sub(drainingAt)))
	s.detail("blocker cancelled → DRAINED", secs(drained.At.Sub(cancelled)))
	s.detail("action held until CONTINUE", secs(act.CompletedAt.Sub(act.Started)))
	s.detail("heartbeats", len(act.Heartbeats))
}

// B: strategy shutdown: SHUTTING_DOWN with the query in flight; the query
// finishes with the right result and CONTINUE is sent only after the
// worker process has exited.
func TestB_ShutdownStrategyKeepsInFlightQuery(t *testing.T) {
	s := begin(t, "B-shutdown", map[string]string{"SCALEDOWND_TRINO_STRATEGY": "shutdown"})
	q := s.longQueryInFlight(longQuery)
	token, msgID, sent := terminate(t, s.env)
	t.Logf("lifecycle message sent %s after the query started", sent.Sub(q.Submitted).Round(time.Millisecond))

	s.states.waitFor(t, "SHUTTING_DOWN", 30*time.Second)
	res := q.wait(t, 10*time.Minute)
	res.expectCount(t, q, longQueryCount)
	t.Logf("query %s FINISHED in %s with %d", q.ID, res.Elapsed.Round(time.Millisecond), longQueryCount)
	act := waitAction(t, s.env, token, 3*time.Minute)
	completedContinue(t, act)

	// Completion only after the process exited.
	goneAt, gone := s.pid.gone()
	if !gone {
		t.Fatalf("CONTINUE sent at %s while worker-1 (pid %d) is still running", act.CompletedAt.Format("15:04:05.000"), s.w1.PID)
	}
	if !goneAt.Before(act.CompletedAt) {
		t.Errorf("CONTINUE at %s, process gone at %s (20 ms polls): not after the exit", act.CompletedAt.Format("15:04:05.000"), goneAt.Format("15:04:05.000"))
	}
	waitDeleted(t, s.env, msgID, 30*time.Second)
	droppedAt := s.goneFromCoordinator()

	tl := trinoLog(t, s.c, "worker-1", s.start)
	shutReq, ok := findTrinoLog(tl, "Worker State change requested: ACTIVE -> SHUTTING_DOWN")
	if !ok {
		t.Fatalf("worker-1 log lacks ACTIVE -> SHUTTING_DOWN:%s", stateLines(tl))
	}
	if _, ok := findTrinoLog(tl, "DRAINING"); ok {
		t.Errorf("strategy shutdown drained with DRAINING:%s", stateLines(tl))
	}
	mine, all := s.tasksOn(q, s.w1.ID)
	if len(mine) == 0 {
		t.Fatalf("query %s ran no task on worker-1: %s", q.ID, describeTasks(all))
	}
	w1End := lastEnd(t, mine)
	for _, tk := range all {
		if tk.State != "FINISHED" {
			t.Errorf("task of stage %s on %s ended %s", tk.Stage, tk.Node, tk.State)
		}
	}
	if !w1End.After(shutReq.At) {
		t.Errorf("worker-1's tasks ended at %s, not after SHUTTING_DOWN was requested at %s", w1End, shutReq.At)
	}
	if !goneAt.After(w1End) {
		t.Errorf("worker-1 exited at %s, before its last task ended at %s", goneAt, w1End)
	}
	requested := s.d.firstLog(t, "trino state change requested", nil)
	if requested.str("trino_state") != "SHUTTING_DOWN" {
		t.Errorf("first state requested: %s, want SHUTTING_DOWN", requested)
	}
	s.d.firstLog(t, "trino worker process is gone", nil)
	completed := s.d.firstLog(t, "lifecycle action completed", nil)
	if completed.str("reason") != "exited" || completed.str("result") != "CONTINUE" {
		t.Errorf("completion log: %s", completed)
	}
	checkSequence(t, s.states, []string{"ACTIVE", "SHUTTING_DOWN", "GONE"}, []string{"ACTIVE", "SHUTTING_DOWN", "GONE"})
	checkHeartbeats(t, act, hbTimeout)
	if ec := exitCode(s.c, "worker-1"); ec != "0" {
		t.Errorf("worker-1 exit code %q, want 0", ec)
	}
	if v := s.d.metric(t, "scaledownd_lifecycle_actions_completed_total", "result", "CONTINUE", "reason", "exited"); v != 1 {
		t.Errorf(`scaledownd_lifecycle_actions_completed_total{result="CONTINUE",reason="exited"} = %v, want 1`, v)
	}
	s.noErrorLogs()

	s.detail("query runtime", secs(res.Elapsed))
	s.detail("message sent after query start", secs(sent.Sub(q.Submitted)))
	s.detail("SHUTTING_DOWN requested → process exit", secs(goneAt.Sub(shutReq.At)))
	s.detail("last task on worker-1 → process exit", secs(goneAt.Sub(w1End)))
	s.detail("process exit → CONTINUE", secs(act.CompletedAt.Sub(goneAt)))
	s.detail("action held until CONTINUE", secs(act.CompletedAt.Sub(act.Started)))
	s.detail("heartbeats", len(act.Heartbeats))
	s.detail("coordinator dropped worker-1 after exit (≤, 1 s polls)", secs(droppedAt.Sub(goneAt)))
	s.detail("worker-1 states", s.states.String())
}

// launchHook is the launching lifecycle hook of scenario L.
const launchHook = "trino-ready"

// L: a launch lifecycle action (instance in Pending:Wait, notification on
// the queue) while worker 1 starts from nothing on a new address, as on a
// new instance, with trino.coordinator-url on the real coordinator: the
// daemon heartbeats while the JVM starts and completes the action with
// CONTINUE only after the worker reports ACTIVE (started) and after the
// coordinator's system.runtime.nodes lists it as active, which a 476
// coordinator does some seconds after the worker is up. (Back on an address
// its discovery still knows, the worker is listed as soon as it answers,
// even while starting: the worker's own state is needed too.) It runs last:
// B leaves worker 1 gone, and L moves it to another port.
func TestL_LaunchWaitsForTheRealCoordinator(t *testing.T) {
	c := readCluster(t)
	old := c.Workers[1]
	if isClusterProcess(old.PID, c.Dir) { // run on its own (E2E_RUN): start from nothing too
		t.Logf("worker 1 (pid %d) is running; stopping it so that the launch starts it", old.PID)
		stopClusterProcess(t, c, old.PID, 60*time.Second)
	}
	waitReaped(t, old.PID, 30*time.Second)
	// The coordinator drops a gone worker within ~5 s; a stale row must not
	// pass for the new process.
	if err := waitNodeView(c, old.ID, 60*time.Second, func(_ string, listed bool) bool { return !listed }); err != nil {
		t.Fatal(err)
	}
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	w1 := trinoNode{ID: old.ID, URL: "http://127.0.0.1:" + port}

	env := world(t, hbTimeout)
	env.ASG.AddHook(testpeers.AutoScalingHook{Group: testenv.Group, Name: launchHook, Transition: testpeers.AutoScalingTransitionLaunching,
		HeartbeatTimeout: hbTimeout, DefaultResult: "ABANDON"})
	token := env.ASG.StartAction(testenv.Group, launchHook, aemmInstance)
	if inst, _ := env.ASG.Instance(aemmInstance); inst.LifecycleState != "Pending:Wait" {
		t.Fatalf("instance %s, want Pending:Wait", inst.LifecycleState)
	}
	d := startDaemon(t, "L-launch", env, w1.URL, map[string]string{
		"SCALEDOWND_AWS_LAUNCH_HOOK_NAME":     launchHook,
		"SCALEDOWND_TRINO_COORDINATOR_URL":    c.CoordURL,
		"SCALEDOWND_LIFECYCLE_LAUNCH_TIMEOUT": "4m",
		"SCALEDOWND_TRINO_POLL_INTERVAL":      "500ms",
	})
	sent := time.Now()
	msgID := env.SQS.Send(env.QueueURL, env.ASG.Message(token).Direct())
	d.firstLog(t, "waiting for the trino worker to be ACTIVE", func(r logRec) bool { return r.str("trino_state") == "unreachable" })

	// Worker 1 starts now; the test watches it and the coordinator's view.
	ready := watchReady(t, w1.URL)
	view := watchNode(t, c, w1.ID)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("worker-1 seen by the test: %s", ready)
			t.Logf("coordinator's view of worker-1: %s", view)
			t.Logf("scaledownd log tail:\n%s", d.tail(40))
		}
	})
	launched := time.Now()
	restartWorker(t, c, 1, "WORKER_PORT="+port) // returns once the coordinator lists it active
	if c = readCluster(t); c.Workers[1].URL != w1.URL {
		t.Fatalf("worker 1 restarted on %s, want %s", c.Workers[1].URL, w1.URL)
	}
	act := waitAction(t, env, token, 3*time.Minute)
	completedContinue(t, act)
	waitDeleted(t, env, msgID, 30*time.Second)

	readyAt := ready.ready()
	first, lastNot, listed := view.firstActive()
	switch {
	case readyAt.IsZero():
		t.Fatalf("the test never saw worker-1 ACTIVE and started: %s", ready)
	case !listed:
		t.Fatalf("the test never saw the coordinator list worker-1 active: %s", view)
	case lastNot.Asked.IsZero():
		t.Fatalf("the coordinator listed worker-1 active at the test's first look: %s", view)
	}
	t.Logf("worker-1 launched %s, ACTIVE and started %s; coordinator: not active when asked %s, active when asked %s (answered %s); CONTINUE %s",
		launched.Format("15:04:05.000"), readyAt.Format("15:04:05.000"), lastNot.Asked.Format("15:04:05.000"),
		first.Asked.Format("15:04:05.000"), first.Answered.Format("15:04:05.000"), act.CompletedAt.Format("15:04:05.000"))

	// CONTINUE only after the worker was ACTIVE, and after a moment the
	// coordinator did not list it active yet: it listed it later than that
	// query's start, the daemon completed later still.
	if !act.CompletedAt.After(readyAt) {
		t.Errorf("CONTINUE at %s, before the worker was ACTIVE and started at %s", act.CompletedAt.Format("15:04:05.000"), readyAt.Format("15:04:05.000"))
	}
	if !act.CompletedAt.After(lastNot.Asked) {
		t.Errorf("CONTINUE at %s, before the coordinator was seen not listing worker-1 active (asked %s)", act.CompletedAt.Format("15:04:05.000"), lastNot.Asked.Format("15:04:05.000"))
	}
	// The window the check exists for: ACTIVE, but not yet scheduled on.
	// The daemon saw the worker ACTIVE while the coordinator did not list it,
	// and waited; the test saw that window too.
	waiting := d.firstLog(t, "trino worker is ACTIVE; waiting until the coordinator lists it as active", nil)
	var views []string
	var activeView logRec
	for _, r := range d.logs("coordinator's view of this worker", nil) {
		views = append(views, r.str("coordinator_state"))
		if r.str("coordinator_state") == "active" && activeView.TS.IsZero() {
			activeView = r
		}
		if r.str("node_id") != w1.ID {
			t.Errorf("daemon asked about node %q, want %s", r.str("node_id"), w1.ID)
		}
	}
	if len(views) < 2 || views[0] == "active" || activeView.TS.IsZero() {
		t.Errorf("daemon's views of worker-1 on the coordinator: %v, want it unlisted (or not active) first, then active", views)
	}
	if !waiting.TS.Before(act.CompletedAt) || activeView.TS.Before(waiting.TS) || !act.CompletedAt.After(activeView.TS) {
		t.Errorf("daemon: worker ACTIVE logged %s, coordinator active logged %s, CONTINUE %s: out of order", waiting.TS, activeView.TS, act.CompletedAt)
	}
	if !lastNot.Asked.After(readyAt) {
		t.Errorf("the coordinator listed worker-1 active no later than it had finished starting (%s): no window seen by the test", readyAt.Format("15:04:05.000"))
	}
	details("L-launch", "daemon's views of the coordinator", strings.Join(views, " → "))
	completed := d.firstLog(t, "lifecycle action completed", nil)
	if completed.str("result") != "CONTINUE" || completed.str("reason") != "active" {
		t.Errorf("completion log: %s", completed)
	}
	if v := d.metric(t, "scaledownd_lifecycle_actions_completed_total", "result", "CONTINUE", "reason", "active"); v != 1 {
		t.Errorf(`scaledownd_lifecycle_actions_completed_total{result="CONTINUE",reason="active"} = %v, want 1`, v)
	}
	if n := env.ASG.CallCount("CompleteLifecycleAction"); n != 1 {
		t.Errorf("%d CompleteLifecycleAction calls, want 1", n)
	}
	if act.CompletedAt.Sub(act.Started) > hbTimeout/2 {
		checkHeartbeats(t, act, hbTimeout)
	}
	for _, r := range d.levelLogs("error") {
		t.Errorf("unexpected error log: %s", r)
	}
	if st := workerState(w1.URL); st != "ACTIVE" {
		t.Errorf("worker-1 is %s after the launch, want ACTIVE", st)
	}
	tl := trinoLog(t, c, "worker-1", launched)
	for _, l := range tl {
		if strings.Contains(l.Msg, "State change requested") {
			t.Errorf("worker-1 logged a state change request during the launch: %s", l.Msg)
		}
	}

	details("L-launch", "message sent → worker launch", secs(launched.Sub(sent)))
	details("L-launch", "worker launch → ACTIVE and started (test, 100 ms polls)", secs(readyAt.Sub(launched)))
	details("L-launch", "ACTIVE → coordinator lists it active (test, between its looks)",
		fmt.Sprintf("%s–%s", secs(lastNot.Asked.Sub(readyAt)), secs(first.Answered.Sub(readyAt))))
	details("L-launch", "coordinator active (test saw it) → CONTINUE", secs(act.CompletedAt.Sub(first.Answered)))
	details("L-launch", "ACTIVE → CONTINUE", secs(act.CompletedAt.Sub(readyAt)))
	details("L-launch", "action held until CONTINUE", secs(act.CompletedAt.Sub(act.Started)))
	details("L-launch", "heartbeats", len(act.Heartbeats))
	details("L-launch", "worker-1 seen", ready.String())
	details("L-launch", "coordinator's view", view.String())
}
