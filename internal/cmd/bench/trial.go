package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/scaledownd/scaledownd/internal/testpeers"
)

// Termination is one scale-in of one node as the harness started it.
type Termination struct {
	Node  *Node
	Token string
	MsgID string    // "" when no SQS message was sent (imds mode)
	T0    time.Time // message visible in SQS and/or IMDS state flipped
}

// Terminate starts a terminate lifecycle action for n, as Auto Scaling
// does: the instance enters Terminating:Wait, then (by mode) the
// notification is put on the queue and/or the instance's metadata shows
// target-lifecycle-state Terminated. T0 is taken right before both.
func (f *Fleet) Terminate(n *Node) Termination {
	token := f.W.ASG.StartAction(benchGroup, benchHook, n.ID)
	body := f.W.ASG.Message(token).Direct()
	t := Termination{Node: n, Token: token}
	t.T0 = time.Now()
	if f.Mode != "imds" {
		t.MsgID = f.W.SQS.Send(f.W.QueueURL, body)
	}
	if f.Mode != "sqs" {
		n.IMDS.SetTargetLifecycleState("Terminated")
	}
	return t
}

// stateAt returns when the worker first entered state, if it has.
func stateAt(w *testpeers.TrinoWorker, state string) (time.Time, bool) {
	for _, c := range w.StateHistory() {
		if c.State == state {
			return c.At, true
		}
	}
	return time.Time{}, false
}

// WaitDraining waits until the node's worker received PUT DRAINING and
// returns when it did.
func WaitDraining(ctx context.Context, t Termination, poll time.Duration) (time.Time, error) {
	for {
		if at, ok := stateAt(t.Node.Trino, testpeers.TrinoDraining); ok {
			return at, nil
		}
		select {
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("%s: no DRAINING: %w", t.Node.ID, ctx.Err())
		case <-time.After(poll):
		}
	}
}

// Completion is what happened after the drain.
type Completion struct {
	DrainedAt  time.Time // worker reported DRAINED
	CompleteAt time.Time // CompleteLifecycleAction arrived at the fake Auto Scaling
	Result     string
}

// WaitCompleted waits until the action is no longer pending and returns
// the DRAINED → CompleteLifecycleAction timing.
func (f *Fleet) WaitCompleted(ctx context.Context, t Termination) (Completion, error) {
	act, err := f.W.ASG.WaitAction(ctx, t.Token)
	if err != nil {
		return Completion{}, err
	}
	c := Completion{Result: act.Result}
	if act.State != testpeers.AutoScalingActionCompleted {
		return c, fmt.Errorf("%s: action %s (%s)", t.Node.ID, act.State, act.ExpiryReason)
	}
	c.DrainedAt, _ = stateAt(t.Node.Trino, testpeers.TrinoDrained)
	for _, call := range f.W.ASG.Calls() {
		if call.Op == "CompleteLifecycleAction" && call.Params["InstanceId"] == t.Node.ID {
			c.CompleteAt = call.At // arrival, before the injected latency
		}
	}
	if c.DrainedAt.IsZero() || c.CompleteAt.IsZero() {
		return c, errors.New("no DRAINED state or no CompleteLifecycleAction call recorded")
	}
	return c, nil
}

// WaitDeleted waits until the termination's SQS message is deleted.
func (f *Fleet) WaitDeleted(ctx context.Context, t Termination) error {
	if t.MsgID == "" {
		return nil
	}
	return f.W.SQS.WaitDeleted(ctx, f.W.QueueURL, t.MsgID)
}
