package trinoadmin

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"
)

// Strategy selects how the worker is drained.
type Strategy string

// Strategies.
const (
	// StrategyAuto drains with DRAINING where the worker supports it and
	// falls back to SHUTTING_DOWN where it does not.
	StrategyAuto Strategy = "auto"
	// StrategyDrain uses DRAINING → DRAINED only.
	StrategyDrain Strategy = "drain"
	// StrategyShutdown uses SHUTTING_DOWN and waits for the process to exit
	// (except on 474/475, where that path does not wait for tasks).
	StrategyShutdown Strategy = "shutdown"
)

// brokenShutdown reports versions whose SHUTTING_DOWN does not wait for
// running tasks (trinodb/trino#25690, fixed in 476).
func brokenShutdown(major int) bool { return major == 474 || major == 475 }

// Outcome says how a drain ended.
type Outcome string

// Outcomes.
const (
	OutcomeDrained     Outcome = "drained"     // the worker reported DRAINED
	OutcomeExited      Outcome = "exited"      // the worker process is gone after SHUTTING_DOWN, or died mid-drain
	OutcomeNotRunning  Outcome = "not-running" // no worker answered through the confirmation window
	OutcomeCoordinator Outcome = "coordinator" // the node is a coordinator, which is never drained
)

// Result describes a finished drain.
type Result struct {
	Outcome  Outcome
	Strategy Strategy // the path taken: drain or shutdown
	Version  string
}

// Recorder receives drain progress, for metrics.
type Recorder interface {
	TrinoState(state string)
	TrinoTasks(n int)
	// TrinoRequest counts one API call by outcome: ok, forbidden,
	// not-running, error.
	TrinoRequest(outcome string)
}

// DrainOptions configure a Drainer.
type DrainOptions struct {
	Strategy Strategy
	// PollInterval is how often state and tasks are read while waiting.
	PollInterval time.Duration
	// QuietPeriod is waited after DRAINED or the exit, on top of Trino's
	// own second shutdown.grace-period.
	QuietPeriod time.Duration
	// ShutdownAfterDrain sends SHUTTING_DOWN once the worker is DRAINED, so
	// the idle process exits at once instead of being killed with the VM.
	ShutdownAfterDrain bool
	// NotRunningWindow is how long connections must be refused before the
	// worker counts as not running at all.
	NotRunningWindow time.Duration
	// Backoff is the first pause after a refused or failed state change; it
	// doubles up to MaxBackoff.
	Backoff, MaxBackoff time.Duration
	Logger              *zap.Logger
	Recorder            Recorder
	// DryRun logs the state changes that would be requested and skips them.
	DryRun bool
	// Coordinator, when set, makes Activate wait until the coordinator also
	// lists the worker as active, not only until the worker says ACTIVE.
	Coordinator NodeLister
}

// NodeLister tells how the coordinator sees a node; *Coordinator is one.
type NodeLister interface {
	// NodeState is the node's state in system.runtime.nodes (NodeActive
	// when the coordinator schedules on it), or "" when it is not listed.
	NodeState(ctx context.Context, nodeID string) (string, error)
	// URL is the coordinator's base URL, for logs.
	URL() string
}

// Drainer drains one worker.
type Drainer struct {
	c    *Client
	opts DrainOptions
	log  *zap.Logger
}

// NewDrainer returns a Drainer for the worker behind c.
func NewDrainer(c *Client, opts DrainOptions) *Drainer {
	opts.Strategy = cmp.Or(opts.Strategy, StrategyAuto)
	opts.PollInterval = positive(opts.PollInterval, time.Second)
	opts.NotRunningWindow = positive(opts.NotRunningWindow, 30*time.Second)
	opts.Backoff = positive(opts.Backoff, time.Second)
	if opts.MaxBackoff < opts.Backoff {
		opts.MaxBackoff = 30 * time.Second
	}
	opts.Logger = cmp.Or(opts.Logger, zap.NewNop())
	opts.Recorder = cmp.Or[Recorder](opts.Recorder, nopRecorder{})
	return &Drainer{c: c, opts: opts, log: opts.Logger}
}

