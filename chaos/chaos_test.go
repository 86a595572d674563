//go:build chaos

package chaos

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"

	"github.com/scaledownd/scaledownd/internal/testenv"
	"github.com/scaledownd/scaledownd/internal/testpeers"
)

// Timing shared by the rows. The hook's HeartbeatTimeout is 6 s (heartbeats
// every 3 s) so a SIGKILL and a restart fit well inside one timeout.
const (
	hbt6 = 6 * time.Second
	// sqsFaultWindow is how long row 6 keeps SQS failing: the full 60 s of
	// the matrix, long enough for the daemon's backoff to reach its 30 s cap.
	sqsFaultWindow = 60 * time.Second
)

// TestChaos is the fault matrix. Row 15 (10,000 messages, a timing and
// memory bound) runs alone first; every other row has its own peers, ports
// and state directory and runs in parallel with the others (go test's
// -parallel, GOMAXPROCS by default).
func TestChaos(t *testing.T) {
	t.Run("row15_flood_foreign_malformed", row15)

	parallel := []struct {
		name string
		fn   func(*testing.T)
	}{
		{"row01_sigkill_idle", row01},
		{"row02_sigkill_drain_started", row02},
		{"row03_sigkill_heartbeating", row03},
		{"row04_sigkill_drained_before_completion", row04},
		{"row05_sigkill_completed_before_delete", row05},
		{"row06_sqs_errors", row06},
		{"row07_autoscaling_errors", row07},
		{"row08_lifecycle_not_found", row08},
		{"row09_trino_not_running", row09},
		{"row10_trino_hangs", row10},
		{"row11_trino_crashes_mid_drain", row11},
		{"row12_trino_forbidden", row12},
		{"row13_imds_down_at_start", row13},
		{"row14_duplicate_deliveries", row14},
		{"row16_message_bodies", row16},
		{"row18_sigterm_mid_drain", row18},
		{"row19_unconfirmed_own_message", row19},
		{"row20_ended_action_in_service", row20},
		{"row30_drain_report_survives_sigkill", row30},
		{"row21_22_foreign_message_beside_a_redrive_queue", rows21and22},
		{"row23_delete_fails_after_completion", row23},
	}
	for _, r := range parallel {
		t.Run(r.name, func(t *testing.T) {
			t.Parallel()
			r.fn(t)
		})
	}
}

// ---------------------------------------------------------------------------
// rows 1–5: SIGKILL in each phase, restart with the same state directory

// resumeCheck is what rows 1–5 and 18 assert once the restarted daemon has
// finished: the action completed with CONTINUE exactly once and never
// lapsed, no gap between signs of life reached the HeartbeatTimeout, and
// the message is deleted.
type resumeCheck struct {
	token, msgID string
	// completeCalls is how many CompleteLifecycleAction requests for the
	// token the row expects in all: 1, plus those it made fail on purpose.
	completeCalls int
	// drainingPuts is how many PUT DRAINING the worker may see (-1: don't
	// check).
	drainingPuts int
}

func assertResumed(t *testing.T, r *rowResult, w *world, d *daemon, c resumeCheck, killedAt, restartedAt time.Time) {
	t.Helper()
	act := w.awaitAction(t, c.token, 60*time.Second)
	if act.State != testpeers.AutoScalingActionCompleted || act.Result != testpeers.AutoScalingContinue {
		t.Fatalf("action ended %s/%s (%s), want completed with CONTINUE", act.State, act.Result, act.ExpiryReason)
	}
	if !act.ExpiredAt.IsZero() {
		t.Fatalf("action expired at %s (%s)", act.ExpiredAt, act.ExpiryReason)
	}
	// Exactly one CompleteLifecycleAction succeeded: the fake accepts only
	// one (the one at CompletedAt); none may follow it, and the total is the
	// successful one plus the failures the row caused on purpose.
	calls := w.asgCalls("CompleteLifecycleAction", c.token)
	after := 0
	for _, call := range calls {
		if call.At.After(act.CompletedAt) {
			after++
		}
	}
	if after != 0 {
		t.Errorf("%d CompleteLifecycleAction calls after the action was completed", after)
	}
	if len(calls) != c.completeCalls {
		t.Errorf("%d CompleteLifecycleAction calls for the token, want %d", len(calls), c.completeCalls)
	}
	gap := maxHeartbeatGap(act)
	if gap >= w.HBT {
		t.Errorf("the action went %s without a heartbeat (HeartbeatTimeout %s): started %s, heartbeats %v, completed %s",
			gap, w.HBT, act.Started.Format("15:04:05.000"), fmtTimes(act.Heartbeats), act.CompletedAt.Format("15:04:05.000"))
	}
	if c.drainingPuts >= 0 && w.Trino != nil {
		if n := w.statePuts("DRAINING"); n != c.drainingPuts {
			t.Errorf("PUT DRAINING %d times, want %d (the resumed drain joins the one under way)", n, c.drainingPuts)
		}
	}
	m := w.awaitDeleted(t, c.msgID, 20*time.Second)
	ready := d.waitLog("scaledownd ready: watching for lifecycle actions", 10*time.Second).time()
	r.measure(t, "down %s (stopped → restarted daemon polling)", ms(ready.Sub(killedAt)))
	if act.CompletedAt.After(restartedAt) {
		r.measure(t, "completed %s after the restart", ms(act.CompletedAt.Sub(restartedAt)))
	} else {
		r.measure(t, "completed before the kill; the restart only deleted the message")
	}
	r.measure(t, "heartbeats %d, longest gap %s (timeout %s)", len(act.Heartbeats), ms(gap), w.HBT)
	r.measure(t, "CompleteLifecycleAction calls %d (1 succeeded)", len(calls))
	r.measure(t, "message deleted %s after completion", ms(m.DeletedAt.Sub(act.CompletedAt)))
}

func fmtTimes(ts []time.Time) string {
	s := make([]string, len(ts))
	for i, t := range ts {
		s[i] = t.Format("15:04:05.000")
	}
	return "[" + strings.Join(s, " ") + "]"
}

func row01(t *testing.T) {
	r := row(t, "SIGKILL while idle (long poll in flight)",
		"restart with the same state dir; the action that starts meanwhile is drained and completed once, message deleted")
	w := newWorld(t, worldOpts{hbt: hbt6})
	d := startDaemon(t, w, nil)
	d.waitReady()
	eventually(t, 10*time.Second, "a long poll in flight after a finished one", func() bool { return w.SQS.CallCount("ReceiveMessage") >= 2 })
	d.kill()
	killedAt := time.Now()

	// Scale-in while the daemon is down.
	token, msg := w.terminate()
	id := w.SQS.Send(w.QueueURL, msg.Direct())
	restartedAt := time.Now()
	d.restart()
	d.waitReady()
	// A long poll of the killed process may still have been open on the
	// fake for a moment: if it took the message, the message is hidden for
	// the 30 s visibility timeout (as on real SQS, which can hand a message
	// to a connection that just died). Let that timeout run out at once
	// instead of waiting 30 s.
	if m, _ := w.message(id); m.ReceiveCount > 0 && m.FirstReceivedAt.Before(restartedAt) {
		r.measure(t, "message taken by the dead long poll; visibility expired by the test")
		w.SQS.ExpireVisibility(w.QueueURL, id)
	}
	assertResumed(t, r, w, d, resumeCheck{token: token, msgID: id, completeCalls: 1, drainingPuts: 1}, killedAt, restartedAt)
}

