//go:build chaos

package chaos

import (
	"encoding/json"
	"os/exec"
	"testing"
	"time"

	"github.com/scaledownd/scaledownd/internal/drainreport"
	"github.com/scaledownd/scaledownd/internal/testpeers"
)

// row30: a drain report survives a SIGKILL. The killed daemon logs no
// report; the restarted one logs exactly one, carrying what its
// predecessor saw, and `scaledownd history` shows exactly one.
func row30(t *testing.T) {
	t.Run("mid_drain", func(t *testing.T) {
		r := row(t, "SIGKILL mid-drain (worker DRAINING, heartbeats recorded), restart",
			"one drain report in all: logged by the restarted daemon with the first run's DRAINING time and heartbeats; history shows one")
		w := newWorld(t, worldOpts{hbt: hbt6})
		finish := w.Trino.AddBlockedTask()
		defer finish()
		d := startDaemon(t, w, nil)
		d.waitReady()
		token, msg := w.terminate()
		id := w.SQS.Send(w.QueueURL, msg.Direct())
		// Two heartbeats counted by the daemon (its report is kept before the
		// metric moves), not only recorded by Auto Scaling.
		eventually(t, 15*time.Second, "worker DRAINING and two heartbeats", func() bool {
			return w.Trino.State() == testpeers.TrinoDraining && d.metric("scaledownd_lifecycle_heartbeats_total", "result", "ok") >= 2
		})
		if n := d.count("drain report", ""); n != 0 {
			t.Fatalf("%d drain reports before the kill", n)
		}
		d.kill()
		killedAt := time.Now()
		restartedAt := time.Now()
		d.restart()
		d.waitLog("trino worker is already leaving service", 15*time.Second)
		finish()
		w.awaitDeleted(t, id, 30*time.Second)
		rep := oneReport(t, r, d)
		drainingAt := stateTime(w.Trino, testpeers.TrinoDraining)
		if rep.Timeline.DrainingRequested.After(killedAt) || rep.Timeline.DrainingRequested.Sub(drainingAt).Abs() > 200*time.Millisecond {
			t.Errorf("draining_requested %s: want the killed run's request (worker DRAINING at %s, killed at %s)",
				rep.Timeline.DrainingRequested.Format("15:04:05.000"), drainingAt.Format("15:04:05.000"), killedAt.Format("15:04:05.000"))
		}
		// The killed run's heartbeats count too: more than the restarted run
		// sent, no more than Auto Scaling recorded (a heartbeat the kill cut
		// off between its arrival and its answer is not counted).
		act := w.action(token)
		after := 0
		for _, hb := range act.Heartbeats {
			if hb.After(restartedAt) {
				after++
			}
		}
		if rep.HeartbeatsSent <= after || rep.HeartbeatsSent > len(act.Heartbeats) {
			t.Errorf("heartbeats_sent %d: want more than the restarted run's %d, at most the %d recorded", rep.HeartbeatsSent, after, len(act.Heartbeats))
		}
		if rep.Result != "CONTINUE" || rep.Reason != "drained" || rep.Timeline.Drained.IsZero() || rep.Timeline.MessageDeleted.IsZero() {
			t.Errorf("report %+v", rep)
		}
		r.measure(t, "report: DRAINING %s before the kill, heartbeats %d (%d after the restart, %d recorded by Auto Scaling), held %.2fs",
			ms(killedAt.Sub(rep.Timeline.DrainingRequested)), rep.HeartbeatsSent, after, len(act.Heartbeats), rep.InstanceSeconds)
	})
	t.Run("completed_before_delete", func(t *testing.T) {
		r := row(t, "SIGKILL after CompleteLifecycleAction, while DeleteMessage hangs, restart",
			"the restarted daemon only deletes the message and logs the one report, with the killed run's result; history shows one")
		w := newWorld(t, worldOpts{hbt: hbt6})
		w.SQS.InjectFault("DeleteMessage", testpeers.Fault{Hang: true})
		d := startDaemon(t, w, nil)
		d.waitReady()
		token, msg := w.terminate()
		id := w.SQS.Send(w.QueueURL, msg.Direct())
		eventually(t, 20*time.Second, "completed and the delete hanging", func() bool {
			return !w.action(token).CompletedAt.IsZero() && w.SQS.CallCount("DeleteMessage") >= 1
		})
		if n := d.count("drain report", ""); n != 0 {
			t.Fatalf("%d drain reports before the message was deleted", n)
		}
		d.kill()
		w.SQS.ClearFaults()
		d.restart()
		d.waitLog("resumed action was already completed; deleting its messages", 15*time.Second)
		w.awaitDeleted(t, id, 30*time.Second)
		rep := oneReport(t, r, d)
		completed := w.action(token).CompletedAt
		if rep.Result != "CONTINUE" || rep.Reason != "drained" || rep.Timeline.Completed.Sub(completed).Abs() > 200*time.Millisecond ||
			rep.Timeline.Drained.IsZero() || rep.Timeline.MessageDeleted.IsZero() {
			t.Errorf("report %+v: want the killed run's completion at %s", rep, completed.Format("15:04:05.000"))
		}
		r.measure(t, "report: completed %s after the fake saw it, message deleted %s later",
			ms(rep.Timeline.Completed.Sub(completed)), ms(rep.Timeline.MessageDeleted.Sub(rep.Timeline.Completed)))
	})
}

// oneReport waits for the current incarnation's drain report and checks
// that it is the only one, in the log and in `scaledownd history --json`.
func oneReport(t *testing.T, r *rowResult, d *daemon) drainreport.Report {
	t.Helper()
	line := d.waitLog("drain report", 15*time.Second)
	if n := d.count("drain report", ""); n != 1 {
		t.Fatalf("%d drain reports logged by the restarted daemon, want 1", n)
	}
	raw, err := json.Marshal(line.fields["report"])
	if err != nil {
		t.Fatal(err)
	}
	var logged drainreport.Report
	if err := json.Unmarshal(raw, &logged); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, "history", "--json")
	cmd.Env = d.env
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("scaledownd history --json: %v", err)
	}
	var stored []drainreport.Report
	if err := json.Unmarshal(out, &stored); err != nil {
		t.Fatalf("history --json: %v\n%s", err, out)
	}
	if len(stored) != 1 {
		t.Fatalf("history holds %d reports for one action, want 1:\n%s", len(stored), out)
	}
	a, _ := json.Marshal(stored[0])
	b, _ := json.Marshal(logged)
	if string(a) != string(b) {
		t.Errorf("history's report differs from the logged one:\n%s\n%s", a, b)
	}
	r.measure(t, "1 report logged (by the restarted daemon), 1 in history")
	return logged
}

// stateTime is when the worker first entered state.
func stateTime(w *testpeers.TrinoWorker, state string) time.Time {
	for _, c := range w.StateHistory() {
		if c.State == state {
			return c.At
		}
	}
	return time.Time{}
}
