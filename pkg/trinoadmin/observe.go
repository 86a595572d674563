package trinoadmin

import "context"

// Milestone is a point a drain passes, in the order a drain passes them.
type Milestone string

// Milestones of a drain. A drain reports each at most once; which ones it
// passes depends on the path (DRAINING → DRAINED, or SHUTTING_DOWN → exit).
const (
	// MilestoneDrainingRequested: the worker accepted PUT DRAINING.
	MilestoneDrainingRequested Milestone = "draining_requested"
	// MilestoneTasksZero: the worker's active task count first read 0.
	MilestoneTasksZero Milestone = "tasks_zero"
	// MilestoneDrained: the worker reported DRAINED.
	MilestoneDrained Milestone = "drained"
	// MilestoneShuttingDown: the worker accepted PUT SHUTTING_DOWN (the
	// shutdown path, or after DRAINED so the idle process exits).
	MilestoneShuttingDown Milestone = "shutting_down"
	// MilestoneProcessGone: the worker's port refuses connections while the
	// drain waits: the process has exited (or crashed).
	MilestoneProcessGone Milestone = "process_gone"
)

// Observer follows one drain as it goes; the callbacks run on the drain's
// goroutine and must return quickly.
type Observer interface {
	// DrainMilestone is called when the drain passes m.
	DrainMilestone(m Milestone)
	// DrainTasks is called when the worker's active task count changes.
	DrainTasks(n int)
	// DrainState is called when the worker's node state changes.
	DrainState(state string)
}

type observerKey struct{}

// WithObserver returns a context whose drains (Drain, Hold) report their
// progress to o. The observer belongs to one call, so one Drainer can serve
// drains observed by different callers.
func WithObserver(ctx context.Context, o Observer) context.Context {
	return context.WithValue(ctx, observerKey{}, o)
}

// observerOf returns the context's observer, or one that ignores all.
func observerOf(ctx context.Context) Observer {
	if o, ok := ctx.Value(observerKey{}).(Observer); ok && o != nil {
		return o
	}
	return nopObserver{}
}

type nopObserver struct{}

func (nopObserver) DrainMilestone(Milestone) {}
func (nopObserver) DrainTasks(int)           {}
func (nopObserver) DrainState(string)        {}