func row02(t *testing.T) {
	r := row(t, "SIGKILL right after PUT DRAINING (worker DRAINING, a query running)",
		"restart joins the drain (no second DRAINING), completes once, no heartbeat gap ≥ timeout, message deleted")
	w := newWorld(t, worldOpts{hbt: hbt6})
	finish := w.Trino.AddBlockedTask()
	defer finish()
	d := startDaemon(t, w, nil)
	d.waitReady()
	token, msg := w.terminate()
	id := w.SQS.Send(w.QueueURL, msg.Direct())
	eventually(t, 15*time.Second, "worker DRAINING", func() bool {
		return w.statePuts("DRAINING") == 1 && w.Trino.State() == testpeers.TrinoDraining
	})
	d.kill()
	killedAt := time.Now()
	restartedAt := time.Now()
	d.restart()
	d.waitLog("resuming a lifecycle action from the state directory", 15*time.Second)
	d.waitLog("trino worker is already leaving service", 15*time.Second)
	finish() // the query ends; the worker reports DRAINED
	assertResumed(t, r, w, d, resumeCheck{token: token, msgID: id, completeCalls: 1, drainingPuts: 1}, killedAt, restartedAt)
}

func row03(t *testing.T) {
	r := row(t, "SIGKILL while heartbeating (≥ 2 heartbeats recorded, worker DRAINING)",
		"restart resumes heartbeats before the timeout, joins the drain, completes once, message deleted")
	w := newWorld(t, worldOpts{hbt: hbt6})
	finish := w.Trino.AddBlockedTask()
	defer finish()
	d := startDaemon(t, w, nil)
	d.waitReady()
	token, msg := w.terminate()
	id := w.SQS.Send(w.QueueURL, msg.Direct())
	eventually(t, 20*time.Second, "two heartbeats recorded", func() bool { return len(w.action(token).Heartbeats) >= 2 })
	if n := w.ASG.CallCount("CompleteLifecycleAction"); n != 0 {
		t.Fatalf("completed during the drain (%d calls)", n)
	}
	d.kill()
	killedAt := time.Now()
	restartedAt := time.Now()
	d.restart()
	d.waitLog("resuming a lifecycle action from the state directory", 15*time.Second)
	hbBefore := len(w.action(token).Heartbeats)
	eventually(t, 10*time.Second, "a heartbeat from the restarted daemon", func() bool { return len(w.action(token).Heartbeats) > hbBefore })
	finish()
	assertResumed(t, r, w, d, resumeCheck{token: token, msgID: id, completeCalls: 1, drainingPuts: 1}, killedAt, restartedAt)
}

func row04(t *testing.T) {
	r := row(t, "SIGKILL after DRAINED, during CompleteLifecycleAction (fake delays it 3 s)",
		"restart completes from the persisted reason without draining again; exactly one completion succeeds, message deleted")
	w := newWorld(t, worldOpts{hbt: hbt6})
	w.ASG.InjectFault("CompleteLifecycleAction", testpeers.Fault{Delay: 3 * time.Second, Times: 1})
	d := startDaemon(t, w, nil)
	d.waitReady()
	token, msg := w.terminate()
	id := w.SQS.Send(w.QueueURL, msg.Direct())
	d.waitLog("trino worker drained", 20*time.Second)
	eventually(t, 10*time.Second, "CompleteLifecycleAction under way", func() bool { return w.ASG.CallCount("CompleteLifecycleAction") >= 1 })
	d.kill() // while the fake still holds the completion
	killedAt := time.Now()
	if act := w.action(token); act.State != testpeers.AutoScalingActionPending {
		t.Fatalf("action %s before the kill; the row needs it pending", act.State)
	}
	restartedAt := time.Now()
	d.restart()
	d.waitLog("resumed action was drained before the restart; completing it", 15*time.Second)
	// Calls: the one abandoned by the killed process, then the successful one.
	assertResumed(t, r, w, d, resumeCheck{token: token, msgID: id, completeCalls: 2, drainingPuts: 1}, killedAt, restartedAt)
	if act := w.action(token); act.CompletedAt.Before(restartedAt) {
		t.Errorf("completed at %s, before the restart: the killed process's call went through", act.CompletedAt.Format("15:04:05.000"))
	}
}

func row05(t *testing.T) {
	r := row(t, "SIGKILL after CompleteLifecycleAction succeeded, while DeleteMessage hangs",
		"restart only deletes the message (no second completion, no drain)")
	w := newWorld(t, worldOpts{hbt: hbt6})
	w.SQS.InjectFault("DeleteMessage", testpeers.Fault{Hang: true})
	d := startDaemon(t, w, nil)
	d.waitReady()
	token, msg := w.terminate()
	id := w.SQS.Send(w.QueueURL, msg.Direct())
	// CompletedAt set, and the delete has reached the fake (which proves the
	// completion was persisted: the job saves "completed" before it deletes).
	eventually(t, 20*time.Second, "completed and the delete hanging", func() bool {
		return !w.action(token).CompletedAt.IsZero() && w.SQS.CallCount("DeleteMessage") >= 1
	})
	d.kill()
	killedAt := time.Now()
	w.SQS.ClearFaults()
	if m, _ := w.message(id); m.Deleted {
		t.Fatal("message deleted through a hung call")
	}
	restartedAt := time.Now()
	d.restart()
	d.waitLog("resumed action was already completed; deleting its messages", 15*time.Second)
	assertResumed(t, r, w, d, resumeCheck{token: token, msgID: id, completeCalls: 1, drainingPuts: 1}, killedAt, restartedAt)
}

// ---------------------------------------------------------------------------
// row 18: SIGTERM mid-drain

func row18(t *testing.T) {
	r := row(t, "SIGTERM mid-drain (worker DRAINING, a query running)",
		"exit within 5 s without completing or deleting; a restart resumes, joins the drain and completes")
	w := newWorld(t, worldOpts{hbt: hbt6})
	finish := w.Trino.AddBlockedTask()
	defer finish()
	d := startDaemon(t, w, nil)
	d.waitReady()
	token, msg := w.terminate()
	id := w.SQS.Send(w.QueueURL, msg.Direct())
	eventually(t, 15*time.Second, "worker DRAINING", func() bool { return w.statePuts("DRAINING") == 1 })
	d.waitLog("lifecycle action received", 5*time.Second)
	took, code := d.term()
	killedAt := time.Now()
	r.measure(t, "exit %s after SIGTERM, code %d", ms(took), code)
	if took > 5*time.Second {
		t.Errorf("took %s to exit after SIGTERM, want ≤ 5 s", took)
	}
	if code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}
	if n := w.ASG.CallCount("CompleteLifecycleAction"); n != 0 {
		t.Fatalf("a stopping daemon called CompleteLifecycleAction %d times", n)
	}
	if m, _ := w.message(id); m.Deleted {
		t.Fatal("a stopping daemon deleted the message")
	}
	if d.count("leaving the action uncompleted", "") == 0 {
		t.Error("no log line says the action is left for the next start")
	}
	restartedAt := time.Now()
	d.restart()
	d.waitLog("resuming a lifecycle action from the state directory", 15*time.Second)
	d.waitLog("trino worker is already leaving service", 15*time.Second)
	finish()
	assertResumed(t, r, w, d, resumeCheck{token: token, msgID: id, completeCalls: 1, drainingPuts: 1}, killedAt, restartedAt)
}

