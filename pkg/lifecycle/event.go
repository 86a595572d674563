// Package lifecycle is scaledownd's AWS side: it turns Auto Scaling lifecycle
// notifications into Events, keeps a lifecycle action alive with heartbeats
// and completes it.
//
// A newcomer can follow one termination through these files in order:
//
//	classify.go  — an SQS message body becomes an Event (or is refused)
//	sqs.go       — the SQS source: long poll, hand back foreign messages, ack
//	confirm.go   — AWS confirms a queue message's action before it changes the worker
//	deadline.go  — how long the action may be kept waiting
//	actions.go   — heartbeats and CompleteLifecycleAction against Auto Scaling
//
// It knows nothing about Trino; the supervisor joins the two.
package lifecycle

import (
	"fmt"
	"time"
)

// Lifecycle transitions as Auto Scaling names them.
const (
	TransitionTerminating = "autoscaling:EC2_INSTANCE_TERMINATING"
	TransitionLaunching   = "autoscaling:EC2_INSTANCE_LAUNCHING"
	testNotification      = "autoscaling:TEST_NOTIFICATION"
)

// Event is one lifecycle action for an instance, whichever source reported it.
type Event struct {
	Transition  string    // TransitionTerminating or TransitionLaunching
	InstanceID  string    // the instance the action is about
	Group       string    // Auto Scaling group name
	Hook        string    // lifecycle hook name
	Token       string    // LifecycleActionToken; empty when the source has none (IMDS)
	Time        time.Time // when Auto Scaling started the action; zero if unknown
	Destination string    // "EC2", "WarmPool", … when the payload says so
	Origin      string    // "AutoScalingGroup", "WarmPool", … when the payload says so
	Deadline    time.Time // a hard end set by the signal itself (Spot: the reclaim time); zero if none
	Source      string    // which source produced it: "sqs", "imds", …
	Shape       string    // payload shape the event came in: "direct", "sns", "eventbridge"
	ReceivedAt  time.Time // when scaledownd first saw it
}

// Key identifies the action for de-duplication: the token when there is one;
// for an action learned from IMDS (no token), the instance, group and hook
// and when the change was seen, so a later cycle (warm pools) is new.
func (e Event) Key() string {
	switch {
	case e.Token != "":
		return e.Token
	case e.Transition == TransitionSpot || e.Transition == TransitionRebalance:
		return e.Transition + "/" + e.InstanceID
	default:
		return fmt.Sprintf("%s@%d", e.Tuple(), e.Time.Unix())
	}
}

// Tuple names the hook and transition an action belongs to, whichever
// source reported it: the same tuple from SQS and IMDS is the same action.
func (e Event) Tuple() string {
	return e.InstanceID + "/" + e.Group + "/" + e.Hook + "/" + e.Transition
}

// IsLifecycleAction reports whether the event is an Auto Scaling lifecycle
// action, which must be completed, rather than a Spot signal.
func (e Event) IsLifecycleAction() bool {
	return e.Transition == TransitionTerminating || e.Transition == TransitionLaunching
}

// TokenPrefix is the part of the token that is safe to log: enough to match
// log lines to an action, too little to act on it.
func (e Event) TokenPrefix() string {
	return TokenPrefix(e.Token)
}

// TokenPrefix returns the first 8 characters of a lifecycle action token.
func TokenPrefix(token string) string {
	const n = 8
	if len(token) <= n {
		return token
	}
	return token[:n]
}

// Started is when the action began: the notification's own time when it is
// plausible, otherwise when scaledownd received it. The lifecycle deadlines
// count from here.
func (e Event) Started() time.Time {
	if e.Time.IsZero() || e.Time.After(e.ReceivedAt) {
		return e.ReceivedAt
	}
	return e.Time
}
