package lifecycle

import (
	"context"
	"maps"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// StaleChecker reads what Auto Scaling knows about another instance's
// action; *Actions is one.
type StaleChecker interface {
	MembershipOf(ctx context.Context, instanceID string) (Membership, error)
	HookTiming(ctx context.Context, group, hook string) (HookTiming, error)
}

// Stale reasons, as counted in metrics.
const (
	StaleExpired      = "expired"       // older than its hook's global timeout
	StaleInstanceGone = "instance-gone" // the instance is in no group any more
	StaleNotWaiting   = "not-waiting"   // the instance is no longer in the wait state
)

// staleFilter decides whether another instance's lifecycle message can no
// longer be acted on by anyone, so whichever daemon sees it may delete it
// instead of handing it back forever. It never calls a message stale while
// its action may be live, and it rate-limits its Auto Scaling calls: at most
// one per message id per idInterval, and a token bucket of burst calls
// refilled every interval for the whole daemon, so a flood never becomes a
// request storm of its own. Messages younger than staleMinAge are not
// checked.
type staleFilter struct {
	api        StaleChecker
	now        func() time.Time
	calls      *rate.Limiter // the daemon's bucket, driven by now
	idInterval time.Duration

	hooks sync.Map // group/hook → HookTiming, read once

	mu      sync.Mutex
	checked map[string]time.Time // message id → last check
}

func newStaleFilter(api StaleChecker, now func() time.Time) *staleFilter {
	return &staleFilter{
		api: api, now: now,
		calls: rate.NewLimiter(rate.Every(5*time.Second), 4), idInterval: 10 * time.Minute,
		checked: map[string]time.Time{},
	}
}

// staleMinAge is the age below which a message is not checked: its action
// has just begun, and asking Auto Scaling about every fresh message would
// delay its hand-back for nothing.
const staleMinAge = 30 * time.Second

// candidate reports whether the message of e is to be checked now, and
// takes the rate limit's allowance if so. A message older than any action
// can live needs no allowance: it is stale without asking.
func (f *staleFilter) candidate(messageID string, e Event) bool {
	now := f.now()
	switch {
	case !e.Time.IsZero() && now.Sub(e.Time) > MaxGlobalTimeout:
		return true
	case !e.Time.IsZero() && now.Sub(e.Time) < staleMinAge:
		return false
	}
	return f.allow(messageID, now)
}

// reason returns why the message of a candidate is stale, or "" when it is
// (or may be) live.
func (f *staleFilter) reason(ctx context.Context, e Event) string {
	now := f.now()
	// Older than the longest any action can live: stale without asking.
	if !e.Time.IsZero() && now.Sub(e.Time) > MaxGlobalTimeout {
		return StaleExpired
	}
	if timing, ok := f.hookTiming(ctx, e.Group, e.Hook); ok && !e.Time.IsZero() &&
		now.Sub(e.Time) > timing.GlobalTimeoutOf() {
		return StaleExpired
	}
	m, err := f.api.MembershipOf(ctx, e.InstanceID)
	switch {
	case err != nil:
		return ""
	case m.Group == "":
		return StaleInstanceGone
	case waiting(e.Transition, m.State):
		return ""
	default:
		return StaleNotWaiting
	}
}

// waiting reports whether state is the wait state of the transition, or
// one from which it may still come (the message arrives after the wait
// begins, so only the states past it are conclusive).
func waiting(transition, state string) bool {
	if transition == TransitionLaunching {
		return state == "Pending" || state == "Pending:Wait"
	}
	return state == "Terminating" || inWaitState(TransitionTerminating, state)
}

func (f *staleFilter) hookTiming(ctx context.Context, group, hook string) (HookTiming, bool) {
	key := group + "/" + hook
	if t, ok := f.hooks.Load(key); ok {
		return t.(HookTiming), true
	}
	t, err := f.api.HookTiming(ctx, group, hook)
	if err != nil {
		return HookTiming{}, false
	}
	f.hooks.Store(key, t)
	return t, true
}

// allow applies the per-message and per-daemon limits.
func (f *staleFilter) allow(id string, now time.Time) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if t, ok := f.checked[id]; ok && now.Sub(t) < f.idInterval {
		return false
	}
	if !f.calls.AllowN(now, 1) {
		return false
	}
	if len(f.checked) > 50000 {
		maps.DeleteFunc(f.checked, func(_ string, t time.Time) bool { return now.Sub(t) >= f.idInterval })
	}
	f.checked[id] = now
	return true
}
