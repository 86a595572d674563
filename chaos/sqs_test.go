//go:build chaos

package chaos

import (
	"fmt"
	"testing"
	"time"

	"github.com/scaledownd/scaledownd/internal/testenv"
	"github.com/scaledownd/scaledownd/internal/testpeers"
)

// Rows 21–23: the shared queue with a dead-letter queue, as operators
// configure it, and SQS failing under the delete of a completed action.

const (
	// foreignWindow is how long rows 21 and 22 leave another instance's
	// live message beside the daemon.
	foreignWindow = 60 * time.Second
	// redriveMax is the queue's maxReceiveCount.
	redriveMax = 10
	// otherInstance owns the foreign message.
	otherInstance = "i-0fedcba9876543210"
	// liveHBT is the hook's HeartbeatTimeout in rows 21 and 22: longer
	// than the window, so the foreign action (nobody heartbeats it) stays
	// live throughout.
	liveHBT = 10 * time.Minute
)

// redriveQueue replaces the world's queue by one with a dead-letter queue
// after redriveMax receives and returns the dead-letter queue's URL.
func redriveQueue(w *world) string {
	dlq := w.SQS.CreateQueue("trino-lifecycle-dlq", testpeers.SQSQueueOptions{})
	w.QueueURL = w.SQS.CreateQueue("trino-lifecycle-redrive", testpeers.SQSQueueOptions{
		MaxReceiveCount: redriveMax, DeadLetterQueue: "trino-lifecycle-dlq"})
	return dlq
}

// namedRow is row for a row that shares its subtest with another; its
// check marks it failed.
func namedRow(t *testing.T, name, fault, expected string) *rowResult {
	t.Helper()
	r := &rowResult{name: name, fault: fault, expected: expected}
	resultsMu.Lock()
	results[r.name] = r
	resultsMu.Unlock()
	return r
}

// foreignScene is one daemon with another instance's live message beside
// it on a queue with a dead-letter queue.
type foreignScene struct {
	r         *rowResult
	w         *world
	d         *daemon
	dlq       string
	id, token string
	// bothMode: the fleet runs mode both, the neighbour hides the message
	// (a minute, then two), and the owner learns of its termination from
	// its own metadata.
	bothMode bool
	sent     time.Time
}

// placeForeign puts another instance's live message on the world's queue.
func (s *foreignScene) placeForeign() {
	s.w.ASG.AddInstance(otherInstance, testenv.Group, "InService")
	s.token = s.w.ASG.StartAction(testenv.Group, testenv.Hook, otherInstance)
	s.id = s.w.SQS.Send(s.w.QueueURL, s.w.ASG.Message(s.token).Direct())
	s.sent = time.Now()
}

// check asserts, once the window is over, that the message was received at
// most 10 times, never deleted, never dead-lettered, and that its owner's
// daemon then completes the action and deletes the message.
func (s *foreignScene) check(t *testing.T) {
	t.Helper()
	r, w := s.r, s.w
	t.Cleanup(func() {
		resultsMu.Lock()
		r.failed = t.Failed()
		resultsMu.Unlock()
	})
	if !s.d.alive() {
		t.Fatal("daemon exited")
	}
	m, _ := w.message(s.id)
	reqs := len(w.sqsCalls("ReceiveMessage", s.sent, time.Now()))
	r.measure(t, "foreign message received %d times in %s (%d ReceiveMessage requests), never deleted; dead-letter queue %d",
		m.ReceiveCount, foreignWindow, reqs, len(w.SQS.Messages(s.dlq)))
	if m.ReceiveCount > 10 || m.ReceiveCount < 1 {
		t.Errorf("the foreign message was received %d times in %s, want 1 to 10", m.ReceiveCount, foreignWindow)
	}
	if m.Deleted || m.MovedTo != "" || len(w.SQS.Messages(s.dlq)) != 0 {
		t.Fatalf("the foreign message was deleted (%v) or dead-lettered (%q)", m.Deleted, m.MovedTo)
	}
	if a := w.action(s.token); a.State != testpeers.AutoScalingActionPending {
		t.Fatalf("the foreign action is %s, want it pending (live) through the window", a.State)
	}

	// Its owner comes: the message is still there for it.
	owner := testpeers.NewTrino(testpeers.TrinoOptions{Version: "476", GracePeriod: 200 * time.Millisecond})
	t.Cleanup(owner.Close)
	env := map[string]string{"SCALEDOWND_AWS_INSTANCE_ID": otherInstance, "SCALEDOWND_TRINO_URL": owner.URL()}
	if s.bothMode {
		meta := testpeers.NewIMDS(testpeers.IMDSOptions{InstanceID: otherInstance, Region: testenv.Region})
		t.Cleanup(meta.Close)
		meta.SetTargetLifecycleState("Terminated")
		env["SCALEDOWND_AWS_MODE"] = "both"
		env["SCALEDOWND_AWS_IMDS_ENDPOINT"] = meta.URL()
		env["SCALEDOWND_AWS_IMDS_POLL_INTERVAL"] = "200ms"
	}
	od := startDaemon(t, w, env)
	ownerStart := time.Now()
	od.waitReady()
	act := w.awaitAction(t, s.token, 60*time.Second)
	if act.State != testpeers.AutoScalingActionCompleted || act.Result != testpeers.AutoScalingContinue {
		t.Fatalf("the owner's action ended %s/%s", act.State, act.Result)
	}
	if s.bothMode {
		// The message stays hidden by the neighbour; a daemon deletes it as
		// stale once it is visible again.
		m, _ = w.message(s.id)
		r.measure(t, "owner (mode both, metadata Terminated) started → action completed %s; message kept at receive count %d, deleted %v; dead-letter queue %d",
			ms(act.CompletedAt.Sub(ownerStart)), m.ReceiveCount, m.Deleted, len(w.SQS.Messages(s.dlq)))
		if m.MovedTo != "" || len(w.SQS.Messages(s.dlq)) != 0 {
			t.Error("a message reached the dead-letter queue")
		}
		return
	}
	m = w.awaitDeleted(t, s.id, 20*time.Second)
	r.measure(t, "owner started → action completed %s, message deleted at receive count %d; dead-letter queue %d",
		ms(act.CompletedAt.Sub(ownerStart)), m.ReceiveCount, len(w.SQS.Messages(s.dlq)))
	if len(w.SQS.Messages(s.dlq)) != 0 {
		t.Error("a message reached the dead-letter queue")
	}
}

