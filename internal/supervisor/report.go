package supervisor

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/scaledownd/scaledownd/internal/drainreport"
	"github.com/scaledownd/scaledownd/internal/statefile"
	"github.com/scaledownd/scaledownd/pkg/lifecycle"
	"github.com/scaledownd/scaledownd/pkg/trinoadmin"
)

// This file builds each action's drain report: the job marks the steps of
// the action as they happen (the drainer tells it about the worker through
// a trinoadmin.Observer), the report is kept in the state directory while
// the action runs, so a restarted daemon continues it, and once the action
// is over it is logged as one "drain report" event and added to the
// history.

// QueryLister lists the queries that still have tasks on this worker; the
// daemon binds in the worker's node id.
type QueryLister interface {
	BlockingQueries(ctx context.Context) ([]trinoadmin.Query, error)
}

// ReportStore keeps drain reports; *statefile.History is one.
type ReportStore interface {
	// SaveInflight keeps the report of an action in progress.
	SaveInflight(id string, r drainreport.Report) error
	// LoadInflight returns the report a previous run began.
	LoadInflight(id string) (drainreport.Report, bool)
	// Append adds a finished report to the history (replacing one with
	// the same id) and drops the action's report in progress.
	Append(id string, r drainreport.Report) error
	// Finished reports whether the history holds the action's report.
	Finished(id string) bool
}

// PhaseRecorder is what a Recorder may also do with a finished report;
// *metrics.Metrics does.
type PhaseRecorder interface {
	// DrainPhase observes how long one phase of a drain took.
	DrainPhase(phase string, d time.Duration)
	// BlockingQueries records how many queries hold the drain now.
	BlockingQueries(n int)
}

// defaultQueryInterval is how often the queries holding a drain are listed
// when Options.QueryInterval is not set.
const defaultQueryInterval = 10 * time.Second

// deadlineWatcher is a QueryLister that also follows one drain until its
// context ends and warns, near deadline, which queries will fail when the
// action completes; *trinoadmin.Watcher is one.
type deadlineWatcher interface {
	Run(ctx context.Context, deadline time.Time)
}

// maxStatusQueries is how many blocking queries /status lists.
const maxStatusQueries = 5

// openReport returns the job's report, or nil once it is done. It starts
// the report on first use, from the state a previous run left, if any.
// Callers hold j.repMu.
func (j *job) openReport() *drainreport.Report {
	if j.rep != nil {
		if j.repDone {
			return nil
		}
		return j.rep
	}
	s, e := j.s, j.event
	id := statefile.ReportID(j.key)
	var r drainreport.Report
	var loaded bool
	if s.opts.Reports != nil {
		r, loaded = s.opts.Reports.LoadInflight(id)
	}
	if !loaded {
		received := e.ReceivedAt
		if received.IsZero() {
			received = s.opts.Clock.Now()
		}
		r = drainreport.Report{Kind: kindOf(e), Source: e.Source,
			Timeline: drainreport.Timeline{Signal: e.Started(), Received: received}}
		if j.resume != nil && s.opts.Reports != nil && s.opts.Reports.Finished(id) {
			j.repDone = true // a previous run stored it just before it stopped
		}
	}
	r.InstanceID, r.ASG, r.Hook = e.InstanceID, e.Group, e.Hook
	r.TokenPrefix = e.TokenPrefix()
	j.rep = &r
	return j.openReport()
}

// kindOf names the kind of action an event starts.
func kindOf(e lifecycle.Event) string {
	switch {
	case e.Transition == lifecycle.TransitionLaunching:
		return drainreport.KindLaunch
	case e.Transition == lifecycle.TransitionSpot:
		return drainreport.KindSpot
	case e.Transition == lifecycle.TransitionRebalance:
		return drainreport.KindRebalance
	case e.Destination == "WarmPool":
		return drainreport.KindWarmPool
	default:
		return drainreport.KindTerminate
	}
}

// updateReport changes the report and keeps the result in the state
// directory. The lock is held while writing, so writes land in the order
// the changes were made.
func (j *job) updateReport(fn func(*drainreport.Report)) {
	j.repMu.Lock()
	defer j.repMu.Unlock()
	r := j.openReport()
	if r == nil {
		return
	}
	fn(r)
	s := j.s
	if s.opts.Reports == nil || s.opts.DryRun {
		return
	}
	if err := s.opts.Reports.SaveInflight(statefile.ReportID(j.key), *r); err != nil {
		j.log().Warn("could not keep the drain report in progress; a restart would lose part of it", zap.Error(err))
	}
}

// mark sets a step of the timeline to now, unless it happened already (a
// restarted daemon keeps the times its predecessor saw).
func (j *job) mark(step func(*drainreport.Timeline) *time.Time) {
	now := j.s.opts.Clock.Now()
	j.updateReport(func(rep *drainreport.Report) {
		if t := step(&rep.Timeline); t.IsZero() {
			*t = now
		}
	})
}