// Drain takes the worker out of service and returns once it is safe to
// terminate the instance. It returns ctx's error when ctx ends first (the
// lifecycle deadline or a shutdown of the daemon). Progress is logged to
// log, which carries the caller's fields (nil: the Drainer's own logger).
func (d *Drainer) Drain(ctx context.Context, log *zap.Logger) (Result, error) {
	return d.drain(ctx, log, d.opts.ShutdownAfterDrain)
}

// Hold drains like Drain but never asks the drained worker to exit: for an
// instance going to a warm pool, whose worker returns to service later.
func (d *Drainer) Hold(ctx context.Context, log *zap.Logger) (Result, error) {
	return d.drain(ctx, log, false)
}

func (d *Drainer) drain(ctx context.Context, log *zap.Logger, shutdownAfter bool) (Result, error) {
	log = cmp.Or(log, d.log)
	obs := observerOf(ctx)
	info, err := d.probe(ctx, log)
	if err != nil {
		if errors.Is(err, ErrNotRunning) {
			return Result{Outcome: OutcomeNotRunning}, nil
		}
		return Result{}, err
	}
	res := Result{Version: info.Version}
	if info.Coordinator {
		res.Outcome = OutcomeCoordinator
		return res, nil
	}
	path, target := StrategyDrain, StateDraining
	switch {
	case d.opts.Strategy == StrategyShutdown && brokenShutdown(info.Major()):
		log.Warn("strategy shutdown is unsafe on Trino 474/475 (SHUTTING_DOWN does not wait for tasks, trinodb/trino#25690); using DRAINING",
			zap.String("trino_version", info.Version))
	case d.opts.Strategy == StrategyShutdown:
		path, target = StrategyShutdown, StateShuttingDown
	}
	res.Strategy = path
	log = log.With(zap.String("trino_version", info.Version), zap.String("strategy", string(path)))
	log.Info("draining trino worker", zap.String("trino_url", d.c.URL()))

	// A drain already under way (a restarted daemon resuming) is joined, not
	// requested again: DRAINED and SHUTTING_DOWN refuse DRAINING.
	current := info.State
	if current == "" {
		current, _ = d.c.State(ctx)
	}
	joined := false
	switch {
	case current == StateShuttingDown:
		target, res.Strategy, joined = StateShuttingDown, StrategyShutdown, true
	case path == StrategyDrain && (current == StateDraining || current == StateDrained):
		joined = true
	}
	if joined {
		log.Info("trino worker is already leaving service; waiting for it", zap.String("trino_state", current))
	} else {
		err := d.request(ctx, log, target)
		if errors.Is(err, errUnsupported) && d.opts.Strategy == StrategyAuto && !brokenShutdown(info.Major()) {
			log.Info("worker does not support DRAINING; falling back to SHUTTING_DOWN", zap.Error(err))
			target, res.Strategy = StateShuttingDown, StrategyShutdown
			err = d.request(ctx, log, target)
		}
		switch {
		case errors.Is(err, ErrNotRunning):
			obs.DrainMilestone(MilestoneProcessGone)
			res.Outcome = OutcomeExited
			return res, nil
		case err != nil:
			return res, err
		case d.opts.DryRun: // nothing was requested
		case target == StateDraining:
			obs.DrainMilestone(MilestoneDrainingRequested)
		default:
			obs.DrainMilestone(MilestoneShuttingDown)
		}
	}
	if d.opts.DryRun {
		log.Info("dry run: not waiting for the worker")
		res.Outcome = OutcomeDrained
		return res, nil
	}

	outcome, err := d.wait(ctx, log, target, obs)
	res.Outcome = outcome
	if err != nil {
		return res, err
	}
	if d.opts.QuietPeriod > 0 {
		log.Info("quiet period", zap.Duration("quiet_period", d.opts.QuietPeriod))
		if err := sleepCtx(ctx, d.opts.QuietPeriod); err != nil {
			return res, err
		}
	}
	if outcome == OutcomeDrained && shutdownAfter {
		// DRAINED → SHUTTING_DOWN terminates at once: no tasks, no grace.
		if err := d.c.SetState(ctx, StateShuttingDown); err != nil {
			d.count(err)
			log.Warn("could not ask the drained worker to exit; it stops with the instance", zap.Error(err))
		} else {
			d.count(nil)
			obs.DrainMilestone(MilestoneShuttingDown)
			log.Info("asked the drained worker to shut down")
		}
	}
	return res, nil
}

