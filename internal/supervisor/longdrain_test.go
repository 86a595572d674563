package supervisor_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"go.uber.org/zap"

	"github.com/scaledownd/scaledownd/internal/supervisor"
	"github.com/scaledownd/scaledownd/internal/testpeers"
	"github.com/scaledownd/scaledownd/pkg/lifecycle"
	"github.com/scaledownd/scaledownd/pkg/trinoadmin"
)

// neverDrains is a worker whose queries never end: the drain lasts until
// the deadline.
type neverDrains struct{}

func (neverDrains) Drain(ctx context.Context, _ *zap.Logger) (trinoadmin.Result, error) {
	<-ctx.Done()
	return trinoadmin.Result{}, ctx.Err()
}

func (n neverDrains) Hold(ctx context.Context, log *zap.Logger) (trinoadmin.Result, error) {
	return n.Drain(ctx, log)
}

func (neverDrains) Activate(ctx context.Context, _ *zap.Logger) error {
	<-ctx.Done()
	return ctx.Err()
}

// TestFullLengthDrainOnAFakeClock simulates drains that never finish, for
// the whole time AWS allows, with the real Auto Scaling wire protocol on a
// fake clock: heartbeats never lapse and CONTINUE is sent before the cap.
// With HeartbeatTimeout 300 s the cap is 100 × 300 s = 30,000 s, not 48 h;
// with 7,200 s it is 48 h.
func TestFullLengthDrainOnAFakeClock(t *testing.T) {
	tests := []struct {
		hbt     time.Duration
		wantCap time.Duration
	}{
		{300 * time.Second, 30000 * time.Second},
		{7200 * time.Second, 48 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.hbt.String(), func(t *testing.T) {
			start := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
			clock := testpeers.NewFakeClock(start)
			asg := testpeers.NewAutoScaling(testpeers.AutoScalingOptions{Now: clock.Now})
			defer asg.Close()
			asg.AddGroup("g", 1, 4)
			asg.AddHook(testpeers.AutoScalingHook{Group: "g", Name: "h", HeartbeatTimeout: tt.hbt})
			asg.AddInstance("i-0123456789abcdef0", "g", "InService")
			token := asg.StartAction("g", "h", "i-0123456789abcdef0")

			client := autoscaling.New(autoscaling.Options{Region: "us-east-1", BaseEndpoint: aws.String(asg.URL()), Credentials: aws.AnonymousCredentials{}})
			actions := lifecycle.NewActions(client, 5*time.Second)
			rec := &recorder{}
			sup := supervisor.New(actions, neverDrains{}, supervisor.Options{
				Plan:     lifecycle.PlanOptions{MaxDrainTime: 48 * time.Hour, SafetyMargin: 2 * time.Minute},
				Retry:    lifecycle.RetryPolicy{Clock: clock},
				Clock:    clock,
				Recorder: rec,
			})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			in := make(chan lifecycle.Delivery, 1)
			done := make(chan struct{})
			go func() { sup.Run(ctx, in, nil); close(done) }()
			in <- lifecycle.Delivery{Event: lifecycle.Event{
				Transition: lifecycle.TransitionTerminating, InstanceID: "i-0123456789abcdef0", Group: "g", Hook: "h",
				Token: token, Time: start, ReceivedAt: start, Source: "test",
			}}

			// Drive the clock: whenever the job waits on it (the keeper's next
			// heartbeat and the deadline watcher), jump to the next wake-up.
			deadline := time.Now().Add(60 * time.Second)
			for {
				act, _ := asg.Action(token)
				if act.State != testpeers.AutoScalingActionPending {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("simulation stuck at %s with %d waiters", clock.Now().Sub(start), clock.Waiters())
				}
				if clock.Waiters() >= 2 {
					clock.AdvanceToNext()
					continue
				}
				time.Sleep(time.Millisecond) // let the job reach its next wait
			}

			act, _ := asg.Action(token)
			if act.State != testpeers.AutoScalingActionCompleted || act.Result != "CONTINUE" {
				t.Fatalf("action ended %s/%s (%s) at +%s", act.State, act.Result, act.ExpiryReason, act.ExpiredAt.Sub(start))
			}
			if !act.CompletedAt.Before(act.GlobalDeadline) {
				t.Fatalf("completed at +%s, not before the cap at +%s", act.CompletedAt.Sub(start), act.GlobalDeadline.Sub(start))
			}
			if got := act.GlobalDeadline.Sub(start); got != tt.wantCap {
				t.Fatalf("the fake's cap is %s, want %s", got, tt.wantCap)
			}
			if lead := act.GlobalDeadline.Sub(act.CompletedAt); lead > 3*time.Minute {
				t.Fatalf("completed %s before the cap: the deadline wastes time", lead)
			}
			var maxGap time.Duration
			prev := act.Started
			for _, hb := range append(act.Heartbeats, act.CompletedAt) {
				maxGap = max(maxGap, hb.Sub(prev))
				prev = hb
			}
			if maxGap > tt.hbt/2 {
				t.Fatalf("largest gap %s exceeds half the heartbeat timeout %s", maxGap, tt.hbt)
			}
			perTimeout := float64(len(act.Heartbeats)) * float64(tt.hbt) / float64(act.CompletedAt.Sub(act.Started))
			t.Logf("HeartbeatTimeout %s: completed at +%s (cap +%s), %d heartbeats (%.2f per timeout), largest gap %s",
				tt.hbt, act.CompletedAt.Sub(start), act.GlobalDeadline.Sub(start), len(act.Heartbeats), perTimeout, maxGap)
			if perTimeout > 2.05 {
				t.Fatalf("%.2f heartbeats per timeout, want at most 2", perTimeout)
			}
			testpeers.Eventually(t, 5*time.Second, "completion recorded as CONTINUE/deadline", func() bool {
				return rec.get() == "CONTINUE/deadline"
			})
			cancel()
			<-done
		})
	}
}

type recorder struct {
	mu        sync.Mutex
	completed string
}

func (r *recorder) get() string { r.mu.Lock(); defer r.mu.Unlock(); return r.completed }

func (r *recorder) SetPhase(string)       {}
func (r *recorder) SetDeadline(time.Time) {}
func (r *recorder) Heartbeat(string)      {}
func (r *recorder) ActionCompleted(res, reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.completed = res + "/" + reason
}
func (r *recorder) DrainFinished(string, time.Duration) {}
func (r *recorder) OwnMessageReceiveCount(int)          {}
