package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"go.uber.org/zap"

	"github.com/scaledownd/scaledownd/internal/supervisor"
	"github.com/scaledownd/scaledownd/internal/testpeers"
	"github.com/scaledownd/scaledownd/pkg/lifecycle"
	"github.com/scaledownd/scaledownd/pkg/trinoadmin"
)

// P4Result is one simulated full-length drain.
type P4Result struct {
	HeartbeatTimeoutS float64 `json:"heartbeat_timeout_s"`
	CapS              float64 `json:"cap_s"` // min(48 h, 100 × HeartbeatTimeout)
	CompletedAtS      float64 `json:"completed_at_s"`
	LeadS             float64 `json:"lead_before_cap_s"`
	Heartbeats        int     `json:"heartbeats"`
	PerTimeout        float64 `json:"heartbeats_per_timeout"`
	LargestGapS       float64 `json:"largest_gap_s"`
	Lapses            int     `json:"lapses"` // gaps longer than the heartbeat timeout
	Result            string  `json:"result"`
	Reason            string  `json:"reason"`
	WallS             float64 `json:"wall_s"`
}

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

// completionRecorder keeps the supervisor's completion result.
type completionRecorder struct {
	mu     sync.Mutex
	result string
}

func (r *completionRecorder) get() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.result
}
func (r *completionRecorder) SetPhase(string)       {}
func (r *completionRecorder) SetDeadline(time.Time) {}
func (r *completionRecorder) Heartbeat(string)      {}
func (r *completionRecorder) ActionCompleted(res, reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.result = res + "/" + reason
}
func (r *completionRecorder) DrainFinished(string, time.Duration) {}
func (r *completionRecorder) OwnMessageReceiveCount(int)          {}

// runP4 drains a worker that never finishes for as long as AWS allows, on
// a fake clock, through the real supervisor, keeper and Auto Scaling wire
// protocol (as internal/supervisor/longdrain_test.go does), and reads the
// heartbeats the fake Auto Scaling recorded.
func runP4(ctx context.Context, hbt time.Duration) (P4Result, error) {
	wallStart := time.Now()
	r := P4Result{HeartbeatTimeoutS: hbt.Seconds()}
	start := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	clock := testpeers.NewFakeClock(start)
	asg := testpeers.NewAutoScaling(testpeers.AutoScalingOptions{Now: clock.Now})
	defer asg.Close()
	const id = "i-0123456789abcdef0"
	asg.AddGroup("g", 1, 4)
	asg.AddHook(testpeers.AutoScalingHook{Group: "g", Name: "h", HeartbeatTimeout: hbt})
	asg.AddInstance(id, "g", "InService")
	token := asg.StartAction("g", "h", id)

	client := autoscaling.New(autoscaling.Options{Region: benchRegion, BaseEndpoint: aws.String(asg.URL()), Credentials: aws.AnonymousCredentials{}})
	actions := lifecycle.NewActions(client, 5*time.Second)
	rec := &completionRecorder{}
	sup := supervisor.New(actions, neverDrains{}, supervisor.Options{
		Plan:     lifecycle.PlanOptions{MaxDrainTime: 48 * time.Hour, SafetyMargin: 2 * time.Minute},
		Retry:    lifecycle.RetryPolicy{Clock: clock},
		Clock:    clock,
		Recorder: rec,
	})
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	in := make(chan lifecycle.Delivery, 1)
	done := make(chan struct{})
	go func() { sup.Run(sctx, in, nil); close(done) }()
	defer func() { cancel(); <-done }()
	in <- lifecycle.Delivery{Event: lifecycle.Event{
		Transition: lifecycle.TransitionTerminating, InstanceID: id, Group: "g", Hook: "h",
		Token: token, Time: start, ReceivedAt: start, Source: "bench",
	}}

	// Whenever the job waits on the clock (the keeper's next heartbeat and
	// the deadline watcher), jump to the next wake-up.
	limit := time.Now().Add(120 * time.Second)
	for {
		act, _ := asg.Action(token)
		if act.State != testpeers.AutoScalingActionPending {
			break
		}
		if time.Now().After(limit) {
			return r, fmt.Errorf("simulation stuck at +%s with %d waiters", clock.Now().Sub(start), clock.Waiters())
		}
		if clock.Waiters() >= 2 {
			clock.AdvanceToNext()
			continue
		}
		time.Sleep(time.Millisecond)
	}
	act, _ := asg.Action(token)
	r.CapS = act.GlobalDeadline.Sub(start).Seconds()
	r.Result = act.Result
	if act.State != testpeers.AutoScalingActionCompleted {
		r.Result = act.State + "/" + act.ExpiryReason
		r.Lapses = 1
	}
	end := act.CompletedAt
	if end.IsZero() {
		end = act.ExpiredAt
	}
	r.CompletedAtS = end.Sub(start).Seconds()
	r.LeadS = act.GlobalDeadline.Sub(end).Seconds()
	r.Heartbeats = len(act.Heartbeats)
	prev := act.Started
	for _, hb := range append(act.Heartbeats, end) {
		gap := hb.Sub(prev)
		r.LargestGapS = max(r.LargestGapS, gap.Seconds())
		if gap > hbt {
			r.Lapses++
		}
		prev = hb
	}
	if d := end.Sub(act.Started); d > 0 {
		r.PerTimeout = float64(r.Heartbeats) * float64(hbt) / float64(d)
	}
	for i := 0; i < 500 && rec.get() == ""; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	r.Reason = rec.get()
	r.WallS = time.Since(wallStart).Seconds()
	return r, nil
}