// probe reads /v1/info until the worker answers. Connection refusals for the
// whole NotRunningWindow yield ErrNotRunning.
func (d *Drainer) probe(ctx context.Context, log *zap.Logger) (Info, error) {
	var refusedSince time.Time
	backoff := d.opts.Backoff
	for {
		info, err := d.c.Info(ctx)
		d.count(err)
		if err == nil && !info.Starting {
			return info, nil
		}
		if ctx.Err() != nil {
			return Info{}, ctx.Err()
		}
		switch {
		case err == nil:
			log.Info("trino worker is still starting; waiting")
			refusedSince = time.Time{}
		case errors.Is(err, ErrNotRunning):
			if refusedSince.IsZero() {
				refusedSince = time.Now()
				log.Info("trino worker refuses connections; confirming it is not running",
					zap.Duration("window", d.opts.NotRunningWindow))
			}
			if time.Since(refusedSince) >= d.opts.NotRunningWindow {
				return Info{}, err
			}
		default:
			refusedSince = time.Time{}
			log.Warn("cannot read trino worker info; retrying", zap.Error(err))
		}
		if err := sleepCtx(ctx, min(backoff, d.opts.PollInterval*5)); err != nil {
			return Info{}, err
		}
		backoff = min(2*backoff, d.opts.MaxBackoff)
	}
}

// errUnsupported marks a state the worker rejected as invalid.
var errUnsupported = errors.New("state change rejected by the worker")

