//go:build chaos

package chaos

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"

	"github.com/scaledownd/scaledownd/internal/testenv"
	"github.com/scaledownd/scaledownd/internal/testpeers"
)

// Rows 19 and 20: no drain AWS did not ask for. A message on the queue
// changes the worker only once AWS confirms its action for this instance.

// trustWindow is lifecycle.confirm-window in these rows.
const trustWindow = 3 * time.Second

// workerChanges lists the requests to the worker that could change it.
func (w *world) workerChanges() []string {
	var out []string
	for _, r := range w.Trino.Requests() {
		if r.Method != http.MethodGet {
			out = append(out, r.Method+" "+r.Path+" "+r.Body)
		}
	}
	return out
}

// assertRejected checks the error line of a rejected message: it names
// the message id, instance, group, hook and what AWS said.
func assertRejected(t *testing.T, l logLine, id, said string) {
	t.Helper()
	f := l.fields
	awsSaid, _ := f["aws_said"].(string)
	if l.level() != "error" || f["message_id"] != id || f["instance_id"] != testenv.InstanceID ||
		f["asg"] != testenv.Group || f["hook"] != testenv.Hook || !strings.Contains(awsSaid, said) {
		t.Errorf("rejection logged as %s, want an error naming message %s, instance, group, hook and %q", l.raw, id, said)
	}
}

// assertUntouched checks that nothing acted on the action: no request that
// changes the worker, no heartbeat or completion by the daemon.
func assertUntouched(t *testing.T, w *world, token string, completionsBefore int) {
	t.Helper()
	if ch := w.workerChanges(); len(ch) != 0 {
		t.Errorf("the worker got %v for an action AWS did not confirm", ch)
	}
	if n := len(w.asgCalls("RecordLifecycleActionHeartbeat", token)); n != 0 {
		t.Errorf("%d heartbeats for an unconfirmed action", n)
	}
	if n := len(w.asgCalls("CompleteLifecycleAction", token)) - completionsBefore; n != 0 {
		t.Errorf("%d completions by the daemon for an unconfirmed action", n)
	}
}

func row19(t *testing.T) {
	r := row(t, fmt.Sprintf("mode both: a well-formed terminating message for this instance, group and hook with no action behind it "+
		"(metadata InService, Auto Scaling InService); then the same notification once more (a replay); confirm window %s", trustWindow),
		"never drained, never completed (no request that changes the worker, no heartbeat, no completion); one error line naming "+
			"message id, instance, group, hook and what AWS said; unconfirmed_total{terminating} 1; deleted as stale (not-waiting) "+
			"once the window ends; the replay checked once, without a new window, and deleted")
	imds := testpeers.NewIMDS(testpeers.IMDSOptions{InstanceID: testenv.InstanceID, Region: testenv.Region})
	t.Cleanup(imds.Close)
	imds.SetTargetLifecycleState("InService")
	w := newWorld(t, worldOpts{hbt: hbt6})
	d := startDaemon(t, w, map[string]string{
		"SCALEDOWND_AWS_MODE":                 "both",
		"SCALEDOWND_AWS_IMDS_ENDPOINT":        imds.URL(),
		"SCALEDOWND_AWS_IMDS_POLL_INTERVAL":   "200ms",
		"SCALEDOWND_AWS_SQS_IDLE_INTERVAL":    "0s", // the queue polled all the time: only the confirmation decides
		"SCALEDOWND_LIFECYCLE_CONFIRM_WINDOW": trustWindow.String(),
	})
	d.waitReady()
	forged := testpeers.LifecycleMessage{Group: testenv.Group, Hook: testenv.Hook, InstanceID: w.Instance,
		Token: "0f0f0f0f-dead-4bad-8bad-0f0f0f0f0f0f"}
	describeBefore := w.ASG.CallCount("DescribeAutoScalingInstances")
	readsBefore := imds.CallCount("GetMetadata")
	id := w.SQS.Send(w.QueueURL, forged.Direct())

	l := d.waitLog("not confirmed by AWS for this instance", 30*time.Second)
	assertRejected(t, l, id, "target-lifecycle-state InService")
	m := w.awaitDeleted(t, id, 30*time.Second)
	eventually(t, 5*time.Second, "unconfirmed counted", func() bool {
		return d.metric("scaledownd_lifecycle_unconfirmed_total", "transition", "terminating") == 1
	})
	eventually(t, 5*time.Second, "deleted as stale", func() bool {
		return d.metric("scaledownd_sqs_stale_messages_deleted_total", "reason", "not-waiting") == 1
	})
	describes := w.ASG.CallCount("DescribeAutoScalingInstances") - describeBefore
	reads := imds.CallCount("GetMetadata") - readsBefore
	rejectedAfter := l.time().Sub(m.FirstReceivedAt)
	if rejectedAfter < trustWindow-100*time.Millisecond {
		t.Errorf("rejected %s after it was received, before the %s window ended", rejectedAfter, trustWindow)
	}
	if describes > 2 {
		t.Errorf("%d DescribeAutoScalingInstances calls for one message, want at most 2 (the window's last check, the stale check)", describes)
	}

	// The same notification again: its action was rejected, so it is
	// checked once, not for another window.
	replayID := w.SQS.Send(w.QueueURL, forged.Direct())
	rm := w.awaitDeleted(t, replayID, 30*time.Second)
	d.waitLog("redelivered lifecycle message is still not confirmed", 5*time.Second)
	replayTook := rm.DeletedAt.Sub(rm.FirstReceivedAt)
	if replayTook >= trustWindow {
		t.Errorf("the replay took %s from receive to delete: a new %s window", replayTook, trustWindow)
	}
	if n := d.count("not confirmed by AWS for this instance", "error"); n != 1 {
		t.Errorf("%d error lines, want one per action", n)
	}
	if v := d.metric("scaledownd_lifecycle_unconfirmed_total", "transition", "terminating"); v != 1 {
		t.Errorf("unconfirmed_total %v after the replay, want 1 (one per action)", v)
	}
	assertUntouched(t, w, forged.Token, 0)
	r.measure(t, "rejected %s after the first receive (window %s), error line names message id, instance, group, hook, aws_said %q",
		ms(rejectedAfter), trustWindow, l.fields["aws_said"])
	r.measure(t, "deleted %s after the first receive (stale: not-waiting); %d DescribeAutoScalingInstances calls (window's last check, stale check), %d metadata reads meanwhile (the 200 ms poll included)",
		ms(m.DeletedAt.Sub(m.FirstReceivedAt)), describes, reads)
	r.measure(t, "replay: deleted %s after its receive, no second error line, unconfirmed_total 1", ms(replayTook))
	r.measure(t, "worker: %d requests, none but GETs; 0 heartbeats, 0 completions", len(w.Trino.Requests()))
}