// rows21and22 share one window: row 21 in mode sqs, row 22 in mode both
// with the daemon's own instance leaving.
func rows21and22(t *testing.T) {
	// Row 21: mode sqs.
	w21 := newWorld(t, worldOpts{hbt: liveHBT})
	s21 := &foreignScene{w: w21, dlq: redriveQueue(w21), r: namedRow(t, "TestChaos/row21_foreign_message_beside_a_redrive_queue",
		fmt.Sprintf("Another instance's live message beside one daemon for %s, mode sqs, queue with a dead-letter queue (maxReceiveCount %d)", foreignWindow, redriveMax),
		"received at most 10 times (the first hand-back at once, then a pause of 10 s per receive that brings nothing new), never deleted, not dead-lettered; its owner's daemon then completes it and deletes it")}
	s21.d = startDaemon(t, w21, nil)

	// Row 22: mode both, this instance leaving (metadata Terminated, its
	// drain running, its own message not on the queue).
	imds := testpeers.NewIMDS(testpeers.IMDSOptions{InstanceID: testenv.InstanceID, Region: testenv.Region})
	t.Cleanup(imds.Close)
	w22 := newWorld(t, worldOpts{hbt: liveHBT})
	s22 := &foreignScene{w: w22, dlq: redriveQueue(w22), r: namedRow(t, "TestChaos/row22_foreign_message_while_leaving_mode_both",
		"Row 21 in mode both, the daemon's own instance leaving (metadata Terminated, its drain running, its own message not on the queue)",
		"the queue is polled continuously, yet the foreign message is received at most 10 times in the window (hidden a minute after its first receive, two after its second: its owner's metadata is its signal), never deleted, not dead-lettered; its owner, in mode both, then drains and completes through its metadata"),
		bothMode: true}
	finish := w22.Trino.AddBlockedTask()
	defer finish()
	w22.terminate()
	imds.SetTargetLifecycleState("Terminated")
	s22.d = startDaemon(t, w22, map[string]string{
		"SCALEDOWND_AWS_MODE":               "both",
		"SCALEDOWND_AWS_IMDS_ENDPOINT":      imds.URL(),
		"SCALEDOWND_AWS_IMDS_POLL_INTERVAL": "200ms",
	})
	s21.d.waitReady()
	s22.d.waitReady()
	// Metadata said Terminated from the start: the drain runs, and the
	// queue is polled continuously (the pacer never turned idle).
	eventually(t, 15*time.Second, "row 22's worker DRAINING", func() bool { return w22.statePuts("DRAINING") == 1 })

	s21.placeForeign()
	s22.placeForeign()
	time.Sleep(foreignWindow) // the fault: a live foreign message beside each daemon
	t.Run("row21", s21.check)
	t.Run("row22", s22.check)
}

func row23(t *testing.T) {
	const outage = 10 * time.Second
	r := row(t, fmt.Sprintf("SQS answers 503 to every DeleteMessage for %s after the action was completed", outage),
		"the delete is retried with backoff while the receipt handle is good: the message is deleted within seconds of SQS recovering, through its first receipt handle (not at its redelivery); each failed round is logged")
	w := newWorld(t, worldOpts{hbt: hbt6})
	d := startDaemon(t, w, nil)
	d.waitReady()
	w.SQS.InjectFault("DeleteMessage", testpeers.Fault{Status: 503, Code: "ServiceUnavailable"})
	token, msg := w.terminate()
	id := w.SQS.Send(w.QueueURL, msg.Direct())
	act := w.awaitAction(t, token, 30*time.Second)
	if act.State != testpeers.AutoScalingActionCompleted {
		t.Fatalf("action ended %s", act.State)
	}
	time.Sleep(time.Until(act.CompletedAt.Add(outage))) // the outage
	failed := w.SQS.CallCount("DeleteMessage")
	w.SQS.ClearFaults()
	clearedAt := time.Now()
	m := w.awaitDeleted(t, id, 20*time.Second)
	logged := d.count("could not delete the lifecycle message; retrying", "warn")
	r.measure(t, "%d DeleteMessage requests failed in %s; deleted %s after SQS recovered, at receive count %d; %d warnings logged",
		failed, outage, ms(m.DeletedAt.Sub(clearedAt)), m.ReceiveCount, logged)
	if m.ReceiveCount != 1 {
		t.Errorf("deleted at receive count %d: at a redelivery, want through the first receipt handle", m.ReceiveCount)
	}
	if lat := m.DeletedAt.Sub(clearedAt); lat > 12*time.Second {
		t.Errorf("deleted %s after SQS recovered, want within one backoff (at most 10 s)", lat)
	}
	if logged == 0 {
		t.Error("the failed deletes were not logged")
	}
}
