package lifecycle

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

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
	if p.NotFoundWindow <= 0 {
		p.NotFoundWindow = 2 * time.Minute
	}
	if p.Backoff <= 0 {
		p.Backoff = time.Second
	}
	if p.MaxBackoff < p.Backoff {
		p.MaxBackoff = 30 * time.Second
	}
	if p.Clock == nil {
		p.Clock = RealClock{}
	}
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
		case errors.Is(err, ErrNoActiveAction):
			if k.confirmed.Load() || c.Now().Sub(started) >= k.policy.NotFoundWindow {
				return err
			}
			next = min(retry, k.interval)
			retry = min(2*retry, k.policy.MaxBackoff)
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
	c := p.Clock
	var notFoundSince, logged time.Time
	retry := p.Backoff
	for attempt := 1; ; attempt++ {
		err = a.Complete(ctx, act, result)
		if err == nil {
			if attempt > 1 && p.Log != nil {
				p.Log.Info("lifecycle action completed after failed attempts", actionLogFields(act, zap.Int("attempts", attempt))...)
			}
			return false, nil
		}
		now := c.Now()
		if errors.Is(err, ErrNoActiveAction) {
			if notFoundSince.IsZero() {
				notFoundSince = now
			}
			if confirmed || now.Sub(notFoundSince) >= p.NotFoundWindow {
				return true, nil
			}
		}
		if ctx.Err() != nil || !now.Add(retry).Before(giveUp) {
			return false, err
		}
		if p.Log != nil && (logged.IsZero() || now.Sub(logged) >= attemptLogInterval) {
			logged = now
			p.Log.Warn("CompleteLifecycleAction failed; retrying",
				actionLogFields(act, zap.Error(err), zap.Int("failed_attempts", attempt), zap.String("result", result),
					zap.Duration("retry_in", retry), zap.Time("give_up_at", giveUp))...)
		}
		if sleep(ctx, c, retry) != nil {
			return false, err
		}
		retry = min(2*retry, p.MaxBackoff)
	}
}

// actionLogFields names an action in a log line (token cut to its prefix).
func actionLogFields(act Action, more ...zap.Field) []zap.Field {
	return append([]zap.Field{zap.String("instance_id", act.InstanceID), zap.String("asg", act.Group),
		zap.String("hook", act.Hook), zap.String("token", TokenPrefix(act.Token))}, more...)
}