// request PUTs the target state until the worker accepts it. Refusals for
// lack of permission are logged with the fix and retried with backoff until
// ctx ends; a rejected state is returned as errUnsupported.
func (d *Drainer) request(ctx context.Context, log *zap.Logger, state string) error {
	if d.opts.DryRun {
		log.Info("dry run: would request trino state", zap.String("trino_state", state))
		return nil
	}
	backoff := d.opts.Backoff
	var refusedSince time.Time
	for {
		err := d.c.SetState(ctx, state)
		d.count(err)
		if err == nil {
			log.Info("trino state change requested", zap.String("trino_state", state))
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var se *StatusError
		switch {
		case errors.As(err, &se) && se.Forbidden():
			log.Error("trino refused the state change: the worker's access control must allow this user to write system information "+
				"(file-based rules: {\"system_information\":[{\"user\":\"<user>\",\"allow\":[\"read\",\"write\"]}]}); retrying until the deadline",
				zap.String("user", d.c.user), zap.Int("status", se.Code), zap.String("body", se.Body))
		case errors.As(err, &se) && se.Code == 503:
			log.Info("trino worker is not ready; retrying", zap.String("body", se.Body))
		case errors.As(err, &se) && (se.Code == 400 || se.Code == 422 || se.Code == 500):
			return fmt.Errorf("%w: %w", errUnsupported, err)
		case errors.Is(err, ErrNotRunning):
			if refusedSince.IsZero() {
				refusedSince = time.Now()
			}
			if time.Since(refusedSince) >= d.opts.NotRunningWindow {
				return err
			}
		default:
			log.Warn("state change failed; retrying", zap.Error(err))
		}
		if err := sleepCtx(ctx, backoff); err != nil {
			return err
		}
		backoff = min(2*backoff, d.opts.MaxBackoff)
	}
}

// wait polls the worker until it reaches DRAINED (target DRAINING) or its
// process is gone.
func (d *Drainer) wait(ctx context.Context, log *zap.Logger, target string, obs Observer) (Outcome, error) {
	lastState, lastTasks, refused := "", -1, 0
	tasksZero := false
	tasksKnown := true
	for {
		state, err := d.c.State(ctx)
		d.count(err)
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		switch {
		case errors.Is(err, ErrNotRunning):
			// Two refused polls in a row: the process has exited (after
			// SHUTTING_DOWN), or crashed; either way nothing is left to drain.
			refused++
			if refused >= 2 {
				log.Info("trino worker process is gone")
				d.opts.Recorder.TrinoState("GONE")
				obs.DrainState("GONE")
				obs.DrainMilestone(MilestoneProcessGone)
				return OutcomeExited, nil
			}
		case err != nil:
			refused = 0
			log.Warn("cannot read trino state; retrying", zap.Error(err))
		default:
			refused = 0
			if state != lastState {
				log.Info("trino worker state", zap.String("trino_state", state), zap.String("previous", lastState))
				d.opts.Recorder.TrinoState(state)
				obs.DrainState(state)
				lastState = state
			}
			if target == StateDraining && state == StateDrained {
				d.opts.Recorder.TrinoTasks(0)
				obs.DrainTasks(0)
				obs.DrainMilestone(MilestoneDrained)
				return OutcomeDrained, nil
			}
			if state == StateActive {
				// Reactivated by someone, or restarted after an exit
				// (Restart=always on the Trino unit): ask again.
				log.Warn("trino worker is ACTIVE again during the drain; requesting the state change again "+
					"(if the worker restarted, its systemd unit should use Restart=on-failure)", zap.String("trino_state", target))
				if err := d.request(ctx, log, target); err != nil {
					if errors.Is(err, ErrNotRunning) {
						obs.DrainMilestone(MilestoneProcessGone)
						return OutcomeExited, nil
					}
					return "", err
				}
			}
		}
		if tasksKnown && err == nil {
			n, ok, terr := d.c.ActiveTasks(ctx)
			switch {
			case terr != nil:
				var se *StatusError
				if errors.As(terr, &se) && se.Code/100 == 4 {
					tasksKnown = false // not allowed or not there: stop asking
					log.Info("worker's task count is not readable; relying on its state", zap.Error(terr))
				}
			case !ok:
				tasksKnown = false
			case n != lastTasks:
				log.Info("trino worker active tasks", zap.Int("active_tasks", n))
				d.opts.Recorder.TrinoTasks(n)
				obs.DrainTasks(n)
				lastTasks = n
				if n == 0 && !tasksZero { // the count first reached zero
					tasksZero = true
					obs.DrainMilestone(MilestoneTasksZero)
				}
			}
		}
		if err := sleepCtx(ctx, d.opts.PollInterval); err != nil {
			return "", err
		}
	}
}

func (d *Drainer) count(err error) {
	var se *StatusError
	switch {
	case err == nil:
		d.opts.Recorder.TrinoRequest("ok")
	case errors.Is(err, ErrNotRunning):
		d.opts.Recorder.TrinoRequest("not-running")
	case errors.As(err, &se) && se.Forbidden():
		d.opts.Recorder.TrinoRequest("forbidden")
	case errors.Is(err, context.Canceled):
	default:
		d.opts.Recorder.TrinoRequest("error")
	}
}

// positive returns d, or def when d is zero or negative: the default of
// an option left unset.
func positive(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d): // unreferenced, the timer is collected
		return nil
	}
}

type nopRecorder struct{}

func (nopRecorder) TrinoState(string)   {}
func (nopRecorder) TrinoTasks(int)      {}
func (nopRecorder) TrinoRequest(string) {}

// PlannedPath names the path a drain of this worker would take, for
// preflight checks: "DRAINING → DRAINED" or "SHUTTING_DOWN → exit".
func PlannedPath(s Strategy, info Info) string {
	major := info.Major()
	switch {
	case s == StrategyShutdown && !brokenShutdown(major):
		return "SHUTTING_DOWN → exit"
	case s == StrategyAuto && major > 0 && major < 468:
		return "SHUTTING_DOWN → exit (no DRAINING before Trino 468)"
	default:
		return "DRAINING → DRAINED"
	}
}

