package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Anything that can put a message on the lifecycle queue — a misrouted
// hook, a replayed old notification, a forged one — could otherwise take
// a worker out of its cluster. So an action learned from the queue changes
// the worker only once AWS itself confirms it for this instance:
//
//   - A termination: instance metadata's autoscaling/target-lifecycle-state
//     says Terminated, or Warmed:* for a return to a warm pool. That is one
//     read of a local endpoint, no AWS API call. Only when metadata is not
//     to be used (mode sqs) or cannot be read (an error, a 404), and once at
//     the end of a confirmation window, is Auto Scaling asked:
//     DescribeAutoScalingInstances must show this instance in the message's
//     group in the wait state of a termination.
//   - A launch: always DescribeAutoScalingInstances (Pending:Wait, or
//     Warmed:Pending:Wait into a warm pool). Metadata cannot confirm a
//     launch: its target state during a launch is InService, which is also
//     what it says for as long as the instance serves, so a replayed launch
//     message would be confirmed by every healthy worker.
//
// Terminating:Proceed and Pending:Proceed do not confirm: they mean every
// hook's action of the transition has already ended, so there is nothing
// left to complete and nothing AWS is waiting for.

// Confirmation is what AWS said about an action learned from the queue.
type Confirmation struct {
	Confirmed bool
	// By names what confirmed it: "metadata" or "autoscaling".
	By string
	// TargetState is instance metadata's target-lifecycle-state, when it
	// was read.
	TargetState string
	// MetadataError is why metadata could not be read (a 404 included),
	// when Auto Scaling was asked instead.
	MetadataError string
	// Asked is set when Auto Scaling was asked; Membership is its answer.
	Asked      bool
	Membership Membership
}

// Said describes the answer for a log line, e.g. `target-lifecycle-state
// InService` or `Auto Scaling: InService in trino-workers`.
func (c Confirmation) Said() string {
	var parts []string
	if c.TargetState != "" {
		parts = append(parts, "target-lifecycle-state "+c.TargetState)
	}
	if c.MetadataError != "" {
		parts = append(parts, "instance metadata unreadable ("+c.MetadataError+")")
	}
	if c.Asked {
		if c.Membership.Group == "" {
			parts = append(parts, "Auto Scaling: in no group")
		} else {
			parts = append(parts, "Auto Scaling: "+c.Membership.State+" in "+c.Membership.Group)
		}
	}
	return strings.Join(parts, "; ")
}

// MembershipReader asks Auto Scaling where an instance is; *Actions is one.
type MembershipReader interface {
	MembershipOf(ctx context.Context, instanceID string) (Membership, error)
}

// ConfirmerOptions configure a Confirmer.
type ConfirmerOptions struct {
	// Metadata, if set, is this instance's metadata service (modes both
	// and imds); nil asks Auto Scaling for every action (mode sqs).
	Metadata IMDSAPI
	// AutoScaling answers DescribeAutoScalingInstances.
	AutoScaling MembershipReader
	// CallTimeout bounds the metadata read; default 2 s.
	CallTimeout time.Duration
}

// Confirmer asks AWS whether an action learned from the queue is real for
// this instance.
type Confirmer struct {
	opts ConfirmerOptions
}

// NewConfirmer returns a Confirmer.
func NewConfirmer(opts ConfirmerOptions) *Confirmer {
	if opts.CallTimeout <= 0 {
		opts.CallTimeout = 2 * time.Second
	}
	return &Confirmer{opts: opts}
}