// ---------------------------------------------------------------------------
// row 6: SQS failing

// row06 makes every ReceiveMessage fail for sqsFaultWindow, rotating 500
// InternalError, 503 ServiceUnavailable and 400 RequestThrottled.
//
// Bound: the SDK makes at most aws.max-attempts = 3 attempts per call; the
// daemon waits 1 s after a failed call, doubling up to 30 s. Call starts are
// therefore at least 1, 2, 4, 8, 16, 30, … s apart (SDK retry delays and
// call durations only widen them): in 60 s at most 6 calls (starts at ≤ 0,
// 1, 3, 7, 15, 31 s; the next at ≥ 61 s) = 18 requests. The 20 s long poll
// adds no request.
func row06(t *testing.T) {
	r := row(t, fmt.Sprintf("SQS answers 500 / 503 / RequestThrottled to every ReceiveMessage for %s", sqsFaultWindow),
		"≤ 18 ReceiveMessage requests in the window (3 SDK attempts × 6 daemon polls under the 1 s→30 s backoff); no crash; "+
			"the first poll after the fault clears receives a new message, which is handled")
	w := newWorld(t, worldOpts{hbt: hbt6})
	d := startDaemon(t, w, nil)
	d.waitReady()
	eventually(t, 10*time.Second, "a first poll", func() bool { return w.SQS.CallCount("ReceiveMessage") >= 1 })

	faults := []testpeers.Fault{
		{Status: 500, Code: "InternalError"},
		{Status: 503, Code: "ServiceUnavailable"},
		{Status: 400, Code: "RequestThrottled", Message: "Rate exceeded"},
	}
	// Counted from the moment the fault is in place: every request that
	// arrives from then on fails. (The long poll already open ends normally
	// within aws.wait-time; the first failing call starts after it.)
	w.SQS.InjectFault("ReceiveMessage", faults[0])
	faultStart := time.Now()
	// The window itself is a fixed duration: it is the fault, not a wait
	// for an outcome. Every 10 s the error kind changes.
	for i := 1; time.Since(faultStart) < sqsFaultWindow; i++ {
		time.Sleep(min(10*time.Second, sqsFaultWindow-time.Since(faultStart)))
		if !d.alive() {
			t.Fatalf("daemon exited during the SQS outage")
		}
		if time.Since(faultStart) < sqsFaultWindow {
			w.SQS.InjectFault("ReceiveMessage", faults[i%len(faults)])
		}
	}
	w.SQS.ClearFaults()
	clearedAt := time.Now()
	inWindow := len(w.sqsCalls("ReceiveMessage", faultStart, clearedAt))
	token, msg := w.terminate()
	id := w.SQS.Send(w.QueueURL, msg.Direct())

	eventually(t, 40*time.Second, "message received after the outage", func() bool {
		m, _ := w.message(id)
		return m.ReceiveCount > 0
	})
	m, _ := w.message(id)
	// Recovery within one poll: the first ReceiveMessage that reached the
	// fake after the fault cleared is the one that got the message.
	polls := len(w.sqsCalls("ReceiveMessage", clearedAt, m.FirstReceivedAt.Add(time.Nanosecond)))
	act := w.awaitAction(t, token, 30*time.Second)
	if act.State != testpeers.AutoScalingActionCompleted || act.Result != testpeers.AutoScalingContinue {
		t.Fatalf("action ended %s/%s", act.State, act.Result)
	}
	w.awaitDeleted(t, id, 20*time.Second)

	const bound = 18
	pollErrors := d.metric("scaledownd_sqs_poll_errors_total")
	r.measure(t, "%d ReceiveMessage requests in %s (bound %d, %.2f/s), %v failed polls after SDK retries",
		inWindow, sqsFaultWindow, bound, float64(inWindow)/sqsFaultWindow.Seconds(), pollErrors)
	r.measure(t, "longest backoff logged %s", longestBackoff(d))
	r.measure(t, "after clearing: message received %s later by poll #%d, action completed %s later",
		ms(m.FirstReceivedAt.Sub(clearedAt)), polls, ms(act.CompletedAt.Sub(clearedAt)))
	if inWindow > bound {
		t.Errorf("%d ReceiveMessage requests during the %s outage, bound %d", inWindow, sqsFaultWindow, bound)
	}
	if inWindow < 3 {
		t.Errorf("only %d ReceiveMessage requests during the outage: the fault was not exercised", inWindow)
	}
	// 0 means the poll that got it arrived between ClearFaults and the
	// clock reading after it: the first poll too.
	if polls > 1 {
		t.Errorf("the message came with ReceiveMessage #%d after the fault cleared, want the first", polls)
	}
	// The next poll comes at the latest when the backoff in progress (at
	// most 30 s) ends.
	if lat := m.FirstReceivedAt.Sub(clearedAt); lat > 30*time.Second+5*time.Second {
		t.Errorf("message received %s after the fault cleared, want within the 30 s backoff cap", lat)
	}
	if code, body := d.get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz %d %s after the outage", code, body)
	}
}

// longestBackoff is the largest backoff the daemon logged for a failed poll.
func longestBackoff(d *daemon) string {
	var longest time.Duration
	for _, l := range d.linesWith("receive from the lifecycle queue failed") {
		if s, ok := l.fields["backoff"].(string); ok {
			if v, err := time.ParseDuration(s); err == nil {
				longest = max(longest, v)
			}
		}
		if f, ok := l.fields["backoff"].(float64); ok { // zap's default duration encoding: seconds
			longest = max(longest, time.Duration(f*float64(time.Second)))
		}
	}
	return longest.String()
}

// ---------------------------------------------------------------------------
// row 7: Auto Scaling failing on heartbeat and completion