// Activate waits until the worker is ACTIVE: for a launch hook, the worker
// starting up; for an instance back from a warm pool, a DRAINING or DRAINED
// worker that is reactivated. With a Coordinator it also waits until the
// coordinator lists the worker (by the node id of its /v1/status) as
// active; the worker's state is read again on every poll, so both hold at
// the same time. It returns ctx's error when ctx ends first.
func (d *Drainer) Activate(ctx context.Context, log *zap.Logger) error {
	log = cmp.Or(log, d.log)
	var coord *coordWatch
	if d.opts.Coordinator != nil {
		coord = &coordWatch{co: d.opts.Coordinator, logged: map[string]bool{}}
	}
	last := ""
	for {
		state, err := d.c.State(ctx)
		d.count(err)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			state = "unreachable"
		} else if info, ierr := d.c.Info(ctx); ierr == nil && info.Starting {
			state = "STARTING"
		}
		if state != last {
			if state == StateActive && coord != nil {
				log.Info("trino worker is ACTIVE; waiting until the coordinator lists it as active",
					zap.String("coordinator_url", coord.co.URL()))
			} else {
				log.Info("waiting for the trino worker to be ACTIVE", zap.String("trino_state", state), zap.NamedError("reason", err))
			}
			last = state
		}
		switch state {
		case StateActive:
			if coord == nil || coord.active(ctx, d, log) {
				log.Info("trino worker is ACTIVE")
				d.opts.Recorder.TrinoState(StateActive)
				return nil
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
		case StateDraining, StateDrained:
			if d.opts.DryRun {
				log.Info("dry run: would reactivate the worker")
				return nil
			}
			if err := d.c.SetState(ctx, StateActive); err != nil {
				d.count(err)
				log.Warn("could not reactivate the worker", zap.Error(err))
			} else {
				log.Info("reactivated the drained worker")
			}
		default:
			if coord != nil {
				coord.nodeID = "" // starting or unreachable: read the id again once it is back
			}
		}
		if err := sleepCtx(ctx, d.opts.PollInterval); err != nil {
			return err
		}
	}
}

// coordWatch follows the coordinator's view of the worker during Activate.
type coordWatch struct {
	co     NodeLister
	nodeID string          // the worker's node id, read once it is ACTIVE
	view   string          // the coordinator's view last logged
	logged map[string]bool // errors already logged: each distinct one once
}

// active reports whether the coordinator lists the worker as active. It
// logs the coordinator's view when it changes and each distinct error once.
func (w *coordWatch) active(ctx context.Context, d *Drainer, log *zap.Logger) bool {
	if w.nodeID == "" {
		id, err := d.c.NodeID(ctx)
		d.count(err)
		if err != nil {
			w.failed(ctx, log, fmt.Errorf("read the worker's node id: %w", err))
			return false
		}
		w.nodeID = id
	}
	state, err := w.co.NodeState(ctx, w.nodeID)
	if err != nil {
		w.failed(ctx, log, fmt.Errorf("ask the coordinator about node %q: %w", w.nodeID, err))
		return false
	}
	view := cmp.Or(state, "not listed")
	if view != w.view {
		log.Info("coordinator's view of this worker", zap.String("node_id", w.nodeID),
			zap.String("coordinator_state", view), zap.String("coordinator_url", w.co.URL()))
		w.view = view
	}
	return state == NodeActive
}

func (w *coordWatch) failed(ctx context.Context, log *zap.Logger, err error) {
	if ctx.Err() != nil {
		return // the launch deadline or a shutdown, not the coordinator
	}
	msg := err.Error()
	if w.logged[msg] {
		return
	}
	if len(w.logged) >= 32 { // errors that differ every time: forget, log on
		clear(w.logged)
	}
	w.logged[msg] = true
	log.Warn("cannot learn whether the coordinator lists this worker as active; retrying until the launch deadline "+
		"(each distinct error is logged once)", zap.Error(err), zap.String("coordinator_url", w.co.URL()))
}
