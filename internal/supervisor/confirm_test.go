package supervisor

import (
	"context"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/scaledownd/scaledownd/internal/statefile"
	"github.com/scaledownd/scaledownd/pkg/lifecycle"
	"github.com/scaledownd/scaledownd/pkg/trinoadmin"
)

// These tests drive the supervisor with stand-ins for AWS and the worker;
// the same behaviour against the wire fakes and the real binary is tested
// in internal/daemon and chaos/.

// scriptedConfirmer confirms from the confirmAt-th call on (0: never).
type scriptedConfirmer struct {
	mu        sync.Mutex
	calls     int
	confirmAt int
}

func (c *scriptedConfirmer) Confirm(context.Context, lifecycle.Event, bool) (lifecycle.Confirmation, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	if c.confirmAt > 0 && c.calls >= c.confirmAt {
		return lifecycle.Confirmation{Confirmed: true, By: "autoscaling", Asked: true,
			Membership: lifecycle.Membership{Group: "g", State: "Terminating:Wait"}}, nil
	}
	return lifecycle.Confirmation{TargetState: "InService"}, nil
}

func (c *scriptedConfirmer) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls
}

// worldAWS counts the Auto Scaling calls that act on an action.
type worldAWS struct {
	mu                    sync.Mutex
	heartbeats, completes int
}

func (a *worldAWS) HookTiming(context.Context, string, string) (lifecycle.HookTiming, error) {
	return lifecycle.HookTiming{HeartbeatTimeout: time.Hour}, nil
}

func (a *worldAWS) Heartbeat(context.Context, lifecycle.Action) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.heartbeats++
	return nil
}

func (a *worldAWS) Complete(context.Context, lifecycle.Action, string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.completes++
	return nil
}

func (a *worldAWS) counts() (int, int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.heartbeats, a.completes
}

// countingDrainer drains at once and counts every request to the worker.
type countingDrainer struct {
	mu      sync.Mutex
	changes int
}

func (d *countingDrainer) Drain(context.Context, *zap.Logger) (trinoadmin.Result, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.changes++
	return trinoadmin.Result{Outcome: trinoadmin.OutcomeDrained}, nil
}

func (d *countingDrainer) Hold(ctx context.Context, log *zap.Logger) (trinoadmin.Result, error) {
	return d.Drain(ctx, log)
}

func (d *countingDrainer) Activate(context.Context, *zap.Logger) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.changes++
	return nil
}

func (d *countingDrainer) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.changes
}

type unconfirmedRecorder struct {
	nopRecorder
	mu  sync.Mutex
	got map[string]int
}

func (r *unconfirmedRecorder) Unconfirmed(transition string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got[transition]++
}

func (r *unconfirmedRecorder) count(transition string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.got[transition]
}

type harness struct {
	sup     *Supervisor
	in      chan lifecycle.Delivery
	conf    *scriptedConfirmer
	aws     *worldAWS
	drainer *countingDrainer
	rec     *unconfirmedRecorder
	logs    *observer.ObservedLogs
}