func row07(t *testing.T) {
	r := row(t, "Auto Scaling: heartbeats 503 ×4 then Throttling ×3; completion Throttling ×3 then 500 ×2 (HeartbeatTimeout 12 s)",
		"every failure retried; the action never lapses (no gap ≥ 12 s); completed with CONTINUE once")
	// 12 s: heartbeats every 6 s leave 6 s for a failed call (three
	// throttled attempts back off up to 1 + 2 s in the SDK) and the keeper's
	// 1 s retry. With the 6 s timeout of the other rows, three throttled
	// attempts in a row could by themselves outlast the 3 s of headroom.
	const hbt = 12 * time.Second
	w := newWorld(t, worldOpts{hbt: hbt})
	w.ASG.InjectFault("RecordLifecycleActionHeartbeat", testpeers.Fault{Status: 503, Code: "ServiceUnavailable", Times: 4})
	w.ASG.InjectFault("CompleteLifecycleAction", testpeers.Fault{Status: 400, Code: "Throttling", Message: "Rate exceeded", Times: 3})
	d := startDaemon(t, w, nil)
	d.waitReady()
	w.Trino.AddTask(14 * time.Second) // a query outlasting two heartbeat intervals
	token, msg := w.terminate()
	id := w.SQS.Send(w.QueueURL, msg.Direct())

	eventually(t, 15*time.Second, "first heartbeat accepted after the 503s", func() bool { return len(w.action(token).Heartbeats) >= 1 })
	w.ASG.InjectFault("RecordLifecycleActionHeartbeat", testpeers.Fault{Status: 400, Code: "Throttling", Message: "Rate exceeded", Times: 3})
	// The completion's first call fails all three throttled attempts; the
	// next call comes after the daemon's 1 s backoff, and gets two 500s.
	eventually(t, 40*time.Second, "three throttled completion attempts", func() bool {
		return w.ASG.CallCount("CompleteLifecycleAction") >= 3
	})
	w.ASG.InjectFault("CompleteLifecycleAction", testpeers.Fault{Status: 500, Code: "InternalFailure", Times: 2})

	act := w.awaitAction(t, token, 40*time.Second)
	if act.State != testpeers.AutoScalingActionCompleted || act.Result != testpeers.AutoScalingContinue {
		t.Fatalf("action ended %s/%s (%s), want completed with CONTINUE", act.State, act.Result, act.ExpiryReason)
	}
	w.awaitDeleted(t, id, 20*time.Second)
	gap := maxHeartbeatGap(act)
	hbCalls := len(w.asgCalls("RecordLifecycleActionHeartbeat", token))
	completeCalls := len(w.asgCalls("CompleteLifecycleAction", token))
	r.measure(t, "heartbeat requests %d (7 failed on purpose), accepted %d, longest gap %s",
		hbCalls, len(act.Heartbeats), ms(gap))
	r.measure(t, "CompleteLifecycleAction requests %d (5 failed on purpose), completed %s after DRAINED",
		completeCalls, ms(act.CompletedAt.Sub(stateAt(w.Trino, testpeers.TrinoDrained))))
	r.measure(t, "heartbeats_total{result=error} %v", d.metric("scaledownd_lifecycle_heartbeats_total", "result", "error"))
	if gap >= hbt {
		t.Errorf("gap of %s without a heartbeat reaches the %s timeout: %v", gap, hbt, fmtTimes(act.Heartbeats))
	}
	if completeCalls != 6 {
		t.Errorf("%d CompleteLifecycleAction requests, want 3 throttled + 2 failed + 1 success", completeCalls)
	}
	if act.CompletedAt.Before(stateAt(w.Trino, testpeers.TrinoDrained)) {
		t.Error("completed before the worker was DRAINED")
	}
}

// stateAt returns when the worker first entered state.
func stateAt(w *testpeers.TrinoWorker, state string) time.Time {
	for _, c := range w.StateHistory() {
		if c.State == state {
			return c.At
		}
	}
	return time.Time{}
}

// ---------------------------------------------------------------------------
// row 8: "No active Lifecycle Action found"

func row08(t *testing.T) {
	t.Run("transient", row08transient)
	t.Run("persistent", row08persistent)
}

func row08transient(t *testing.T) {
	r := row(t, "\"No active Lifecycle Action found\" for the first 2 s of the action (SetActivationDelay 2 s), not-found window 6 s",
		"bounded retry wins: heartbeat and completion succeed once the action is visible; completed with CONTINUE")
	w := newWorld(t, worldOpts{hbt: hbt6})
	w.ASG.SetActivationDelay(2 * time.Second)
	d := startDaemon(t, w, map[string]string{"SCALEDOWND_LIFECYCLE_NOT_FOUND_WINDOW": "6s"})
	d.waitReady()
	token, msg := w.terminate()
	id := w.SQS.Send(w.QueueURL, msg.Direct())
	act := w.awaitAction(t, token, 30*time.Second)
	if act.State != testpeers.AutoScalingActionCompleted || act.Result != testpeers.AutoScalingContinue {
		t.Fatalf("action ended %s/%s (%s)", act.State, act.Result, act.ExpiryReason)
	}
	w.awaitDeleted(t, id, 20*time.Second)
	var early int
	for _, c := range append(w.asgCalls("RecordLifecycleActionHeartbeat", token), w.asgCalls("CompleteLifecycleAction", token)...) {
		if c.At.Before(act.ActiveAt) {
			early++
		}
	}
	eventually(t, 5*time.Second, "CONTINUE counted", func() bool {
		return d.metric("scaledownd_lifecycle_actions_completed_total", "result", "CONTINUE") == 1
	})
	notFound := d.metric("scaledownd_lifecycle_heartbeats_total", "result", "not-found")
	r.measure(t, "%d calls refused as not found before the action was visible; completed %s after it became visible",
		early, ms(act.CompletedAt.Sub(act.ActiveAt)))
	if early == 0 {
		t.Error("no call hit the activation delay: the row did not exercise the race")
	}
	if notFound < 1 {
		t.Errorf("heartbeats_total{result=not-found} = %v, want ≥ 1", notFound)
	}
	if n := d.metric("scaledownd_lifecycle_actions_completed_total", "result", "already-done"); n != 0 {
		t.Errorf("the action was taken for already done (%v)", n)
	}
}

