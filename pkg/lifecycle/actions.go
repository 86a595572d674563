package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/smithy-go"
)

// AutoScalingAPI is the part of the Auto Scaling client scaledownd uses.
type AutoScalingAPI interface {
	RecordLifecycleActionHeartbeat(ctx context.Context, in *autoscaling.RecordLifecycleActionHeartbeatInput, opts ...func(*autoscaling.Options)) (*autoscaling.RecordLifecycleActionHeartbeatOutput, error)
	CompleteLifecycleAction(ctx context.Context, in *autoscaling.CompleteLifecycleActionInput, opts ...func(*autoscaling.Options)) (*autoscaling.CompleteLifecycleActionOutput, error)
	DescribeLifecycleHooks(ctx context.Context, in *autoscaling.DescribeLifecycleHooksInput, opts ...func(*autoscaling.Options)) (*autoscaling.DescribeLifecycleHooksOutput, error)
	DescribeAutoScalingInstances(ctx context.Context, in *autoscaling.DescribeAutoScalingInstancesInput, opts ...func(*autoscaling.Options)) (*autoscaling.DescribeAutoScalingInstancesOutput, error)
	DescribeAutoScalingGroups(ctx context.Context, in *autoscaling.DescribeAutoScalingGroupsInput, opts ...func(*autoscaling.Options)) (*autoscaling.DescribeAutoScalingGroupsOutput, error)
}

// Lifecycle action results.
const (
	ResultContinue = "CONTINUE"
	ResultAbandon  = "ABANDON"
)

// ErrNoActiveAction means Auto Scaling has no active lifecycle action for the
// token or instance: it was completed, it timed out, or — for a moment at
// the start of the wait state — it is not visible yet.
var ErrNoActiveAction = errors.New("no active lifecycle action")

// Action names one lifecycle action for the Auto Scaling API.
type Action struct {
	InstanceID string
	Group      string
	Hook       string
	Token      string // empty: address the action by instance id
}

// ActionOf returns the Action an Event refers to.
func ActionOf(e Event) Action {
	return Action{InstanceID: e.InstanceID, Group: e.Group, Hook: e.Hook, Token: e.Token}
}

// Actions heartbeats and completes lifecycle actions. Every call has its own
// deadline; retries of transient errors are the SDK retryer's job.
type Actions struct {
	api         AutoScalingAPI
	callTimeout time.Duration
}

// NewActions returns Actions calling api, each call bounded by callTimeout.
func NewActions(api AutoScalingAPI, callTimeout time.Duration) *Actions {
	if callTimeout <= 0 {
		callTimeout = 10 * time.Second
	}
	return &Actions{api: api, callTimeout: callTimeout}
}

// Heartbeat records a heartbeat, extending the action by the hook's
// heartbeat timeout. It returns an error wrapping ErrNoActiveAction when
// Auto Scaling does not know the action.
func (a *Actions) Heartbeat(ctx context.Context, act Action) error {
	ctx, cancel := context.WithTimeout(ctx, a.callTimeout)
	defer cancel()
	in := &autoscaling.RecordLifecycleActionHeartbeatInput{
		AutoScalingGroupName: aws.String(act.Group),
		LifecycleHookName:    aws.String(act.Hook),
		InstanceId:           aws.String(act.InstanceID),
	}
	if act.Token != "" {
		in.LifecycleActionToken = aws.String(act.Token)
	}
	_, err := a.api.RecordLifecycleActionHeartbeat(ctx, in)
	return classifyActionError("record lifecycle action heartbeat", err)
}

// Complete sends CompleteLifecycleAction with result. The token is used when
// known, otherwise the instance id.
func (a *Actions) Complete(ctx context.Context, act Action, result string) error {
	ctx, cancel := context.WithTimeout(ctx, a.callTimeout)
	defer cancel()
	in := &autoscaling.CompleteLifecycleActionInput{
		AutoScalingGroupName:  aws.String(act.Group),
		LifecycleHookName:     aws.String(act.Hook),
		LifecycleActionResult: aws.String(result),
		InstanceId:            aws.String(act.InstanceID),
	}
	if act.Token != "" {
		in.LifecycleActionToken = aws.String(act.Token)
	}
	_, err := a.api.CompleteLifecycleAction(ctx, in)
	return classifyActionError("complete lifecycle action", err)
}