// Confirm reports what AWS says about e now. With last (the final check
// of a confirmation window), a termination that metadata answers but does
// not confirm is put to Auto Scaling as well: an instance whose metadata
// never shows the termination is still drained once Auto Scaling holds it
// in the wait state, only later. An error means neither metadata nor Auto
// Scaling could be read; the Confirmation then holds what was learned
// before the failure.
func (c *Confirmer) Confirm(ctx context.Context, e Event, last bool) (Confirmation, error) {
	var conf Confirmation
	if c.opts.Metadata != nil && e.Transition == TransitionTerminating {
		state, err := c.targetState(ctx)
		switch {
		case err == nil:
			conf.TargetState = state
			if _, ok := leaving(state); ok {
				conf.Confirmed, conf.By = true, "metadata"
				return conf, nil
			}
			if !last {
				return conf, nil
			}
		case ctx.Err() != nil:
			return conf, ctx.Err()
		default:
			conf.MetadataError = err.Error()
		}
	}
	if c.opts.AutoScaling == nil {
		return conf, errors.New("confirm lifecycle action: no Auto Scaling client")
	}
	m, err := c.opts.AutoScaling.MembershipOf(ctx, e.InstanceID)
	if err != nil {
		return conf, fmt.Errorf("confirm lifecycle action: %w", err)
	}
	conf.Asked, conf.Membership = true, m
	if m.Group == e.Group && inWaitState(e.Transition, m.State) {
		conf.Confirmed, conf.By = true, "autoscaling"
	}
	return conf, nil
}

// targetState reads autoscaling/target-lifecycle-state once; a 404 is an
// error here (the item exists only for instances that changed state after
// March 2022).
func (c *Confirmer) targetState(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.CallTimeout)
	defer cancel()
	b, err := c.opts.Metadata.Read(ctx, pathTargetState, nil, imdsMaxItem)
	if err != nil {
		var status interface{ HTTPStatusCode() int }
		if errors.As(err, &status) && status.HTTPStatusCode() == http.StatusNotFound {
			return "", fmt.Errorf("read %s: not present", pathTargetState)
		}
		return "", fmt.Errorf("read %s: %w", pathTargetState, err)
	}
	state := strings.TrimSpace(string(b))
	if state == "" {
		return "", fmt.Errorf("read %s: empty", pathTargetState)
	}
	return state, nil
}

// inWaitState reports whether an Auto Scaling lifecycle state is the wait
// state of the transition: the state in which a hook's action is pending.
func inWaitState(transition, state string) bool {
	switch transition {
	case TransitionLaunching:
		return state == "Pending:Wait" || state == "Warmed:Pending:Wait"
	case TransitionTerminating:
		// Warmed:Pending:Wait is a scale-in back into a warm pool;
		// Warmed:Terminating:Wait a termination from the warm pool.
		return state == "Terminating:Wait" || state == "Warmed:Pending:Wait" || state == "Warmed:Terminating:Wait"
	}
	return false
}

// SettleUnconfirmed decides what becomes of this instance's message once
// AWS has not confirmed its action within the confirmation window: it is
// checked like another instance's stale message, through the same rate
// limit, and deleted when Auto Scaling shows nothing to act on (older than
// the hook's global timeout, instance gone, or not waiting). Otherwise —
// the check is rate-limited, Auto Scaling cannot be read, the instance
// may still be waiting, or stale deletion is off (aws.delete-stale) — it
// is handed back with a visibility that grows with its receive count, so
// it neither spins nor vanishes. reason is the stale reason when deleted.
func (m *Message) SettleUnconfirmed(ctx context.Context, e Event) (reason string, deleted bool, err error) {
	if f := m.src.stale; f != nil {
		now := f.now()
		expired := !e.Time.IsZero() && now.Sub(e.Time) > MaxGlobalTimeout
		if expired || f.allow(m.ID, now) {
			reason = f.reason(ctx, e)
		}
	}
	if reason == "" {
		vis := backoffVisibility(m.ReceiveCount)
		if err := m.setVisibility(ctx, vis); err != nil {
			return "", false, fmt.Errorf("hand back unconfirmed message: %w", err)
		}
		return "", false, nil
	}
	if err := m.Delete(ctx); err != nil {
		return reason, false, fmt.Errorf("delete unconfirmed message (%s): %w", reason, err)
	}
	m.src.opts.Recorder.StaleDeleted(reason)
	return reason, true, nil
}