func row08persistent(t *testing.T) {
	const window = 5 * time.Second
	r := row(t, "action completed behind the daemon's back (direct SDK call) before its message arrives; a fresh action for the instance whose token the daemon never sees",
		"\"not found\" believed after the 5 s not-found window: treated as done, message deleted; the fresh action untouched")
	w := newWorld(t, worldOpts{hbt: 30 * time.Second})
	d := startDaemon(t, w, map[string]string{"SCALEDOWND_LIFECYCLE_NOT_FOUND_WINDOW": window.String()})
	d.waitReady()
	token, msg := w.terminate()

	// Complete it through the SDK, as another tool (or an operator) would.
	client := autoscaling.New(autoscaling.Options{
		Region:       testenv.Region,
		BaseEndpoint: aws.String(w.ASG.URL()),
		Credentials:  credentials.NewStaticCredentialsProvider("AKIACHAOSCHAOSCHAOS0", "chaos-secret", ""),
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := client.CompleteLifecycleAction(ctx, &autoscaling.CompleteLifecycleActionInput{
		AutoScalingGroupName: aws.String(testenv.Group), LifecycleHookName: aws.String(testenv.Hook),
		LifecycleActionToken: aws.String(token), LifecycleActionResult: aws.String("CONTINUE"),
	}); err != nil {
		t.Fatalf("complete behind the daemon's back: %v", err)
	}
	behindBack := w.action(token).CompletedAt
	// The group moves on: a fresh action for this instance, never notified.
	w.ASG.AddInstance(w.Instance, testenv.Group, "InService")
	fresh := w.ASG.StartAction(testenv.Group, testenv.Hook, w.Instance)

	id := w.SQS.Send(w.QueueURL, msg.Direct())
	m := w.awaitDeleted(t, id, 30*time.Second)
	held := m.DeletedAt.Sub(m.FirstReceivedAt)
	eventually(t, 5*time.Second, "already-done counted", func() bool {
		return d.metric("scaledownd_lifecycle_actions_completed_total", "result", "already-done") == 1
	})
	r.measure(t, "message deleted %s after it was received (window %s)", ms(held), window)
	r.measure(t, "daemon's CompleteLifecycleAction calls %d, heartbeats %d, all refused",
		len(w.asgCalls("CompleteLifecycleAction", token)), len(w.asgCalls("RecordLifecycleActionHeartbeat", token)))
	if held < window-200*time.Millisecond {
		t.Errorf("message deleted %s after receipt, before the %s not-found window", held, window)
	}
	if act := w.action(token); !act.CompletedAt.Equal(behindBack) {
		t.Errorf("action completion time moved from %s to %s", behindBack, act.CompletedAt)
	}
	if f := w.action(fresh); f.State == testpeers.AutoScalingActionCompleted || len(f.Heartbeats) > 0 {
		t.Errorf("the fresh action the daemon never saw was touched: %s, %d heartbeats", f.State, len(f.Heartbeats))
	}
	for _, c := range w.ASG.Calls() {
		if (c.Op == "CompleteLifecycleAction" || c.Op == "RecordLifecycleActionHeartbeat") && c.Params["LifecycleActionToken"] == fresh {
			t.Errorf("the daemon addressed the fresh action: %s", c.Op)
		}
	}
}

// ---------------------------------------------------------------------------
// rows 9–12: the Trino worker misbehaving

func row09(t *testing.T) {
	const window = 3 * time.Second
	r := row(t, "no Trino worker listening at drain start (connection refused)",
		"completes with reason not-running after the 3 s not-running window")
	w := newWorld(t, worldOpts{hbt: hbt6, noTrino: true})
	d := startDaemon(t, w, map[string]string{"SCALEDOWND_TRINO_NOT_RUNNING_WINDOW": window.String()})
	d.waitReady()
	token, msg := w.terminate()
	id := w.SQS.Send(w.QueueURL, msg.Direct())
	act := w.awaitAction(t, token, 30*time.Second)
	if act.State != testpeers.AutoScalingActionCompleted || act.Result != testpeers.AutoScalingContinue {
		t.Fatalf("action ended %s/%s (%s)", act.State, act.Result, act.ExpiryReason)
	}
	w.awaitDeleted(t, id, 20*time.Second)
	// The drain starts together with the first heartbeat.
	hbs := w.asgCalls("RecordLifecycleActionHeartbeat", token)
	if len(hbs) == 0 {
		t.Fatal("no heartbeat")
	}
	took := act.CompletedAt.Sub(hbs[0].At)
	eventually(t, 5*time.Second, "reason not-running counted", func() bool {
		return d.metric("scaledownd_lifecycle_actions_completed_total", "result", "CONTINUE", "reason", "not-running") == 1
	})
	r.measure(t, "completed %s after the drain started (window %s)", ms(took), window)
	if took < window-100*time.Millisecond {
		t.Errorf("completed %s after the drain started, before the %s window", took, window)
	}
	if took > window+5*time.Second {
		t.Errorf("completed %s after the drain started, long after the %s window", took, window)
	}
	d.waitLog("no trino worker is running here", 5*time.Second)
}

func row10(t *testing.T) {
	const maxDrain = 10 * time.Second
	r := row(t, "Trino accepts connections and never answers (Hang), request timeout 1 s",
		"every call ends at its 1 s timeout; the deadline holds: completed at max-drain-time (10 s) with reason deadline")
	w := newWorld(t, worldOpts{hbt: hbt6})
	w.Trino.Hang(true)
	d := startDaemon(t, w, map[string]string{
		"SCALEDOWND_LIFECYCLE_MAX_DRAIN_TIME": maxDrain.String(),
		"SCALEDOWND_TRINO_REQUEST_TIMEOUT":    "1s",
	})
	d.waitReady()
	token, msg := w.terminate()
	id := w.SQS.Send(w.QueueURL, msg.Direct())
	act := w.awaitAction(t, token, 40*time.Second)
	if act.State != testpeers.AutoScalingActionCompleted || act.Result != testpeers.AutoScalingContinue {
		t.Fatalf("action ended %s/%s (%s)", act.State, act.Result, act.ExpiryReason)
	}
	w.awaitDeleted(t, id, 20*time.Second)
	took := act.CompletedAt.Sub(act.Started)
	reqs := w.Trino.Requests()
	var answered int
	for _, q := range reqs {
		if q.Status != 0 {
			answered++
		}
	}
	d.waitLog("deadline reached before the worker finished draining", 5*time.Second)
	timeouts := d.count("cannot read trino worker info", "warn")
	gap := maxHeartbeatGap(act)
	eventually(t, 5*time.Second, "reason deadline counted", func() bool {
		return d.metric("scaledownd_lifecycle_actions_completed_total", "reason", "deadline") == 1
	})
	r.measure(t, "completed %s after the action started (deadline %s)", ms(took), maxDrain)
	r.measure(t, "%d worker requests, each abandoned at its timeout (%d answered); %d timeout warnings; longest heartbeat gap %s",
		len(reqs), answered, timeouts, ms(gap))
	if took < maxDrain-100*time.Millisecond || took > maxDrain+2*time.Second {
		t.Errorf("completed %s after start, want at the %s deadline", took, maxDrain)
	}
	if len(reqs) < 3 || answered != 0 {
		t.Errorf("%d requests, %d answered: want several, each ended by its own timeout", len(reqs), answered)
	}
	if timeouts < 3 {
		t.Errorf("%d warnings about unreadable worker info, want one per timed-out call", timeouts)
	}
	if gap >= w.HBT {
		t.Errorf("heartbeat gap %s reaches the timeout", gap)
	}
}

func row11(t *testing.T) {
	r := row(t, "Trino process crashes mid-drain (worker DRAINING, a query running)",
		"the drain ends with reason exited and the action completes")
	w := newWorld(t, worldOpts{hbt: hbt6})
	finish := w.Trino.AddBlockedTask()
	defer finish()
	d := startDaemon(t, w, nil)
	d.waitReady()
	token, msg := w.terminate()
	id := w.SQS.Send(w.QueueURL, msg.Direct())
	eventually(t, 15*time.Second, "worker DRAINING", func() bool { return w.Trino.State() == testpeers.TrinoDraining })
	crashedAt := time.Now()
	w.Trino.Crash()
	act := w.awaitAction(t, token, 30*time.Second)
	if act.State != testpeers.AutoScalingActionCompleted || act.Result != testpeers.AutoScalingContinue {
		t.Fatalf("action ended %s/%s (%s)", act.State, act.Result, act.ExpiryReason)
	}
	w.awaitDeleted(t, id, 20*time.Second)
	eventually(t, 5*time.Second, "reason exited counted", func() bool {
		return d.metric("scaledownd_lifecycle_actions_completed_total", "reason", "exited") == 1
	})
	r.measure(t, "completed %s after the crash", ms(act.CompletedAt.Sub(crashedAt)))
	d.waitLog("trino worker process is gone", 5*time.Second)
}

func row12(t *testing.T) {
	const maxDrain = 8 * time.Second
	r := row(t, "Trino answers 403 to PUT /v1/info/state (user lacks system information write)",
		"error log naming the access-control fix; worker left ACTIVE; completed at max-drain-time (8 s) with reason deadline")
	w := newWorld(t, worldOpts{hbt: hbt6, trino: testpeers.TrinoOptions{WriteUsers: []string{"admin"}}})
	d := startDaemon(t, w, map[string]string{"SCALEDOWND_LIFECYCLE_MAX_DRAIN_TIME": maxDrain.String()})
	d.waitReady()
	token, msg := w.terminate()
	id := w.SQS.Send(w.QueueURL, msg.Direct())
	act := w.awaitAction(t, token, 40*time.Second)
	if act.State != testpeers.AutoScalingActionCompleted || act.Result != testpeers.AutoScalingContinue {
		t.Fatalf("action ended %s/%s (%s)", act.State, act.Result, act.ExpiryReason)
	}
	w.awaitDeleted(t, id, 20*time.Second)
	took := act.CompletedAt.Sub(act.Started)
	d.waitLog("access control must allow", 5*time.Second)
	errs := d.linesWith("access control must allow")
	eventually(t, 5*time.Second, "reason deadline counted", func() bool {
		return d.metric("scaledownd_lifecycle_actions_completed_total", "reason", "deadline") == 1
	})
	forbidden := d.metric("scaledownd_trino_api_requests_total", "outcome", "forbidden")
	r.measure(t, "completed %s after start (deadline %s); %d refused PUTs, %d error lines, forbidden counter %v",
		ms(took), maxDrain, w.statePuts(""), len(errs), forbidden)
	if took < maxDrain-100*time.Millisecond || took > maxDrain+2*time.Second {
		t.Errorf("completed %s after start, want at the %s deadline", took, maxDrain)
	}
	if len(errs) == 0 {
		t.Fatal("no log line names the access-control fix")
	}
	if l := errs[0]; l.level() != "error" || !strings.Contains(l.msg(), "system_information") {
		t.Errorf("the 403 log line is %s %q; want an error naming the system_information rule", l.level(), l.msg())
	}
	if forbidden < 1 {
		t.Error("forbidden requests not counted")
	}
	if s := w.Trino.State(); s != testpeers.TrinoActive {
		t.Errorf("worker %s, want ACTIVE (the drain was refused)", s)
	}
}

// ---------------------------------------------------------------------------
// row 13: IMDS down at start-up

func row13(t *testing.T) {
	const down = 6 * time.Second
	r := row(t, fmt.Sprintf("IMDS answers 503 for the first %s; instance id and region not configured", down),
		"retries, /readyz 503 naming instance metadata, process alive; ready once IMDS answers")
	imds := testpeers.NewIMDS(testpeers.IMDSOptions{InstanceID: testenv.InstanceID, Region: testenv.Region})
	t.Cleanup(imds.Close)
	imds.SetDown(true)
	w := newWorld(t, worldOpts{hbt: hbt6})
	d := startDaemon(t, w, map[string]string{
		"SCALEDOWND_AWS_INSTANCE_ID":   "",
		"SCALEDOWND_AWS_REGION":        "",
		"SCALEDOWND_AWS_IMDS_ENDPOINT": imds.URL(),
	})
	downSince := time.Now()
	eventually(t, 15*time.Second, "/readyz 503 naming instance metadata", func() bool {
		code, body := d.get("/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "instance metadata")
	})
	eventually(t, 15*time.Second, "IMDS retried", func() bool { return imds.CallCount("GetToken") >= 2 })
	// Keep IMDS down for the whole period: the check that the process
	// survives it needs the time to pass.
	time.Sleep(time.Until(downSince.Add(down)))
	if !d.alive() {
		t.Fatal("daemon exited while IMDS was down")
	}
	if code, _ := d.get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz %d while waiting for IMDS, want 200 (alive, only not ready)", code)
	}
	tokenCalls := imds.CallCount("GetToken")
	retries := d.count("cannot read instance metadata", "warn")
	imds.SetDown(false)
	upAt := time.Now()
	eventually(t, 40*time.Second, "/readyz 200 once IMDS answers", func() bool {
		code, _ := d.get("/readyz")
		return code == http.StatusOK
	})
	readyAfter := time.Since(upAt)
	l := d.waitLog("identity resolved", 5*time.Second)
	if id, _ := l.fields["instance_id"].(string); id != testenv.InstanceID {
		t.Errorf("identity resolved to %q, want %s", id, testenv.InstanceID)
	}
	d.waitLog("scaledownd ready: watching for lifecycle actions", 10*time.Second)
	r.measure(t, "%d IMDS token requests and %d retry warnings while down for %s; ready %s after IMDS returned",
		tokenCalls, retries, down, ms(readyAfter))
	if readyAfter > 31*time.Second {
		t.Errorf("ready %s after IMDS returned, want within the 30 s retry cap", readyAfter)
	}
}

// ---------------------------------------------------------------------------
// row 14: duplicate deliveries

func row14(t *testing.T) {
	r := row(t, "the same notification queued 3× at once plus its SNS shape, and once more after completion",
		"one PUT DRAINING, one CompleteLifecycleAction; all five messages deleted")
	w := newWorld(t, worldOpts{hbt: hbt6})
	d := startDaemon(t, w, nil)
	d.waitReady()
	w.Trino.AddTask(1500 * time.Millisecond)
	token, msg := w.terminate()
	bodies := []string{msg.Direct(), msg.Direct(), msg.Direct(), msg.SNS()}
	ids := make([]string, len(bodies))
	var wg sync.WaitGroup
	for i, b := range bodies {
		wg.Add(1)
		go func() { defer wg.Done(); ids[i] = w.SQS.Send(w.QueueURL, b) }()
	}
	wg.Wait()
	act := w.awaitAction(t, token, 30*time.Second)
	if act.State != testpeers.AutoScalingActionCompleted || act.Result != testpeers.AutoScalingContinue {
		t.Fatalf("action ended %s/%s", act.State, act.Result)
	}
	for _, id := range ids {
		w.awaitDeleted(t, id, 20*time.Second)
	}
	late := w.SQS.Send(w.QueueURL, msg.Direct())
	w.awaitDeleted(t, late, 20*time.Second)
	completes, drains := w.ASG.CallCount("CompleteLifecycleAction"), w.statePuts("DRAINING")
	// The log lines precede the deletions the fake saw; the pipe may lag.
	var joined, redelivered int
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		joined = d.count("duplicate delivery of the action in progress", "")
		redelivered = d.count("redelivery of an action already finished", "")
		if joined+redelivered >= 4 || time.Now().After(deadline) {
			break
		}
	}
	r.measure(t, "PUT DRAINING %d, CompleteLifecycleAction %d, duplicates joined %d, redeliveries deleted %d",
		drains, completes, joined, redelivered)
	if completes != 1 {
		t.Errorf("CompleteLifecycleAction %d times, want 1", completes)
	}
	if drains != 1 {
		t.Errorf("PUT DRAINING %d times, want 1", drains)
	}
	if joined+redelivered < 4 {
		t.Errorf("%d duplicates joined and %d redeliveries recognised, want 4 in all", joined, redelivered)
	}
}

// ---------------------------------------------------------------------------
// row 15: a flood of foreign and malformed messages

const (
	floodForeign   = 8000
	floodMalformed = 2000
	// floodSeed fixes the fake's random delivery order so the row is
	// reproducible. The number of receives until the own message is picked
	// is geometric (each receive takes 10 of ~8,000 visible messages):
	// simulating the fake's shuffle for seeds 1–400 gives a median of 622
	// receives, p90 1,981, p99 3,951. Seed 34 needs 684: a typical order,
	// not a lucky one. CHAOS_FLOOD_SEED overrides it for exploration.
	floodSeed = 34
)

func floodSeedValue() uint64 {
	if v, err := strconv.ParseUint(os.Getenv("CHAOS_FLOOD_SEED"), 10, 64); err == nil && v > 0 {
		return v
	}
	return floodSeed
}

func row15(t *testing.T) {
	r := row(t, fmt.Sprintf("%d foreign and %d malformed messages queued together with this node's own", floodForeign, floodMalformed),
		"own action completed within 30 s of the daemon being ready; peak RSS < 64 MiB; no message of another (live) instance deleted")
	// HeartbeatTimeout 60 s: the action starts before the flood is queued
	// and the daemon started; this row measures throughput, not heartbeats.
	w := newWorld(t, worldOpts{hbt: time.Minute, seed: floodSeedValue()})
	token, msg := w.terminate()
	shapes := []func(testpeers.LifecycleMessage) string{
		testpeers.LifecycleMessage.Direct, testpeers.LifecycleMessage.SNS, testpeers.LifecycleMessage.EventBridge,
	}
	for i := 0; i < floodForeign; i++ {
		m := testpeers.LifecycleMessage{Group: testenv.Group, Hook: testenv.Hook,
			InstanceID: fmt.Sprintf("i-%017x", 0x1000+i), Token: fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i)}
		switch i % 10 {
		case 7: // this instance, another group's hook
			m.InstanceID, m.Group = w.Instance, "other-workers"
		case 8: // this instance, another group
			m.InstanceID, m.Group, m.Hook = w.Instance, "spark-workers", "spark-drain"
		default:
			// A live action of another worker: its instance waits in the
			// group, so no daemon may take its message for a stale one.
			w.ASG.AddInstance(m.InstanceID, testenv.Group, "Terminating:Wait")
		}
		w.SQS.Send(w.QueueURL, shapes[i%len(shapes)](m))
	}
	malformed := []string{
		`not json at all`,
		`{"LifecycleTransition":"autoscaling:EC2_INSTANCE_TERMINATING","EC2InstanceId":42}`,
		`{"Event":"autoscaling:EC2_INSTANCE_LAUNCH","AutoScalingGroupName":"trino-workers"}`,
		`{"Type":"Notification","Message":{"nested":"object"}}`,
		`{"LifecycleTransition":"autoscaling:EC2_INSTANCE_TERMINATING","EC2InstanceId":"` + w.Instance + `"}`,
		`[1,2,3]`,
		`{"source":"aws.autoscaling","detail-type":"EC2 Instance-terminate Lifecycle Action","detail":"oops"}`,
	}
	for i := 0; i < floodMalformed; i++ {
		w.SQS.Send(w.QueueURL, malformed[i%len(malformed)])
	}
	ownID := w.SQS.Send(w.QueueURL, msg.Direct())

	d := startDaemon(t, w, nil)
	d.waitLog("scaledownd ready: watching for lifecycle actions", 30*time.Second)
	readyAt := time.Now()
	act := w.awaitAction(t, token, 120*time.Second)
	handled := act.CompletedAt.Sub(readyAt)
	own := w.awaitDeleted(t, ownID, 30*time.Second)
	rss, err := d.peakRSS()
	if err != nil {
		t.Fatal(err)
	}
	receives := w.SQS.CallCount("ReceiveMessage")
	foreign := d.metric("scaledownd_sqs_messages_received_total", "kind", "foreign")
	bad := d.metric("scaledownd_sqs_messages_received_total", "kind", "malformed")
	r.measure(t, "own message first received %s and action completed %s after ready (own receive count %d)",
		ms(own.FirstReceivedAt.Sub(readyAt)), ms(handled), own.ReceiveCount)
	r.measure(t, "seed %d: %d ReceiveMessage calls; %v foreign and %v malformed receipts counted", floodSeedValue(), receives, foreign, bad)
	r.measure(t, "per receive cycle: %s", cycleCost(w.SQS.Calls(), readyAt, own.FirstReceivedAt))
	r.measure(t, "peak RSS (VmHWM) %.1f MiB", float64(rss)/(1<<20))
	r.measure(t, "Auto Scaling lookups of other instances (stale checks, rate-limited): %d DescribeAutoScalingInstances",
		w.ASG.CallCount("DescribeAutoScalingInstances"))
	if act.State != testpeers.AutoScalingActionCompleted || act.Result != testpeers.AutoScalingContinue {
		t.Errorf("action ended %s/%s", act.State, act.Result)
	}
	if handled > 30*time.Second {
		t.Errorf("own action completed %s after the daemon was ready, want ≤ 30 s", handled)
	}
	if rss >= 64<<20 {
		t.Errorf("peak RSS %d bytes, want < 64 MiB", rss)
	}
	if del := w.SQS.Deleted(w.QueueURL); !slices.Equal(del, []string{ownID}) {
		t.Errorf("deleted %d messages, want only this node's own (%v)", len(del), del[:min(len(del), 5)])
	}
	if !d.alive() {
		t.Error("daemon exited")
	}
}