// HookTiming reads the hook's heartbeat and global timeouts.
func (a *Actions) HookTiming(ctx context.Context, group, hook string) (HookTiming, error) {
	ctx, cancel := context.WithTimeout(ctx, a.callTimeout)
	defer cancel()
	out, err := a.api.DescribeLifecycleHooks(ctx, &autoscaling.DescribeLifecycleHooksInput{
		AutoScalingGroupName: aws.String(group),
		LifecycleHookNames:   []string{hook},
	})
	if err != nil {
		return HookTiming{}, fmt.Errorf("describe lifecycle hook %s of %s: %w", hook, group, err)
	}
	for _, h := range out.LifecycleHooks {
		if aws.ToString(h.LifecycleHookName) != hook {
			continue
		}
		return HookTiming{
			HeartbeatTimeout: time.Duration(aws.ToInt32(h.HeartbeatTimeout)) * time.Second,
			GlobalTimeout:    time.Duration(aws.ToInt32(h.GlobalTimeout)) * time.Second,
			DefaultResult:    aws.ToString(h.DefaultResult),
		}, nil
	}
	return HookTiming{}, fmt.Errorf("describe lifecycle hook %s of %s: no such hook", hook, group)
}

// TerminatingHooks lists the group's hooks on EC2_INSTANCE_TERMINATING.
func (a *Actions) TerminatingHooks(ctx context.Context, group string) ([]string, error) {
	return a.HooksFor(ctx, group, TransitionTerminating)
}

// HooksFor lists the group's hooks on a transition.
func (a *Actions) HooksFor(ctx context.Context, group, transition string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, a.callTimeout)
	defer cancel()
	out, err := a.api.DescribeLifecycleHooks(ctx, &autoscaling.DescribeLifecycleHooksInput{AutoScalingGroupName: aws.String(group)})
	if err != nil {
		return nil, fmt.Errorf("describe lifecycle hooks of %s: %w", group, err)
	}
	var hooks []string
	for _, h := range out.LifecycleHooks {
		if aws.ToString(h.LifecycleTransition) == transition {
			hooks = append(hooks, aws.ToString(h.LifecycleHookName))
		}
	}
	return hooks, nil
}

// GroupMaxSize reads the group's MaxSize.
func (a *Actions) GroupMaxSize(ctx context.Context, group string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, a.callTimeout)
	defer cancel()
	out, err := a.api.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{group}})
	if err != nil {
		return 0, fmt.Errorf("describe auto scaling group %s: %w", group, err)
	}
	for _, g := range out.AutoScalingGroups {
		if aws.ToString(g.AutoScalingGroupName) == group {
			return int(aws.ToInt32(g.MaxSize)), nil
		}
	}
	return 0, fmt.Errorf("describe auto scaling group %s: no such group", group)
}

// Membership is an instance's place in Auto Scaling.
type Membership struct {
	Group string // empty when the instance is in no group
	State string // LifecycleState, e.g. InService, Terminating:Wait
}

// MembershipOf reports which group the instance belongs to.
func (a *Actions) MembershipOf(ctx context.Context, instanceID string) (Membership, error) {
	ctx, cancel := context.WithTimeout(ctx, a.callTimeout)
	defer cancel()
	out, err := a.api.DescribeAutoScalingInstances(ctx, &autoscaling.DescribeAutoScalingInstancesInput{
		InstanceIds: []string{instanceID},
	})
	if err != nil {
		return Membership{}, fmt.Errorf("describe auto scaling instance %s: %w", instanceID, err)
	}
	for _, i := range out.AutoScalingInstances {
		if aws.ToString(i.InstanceId) == instanceID {
			return Membership{Group: aws.ToString(i.AutoScalingGroupName), State: aws.ToString(i.LifecycleState)}, nil
		}
	}
	return Membership{}, nil
}

// classifyActionError wraps err with what was done, and marks the "No active
// Lifecycle Action found" ValidationError with ErrNoActiveAction.
func classifyActionError(what string, err error) error {
	if err == nil {
		return nil
	}
	var api smithy.APIError
	if errors.As(err, &api) && api.ErrorCode() == "ValidationError" &&
		strings.HasPrefix(api.ErrorMessage(), "No active Lifecycle Action found") {
		return fmt.Errorf("%s: %w: %s", what, ErrNoActiveAction, redactToken(api.ErrorMessage()))
	}
	return fmt.Errorf("%s: %w", what, err)
}

// redactToken cuts the token AWS echoes in "No active Lifecycle Action found
// with token <token>" to its prefix.
func redactToken(msg string) string {
	const marker = "with token "
	i := strings.Index(msg, marker)
	if i < 0 {
		return msg
	}
	return msg[:i+len(marker)] + TokenPrefix(msg[i+len(marker):]) + "…"
}