func row20(t *testing.T) {
	r := row(t, fmt.Sprintf("mode sqs: an action that ended (completed elsewhere) while the instance is back in service (Auto Scaling InService); "+
		"its old notification arrives; then a real scale-in; confirm window %s", trustWindow),
		"the ended action is never drained or completed, logged as an error naming what Auto Scaling said, counted, deleted as stale "+
			"after the window; the real scale-in is confirmed by one DescribeAutoScalingInstances, drained and completed with CONTINUE")
	w := newWorld(t, worldOpts{hbt: hbt6})
	token, msg := w.terminate()
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
		t.Fatalf("complete elsewhere: %v", err)
	}
	w.ASG.SetInstanceState(w.Instance, "InService")
	completionsBefore := len(w.asgCalls("CompleteLifecycleAction", token))

	d := startDaemon(t, w, map[string]string{"SCALEDOWND_LIFECYCLE_CONFIRM_WINDOW": trustWindow.String()})
	d.waitReady()
	id := w.SQS.Send(w.QueueURL, msg.Direct())
	l := d.waitLog("not confirmed by AWS for this instance", 30*time.Second)
	assertRejected(t, l, id, "Auto Scaling: InService in "+testenv.Group)
	m := w.awaitDeleted(t, id, 30*time.Second)
	eventually(t, 5*time.Second, "unconfirmed counted", func() bool {
		return d.metric("scaledownd_lifecycle_unconfirmed_total", "transition", "terminating") == 1
	})
	assertUntouched(t, w, token, completionsBefore)

	// A real scale-in afterwards is drained as usual.
	w.Trino.AddTask(500 * time.Millisecond)
	describeBefore := w.ASG.CallCount("DescribeAutoScalingInstances")
	realToken, realMsg := w.terminate()
	realID := w.SQS.Send(w.QueueURL, realMsg.Direct())
	act := w.awaitAction(t, realToken, 30*time.Second)
	if act.State != testpeers.AutoScalingActionCompleted || act.Result != testpeers.AutoScalingContinue {
		t.Fatalf("the real action ended %s/%s (%s)", act.State, act.Result, act.ExpiryReason)
	}
	rm := w.awaitDeleted(t, realID, 20*time.Second)
	if n := w.statePuts("DRAINING"); n != 1 {
		t.Errorf("PUT DRAINING %d times, want 1 (the real action only)", n)
	}
	var drainingAt time.Time
	for _, c := range w.Trino.StateHistory() {
		if c.State == testpeers.TrinoDraining {
			drainingAt = c.At
			break
		}
	}
	describes := w.ASG.CallCount("DescribeAutoScalingInstances") - describeBefore
	r.measure(t, "ended action: rejected %s and deleted %s after its receive (window %s), aws_said %q; worker untouched, no completion by the daemon",
		ms(l.time().Sub(m.FirstReceivedAt)), ms(m.DeletedAt.Sub(m.FirstReceivedAt)), trustWindow, l.fields["aws_said"])
	r.measure(t, "real scale-in: PUT DRAINING %s after the message's first receive (confirmed by %d DescribeAutoScalingInstances), completed with CONTINUE",
		ms(drainingAt.Sub(rm.FirstReceivedAt)), describes)
}
