package testenv

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"go.uber.org/zap"

	"github.com/scaledownd/scaledownd/internal/metrics"
	"github.com/scaledownd/scaledownd/internal/supervisor"
	"github.com/scaledownd/scaledownd/internal/testpeers"
	"github.com/scaledownd/scaledownd/pkg/lifecycle"
	"github.com/scaledownd/scaledownd/pkg/trinoadmin"
)

// FullDrain is the outcome of SimulateFullDrain.
type FullDrain struct {
	Start      time.Time                   // the action's start on the fake clock
	Action     testpeers.AutoScalingAction // as the fake Auto Scaling saw it
	Completion string                      // the supervisor's recorded result/reason, e.g. "CONTINUE/deadline"
}

// SimulateFullDrain drains a worker whose queries never end, for as long as
// AWS allows an action with this heartbeat timeout to wait, through the
// real supervisor, keeper and Auto Scaling wire protocol on a fake clock:
// a 48-hour drain in well under a second. The test of the 48-hour maths and
// the benchmark's P4 both run it.
func SimulateFullDrain(ctx context.Context, heartbeatTimeout time.Duration) (FullDrain, error) {
	start := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	clock := testpeers.NewFakeClock(start)
	asg := testpeers.NewAutoScaling(testpeers.AutoScalingOptions{Now: clock.Now})
	defer asg.Close()
	asg.AddGroup(Group, 1, 4)
	asg.AddHook(testpeers.AutoScalingHook{Group: Group, Name: Hook, HeartbeatTimeout: heartbeatTimeout})
	asg.AddInstance(InstanceID, Group, "InService")
	token := asg.StartAction(Group, Hook, InstanceID)

	client := autoscaling.New(autoscaling.Options{Region: Region, BaseEndpoint: aws.String(asg.URL()), Credentials: aws.AnonymousCredentials{}})
	rec := &completionRecorder{Metrics: metrics.New("simulation")}
	sup := supervisor.New(lifecycle.NewActions(client, 5*time.Second), neverDrains{}, supervisor.Options{
		Plan:     lifecycle.PlanOptions{MaxDrainTime: 48 * time.Hour, SafetyMargin: 2 * time.Minute},
		Retry:    lifecycle.RetryPolicy{Clock: clock},
		Clock:    clock,
		Recorder: rec,
	})
	sctx, cancel := context.WithCancel(ctx)
	in := make(chan lifecycle.Delivery, 1)
	done := make(chan struct{})
	go func() { sup.Run(sctx, in, nil); close(done) }()
	defer func() { cancel(); <-done }()
	in <- lifecycle.Delivery{Event: lifecycle.Event{
		Transition: lifecycle.TransitionTerminating, InstanceID: InstanceID, Group: Group, Hook: Hook,
		Token: token, Time: start, ReceivedAt: start, Source: "simulation",
	}}

	// Whenever the job waits on the clock (the keeper's next heartbeat and
	// the deadline watcher), jump to the next wake-up.
	limit := time.Now().Add(120 * time.Second)
	var act testpeers.AutoScalingAction
	for {
		if act, _ = asg.Action(token); act.State != testpeers.AutoScalingActionPending {
			break
		}
		if time.Now().After(limit) || ctx.Err() != nil {
			return FullDrain{}, fmt.Errorf("simulation stuck at +%s with %d waiters", clock.Now().Sub(start), clock.Waiters())
		}
		if clock.Waiters() >= 2 {
			clock.AdvanceToNext()
			continue
		}
		time.Sleep(time.Millisecond) // let the job reach its next wait
	}
	// The fake records the completion just before the supervisor does.
	for i := 0; i < 500 && rec.get() == "" && act.State == testpeers.AutoScalingActionCompleted; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	return FullDrain{Start: start, Action: act, Completion: rec.get()}, nil
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

// completionRecorder keeps the supervisor's completion result; the other
// figures go to metrics nobody reads.
type completionRecorder struct {
	*metrics.Metrics
	result atomic.Value // string
}

func (r *completionRecorder) get() string {
	s, _ := r.result.Load().(string)
	return s
}

func (r *completionRecorder) ActionCompleted(res, reason string) { r.result.Store(res + "/" + reason) }