func newHarness(t *testing.T, conf *scriptedConfirmer, window, interval time.Duration, recs []statefile.Record) *harness {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	h := &harness{in: make(chan lifecycle.Delivery), conf: conf, aws: &worldAWS{}, drainer: &countingDrainer{},
		rec: &unconfirmedRecorder{got: map[string]int{}}, logs: logs}
	h.sup = New(h.aws, h.drainer, Options{
		Confirmer: conf, ConfirmWindow: window, ConfirmInterval: interval,
		Logger: zap.New(core), Recorder: h.rec,
	})
	h.sup.Resume(recs, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { h.sup.Run(ctx, h.in, nil); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return h
}

func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func sqsEvent() lifecycle.Event {
	now := time.Now()
	return lifecycle.Event{Transition: lifecycle.TransitionTerminating, InstanceID: "i-1", Group: "g", Hook: "h",
		Token: "0ae3784f-2222-4222-8222-222222222222", Time: now, ReceivedAt: now, Source: "sqs"}
}

func TestUnconfirmedActionIsRejectedAndItsRedeliveryCheckedOnce(t *testing.T) {
	h := newHarness(t, &scriptedConfirmer{}, 200*time.Millisecond, 20*time.Millisecond, nil)
	h.in <- lifecycle.Delivery{Event: sqsEvent()}
	eventually(t, 10*time.Second, "the action rejected", func() bool { return h.rec.count("terminating") == 1 })
	first := h.conf.count()
	if first < 2 {
		t.Fatalf("confirmation asked %d times, want it re-checked within the window", first)
	}
	errs := h.logs.FilterMessageSnippet("not confirmed by AWS").FilterField(zap.String("aws_said", "target-lifecycle-state InService"))
	if errs.Len() != 1 || errs.All()[0].Level != zapcore.ErrorLevel {
		t.Fatalf("%d error lines naming what AWS said, want 1", errs.Len())
	}

	// The same message again: checked once, not for a new window; no
	// second error line, no second count.
	h.in <- lifecycle.Delivery{Event: sqsEvent()}
	eventually(t, 10*time.Second, "the redelivery settled", func() bool {
		return h.logs.FilterMessageSnippet("redelivered lifecycle message is still not confirmed").Len() == 1
	})
	if n := h.conf.count() - first; n != 1 {
		t.Fatalf("the redelivery was checked %d times, want once", n)
	}
	if n := h.rec.count("terminating"); n != 1 {
		t.Fatalf("unconfirmed counted %d times, want once per action", n)
	}
	if n := h.drainer.count(); n != 0 {
		t.Fatalf("%d requests that change the worker, want none", n)
	}
	if hb, c := h.aws.counts(); hb != 0 || c != 0 {
		t.Fatalf("%d heartbeats and %d completions for an unconfirmed action, want none", hb, c)
	}
}

func TestActionConfirmedWithinTheWindowIsDrained(t *testing.T) {
	h := newHarness(t, &scriptedConfirmer{confirmAt: 3}, time.Minute, 10*time.Millisecond, nil)
	h.in <- lifecycle.Delivery{Event: sqsEvent()}
	eventually(t, 10*time.Second, "the action completed", func() bool { _, c := h.aws.counts(); return c == 1 })
	if n := h.drainer.count(); n != 1 {
		t.Fatalf("%d drains, want 1", n)
	}
	if n := h.rec.count("terminating"); n != 0 {
		t.Fatalf("unconfirmed counted %d times for a confirmed action", n)
	}
}

func TestMetadataReportingTheSameActionConfirmsIt(t *testing.T) {
	// No re-check would come within the test: only metadata can confirm.
	h := newHarness(t, &scriptedConfirmer{}, time.Hour, time.Hour, nil)
	e := sqsEvent()
	h.in <- lifecycle.Delivery{Event: e}
	eventually(t, 10*time.Second, "the first check", func() bool { return h.conf.count() == 1 })
	if n := h.drainer.count(); n != 0 {
		t.Fatalf("drained before AWS confirmed the action")
	}
	imds := e
	imds.Token, imds.Source = "", "imds"
	h.in <- lifecycle.Delivery{Event: imds}
	eventually(t, 10*time.Second, "the action completed", func() bool { _, c := h.aws.counts(); return c == 1 })
	if n := h.drainer.count(); n != 1 {
		t.Fatalf("%d drains, want 1", n)
	}
}

func TestResumedActionIsConfirmedOnlyIfItWasNotBefore(t *testing.T) {
	for _, confirmed := range []bool{true, false} {
		rec := statefile.Record{Key: sqsEvent().Token, Event: sqsEvent(), Phase: statefile.PhaseDraining, Confirmed: confirmed}
		h := newHarness(t, &scriptedConfirmer{confirmAt: 1}, time.Minute, time.Second, []statefile.Record{rec})
		eventually(t, 10*time.Second, "the resumed action completed", func() bool { _, c := h.aws.counts(); return c == 1 })
		want := 1
		if confirmed {
			want = 0
		}
		if n := h.conf.count(); n != want {
			t.Fatalf("resumed action (confirmed before: %v) checked %d times, want %d", confirmed, n, want)
		}
	}
}

func TestRejectedKeysAreBounded(t *testing.T) {
	s := New(&worldAWS{}, &countingDrainer{}, Options{})
	for i := 0; i < maxRejected+50; i++ {
		s.markRejected(&job{s: s, key: time.Duration(i).String()})
	}
	if n := len(s.rejected); n != maxRejected {
		t.Fatalf("%d rejected keys remembered, want at most %d", n, maxRejected)
	}
}
