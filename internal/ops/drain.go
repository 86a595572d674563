package ops

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/scaledownd/scaledownd/internal/drainreport"
	"github.com/scaledownd/scaledownd/internal/statefile"
	"github.com/scaledownd/scaledownd/pkg/trinoadmin"
)

// QueryLister lists the queries that still have tasks on the worker.
type QueryLister interface {
	BlockingQueries(ctx context.Context) ([]trinoadmin.Query, error)
}

// DrainOptions shape a maintenance drain.
type DrainOptions struct {
	Strategy trinoadmin.Strategy
	// PollInterval is how often the worker is read while waiting.
	PollInterval time.Duration
	// Wait returns only once the worker is DRAINED or has exited, showing
	// the drain as it goes, and ends with a drain report.
	Wait bool
	// StateDir, if set, receives the drain report in its history.
	StateDir   string
	InstanceID string // for the report; may be empty
	// Queries, if set, lists the queries holding the drain every
	// QueryInterval (default 10 s).
	Queries       QueryLister
	QueryInterval time.Duration
}

// Drain takes the local worker out of service without Auto Scaling, for
// maintenance. Without Wait it only requests the state change; with Wait it
// returns once the worker is DRAINED or has exited, and logs and stores a
// drain report (kind maintenance).
func Drain(ctx context.Context, w io.Writer, c *trinoadmin.Client, opts DrainOptions, log *zap.Logger) error {
	if !opts.Wait {
		info, err := c.Info(ctx)
		if err != nil {
			return err
		}
		if info.Coordinator {
			return fmt.Errorf("%s is a coordinator, which cannot be drained", c.URL())
		}
		state := trinoadmin.StateDraining
		if trinoadmin.PlannedPath(opts.Strategy, info) != "DRAINING → DRAINED" {
			state = trinoadmin.StateShuttingDown
		}
		if err := c.SetState(ctx, state); err != nil {
			return err
		}
		fmt.Fprintf(w, "requested %s on %s (Trino %s)\n", state, c.URL(), info.Version)
		return nil
	}
	now := time.Now()
	m := &maintenance{opts: opts, start: now, p: newProgress(w),
		id: statefile.ReportID(fmt.Sprintf("maintenance/%d", now.UnixNano())),
		rep: drainreport.Report{Kind: drainreport.KindMaintenance, Source: drainreport.KindMaintenance,
			InstanceID: opts.InstanceID, Result: "none",
			Timeline: drainreport.Timeline{Signal: now, Received: now, Confirmed: now}},
		l: live{Phase: "requesting the drain"},
	}
	d := trinoadmin.NewDrainer(c, trinoadmin.DrainOptions{Strategy: opts.Strategy, PollInterval: opts.PollInterval, Logger: log})
	res, err := m.run(ctx, func(ctx context.Context) (trinoadmin.Result, error) { return d.Drain(ctx, log) })
	if err != nil {
		return err
	}
	if res.Outcome == trinoadmin.OutcomeCoordinator {
		return fmt.Errorf("%s is a coordinator, which cannot be drained", c.URL())
	}
	rep := m.finish(string(res.Outcome))
	if opts.StateDir != "" {
		h, err := statefile.OpenHistory(opts.StateDir)
		if err == nil {
			err = h.Append(m.id, rep)
		}
		if err != nil {
			log.Warn("could not add the drain report to the history", zap.Error(err), zap.String("state_dir", opts.StateDir))
		}
	}
	log.Info("drain report", zap.Any("report", rep))
	fmt.Fprintf(w, "worker %s: %s (Trino %s, %s path)\n", c.URL(), res.Outcome, res.Version, res.Strategy)
	fmt.Fprintln(w, rep.Line())
	return nil
}

// maintenance follows a maintenance drain: its report and its progress
// line.
type maintenance struct {
	opts  DrainOptions
	start time.Time
	id    string
	p     *progress

	mu  sync.Mutex // over rep, l and the redraws of p
	rep drainreport.Report
	l   live
}

// run runs drain with the maintenance observing it, redrawing the progress
// line every second and listing the queries holding it alongside.
func (m *maintenance) run(ctx context.Context, drain func(context.Context) (trinoadmin.Result, error)) (trinoadmin.Result, error) {
	ctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		stop()
		wg.Wait()
		m.p.end()
	}()
	wg.Go(func() {
		every(ctx, time.Second, func() bool {
			m.update(func(*live) {}) // the countdown moves on
			return true
		})
	})
	if m.opts.Queries != nil {
		wg.Go(func() { m.watchQueries(ctx) })
	}
	return drain(trinoadmin.WithObserver(ctx, m))
}

// update applies change under the lock and redraws the progress line.
func (m *maintenance) update(change func(l *live)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	change(&m.l)
	l := m.l
	l.elapsed = time.Since(m.start)
	m.p.show(liveLine(l))
}

func (m *maintenance) watchQueries(ctx context.Context) {
	interval := m.opts.QueryInterval
	if interval <= 0 {
		interval = 10 * time.Second
	}
	every(ctx, interval, func() bool {
		if qs, err := m.opts.Queries.BlockingQueries(ctx); err == nil {
			seen := make([]drainreport.Query, 0, len(qs))
			for _, q := range qs {
				seen = append(seen, drainreport.Query{QueryID: q.ID, User: q.User, Source: q.Source, State: q.State, ElapsedS: q.Elapsed.Seconds()})
			}
			top := drainreport.Report{Queries: seen}
			top.Finish()
			m.update(func(l *live) {
				m.rep.SeeQueries(seen)
				l.BlockingQueries, l.Queries = new(len(seen)), top.Queries
			})
		}
		return true
	})
}

// DrainMilestone implements trinoadmin.Observer.
func (m *maintenance) DrainMilestone(ms trinoadmin.Milestone) {
	now := time.Now()
	m.update(func(l *live) {
		t := &m.rep.Timeline
		step, ok := map[trinoadmin.Milestone]struct {
			at    *time.Time
			phase string
		}{
			trinoadmin.MilestoneDrainingRequested: {&t.DrainingRequested, "draining"},
			trinoadmin.MilestoneTasksZero:         {&t.TasksZero, "tasks done, waiting for DRAINED"},
			trinoadmin.MilestoneDrained:           {&t.Drained, "drained"},
			trinoadmin.MilestoneShuttingDown:      {&t.ShuttingDown, "shutting down"},
			trinoadmin.MilestoneProcessGone:       {&t.ProcessGone, "process gone"},
		}[ms]
		if !ok {
			return
		}
		if step.at.IsZero() {
			*step.at = now
		}
		l.Phase = step.phase
	})
}

// DrainTasks implements trinoadmin.Observer.
func (m *maintenance) DrainTasks(n int) { m.update(func(l *live) { l.TasksLeft = &n }) }

// DrainState implements trinoadmin.Observer.
func (m *maintenance) DrainState(state string) { m.update(func(l *live) { l.TrinoState = state }) }

// finish completes the report with the drain's outcome.
func (m *maintenance) finish(reason string) drainreport.Report {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rep.Reason = reason
	m.rep.Timeline.Completed = time.Now()
	m.rep.Finish()
	return m.rep
}

// Undrain returns a DRAINING or DRAINED worker to ACTIVE. A worker that is
// SHUTTING_DOWN cannot come back: Trino refuses it.
func Undrain(ctx context.Context, w io.Writer, c *trinoadmin.Client) error {
	if err := c.SetState(ctx, trinoadmin.StateActive); err != nil {
		return fmt.Errorf("reactivate: %w", err)
	}
	state, err := c.State(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "worker %s is %s\n", c.URL(), state)
	return nil
}
