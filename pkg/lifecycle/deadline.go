package lifecycle

import (
	"fmt"
	"time"
)

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

	hbt := hook.HeartbeatTimeout
	if hbt <= 0 {
		hbt = minHeartbeatTimeout
	}
	ceiling := hbt / 2
	switch {
	case opts.HeartbeatInterval <= 0:
		p.HeartbeatInterval = ceiling
	case opts.HeartbeatInterval > ceiling:
		p.HeartbeatInterval = ceiling
		notes = append(notes, fmt.Sprintf("heartbeat interval %s is more than half the hook's heartbeat timeout %s; using %s",
			opts.HeartbeatInterval, hbt, ceiling))
	default:
		p.HeartbeatInterval = opts.HeartbeatInterval
	}
	if p.HeartbeatInterval <= 0 {
		p.HeartbeatInterval = time.Second
	}
	return p, notes
}

// Remaining is the time left until the deadline at now.
func (p Plan) Remaining(now time.Time) time.Duration {
	return p.Deadline.Sub(now)
}