// ---------------------------------------------------------------------------
// row 16: odd bodies

// row16 queues bodies of every odd kind at once, among them this node's
// own termination into a warm pool; once that is done, the instance is
// launched back from the warm pool (a launching transition for it).
func row16(t *testing.T) {
	r := row(t, "bodies: invalid JSON, wrong types, missing fields, 256 KiB, unknown transition, EventBridge with extra fields (another instance), "+
		"this node's WarmPool termination, then its launch back from the warm pool",
		"classified (messages_received_total{kind}: 5 malformed, 2 own, foreign); no crash; nothing deleted but the two own actions: "+
			"the WarmPool termination drained and completed, the launch completed with CONTINUE once the worker is ACTIVE")
	// AWS's smallest HeartbeatTimeout, 30 s: another instance's message
	// circulates beside the own ones, so after a receive that brought only
	// messages it had seen the daemon pauses up to 10 s before it receives
	// again (it does not spin on them) — longer than the 6 s the other rows
	// use, well inside any timeout AWS allows.
	const hbt30 = 30 * time.Second
	w := newWorld(t, worldOpts{hbt: hbt30})
	const launchHook = "trino-launch"
	w.ASG.AddHook(testpeers.AutoScalingHook{Group: testenv.Group, Name: launchHook, Transition: testpeers.AutoScalingTransitionLaunching,
		HeartbeatTimeout: hbt30, DefaultResult: "ABANDON"})
	d := startDaemon(t, w, nil)
	d.waitReady()

	warmToken, warm := w.terminate()
	warm.Destination = "WarmPool"
	other := testpeers.LifecycleMessage{Group: testenv.Group, Hook: testenv.Hook, InstanceID: "i-0aaaaaaaaaaaaaaaa",
		Token: "0a1b2c3d-0000-4000-8000-0000000000eb"}
	eb := strings.Replace(other.EventBridge(), `"detail":{`,
		`"replay-name":"replay-1","extra":{"a":[1,2,{"b":null}]},"detail":{"Unexpected":"field","Nested":{"x":1},`, 1)
	if eb == other.EventBridge() {
		t.Fatal("could not add fields to the EventBridge event")
	}
	w.ASG.AddInstance(other.InstanceID, testenv.Group, "Terminating:Wait") // a live action of another worker
	const bigHead, bigTail = `{"Event":"autoscaling:EC2_INSTANCE_LAUNCH","AutoScalingGroupName":"trino-workers","pad":"`, `"}`
	big := bigHead + strings.Repeat("x", 256<<10-len(bigHead)-len(bigTail)) + bigTail // SQS's largest body
	bodies := []struct {
		name, kind, body string
	}{
		{"invalid JSON", "malformed", `{"LifecycleTransition":"autoscaling:EC2_INSTANCE_TERMINATING","EC2InstanceId":`},
		{"wrong types", "malformed", `{"LifecycleTransition":"autoscaling:EC2_INSTANCE_TERMINATING","EC2InstanceId":42,"AutoScalingGroupName":["trino-workers"],"LifecycleHookName":true,"LifecycleActionToken":{}}`},
		{"missing fields", "malformed", `{"LifecycleTransition":"autoscaling:EC2_INSTANCE_TERMINATING","EC2InstanceId":"` + w.Instance + `","AutoScalingGroupName":"trino-workers"}`},
		{"256 KiB", "malformed", big},
		{"unknown transition", "malformed", strings.Replace(warm.Direct(), "autoscaling:EC2_INSTANCE_TERMINATING", "autoscaling:EC2_INSTANCE_REBOOTING", 1)},
		{"EventBridge with extra fields", "foreign", eb},
		{"WarmPool termination", "own", warm.Direct()},
	}
	ids := map[string]string{}
	for _, b := range bodies {
		ids[b.name] = w.SQS.Send(w.QueueURL, b.body)
	}

	act := w.awaitAction(t, warmToken, 30*time.Second)
	if act.State != testpeers.AutoScalingActionCompleted || act.Result != testpeers.AutoScalingContinue {
		t.Fatalf("WarmPool action ended %s/%s", act.State, act.Result)
	}
	w.awaitDeleted(t, ids["WarmPool termination"], 20*time.Second)
	if l := d.waitLog("lifecycle action received", time.Second); l.fields["destination"] != "WarmPool" {
		t.Errorf("WarmPool destination not logged: %v", l.fields["destination"])
	}
	heldState := w.Trino.State()

	// Back from the warm pool: Auto Scaling launches the instance again.
	launchToken := w.ASG.StartAction(testenv.Group, launchHook, w.Instance)
	launch := w.ASG.Message(launchToken)
	launch.Origin, launch.Destination = "WarmPool", "AutoScalingGroup"
	bodies = append(bodies, struct{ name, kind, body string }{"launching", "own", launch.Direct()})
	ids["launching"] = w.SQS.Send(w.QueueURL, launch.Direct())
	lact := w.awaitAction(t, launchToken, 30*time.Second)
	if lact.State != testpeers.AutoScalingActionCompleted || lact.Result != testpeers.AutoScalingContinue {
		t.Fatalf("launch action ended %s/%s", lact.State, lact.Result)
	}
	w.awaitDeleted(t, ids["launching"], 20*time.Second)

	eventually(t, 10*time.Second, "every body received", func() bool {
		for _, id := range ids {
			if m, _ := w.message(id); m.ReceiveCount == 0 {
				return false
			}
		}
		return true
	})
	eventually(t, 10*time.Second, "every body classified", func() bool {
		return d.metric("scaledownd_sqs_messages_received_total", "kind", "malformed") >= 5 &&
			d.metric("scaledownd_sqs_messages_received_total", "kind", "own") >= 2 &&
			d.metric("scaledownd_sqs_messages_received_total", "kind", "foreign") >= 1
	})
	malformedN := d.metric("scaledownd_sqs_messages_received_total", "kind", "malformed")
	ownN := d.metric("scaledownd_sqs_messages_received_total", "kind", "own")
	foreignN := d.metric("scaledownd_sqs_messages_received_total", "kind", "foreign")
	r.measure(t, "messages_received_total: malformed %v, own %v, foreign %v (the foreign event is handed back and re-received)",
		malformedN, ownN, foreignN)
	r.measure(t, "worker after the WarmPool termination %s (SHUTTING_DOWN requested %d×), after the launch %s",
		heldState, w.statePuts("SHUTTING_DOWN"), w.Trino.State())
	for _, b := range bodies {
		m, _ := w.message(ids[b.name])
		switch {
		case b.kind == "own":
			if !m.Deleted {
				t.Errorf("%s: not deleted", b.name)
			}
		case m.Deleted:
			t.Errorf("%s (%s): deleted", b.name, b.kind)
		case b.kind == "malformed":
			// Left on the queue, hidden with a backoff (30 s first).
			if m.ReceiveCount != 1 || m.Visible || m.VisibleAt.Sub(m.FirstReceivedAt) < 29*time.Second {
				t.Errorf("%s: receives %d, visible %v, hidden for %s; want received once and hidden ≥ 30 s",
					b.name, m.ReceiveCount, m.Visible, m.VisibleAt.Sub(m.FirstReceivedAt))
			}
		}
	}
	if malformedN != 5 {
		t.Errorf("malformed counted %v, want 5 (each received once)", malformedN)
	}
	if ownN != 2 {
		t.Errorf("own counted %v, want 2 (WarmPool termination, launch)", ownN)
	}
	if n := w.statePuts("DRAINING"); n != 1 {
		t.Errorf("PUT DRAINING %d times, want 1 (the WarmPool termination)", n)
	}
	for _, c := range w.ASG.Calls() {
		if tok := c.Params["LifecycleActionToken"]; c.Op == "CompleteLifecycleAction" && tok != warmToken && tok != launchToken {
			t.Errorf("CompleteLifecycleAction for a token of no own action: %.8s…", tok)
		}
	}
	if s := w.Trino.State(); s != testpeers.TrinoActive {
		t.Errorf("worker %s after the launch, want ACTIVE", s)
	}
	if !d.alive() {
		t.Fatal("daemon exited")
	}
	if code, _ := d.get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz %d", code)
	}
}

