package lifecycle

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/smithy-go"
	"go.uber.org/zap"
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
	opts.CallTimeout = positive(opts.CallTimeout, 2*time.Second)
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
	b, err := readItem(ctx, c.opts.Metadata, pathTargetState, nil)
	if err == nil && len(b) == 0 {
		err = errors.New("empty")
	}
	if err != nil {
		return "", fmt.Errorf("read %s: %w", pathTargetState, err)
	}
	return string(b), nil
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
		if err := m.Extend(ctx, vis); err != nil {
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

// AWS limits on how long an instance may stay in a wait state.
const (
	// MaxGlobalTimeout is the absolute cap: 48 hours.
	MaxGlobalTimeout = 48 * time.Hour
	// globalTimeoutFactor: a hook's global timeout is at most 100 × its
	// heartbeat timeout (so 300 s gives 30,000 s, not 48 h).
	globalTimeoutFactor = 100
	// minHeartbeatTimeout is the smallest HeartbeatTimeout AWS accepts. When
	// the hook cannot be read, heartbeating at half of it is safe for any hook.
	minHeartbeatTimeout = 30 * time.Second
)

// HookTiming is what DescribeLifecycleHooks says about a hook. Zero values
// mean unknown.
type HookTiming struct {
	HeartbeatTimeout time.Duration
	GlobalTimeout    time.Duration
	DefaultResult    string
}

// GlobalTimeoutOf returns how long an action of this hook may wait in total:
// the hook's GlobalTimeout when known, else min(48 h, 100 × HeartbeatTimeout),
// else 48 h.
func (h HookTiming) GlobalTimeoutOf() time.Duration {
	switch {
	case h.GlobalTimeout > 0:
		return min(h.GlobalTimeout, MaxGlobalTimeout)
	case h.HeartbeatTimeout > 0:
		return min(globalTimeoutFactor*h.HeartbeatTimeout, MaxGlobalTimeout)
	default:
		return MaxGlobalTimeout
	}
}

// Plan is the timing of one lifecycle action, computed once when it starts.
type Plan struct {
	Started           time.Time     // when the action began (the notification's time)
	HeartbeatInterval time.Duration // time between heartbeats
	Deadline          time.Time     // CONTINUE is sent by then, drained or not
	Limit             string        // what set the deadline: "global-timeout" or "max-drain-time"
}

// PlanOptions are the operator's settings that shape a Plan.
type PlanOptions struct {
	// HeartbeatInterval is the configured interval; 0 means derive it from the
	// hook. It is never allowed above half the hook's HeartbeatTimeout.
	HeartbeatInterval time.Duration
	// MaxDrainTime bounds the whole wait; 0 means no bound of our own.
	MaxDrainTime time.Duration
	// SafetyMargin is kept between the deadline and the AWS cap, so that the
	// completion call lands before AWS gives up. It is at most a tenth of
	// the limit.
	SafetyMargin time.Duration
}

// NewPlan computes heartbeat interval and deadline for an action that
// started at started. The second result lists adjustments worth a warning.
func NewPlan(started time.Time, hook HookTiming, opts PlanOptions) (Plan, []string) {
	var notes []string
	p := Plan{Started: started}

	limit := hook.GlobalTimeoutOf()
	p.Limit = "global-timeout"
	if hook.GlobalTimeout == 0 && hook.HeartbeatTimeout == 0 {
		notes = append(notes, "hook timing unknown: assuming the 48 h cap and heartbeating every 15 s")
	}
	if opts.MaxDrainTime > 0 && opts.MaxDrainTime < limit {
		limit, p.Limit = opts.MaxDrainTime, "max-drain-time"
	}
	margin := min(opts.SafetyMargin, limit/10)
	p.Deadline = started.Add(limit - margin)

	hbt := positive(hook.HeartbeatTimeout, minHeartbeatTimeout)
	ceiling := hbt / 2
	p.HeartbeatInterval = positive(opts.HeartbeatInterval, ceiling)
	if p.HeartbeatInterval > ceiling {
		p.HeartbeatInterval = ceiling
		notes = append(notes, fmt.Sprintf("heartbeat interval %s is more than half the hook's heartbeat timeout %s; using %s",
			opts.HeartbeatInterval, hbt, ceiling))
	}
	p.HeartbeatInterval = positive(p.HeartbeatInterval, time.Second)
	return p, notes
}

// RetryPolicy bounds the retries around heartbeats and completion, on top of
// the SDK retryer's own attempts within one call.
type RetryPolicy struct {
	// NotFoundWindow is how long "No active Lifecycle Action found" is
	// retried before it is believed. Right at the start of the wait state the
	// action can briefly be invisible; later it means the action ended.
	NotFoundWindow time.Duration
	// Backoff is the first pause between retries; it doubles up to
	// MaxBackoff.
	Backoff, MaxBackoff time.Duration
	Clock               Clock
	// Log, if set, is told about failed completion attempts: the first
	// one, then at most one line per attemptLogInterval, each with the AWS
	// error and the number of failed attempts so far.
	Log *zap.Logger
}

// attemptLogInterval spaces the log lines about failed attempts of one
// completion.
const attemptLogInterval = 30 * time.Second

func (p RetryPolicy) withDefaults() RetryPolicy {
	p.NotFoundWindow = positive(p.NotFoundWindow, 2*time.Minute)
	p.Backoff = positive(p.Backoff, time.Second)
	if p.MaxBackoff < p.Backoff {
		p.MaxBackoff = 30 * time.Second
	}
	p.Clock = cmp.Or[Clock](p.Clock, RealClock{})
	return p
}

// Heartbeater records lifecycle action heartbeats; *Actions is one.
type Heartbeater interface {
	Heartbeat(ctx context.Context, act Action) error
}

// Completer completes lifecycle actions; *Actions is one.
type Completer interface {
	Complete(ctx context.Context, act Action, result string) error
}

// Keeper keeps one lifecycle action alive with heartbeats.
type Keeper struct {
	actions  Heartbeater
	act      Action
	interval time.Duration
	policy   RetryPolicy
	// OnHeartbeat, if set, is told the outcome of every heartbeat.
	OnHeartbeat func(err error)

	confirmed atomic.Bool
}

// NewKeeper returns a Keeper that heartbeats act every interval.
func NewKeeper(actions Heartbeater, act Action, interval time.Duration, policy RetryPolicy) *Keeper {
	return &Keeper{actions: actions, act: act, interval: interval, policy: policy.withDefaults()}
}

// Confirmed reports whether Auto Scaling has accepted a heartbeat, which
// proves the action was active.
func (k *Keeper) Confirmed() bool { return k.confirmed.Load() }

// Run heartbeats at once and then every interval until ctx ends, when it
// returns nil. A failed heartbeat is retried sooner than the interval. It
// returns an error wrapping ErrNoActiveAction when the action is gone: after
// a heartbeat once succeeded, or once NotFoundWindow has passed.
func (k *Keeper) Run(ctx context.Context) error {
	c := k.policy.Clock
	started := c.Now()
	retry := k.policy.Backoff
	for {
		err := k.actions.Heartbeat(ctx, k.act)
		if ctx.Err() != nil {
			return nil
		}
		if k.OnHeartbeat != nil {
			k.OnHeartbeat(err)
		}
		next := k.interval
		switch {
		case err == nil:
			k.confirmed.Store(true)
			retry = k.policy.Backoff
		case errors.Is(err, ErrNoActiveAction) && (k.confirmed.Load() || c.Now().Sub(started) >= k.policy.NotFoundWindow):
			return err
		default:
			next = min(retry, k.interval)
			retry = min(2*retry, k.policy.MaxBackoff)
		}
		if sleep(ctx, c, next) != nil {
			return nil
		}
	}
}

// Finish completes act with result. Transient errors are retried until
// giveUp; "No active Lifecycle Action found" is believed at once when
// confirmed is true (a heartbeat proved the action existed, so it has ended),
// otherwise after the policy's NotFoundWindow. alreadyDone reports that the
// action had ended without this call.
func Finish(ctx context.Context, a Completer, act Action, result string, confirmed bool, giveUp time.Time, p RetryPolicy) (alreadyDone bool, err error) {
	p = p.withDefaults()
	log := cmp.Or(p.Log, zap.NewNop())
	var notFoundSince time.Time
	attempts, err := retrying(ctx, p.Clock, p.Backoff, p.MaxBackoff, giveUp, func() error { return a.Complete(ctx, act, result) },
		func(err error, now time.Time) bool {
			if errors.Is(err, ErrNoActiveAction) {
				notFoundSince = cmp.Or(notFoundSince, now)
				alreadyDone = confirmed || now.Sub(notFoundSince) >= p.NotFoundWindow
			}
			return alreadyDone
		},
		func(err error, attempt int, retryIn time.Duration) {
			log.Warn("CompleteLifecycleAction failed; retrying",
				actionLogFields(act, zap.Error(err), zap.Int("failed_attempts", attempt), zap.String("result", result),
					zap.Duration("retry_in", retryIn), zap.Time("give_up_at", giveUp))...)
		})
	switch {
	case alreadyDone:
		return true, nil
	case err == nil && attempts > 1:
		log.Info("lifecycle action completed after failed attempts", actionLogFields(act, zap.Int("attempts", attempts))...)
	}
	return false, err
}

// retrying calls try until it succeeds, settled says a failure ends the
// matter, ctx ends, or the next attempt would start at or after giveUp.
// The pauses start at backoff and double up to most. Failed attempts are
// told to warn: the first, then at most one per attemptLogInterval. It
// returns the number of attempts and the last one's error.
func retrying(ctx context.Context, c Clock, backoff, most time.Duration, giveUp time.Time, try func() error,
	settled func(err error, now time.Time) bool, warn func(err error, attempt int, retryIn time.Duration)) (int, error) {
	var logged time.Time
	for attempt := 1; ; attempt++ {
		err := try()
		if err == nil {
			return attempt, nil
		}
		now := c.Now()
		if settled != nil && settled(err, now) || ctx.Err() != nil || !now.Add(backoff).Before(giveUp) {
			return attempt, err
		}
		if logged.IsZero() || now.Sub(logged) >= attemptLogInterval {
			logged = now
			warn(err, attempt, backoff)
		}
		if sleep(ctx, c, backoff) != nil {
			return attempt, err
		}
		backoff = min(2*backoff, most)
	}
}

// actionLogFields names an action in a log line (token cut to its prefix).
func actionLogFields(act Action, more ...zap.Field) []zap.Field {
	return append([]zap.Field{zap.String("instance_id", act.InstanceID), zap.String("asg", act.Group),
		zap.String("hook", act.Hook), zap.String("token", TokenPrefix(act.Token))}, more...)
}

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
	return &Actions{api: api, callTimeout: positive(callTimeout, 10*time.Second)}
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
