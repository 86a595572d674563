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
	Node     *Node
	Token    string
	QueueURL string
	MsgID    string    // "" when no SQS message was sent (imds mode)
	T0       time.Time // message visible in SQS and/or IMDS state flipped
}

// Terminate starts a terminate lifecycle action for n, as Auto Scaling
// does: the instance enters Terminating:Wait, then (by mode) the
// notification is put on the queue and/or the instance's metadata shows
// target-lifecycle-state Terminated. T0 is taken right before both.
func (w *World) Terminate(n *Node, mode, queueURL string) Termination {
	w.terminated.Store(n.ID, true)
	token := w.ASG.StartAction(benchGroup, benchHook, n.ID)
	body := w.ASG.Message(token).Direct()
	t := Termination{Node: n, Token: token, QueueURL: queueURL}
	t.T0 = time.Now()
	if mode != "imds" {
		t.MsgID = w.SQS.Send(queueURL, body)
	}
	if mode != "sqs" {
		n.IMDS.SetTargetLifecycleState("Terminated")
	}
	return t
}

// Terminate starts a termination of one of the fleet's nodes.
func (f *Fleet) Terminate(n *Node) Termination { return f.W.Terminate(n, f.Mode, f.W.QueueURL) }

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
	Instance  string
	DrainedAt time.Time // worker reported DRAINED
	Result    string
}

// WaitCompleted waits until the action is no longer pending.
func (w *World) WaitCompleted(ctx context.Context, t Termination) (Completion, error) {
	act, err := w.ASG.WaitAction(ctx, t.Token)
	if err != nil {
		return Completion{}, err
	}
	c := Completion{Instance: t.Node.ID, Result: act.Result}
	if act.State != testpeers.AutoScalingActionCompleted {
		return c, fmt.Errorf("%s: action %s (%s)", t.Node.ID, act.State, act.ExpiryReason)
	}
	c.DrainedAt, _ = stateAt(t.Node.Trino, testpeers.TrinoDrained)
	if c.DrainedAt.IsZero() {
		return c, errors.New("completed without DRAINED")
	}
	return c, nil
}

// completeArrivals maps each instance to the arrival time (before the
// injected latency) of its last CompleteLifecycleAction at the fake.
func (w *World) completeArrivals() map[string]time.Time {
	out := map[string]time.Time{}
	for _, call := range w.ASG.Calls() {
		if call.Op == "CompleteLifecycleAction" {
			out[call.Params["InstanceId"]] = call.At
		}
	}
	return out
}

// P2 computes DRAINED → CompleteLifecycleAction for completions.
func (w *World) P2(cs []Completion) []float64 {
	arr := w.completeArrivals()
	var out []float64
	for _, c := range cs {
		if at, ok := arr[c.Instance]; ok && !c.DrainedAt.IsZero() {
			out = append(out, at.Sub(c.DrainedAt).Seconds())
		}
	}
	return out
}

// WaitDeleted waits until the termination's SQS message is deleted.
func (w *World) WaitDeleted(ctx context.Context, t Termination) error {
	if t.MsgID == "" {
		return nil
	}
	return w.SQS.WaitDeleted(ctx, t.QueueURL, t.MsgID)
}