// cycleCost splits the daemon's receive cycles in [from, to) into the
// receive (its arrival at the fake until the first hand-back arrives: the
// fake's answer plus the daemon's decoding) and the hand-backs (one
// ChangeMessageVisibility per message, sequential).
func cycleCost(calls []testpeers.Call, from, to time.Time) string {
	var recvAt []time.Time
	var cmvAt []time.Time
	for _, c := range calls {
		if c.At.Before(from) || !c.At.Before(to) {
			continue
		}
		switch c.Op {
		case "ReceiveMessage":
			recvAt = append(recvAt, c.At)
		case "ChangeMessageVisibility":
			cmvAt = append(cmvAt, c.At)
		}
	}
	if len(recvAt) < 2 {
		return "too few cycles"
	}
	var recv, release time.Duration
	n := 0
	j := 0
	for i := 0; i+1 < len(recvAt); i++ {
		for j < len(cmvAt) && cmvAt[j].Before(recvAt[i]) {
			j++
		}
		if j >= len(cmvAt) || !cmvAt[j].Before(recvAt[i+1]) {
			continue
		}
		recv += cmvAt[j].Sub(recvAt[i])
		release += recvAt[i+1].Sub(cmvAt[j])
		n++
	}
	if n == 0 {
		return "no hand-backs"
	}
	total := recvAt[len(recvAt)-1].Sub(recvAt[0]) / time.Duration(len(recvAt)-1)
	return fmt.Sprintf("%s on average (receive %s, %d hand-backs %s)",
		ms(total), ms(recv/time.Duration(n)), len(cmvAt)/len(recvAt), ms(release/time.Duration(n)))
}