// DrainMilestone implements trinoadmin.Observer.
func (j *job) DrainMilestone(m trinoadmin.Milestone) {
	j.mark(func(t *drainreport.Timeline) *time.Time {
		switch m {
		case trinoadmin.MilestoneDrainingRequested:
			return &t.DrainingRequested
		case trinoadmin.MilestoneTasksZero:
			return &t.TasksZero
		case trinoadmin.MilestoneDrained:
			return &t.Drained
		case trinoadmin.MilestoneShuttingDown:
			return &t.ShuttingDown
		case trinoadmin.MilestoneProcessGone:
			return &t.ProcessGone
		}
		return new(time.Time) // unknown: nowhere
	})
}

// DrainTasks implements trinoadmin.Observer: the live task count.
func (j *job) DrainTasks(n int) {
	j.s.setStatus(func(st *Status) { st.TasksLeft = &n })
}

// DrainState implements trinoadmin.Observer: the live worker state.
func (j *job) DrainState(state string) {
	j.s.setStatus(func(st *Status) { st.TrinoState = state })
}

// seeQueries takes one listing of the queries holding the drain.
func (j *job) seeQueries(qs []trinoadmin.Query) {
	seen := make([]drainreport.Query, 0, len(qs))
	for _, q := range qs {
		seen = append(seen, drainreport.Query{QueryID: q.ID, User: q.User, Source: q.Source, State: q.State,
			ElapsedS: q.Elapsed.Seconds()})
	}
	j.updateReport(func(rep *drainreport.Report) { rep.SeeQueries(seen) })
	n := len(seen)
	top := drainreport.Report{Queries: seen}
	top.Finish()
	if len(top.Queries) > maxStatusQueries {
		top.Queries = top.Queries[:maxStatusQueries]
	}
	j.s.setStatus(func(st *Status) { st.BlockingQueries, st.Queries = &n, top.Queries })
	if pr, ok := j.s.opts.Recorder.(PhaseRecorder); ok {
		pr.BlockingQueries(n)
	}
}

// completed records the action's result and counts it.
func (j *job) completed(result, reason string) {
	j.s.opts.Recorder.ActionCompleted(result, reason)
	now := j.s.opts.Clock.Now()
	j.updateReport(func(rep *drainreport.Report) {
		rep.Result, rep.Reason, rep.Timeline.Completed = result, reason, now
	})
}

// finishReport stores the report in the history, logs it and observes its
// phases, once. When ctx has ended (the daemon stopping) the report stays
// in progress for the next start.
func (j *job) finishReport(ctx context.Context) {
	if ctx.Err() != nil {
		return
	}
	j.repMu.Lock()
	defer j.repMu.Unlock()
	r := j.openReport()
	if r == nil {
		return
	}
	j.repDone = true
	s := j.s
	if r.Timeline.Confirmed.IsZero() { // an action never confirmed (a Spot signal): when received
		r.Timeline.Confirmed = r.Timeline.Received
	}
	if r.Result == "" && j.resume != nil {
		r.Reason = j.resume.Reason // completed by a version without reports
	}
	if token := j.action().Token; token != "" {
		r.TokenPrefix = lifecycle.TokenPrefix(token) // lent by the queue's message
	}
	r.Finish()
	if pr, ok := s.opts.Recorder.(PhaseRecorder); ok {
		r.Phases.Each(pr.DrainPhase)
		pr.BlockingQueries(0)
	}
	// Stored first: whoever sees the event finds it in the history too.
	if s.opts.Reports != nil && !s.opts.DryRun {
		if err := s.opts.Reports.Append(statefile.ReportID(j.key), *r); err != nil {
			j.log().Warn("could not add the drain report to the history", zap.Error(err))
		}
	}
	j.log().Info("drain report", zap.Any("report", *r))
}

// observed runs one drain attempt with the report observing it and, with
// a QueryLister, the queries holding the drain listed alongside. It returns
// when the drain does; the listing stops with it.
func (j *job) observed(ctx context.Context, drain func(context.Context, *zap.Logger) (trinoadmin.Result, error)) (trinoadmin.Result, error) {
	ctx = trinoadmin.WithObserver(ctx, j)
	if q := j.s.opts.Queries; q != nil {
		defer background(ctx, func(ctx context.Context) { j.watchQueries(ctx, q) })()
	}
	return drain(ctx, j.log())
}

// watchQueries lists the blocking queries at once and then every
// QueryInterval until ctx ends. A failure leaves the drain alone; each
// distinct error is logged once.
func (j *job) watchQueries(ctx context.Context, q QueryLister) {
	s := j.s
	interval := s.opts.QueryInterval
	if interval <= 0 {
		interval = defaultQueryInterval
	}
	logged := map[string]bool{}
	for {
		qs, err := q.BlockingQueries(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			if msg := err.Error(); !logged[msg] && len(logged) < 32 {
				logged[msg] = true
				j.log().Warn("cannot list the queries holding the drain; the drain goes on (each distinct error is logged once)",
					zap.Error(err))
			}
		default:
			j.seeQueries(qs)
		}
		select {
		case <-ctx.Done():
			return
		case <-s.opts.Clock.After(interval):
		}
	}
}
